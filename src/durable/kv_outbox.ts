/**
 * A durable outbound queue on Deno KV: {@linkcode KvOutbox.enqueue}
 * returns once a message is committed, and a worker sends the queue in
 * order to one destination with the library's {@linkcode Client},
 * retrying with backoff while the destination cannot be reached, and
 * recording each final ACK. Messages that get `AE`/`AR` (or whose outcome
 * is unknown: no reply in time, an ACK for another message) are parked for
 * review, not resent blindly. After a restart the queue goes on where it
 * was; a message that was being sent when the process died is sent again
 * with the same control id and flagged `possibleDuplicate`.
 *
 * One worker sends to a destination at a time, across processes sharing
 * the KV, while it holds the destination's lease (`leaseMs`, renewed every
 * third of that). A worker that stalls for longer than what is left of its
 * lease (a paused process, a machine short of CPU, a KV too busy to commit
 * the renewal) is taken over like a dead one: the message it was sending
 * is sent again, flagged `possibleDuplicate`, possibly while the first
 * send is still waiting for its reply, whose result is then not recorded.
 * So delivery is at least once: the receiver should detect duplicates by
 * sender and control id, as a receiver with a `KvMessageStore` does.
 *
 * Needs Deno KV: run with `--unstable-kv` (or `"unstable": ["kv"]` in
 * deno.json). Works on a local file, `":memory:"`, or a KV opened by URL
 * (KV Connect): plain keys, atomic commits and polling, no KV queues.
 *
 * Queue depth, the oldest message's age and the parked count are
 * OpenTelemetry gauges (`mllp.outbox.depth`, `mllp.outbox.oldest_age` in
 * ms, `mllp.outbox.parked`, each with `server.address`) while a worker
 * runs, and {@linkcode KvOutbox.stats} returns them.
 *
 * @example Queue two messages and deliver them
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { KvOutbox } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 * });
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: receiver.port },
 * });
 * const first = await outbox.enqueue(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|Q1|P|2.5\r",
 * );
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|Q2|P|2.5\r");
 * outbox.start();
 * const done = await outbox.waitFor(first.seq);
 * assertEquals([done.state, done.ackCode], ["acked", "AA"]);
 * ```
 *
 * @module
 */

import { atomic, isBusy, newId, openKv, readCounters } from "./_kv.ts";
import {
  chunkCount,
  clearPartial,
  deleteChunks,
  fitsInline,
  INLINE_CHUNKS,
  readChunks,
  setChunks,
  sweepPartials,
  writeLargeChunks,
} from "./_kv_chunks.ts";
import { GroupCommitter, keyBytes } from "./_kv_group.ts";
import {
  type OutboxRetentionSettings,
  type OutboxSweepResult,
  sweepOutbox,
} from "./kv_outbox_retention.ts";
import { sleep, Wakeup } from "./_wakeup.ts";
import { OutboxWorker } from "./kv_outbox_worker.ts";
import type {
  Enqueued,
  OutboxDestination,
  OutboxEventMap,
  OutboxRecord,
  OutboxState,
  OutboxStats,
} from "./kv_outbox_types.ts";
import { meter } from "../observe/telemetry.ts";
import type { BackoffOptions } from "../net/backoff.ts";
import { formatAddress } from "../net/address.ts";
import { prepare } from "./_outbox_shared.ts";
import { TypedEventTarget } from "../observe/events.ts";

export type {
  Enqueued,
  OutboxDestination,
  OutboxEventMap,
  OutboxRecord,
  OutboxRetryDetail,
  OutboxState,
  OutboxStats,
} from "./kv_outbox_types.ts";
export type { OutboxSweepResult } from "./kv_outbox_retention.ts";

/**
 * Options for {@linkcode KvOutbox.open}.
 *
 * @example An outbox that resends unknown outcomes to a deduplicating receiver
 * ```ts
 * import { KvOutbox, type KvOutboxOptions } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * const options: KvOutboxOptions = {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 *   prefix: ["mllp", "lab-outbox"],
 *   retry: { initialDelay: 500, maxDelay: 30_000 },
 *   resendUnknown: true,
 *   maxAttempts: 3,
 * };
 * await using outbox = await KvOutbox.open(":memory:", options); // not started: sends nothing
 * assertEquals(outbox.destination, "127.0.0.1:2575");
 * assertEquals((await outbox.stats()).depth, 0);
 * ```
 */
export interface KvOutboxOptions {
  /**
   * The receiver to send to, with {@linkcode ClientOptions} (TLS, reply
   * timeout...). The outbox connects only when it has something to send
   * and paces its own retries, so `reconnect` is ignored.
   */
  destination: OutboxDestination;
  /**
   * The key prefix under which queues are kept (one per destination).
   *
   * @default {["mllp", "outbox"]}
   */
  prefix?: Deno.KvKey;
  /**
   * The backoff between attempts while the destination cannot be reached
   * (refused, connect timeout, dropped before the message was written).
   *
   * @default {{ initialDelay: 1000, maxDelay: 60000, factor: 2, jitter: 0.1 }}
   */
  retry?: BackoffOptions;
  /**
   * Resend a message whose outcome is unknown (it was written, then no
   * reply came in time, the connection dropped, or the reply was an ACK
   * for another message), flagged `possibleDuplicate`, instead of parking
   * it at once. Safe only towards receivers that detect duplicates (such
   * as one with a `KvMessageStore`).
   *
   * @default {false}
   */
  resendUnknown?: boolean;
  /**
   * With `resendUnknown`, how many times a message is sent before it is
   * parked.
   *
   * @default {5}
   */
  maxAttempts?: number;
  /**
   * How long the worker's claim on the destination's queue lasts without
   * renewal, in ms (it is renewed every third of this). One worker sends
   * to a destination at a time, even across processes sharing the KV,
   * while its claim holds; a worker that died, or stalled for longer than
   * what was left of its claim, is taken over, and the message it was
   * sending is sent again (see the module documentation).
   *
   * @default {15000}
   */
  leaseMs?: number;
  /**
   * How often an idle worker looks for messages queued by other
   * processes, in ms (messages queued through this object wake it at
   * once).
   *
   * @default {250}
   */
  pollInterval?: number;
  /**
   * How long an acknowledged message (its record and its bytes) is kept
   * after its ACK, in ms; then the outbox's sweeper removes it and counts
   * it in {@linkcode OutboxStats.removed}. Pending, in-flight and parked
   * messages are never removed by age: parked ones stay until
   * {@linkcode KvOutbox.requeue} or {@linkcode KvOutbox.purge}. `Infinity`
   * keeps everything.
   *
   * @default {604800000} (7 days)
   */
  retentionMs?: number;
  /**
   * How often the outbox sweeps (removes what retention says, and the
   * chunks of partly written messages older than an hour), in ms, while
   * it is open; `0` never (call {@linkcode KvOutbox.sweep} yourself). The
   * timer does not keep a process alive.
   *
   * @default {60000}
   */
  sweepInterval?: number;
}

const WEEK = 7 * 24 * 60 * 60 * 1000;

/** One `enqueue` waiting for its commit. */
interface Queued {
  id: string;
  raw: Uint8Array;
  inline: boolean;
  controlId: string | undefined;
  messageType: string | undefined;
  resolve(enqueued: Enqueued): void;
  fail(error: unknown): void;
}

const DEFAULT_RETRY: BackoffOptions = {
  initialDelay: 1000,
  maxDelay: 60_000,
  factor: 2,
  jitter: 0.1,
};

// The gauges observe every running outbox's cached numbers.
const running = new Set<KvOutbox>();
const gauges = {
  depth: meter.createObservableGauge("mllp.outbox.depth", {
    description: "Messages queued in an outbox and not yet acked or parked",
  }),
  age: meter.createObservableGauge("mllp.outbox.oldest_age", {
    description: "Age of the oldest message queued in an outbox",
    unit: "ms",
  }),
  parked: meter.createObservableGauge("mllp.outbox.parked", {
    description: "Messages parked in an outbox for review",
  }),
};
meter.addBatchObservableCallback((observer) => {
  for (const outbox of running) {
    const stats = outbox.cachedStats;
    if (!stats) continue;
    const attributes = { "server.address": outbox.destination };
    observer.observe(gauges.depth, stats.depth, attributes);
    observer.observe(gauges.age, stats.oldestAgeMs, attributes);
    observer.observe(gauges.parked, stats.parked, attributes);
  }
}, [gauges.depth, gauges.age, gauges.parked]);

/**
 * A durable outbound queue for one destination, on Deno KV. See the
 * module documentation for what it guarantees.
 *
 * States: `pending` → `in_flight` (committed before the message is
 * written, so a crash after writing is noticed on restart) → `acked` or
 * `parked`. A transport failure before the message was written puts it
 * back to `pending` and the worker waits (backoff) before trying again;
 * messages behind it wait too, so the order holds.
 *
 * @example Park a rejected message
 * ```ts
 * import { Ack, Receiver } from "@x/mllp";
 * import { KvOutbox } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: (message) => Ack.forMessage(message, "AR", { text: "No" }),
 * });
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: receiver.port },
 * });
 * const { seq } = await outbox.enqueue(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|R1|P|2.5\r",
 * );
 * outbox.start();
 * const record = await outbox.waitFor(seq);
 * assertEquals([record.state, record.reason], ["parked", "AR: No"]);
 * assertEquals((await outbox.stats()).parked, 1);
 * ```
 */
export class KvOutbox extends TypedEventTarget<OutboxEventMap>
  implements AsyncDisposable {
  /** The destination, as `host:port`: the name of its queue. */
  readonly destination: string;
  #kv: Deno.Kv;
  #owned: boolean;
  #base: Deno.KvKey;
  #target: OutboxDestination;
  #retry: BackoffOptions;
  #resendUnknown: boolean;
  #maxAttempts: number;
  #leaseMs: number;
  #pollInterval: number;
  #owner = newId();
  #queued = new Wakeup();
  #settled = new Wakeup();
  #worker: OutboxWorker | undefined;
  #stopping: AbortController | undefined;
  #working: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #stats: OutboxStats | undefined;
  #committer: GroupCommitter<Queued>;
  #retention: OutboxRetentionSettings;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<OutboxSweepResult> | undefined;

  private constructor(kv: Deno.Kv, owned: boolean, options: KvOutboxOptions) {
    super();
    const { hostname, port } = options.destination;
    this.#kv = kv;
    this.#owned = owned;
    this.#target = options.destination;
    this.destination = formatAddress({ hostname, port });
    this.#base = [...(options.prefix ?? ["mllp", "outbox"]), this.destination];
    this.#retry = options.retry ?? DEFAULT_RETRY;
    this.#resendUnknown = options.resendUnknown ?? false;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 5);
    this.#leaseMs = Math.max(30, options.leaseMs ?? 15_000);
    this.#pollInterval = Math.max(1, options.pollInterval ?? 250);
    this.#committer = new GroupCommitter((group) => this.#write(group));
    this.#retention = {
      kv,
      base: this.#base,
      retentionMs: Math.max(0, options.retentionMs ?? WEEK),
      partialTtl: 3_600_000,
      now: Date.now,
    };
  }

  /**
   * Opens the outbox of one destination.
   *
   * @param pathOrKv A file path, `":memory:"`, a KV Connect URL (with
   *   `DENO_KV_ACCESS_TOKEN` set), an open `Deno.Kv` (which stays yours to
   *   close), or nothing for Deno's default KV.
   * @param options The destination, retries and resends.
   * @returns The outbox; call {@linkcode KvOutbox.start} to deliver.
   * @throws {Error} If the KV cannot be opened.
   */
  static async open(
    pathOrKv: string | Deno.Kv | undefined,
    options: KvOutboxOptions,
  ): Promise<KvOutbox> {
    const { kv, owned } = await openKv(pathOrKv);
    const outbox = new KvOutbox(kv, owned, options);
    try {
      await sweepPartials(kv, outbox.#base, 3_600_000);
    } catch (error) {
      if (owned) kv.close();
      throw error;
    }
    const interval = options.sweepInterval ?? 60_000;
    if (interval > 0) {
      const timer = setInterval(() => {
        if (outbox.#sweeping || outbox.#closing) return;
        outbox.sweep().catch(() => {});
      }, Math.max(10, interval));
      Deno.unrefTimer(timer as unknown as number);
      outbox.#sweepTimer = timer;
    }
    return outbox;
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#base, ...parts];
  }

  /**
   * Queues a message: returns once it is committed. Messages queued while
   * a commit is in flight (by other callers) share the next commit (group
   * commit), numbered in the order of the calls.
   *
   * @param payload An HL7 message or another payload, text or bytes (an
   *   MLLP frame around it is removed).
   * @returns Its place in the queue and its control id.
   * @throws {HeaderError} If it starts with `MSH` but its header cannot be
   *   read (nothing is queued).
   * @throws {TypeError} If it holds a VT or FS byte (nothing is queued).
   * @throws {Error} If the commit fails (nothing is queued).
   */
  async enqueue(payload: string | Uint8Array): Promise<Enqueued> {
    const message = prepare(payload);
    const raw = message.raw;
    const id = newId();
    const inline = fitsInline(raw.length);
    if (!inline) await writeLargeChunks(this.#kv, this.#base, id, raw);
    const { promise, resolve, reject } = Promise.withResolvers<Enqueued>();
    const chunks = inline ? chunkCount(raw.length) : 1;
    const keys = (2 + chunks) * (keyBytes(this.#key("chunk", id)) + 16);
    const controlId = message.header?.controlId;
    const messageType = message.header?.messageType;
    this.#committer.add({
      id,
      raw,
      inline,
      controlId,
      messageType,
      resolve,
      fail: reject,
    }, {
      bytes: (inline ? raw.length : 0) + keys + 512 +
        3 * ((controlId?.length ?? 0) + (messageType?.length ?? 0)),
      keyBytes: keys,
    });
    try {
      return await promise;
    } catch (error) {
      if (!inline) {
        await deleteChunks(this.#kv, this.#base, id, chunkCount(raw.length))
          .catch(() => {});
      }
      throw error;
    }
  }

  /** Commits a group of enqueues, numbered after the last one queued. */
  async #write(group: Queued[]): Promise<void> {
    for (let tries = 1;; tries++) {
      const last = await this.#kv.get<number>(this.#key("seq"));
      let seq = last.value ?? 0;
      const enqueuedAt = Date.now();
      const op = atomic(this.#kv).check(last);
      const results: Enqueued[] = [];
      for (const item of group) {
        seq++;
        const record: OutboxRecord = {
          seq,
          id: item.id,
          controlId: item.controlId,
          messageType: item.messageType,
          size: item.raw.length,
          enqueuedAt,
          state: "pending",
          attempts: 0,
          possibleDuplicate: false,
        };
        op.set(this.#key("item", seq), record)
          .set(this.#key("pending", seq), enqueuedAt);
        if (item.inline) setChunks(op, this.#base, item.id, item.raw);
        else clearPartial(op, this.#base, item.id);
        results.push({ seq, controlId: item.controlId });
      }
      op.set(this.#key("seq"), seq)
        .sum(this.#key("count", "enqueued"), BigInt(group.length));
      let ok: boolean;
      try {
        ok = (await op.commit()).ok;
      } catch (error) {
        if (group.length === 1 || isBusy(error)) throw error;
        // Perhaps the group was too large after all: one at a time.
        for (const item of group) {
          await this.#write([item]).catch((error) => item.fail(error));
        }
        return;
      }
      if (ok) {
        for (const [i, item] of group.entries()) item.resolve(results[i]);
        this.#queued.notify();
        return;
      }
      if (tries >= 100) {
        throw new Error(
          "Cannot queue message: the queue kept changing (100 tries)",
        );
      }
    }
  }

  /**
   * The record of a queued message.
   *
   * @param seq Its place in the queue.
   * @returns The record, or `undefined`.
   */
  async get(seq: number): Promise<OutboxRecord | undefined> {
    return (await this.#kv.get<OutboxRecord>(this.#key("item", seq))).value ??
      undefined;
  }

  /**
   * A queued message's bytes.
   *
   * @param seq Its place in the queue.
   * @returns The bytes.
   * @throws {Error} If there is no such message.
   */
  async read(seq: number): Promise<Uint8Array> {
    const record = await this.get(seq);
    if (!record) throw new Error(`Cannot read message ${seq}: not queued`);
    return await readChunks(this.#kv, this.#base, record.id, record.size);
  }

  /**
   * The records of the queue, in order.
   *
   * @param options Only those in `state`.
   * @returns The records.
   */
  async *list(
    options: { state?: OutboxState } = {},
  ): AsyncIterableIterator<OutboxRecord> {
    const iter = this.#kv.list<OutboxRecord>({ prefix: this.#key("item") }, {
      batchSize: 500,
    });
    for await (const entry of iter) {
      if (!options.state || entry.value.state === options.state) {
        yield entry.value;
      }
    }
  }

  /**
   * Waits until a message is acknowledged or parked.
   *
   * @param seq Its place in the queue.
   * @param options Stops waiting when `signal` aborts.
   * @returns Its final record.
   * @throws {Error} If there is no such message, or `signal` aborted.
   */
  async waitFor(
    seq: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<OutboxRecord> {
    for (;;) {
      options.signal?.throwIfAborted();
      const next = this.#settled.next;
      const record = await this.get(seq);
      if (!record) {
        throw new Error(`Cannot wait for message ${seq}: not queued`);
      }
      if (record.state === "acked" || record.state === "parked") return record;
      await sleep(this.#pollInterval * 4, options.signal, next);
    }
  }

  /**
   * Queue depth, oldest age and parked count, read from counters kept in
   * the same commits as the messages.
   *
   * @returns The numbers.
   */
  async stats(): Promise<OutboxStats> {
    const [
      enqueued,
      finished,
      parked,
      requeued,
      removed,
      purged,
      purgedParked,
    ] = await readCounters(
      this.#kv,
      [
        "enqueued",
        "finished",
        "parked",
        "requeued",
        "removed",
        "purged",
        "purged-parked",
      ].map((name) => this.#key("count", name)),
    );
    let oldestAgeMs = 0;
    for await (
      const entry of this.#kv.list<number>({ prefix: this.#key("pending") }, {
        limit: 1,
      })
    ) oldestAgeMs = Math.max(0, Date.now() - entry.value);
    const stats = {
      depth: enqueued - finished + requeued,
      oldestAgeMs,
      parked: parked - requeued - purgedParked,
      enqueued,
      removed,
      purged,
    };
    this.#stats = stats;
    return stats;
  }

  /** The last numbers read by {@linkcode KvOutbox.stats} (for the gauges). */
  get cachedStats(): OutboxStats | undefined {
    return this.#stats;
  }

  /**
   * Puts a parked message back in the queue, at its old place (so it goes
   * before later messages), with its attempts reset.
   *
   * @param seq Its place in the queue.
   * @returns Whether it was parked (and is now pending).
   */
  async requeue(seq: number): Promise<boolean> {
    const entry = await this.#kv.get<OutboxRecord>(this.#key("item", seq));
    if (entry.value?.state !== "parked") return false;
    const result = await atomic(this.#kv).check(entry)
      .set(this.#key("item", seq), {
        ...entry.value,
        state: "pending",
        attempts: 0,
        finishedAt: undefined,
      })
      .set(this.#key("pending", seq), entry.value.enqueuedAt)
      .delete(this.#key("parked", seq))
      .sum(this.#key("count", "requeued"), 1n)
      .commit();
    if (result.ok) this.#queued.notify();
    return result.ok;
  }

  /**
   * Removes a parked or acknowledged message for good: its record and its
   * bytes. Pending and in-flight messages cannot be purged. Counted in
   * {@linkcode OutboxStats.purged}.
   *
   * @param seq Its place in the queue.
   * @returns Whether it was parked or acknowledged (and is now gone).
   *
   * @example Purge the parked messages after review
   * ```ts
   * import { Ack, Receiver } from "@x/mllp";
   * import { KvOutbox } from "@x/mllp/outbox";
   * import { assertEquals } from "@std/assert";
   *
   * await using receiver = await Receiver.start({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   dispatcher: (message) => Ack.forMessage(message, "AR", { text: "No" }),
   * });
   * await using outbox = await KvOutbox.open(":memory:", {
   *   destination: { hostname: "127.0.0.1", port: receiver.port },
   * });
   * const { seq } = await outbox.enqueue(
   *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|R1|P|2.5\r",
   * );
   * outbox.start();
   * await outbox.waitFor(seq);
   * await outbox.stop();
   *
   * for await (const record of outbox.list({ state: "parked" })) {
   *   await outbox.purge(record.seq);
   * }
   * const stats = await outbox.stats();
   * assertEquals([stats.parked, stats.purged], [0, 1]);
   * ```
   */
  async purge(seq: number): Promise<boolean> {
    const entry = await this.#kv.get<OutboxRecord>(this.#key("item", seq));
    const record = entry.value;
    if (record?.state !== "parked" && record?.state !== "acked") return false;
    const op = atomic(this.#kv).check(entry).delete(entry.key)
      .sum(this.#key("count", "purged"), 1n);
    if (record.state === "parked") {
      op.delete(this.#key("parked", seq))
        .sum(this.#key("count", "purged-parked"), 1n);
    } else if (record.finishedAt !== undefined) {
      op.delete(this.#key("done", record.finishedAt, seq));
    }
    const chunks = chunkCount(record.size);
    if (chunks <= INLINE_CHUNKS) {
      for (let i = 0; i < chunks; i++) {
        op.delete(this.#key("chunk", record.id, i));
      }
    } else {
      op.set(this.#key("partial", record.id), { at: 0, chunks });
    }
    if (!(await op.commit()).ok) return false;
    if (chunks > INLINE_CHUNKS) {
      await deleteChunks(this.#kv, this.#base, record.id, chunks);
    }
    return true;
  }

  /**
   * Sweeps now: removes the acknowledged messages older than `retentionMs`
   * and the chunks of partly written messages older than an hour. The
   * outbox does this every `sweepInterval` on its own; a sweep already
   * running is awaited rather than started again.
   *
   * @returns What it removed.
   *
   * @example Sweep on your own schedule
   * ```ts
   * import { KvOutbox } from "@x/mllp/outbox";
   * import { assertEquals } from "@std/assert";
   *
   * await using outbox = await KvOutbox.open(":memory:", {
   *   destination: { hostname: "127.0.0.1", port: 2575 },
   *   retentionMs: 30 * 24 * 60 * 60 * 1000, // keep acknowledged ones 30 days
   *   sweepInterval: 0, // and sweep only when told
   * });
   * const { removed } = await outbox.sweep();
   * assertEquals([removed, (await outbox.stats()).removed], [0, 0]);
   * ```
   */
  sweep(): Promise<OutboxSweepResult> {
    return this.#sweeping ??= sweepOutbox(this.#retention).finally(() => {
      this.#sweeping = undefined;
    });
  }

  /** Whether the worker is running. */
  get started(): boolean {
    return this.#working !== undefined;
  }

  /**
   * Starts the worker that delivers the queue. Does nothing if it runs.
   *
   * @throws {Error} If the outbox is closed.
   */
  start(): void {
    if (this.#closing) throw new Error("Cannot start: the outbox is closed");
    if (this.#working) return;
    const stopping = new AbortController();
    this.#stopping = stopping;
    running.add(this);
    const worker = this.#worker ??= new OutboxWorker({
      kv: this.#kv,
      base: this.#base,
      destination: this.destination,
      target: this.#target,
      retry: this.#retry,
      resendUnknown: this.#resendUnknown,
      maxAttempts: this.#maxAttempts,
      leaseMs: this.#leaseMs,
      pollInterval: this.#pollInterval,
      owner: this.#owner,
      queued: this.#queued,
      refreshStats: () => this.stats(),
      onFinished: (state, record) => {
        this.#settled.notify();
        this.dispatchEvent(new CustomEvent(state, { detail: record }));
      },
      onRetry: (detail) => {
        this.dispatchEvent(new CustomEvent("retrying", { detail }));
      },
      now: Date.now,
    });
    this.#working = worker.run(stopping.signal).finally(() => {
      running.delete(this);
    });
  }

  /**
   * Stops the worker after the send in progress (if any) has its reply,
   * error or timeout.
   *
   * @returns A promise that resolves once it has stopped.
   */
  async stop(): Promise<void> {
    this.#stopping?.abort();
    await this.#working;
    this.#working = undefined;
  }

  /**
   * Stops the worker (after the send in progress), closes the connection,
   * and closes the KV if the outbox opened it. Calling it again returns
   * the same promise.
   *
   * @returns A promise that resolves once closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      clearInterval(this.#sweepTimer);
      await this.stop();
      await this.#worker?.close();
      await this.#sweeping?.catch(() => {});
      if (this.#owned) this.#kv.close();
    })();
  }

  /** Closes the outbox; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
