/**
 * Durable receiving on Deno KV: {@linkcode KvMessageStore} keeps every HL7
 * message a receiver accepts, with its ACK, before the ACK goes out;
 * answers a resend with the ACK it gave the first time; and hands stored
 * messages to the receiver's dispatcher from a consumer loop, so a slow or
 * failing downstream never holds up acknowledging.
 *
 * Needs Deno KV: run with `--unstable-kv` (or `"unstable": ["kv"]` in
 * deno.json). It works the same on a local file, on `":memory:"`, and on a
 * shared KV opened by URL (KV Connect): it uses plain keys, atomic commits
 * and polling, not KV queues, which KV Connect does not support.
 *
 * What it guarantees, and where that ends:
 *
 * - An `AA` goes out only after the message, its ACK and its queue entry
 *   are committed; a commit that fails is answered `AE` (send it again).
 *   Messages that arrive while a commit is in flight (from many
 *   connections) share the next commit (group commit); each one's `AA`
 *   still waits for the commit that holds it.
 * - Each message (keyed on MSH-3, MSH-4 and a non-empty MSH-10) is stored
 *   once and marked dispatched once within the dedupe window
 *   (`dedupeWindowMs`, 7 days after it was stored); a message marked
 *   dispatched is never dispatched again. A resend that arrives later is
 *   stored and dispatched as a new message.
 * - Retention: a dispatched message is removed `retentionMs` (7 days)
 *   after its dispatch; parked and pending messages are never removed by
 *   age (see {@linkcode KvMessageStore.purge}).
 * - Dispatch is at least once, not exactly once. A consumer claims a
 *   message for `leaseMs`, renews the claim every third of that while the
 *   dispatcher works, and marks the message dispatched in a commit that
 *   checks the claim. If the claim runs out first, another consumer (or the
 *   same one) dispatches the message again, as the next `ctx.attempt`:
 *   after the process died mid-dispatch; after the consumer stalled for
 *   longer than what was left of its lease (a paused process, a machine
 *   short of CPU, a KV too busy to commit the renewal), in which case the
 *   two dispatches can overlap; and after the commit that marks it
 *   dispatched failed. (The consumer hands out the next message while
 *   the last one's mark is committed, so a process that dies can leave up
 *   to a claimed batch, 32 messages, dispatched and not yet marked.) Keep
 *   `leaseMs` well above the longest stall you expect, and make the
 *   dispatcher's effects idempotent on `ctx.messageId`, which every
 *   attempt at one message shares.
 *
 * @example A receiver that stores before it acknowledges
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import { KvMessageStore } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const dispatched: string[] = [];
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   store,
 *   dispatcher: (message) => {
 *     if (message.kind === "hl7") dispatched.push(message.header.controlId);
 *   },
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const message = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101||ORU^R01|L1|P|2.5\r";
 * const first = await client.send(message);
 * const again = await client.send(message); // a resend: not stored again
 * assertEquals(first.outcome === "accept" && first.ack.text, "Stored");
 * assertEquals(again.outcome === "accept" && again.ack.toString(),
 *   first.outcome === "accept" && first.ack.toString());
 * assertEquals((await store.stats()).stored, 1);
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { atomic, newId, openKv, readCounters } from "./_kv.ts";
import {
  chunkCount,
  deleteChunks,
  INLINE_CHUNKS,
  readChunks,
  sweepPartials,
} from "./_kv_chunks.ts";
import {
  type RetentionSettings,
  settleDedupe,
  type SweepResult,
  sweepStore,
} from "./kv_store_retention.ts";
import {
  dedupeId,
  dedupeKey,
  type DedupeValue,
  StoreWriter,
} from "./kv_store_writer.ts";
import { Wakeup } from "./_wakeup.ts";
import { startConsumer } from "./kv_store_consumer.ts";
import type {
  QueueEntry,
  StoredRecord,
  StoredState,
  StoreStats,
} from "./kv_store_types.ts";
import type {
  MessageStore,
  StoreConsumer,
  StoredMessageHandler,
  StoreEntry,
  StorePutResult,
} from "../dispatch/message_store.ts";
import type { BackoffOptions } from "../net/backoff.ts";

export type {
  MessageStore,
  StoreConsumer,
  StoredDispatchContext,
  StoredMessage,
  StoredMessageHandler,
  StoredOutcome,
  StoreEntry,
  StorePutResult,
} from "../dispatch/message_store.ts";
export { STORED_TEXT } from "../dispatch/message_store.ts";
export type {
  StoredRecord,
  StoredState,
  StoreStats,
} from "./kv_store_types.ts";
export type { SweepResult } from "./kv_store_retention.ts";

const logger = getLogger(["mllp", "store"]);

/**
 * Options for {@linkcode KvMessageStore.open}.
 *
 * @example Fewer attempts, a faster retry and a prefix of its own
 * ```ts
 * import { KvMessageStore, type KvMessageStoreOptions } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * const options: KvMessageStoreOptions = {
 *   prefix: ["mllp", "adt-inbound"],
 *   maxAttempts: 3,
 *   retry: { initialDelay: 200, maxDelay: 5_000 },
 *   pollInterval: 1_000,
 * };
 * await using store = await KvMessageStore.open(":memory:", options);
 * assertEquals((await store.stats()).stored, 0);
 * ```
 */
export interface KvMessageStoreOptions {
  /**
   * The key prefix under which everything is kept, so that one KV can
   * hold several stores (and outboxes).
   *
   * @default {["mllp", "store"]}
   */
  prefix?: Deno.KvKey;
  /**
   * How many times a message is handed to the dispatcher before it is
   * parked (attempts that ended with a process dying count too).
   *
   * @default {10}
   */
  maxAttempts?: number;
  /**
   * The backoff between attempts at a failing message (the client's
   * reconnect backoff: 1 s doubling up to `maxDelay`, with jitter).
   *
   * @default {{ initialDelay: 1000, maxDelay: 60000, factor: 2, jitter: 0.1 }}
   */
  retry?: BackoffOptions;
  /**
   * How long a consumer's claim on a message lasts without being renewed,
   * in ms. It is renewed every third of this while the dispatcher works,
   * so it runs out only when the consumer's process dies or stalls for
   * longer than what is left of it: then another consumer (or the
   * restarted one) takes the message and dispatches it again (see the
   * module documentation).
   *
   * @default {15000}
   */
  leaseMs?: number;
  /**
   * How often an idle consumer looks for messages stored by other
   * processes, in ms (messages stored through this object wake it at
   * once).
   *
   * @default {250}
   */
  pollInterval?: number;
  /**
   * Chunks of a large message whose record never appeared (its writer
   * died mid-write) are deleted by `open()` once older than this, in ms.
   *
   * @default {3600000}
   */
  partialTtl?: number;
  /**
   * How long a dispatched message (its record and its bytes) is kept after
   * it was dispatched, in ms; then the store's sweeper removes it and
   * counts it in {@linkcode StoreStats.removed}. Parked and pending
   * messages are never removed by age: parked ones stay until
   * {@linkcode KvMessageStore.requeue} or {@linkcode KvMessageStore.purge}.
   * `Infinity` keeps everything.
   *
   * @default {604800000} (7 days)
   */
  retentionMs?: number;
  /**
   * The dedupe window, in ms: for how long after a message was stored a
   * resend of it (same MSH-3, MSH-4, MSH-10) is answered with its stored
   * ACK instead of being stored again, even if retention removed its
   * record meanwhile. Its duplicate key is written with this as its
   * `expireIn` (Deno KV deletes expired keys about once a minute, so a key
   * lives a little longer, never less). Set it above the longest time a
   * sender may resend a message after it arrived. `Infinity`: keys are
   * kept until their record is purged.
   *
   * @default {604800000} (7 days)
   */
  dedupeWindowMs?: number;
  /**
   * How often the store sweeps (removes what retention says, and the
   * chunks of partly written messages older than `partialTtl`), in ms,
   * while it is open; `0` never (call {@linkcode KvMessageStore.sweep}
   * yourself). The timer does not keep a process alive.
   *
   * @default {60000}
   */
  sweepInterval?: number;
}

const WEEK = 7 * 24 * 60 * 60 * 1000;

const DEFAULT_RETRY: BackoffOptions = {
  initialDelay: 1000,
  maxDelay: 60_000,
  factor: 2,
  jitter: 0.1,
};

/**
 * A {@linkcode MessageStore} on Deno KV. Give it to a receiver as its
 * `store` option.
 *
 * Each HL7 message is stored in one atomic commit (bytes, record with the
 * ACK, duplicate key, queue entry) before its ACK is sent; a failed commit
 * makes the receiver answer `AE`. Duplicates are keyed on MSH-3, MSH-4 and
 * MSH-10 (messages with an empty MSH-10 are never taken for duplicates).
 * Stored messages are dispatched in order by a consumer loop that claims
 * each one with a versionstamp check, so that while the claim holds no
 * other consumer (in this process or another sharing the KV) dispatches
 * it, and marks it dispatched in a commit that checks the claim, so it is
 * never dispatched again. A claim that runs out before that commit means a
 * second dispatch: see the module documentation.
 *
 * @example Look at what was stored
 * ```ts
 * import { KvMessageStore } from "@x/mllp/store";
 * import { Ack, readMessage, type Hl7Message } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101||ORU^R01|L7|P|2.5\r",
 * ) as Hl7Message;
 * const address = { hostname: "127.0.0.1", port: 2575 };
 * const result = await store.put({
 *   message,
 *   ack: Ack.forMessage(message, "AA").toBytes(),
 *   peer: address,
 *   local: address,
 *   receivedAt: new Date(),
 * });
 * assertEquals(result.duplicate, false);
 * assertEquals(await store.read(result.id), message.raw);
 * assertEquals((await store.get(result.id))?.state, "pending");
 * ```
 */
export class KvMessageStore implements MessageStore, AsyncDisposable {
  #kv: Deno.Kv;
  #owned: boolean;
  #prefix: Deno.KvKey;
  #maxAttempts: number;
  #retry: BackoffOptions;
  #leaseMs: number;
  #pollInterval: number;
  #owner = newId();
  #wakeup = new Wakeup();
  #consumers = new Set<StoreConsumer>();
  #writer: StoreWriter;
  #retention: RetentionSettings;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<SweepResult> | undefined;
  #closing: Promise<void> | undefined;

  private constructor(
    kv: Deno.Kv,
    owned: boolean,
    options: KvMessageStoreOptions,
  ) {
    this.#kv = kv;
    this.#owned = owned;
    this.#prefix = options.prefix ?? ["mllp", "store"];
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 10);
    this.#retry = options.retry ?? DEFAULT_RETRY;
    this.#leaseMs = Math.max(10, options.leaseMs ?? 15_000);
    this.#pollInterval = Math.max(1, options.pollInterval ?? 250);
    this.#retention = {
      kv,
      prefix: this.#prefix,
      retentionMs: Math.max(0, options.retentionMs ?? WEEK),
      dedupeWindowMs: Math.max(0, options.dedupeWindowMs ?? WEEK),
      partialTtl: options.partialTtl ?? 3_600_000,
      now: Date.now,
    };
    this.#writer = new StoreWriter({
      kv,
      prefix: this.#prefix,
      dedupeWindowMs: this.#retention.dedupeWindowMs,
      wakeup: this.#wakeup,
      warn: (message, properties) => logger.warn(message, properties),
    });
  }

  /**
   * Opens a store.
   *
   * @param pathOrKv A file path, `":memory:"`, a KV Connect URL (with
   *   `DENO_KV_ACCESS_TOKEN` set), an open `Deno.Kv` (which stays yours to
   *   close), or nothing for Deno's default KV.
   * @param options Key prefix, retries, lease and polling.
   * @returns The store.
   * @throws {Error} If the KV cannot be opened.
   *
   * @example Share a KV handle
   * ```ts
   * import { KvMessageStore } from "@x/mllp/store";
   * import { assertEquals } from "@std/assert";
   *
   * using kv = await Deno.openKv(":memory:");
   * await using store = await KvMessageStore.open(kv, { prefix: ["inbound"] });
   * assertEquals((await store.stats()).pending, 0);
   * ```
   */
  static async open(
    pathOrKv?: string | Deno.Kv,
    options: KvMessageStoreOptions = {},
  ): Promise<KvMessageStore> {
    const { kv, owned } = await openKv(pathOrKv);
    const store = new KvMessageStore(kv, owned, options);
    try {
      const swept = await sweepPartials(
        kv,
        store.#prefix,
        options.partialTtl ?? 3_600_000,
      );
      if (swept > 0) {
        logger.warn("Deleted the chunks of {swept} partly written messages", {
          swept,
        });
      }
    } catch (error) {
      if (owned) kv.close();
      throw error;
    }
    const interval = options.sweepInterval ?? 60_000;
    if (interval > 0) {
      const timer = setInterval(() => {
        if (store.#sweeping || store.#closing) return;
        store.sweep().catch((error) =>
          logger.error("Cannot sweep the store: {error}", { error })
        );
      }, Math.max(10, interval));
      Deno.unrefTimer(timer as unknown as number);
      store.#sweepTimer = timer;
    }
    return store;
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#prefix, ...parts];
  }

  /**
   * Stores a message with its ACK and queues it for dispatch, in an
   * atomic commit that checks its duplicate key is absent; or, if the key
   * is there, returns the earlier message's id and ACK. Messages put while
   * a commit is in flight share the next commit (group commit); each put
   * resolves only after the commit that holds its message.
   *
   * @param entry The message, its ACK and where it came from.
   * @returns Whether it was stored, or the earlier ACK.
   * @throws {Error} If the commit fails: nothing was stored.
   */
  put(entry: StoreEntry): Promise<StorePutResult> {
    return this.#writer.put(entry);
  }

  /**
   * The id of the message stored for a sender and control id, if any.
   *
   * @param sendingApplication MSH-3.
   * @param sendingFacility MSH-4.
   * @param controlId MSH-10.
   * @returns The id, or `undefined`.
   */
  async lookup(
    sendingApplication: string,
    sendingFacility: string,
    controlId: string,
  ): Promise<string | undefined> {
    const key = await dedupeKey(
      this.#prefix,
      sendingApplication,
      sendingFacility,
      controlId,
    );
    const value = (await this.#kv.get<DedupeValue>(key)).value;
    return value === null ? undefined : dedupeId(value);
  }

  /**
   * The record of a stored message.
   *
   * @param id The message's id.
   * @returns Its record, or `undefined`.
   */
  async get(id: string): Promise<StoredRecord | undefined> {
    const record = (await this.#kv.get<StoredRecord>(this.#key("msg", id)))
      .value;
    return record ? await this.#withQueue(record) : undefined;
  }

  /** A pending record with the attempts and claim from its queue entry. */
  async #withQueue(record: StoredRecord): Promise<StoredRecord> {
    if (record.state !== "pending") return record;
    const queue = (await this.#kv.get<QueueEntry>(
      this.#key("ready", record.id),
    )).value;
    if (!queue) return record;
    return {
      ...record,
      attempts: queue.attempts,
      leaseOwner: queue.leaseOwner,
      leaseUntil: queue.leaseUntil,
      lastError: queue.lastError,
    };
  }

  /**
   * A stored message's bytes, exactly as received.
   *
   * @param id The message's id.
   * @returns The bytes.
   * @throws {Error} If there is no such message or its bytes are incomplete.
   */
  async read(id: string): Promise<Uint8Array> {
    const record = await this.get(id);
    if (!record) throw new Error(`Cannot read message ${id}: not stored`);
    return await readChunks(this.#kv, this.#prefix, id, record.size);
  }

  /**
   * The records of stored messages, in arrival order.
   *
   * @param options Only those in `state`.
   * @returns The records.
   */
  async *list(
    options: { state?: StoredState } = {},
  ): AsyncIterableIterator<StoredRecord> {
    const iter = this.#kv.list<StoredRecord>({ prefix: this.#key("msg") }, {
      batchSize: 500,
    });
    for await (const entry of iter) {
      if (!options.state || entry.value.state === options.state) {
        yield await this.#withQueue(entry.value);
      }
    }
  }

  /**
   * Counts of stored, pending, dispatched, parked and duplicate messages,
   * read from counters kept in the same commits as the messages.
   *
   * @returns The counts.
   */
  async stats(): Promise<StoreStats> {
    const [
      stored,
      dispatched,
      parked,
      requeued,
      duplicates,
      removed,
      purged,
      purgedParked,
    ] = await readCounters(
      this.#kv,
      [
        "stored",
        "dispatched",
        "parked",
        "requeued",
        "duplicates",
        "removed",
        "purged",
        "purged-parked",
      ].map((name) => this.#key("count", name)),
    );
    let oldestAgeMs = 0;
    for await (
      const entry of this.#kv.list<QueueEntry>({
        prefix: this.#key("ready"),
      }, { limit: 1 })
    ) oldestAgeMs = Math.max(0, Date.now() - entry.value.receivedAt);
    const parkedNow = parked - requeued - purgedParked;
    return {
      stored,
      pending: stored - dispatched - parkedNow - purgedParked,
      dispatched,
      parked: parkedNow,
      duplicates,
      oldestAgeMs,
      removed,
      purged,
    };
  }

  /**
   * Puts a parked message back in the queue, with its attempts reset.
   *
   * @param id The message's id.
   * @returns Whether it was parked (and is now pending).
   */
  async requeue(id: string): Promise<boolean> {
    const entry = await this.#kv.get<StoredRecord>(this.#key("msg", id));
    if (entry.value?.state !== "parked") return false;
    const record: StoredRecord = {
      ...entry.value,
      state: "pending",
      attempts: 0,
      parkedAt: undefined,
      leaseOwner: undefined,
      leaseUntil: undefined,
    };
    const result = await atomic(this.#kv).check(entry)
      .set(this.#key("msg", id), record)
      .set(
        this.#key("ready", id),
        {
          receivedAt: record.receivedAt,
          attempts: 0,
        } satisfies QueueEntry,
      )
      .delete(this.#key("parked", id))
      .sum(this.#key("count", "requeued"), 1n)
      .commit();
    if (result.ok) this.#wakeup.notify();
    return result.ok;
  }

  /**
   * Removes a parked or dispatched message for good: its record, its
   * bytes and its duplicate key (so a resend of it is stored as a new
   * message). Pending messages cannot be purged: a consumer may hold them.
   * Counted in {@linkcode StoreStats.purged}.
   *
   * @param id The message's id.
   * @returns Whether it was parked or dispatched (and is now gone).
   *
   * @example Purge the parked messages after review
   * ```ts
   * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
   * import { KvMessageStore } from "@x/mllp/store";
   * import { assertEquals } from "@std/assert";
   *
   * await using store = await KvMessageStore.open(":memory:");
   * const message = readMessage(
   *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
   * ) as Hl7Message;
   * const peer = { hostname: "127.0.0.1", port: 2575 };
   * const ack = Ack.forMessage(message, "AA").toBytes();
   * await store.put({ message, ack, peer, local: peer, receivedAt: new Date() });
   * const parked = Promise.withResolvers<void>();
   * const consumer = store.consume(() => {
   *   queueMicrotask(parked.resolve);
   *   return Promise.resolve({ outcome: "park", reason: "Unknown patient" });
   * });
   * await parked.promise;
   * await consumer.stop();
   *
   * for await (const record of store.list({ state: "parked" })) {
   *   await store.purge(record.id);
   * }
   * const stats = await store.stats();
   * assertEquals([stats.parked, stats.purged], [0, 1]);
   * ```
   */
  async purge(id: string): Promise<boolean> {
    const entry = await this.#kv.get<StoredRecord>(this.#key("msg", id));
    const record = entry.value;
    if (record?.state !== "parked" && record?.state !== "dispatched") {
      return false;
    }
    const dedupe = record.controlId === "" ? undefined : await this.#kv.get<
      DedupeValue
    >(
      await dedupeKey(
        this.#prefix,
        record.sendingApplication,
        record.sendingFacility,
        record.controlId,
      ),
    );
    const op = atomic(this.#kv).check(entry).delete(entry.key)
      .sum(this.#key("count", "purged"), 1n);
    if (record.state === "parked") {
      op.delete(this.#key("parked", id))
        .sum(this.#key("count", "purged-parked"), 1n);
    } else if (record.dispatchedAt !== undefined) {
      op.delete(this.#key("done", record.dispatchedAt, id));
    }
    const chunks = chunkCount(record.size);
    if (chunks <= INLINE_CHUNKS) {
      for (let i = 0; i < chunks; i++) op.delete(this.#key("chunk", id, i));
    } else {
      op.set(this.#key("partial", id), { at: 0, chunks });
    }
    settleDedupe(op, record, dedupe, Date.now(), Infinity, true);
    if (!(await op.commit()).ok) return false;
    if (chunks > INLINE_CHUNKS) {
      await deleteChunks(this.#kv, this.#prefix, id, chunks);
    }
    return true;
  }

  /**
   * Sweeps now: removes the dispatched messages older than `retentionMs`
   * (with their duplicate keys, when the dedupe window has passed too) and
   * the chunks of partly written messages older than `partialTtl`. The
   * store does this every `sweepInterval` on its own; a sweep already
   * running is awaited rather than started again.
   *
   * @returns What it removed.
   *
   * @example Sweep on your own schedule
   * ```ts
   * import { KvMessageStore } from "@x/mllp/store";
   * import { assertEquals } from "@std/assert";
   *
   * await using store = await KvMessageStore.open(":memory:", {
   *   retentionMs: 30 * 24 * 60 * 60 * 1000, // keep dispatched messages 30 days
   *   sweepInterval: 0, // and sweep only when told
   * });
   * const { removed } = await store.sweep();
   * assertEquals([removed, (await store.stats()).removed], [0, 0]);
   * ```
   */
  sweep(): Promise<SweepResult> {
    return this.#sweeping ??= sweepStore(this.#retention).finally(() => {
      this.#sweeping = undefined;
    });
  }

  /**
   * Starts handing stored messages to `handler`, oldest first, one at a
   * time; see {@linkcode MessageStore.consume}. The receiver calls this
   * when it has a store.
   *
   * @param handler Dispatches one message and says what became of it.
   * @returns The running consumer; stop it with `stop()`.
   */
  consume(handler: StoredMessageHandler): StoreConsumer {
    const consumer = startConsumer({
      kv: this.#kv,
      prefix: this.#prefix,
      owner: this.#owner,
      maxAttempts: this.#maxAttempts,
      retry: this.#retry,
      leaseMs: this.#leaseMs,
      pollInterval: this.#pollInterval,
      wakeup: this.#wakeup,
      closing: () => this.#closing !== undefined,
      now: Date.now,
    }, handler);
    const stop = consumer.stop;
    consumer.stop = async (deadline) => {
      await stop(deadline);
      this.#consumers.delete(consumer);
    };
    this.#consumers.add(consumer);
    return consumer;
  }

  /**
   * Stops the store's consumers (without waiting for a dispatch in hand)
   * and closes the KV if the store opened it. Calling it again returns the
   * same promise.
   *
   * @returns A promise that resolves once closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      clearInterval(this.#sweepTimer);
      await Promise.all([...this.#consumers].map((c) => c.stop(0)));
      await this.#sweeping?.catch(() => {});
      if (this.#owned) this.#kv.close();
    })();
  }

  /** Closes the store; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
