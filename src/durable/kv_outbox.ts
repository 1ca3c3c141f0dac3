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

import { atomic, newId, openKv, readCounters } from "./_kv.ts";
import {
  chunkCount,
  clearPartial,
  deleteChunks,
  fitsInline,
  readChunks,
  setChunks,
  sweepPartials,
  writeLargeChunks,
} from "./_kv_chunks.ts";
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
import { unwrap } from "../wire/envelope.ts";
import { TypedEventTarget } from "../observe/events.ts";
import { END_BLOCK, START_BLOCK } from "../wire/framer.ts";
import { type Message, readMessage } from "../hl7/message.ts";

export type {
  Enqueued,
  OutboxDestination,
  OutboxEventMap,
  OutboxRecord,
  OutboxRetryDetail,
  OutboxState,
  OutboxStats,
} from "./kv_outbox_types.ts";

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
    return outbox;
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#base, ...parts];
  }

  /**
   * Queues a message: returns once it is committed.
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
    try {
      for (let tries = 1;; tries++) {
        const last = await this.#kv.get<number>(this.#key("seq"));
        const seq = (last.value ?? 0) + 1;
        const enqueuedAt = Date.now();
        const record: OutboxRecord = {
          seq,
          id,
          controlId: message.header?.controlId,
          messageType: message.header?.messageType,
          size: raw.length,
          enqueuedAt,
          state: "pending",
          attempts: 0,
          possibleDuplicate: false,
        };
        const op = atomic(this.#kv).check(last)
          .set(this.#key("seq"), seq)
          .set(this.#key("item", seq), record)
          .set(this.#key("pending", seq), enqueuedAt)
          .sum(this.#key("count", "enqueued"), 1n);
        if (inline) setChunks(op, this.#base, id, raw);
        else clearPartial(op, this.#base, id);
        if ((await op.commit()).ok) {
          this.#queued.notify();
          return { seq, controlId: record.controlId };
        }
        if (tries >= 100) {
          throw new Error(
            "Cannot queue message: the queue kept changing (100 tries)",
          );
        }
      }
    } catch (error) {
      if (!inline) {
        await deleteChunks(this.#kv, this.#base, id, chunkCount(raw.length))
          .catch(() => {});
      }
      throw error;
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
    const [enqueued, finished, parked, requeued] = await readCounters(
      this.#kv,
      ["enqueued", "finished", "parked", "requeued"].map((name) =>
        this.#key("count", name)
      ),
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
      parked: parked - requeued,
      enqueued,
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
      await this.stop();
      await this.#worker?.close();
      if (this.#owned) this.#kv.close();
    })();
  }

  /** Closes the outbox; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Reads and checks a payload as the client would send it. */
function prepare(payload: string | Uint8Array): Message {
  const message = readMessage(unwrap(payload));
  for (
    const [byte, name] of [[START_BLOCK, "VT"], [END_BLOCK, "FS"]] as const
  ) {
    const at = message.raw.indexOf(byte);
    if (at !== -1) {
      throw new TypeError(
        `Cannot queue message: it contains a ${name} byte at offset ${at}, which would break the MLLP framing`,
      );
    }
  }
  return message;
}
