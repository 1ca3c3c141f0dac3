/**
 * The consumer loop of `KvMessageStore`: claims the oldest pending message
 * with a versionstamp-checked commit (so no two consumers, in this process
 * or another sharing the KV, hold it at once), renews the claim while the
 * handler works, and records the outcome in a commit that checks the claim
 * still holds: dispatched (never handed out again), retried after a
 * backoff, or parked. A claim that runs out before that commit (a dead or
 * stalled consumer) lets the message be dispatched again: dispatch is at
 * least once, as kv_store.ts states.
 *
 * @module
 */

import { reasonOf } from "../dispatch/_util.ts";
import { getLogger } from "@logtape/logtape";
import { atomic } from "./_kv.ts";
import { chunkCount, readChunks } from "./_kv_chunks.ts";
import { GroupCommitter, keyBytes } from "./_kv_group.ts";
import { sleep, type Wakeup } from "./_wakeup.ts";
import type {
  StoreConsumer,
  StoredMessageHandler,
  StoredOutcome,
} from "../dispatch/message_store.ts";
import { type BackoffOptions, reconnectDelay } from "../net/backoff.ts";
import type { QueueEntry, StoredRecord } from "./kv_store_types.ts";

const logger = getLogger(["mllp", "store"]);

/** What a consumer needs from its store. */
export interface ConsumerSettings {
  kv: Deno.Kv;
  prefix: Deno.KvKey;
  /** This store's id, recorded in the claims it makes. */
  owner: string;
  maxAttempts: number;
  retry: BackoffOptions;
  leaseMs: number;
  pollInterval: number;
  /** Notified when this store stores a message. */
  wakeup: Wakeup;
  /** Whether the store is closing. */
  closing(): boolean;
  /**
   * The clock claims are measured on, in ms since the epoch: `Date.now`
   * (tests give a clock of their own, to let a claim run out exactly when
   * they say).
   */
  now(): number;
}

/**
 * A claim on a message: its record, its queue entry as claimed, and the
 * versionstamp of that entry (every later change checks it).
 */
interface Claim {
  record: StoredRecord;
  queue: QueueEntry;
  versionstamp: string;
  /** The message's bytes, when read with its batch. */
  raw?: Uint8Array;
}

/**
 * A message to take out of the queue with its final record, in a commit
 * that checks its claim; settled with whether the claim held.
 */
interface Mark {
  claim: Claim;
  record: StoredRecord;
  more: (op: Deno.AtomicOperation) => void;
  resolve(ok: boolean): void;
  fail(error: unknown): void;
}

/** The backoff after the queue itself cannot be read. */
const ERROR_BACKOFF: BackoffOptions = { initialDelay: 50, maxDelay: 5_000 };

/** How many messages a consumer claims in one commit. */
const BATCH = 32;

/**
 * `kv.getMany` of any number of keys: 10 to a read (Deno KV's limit),
 * the reads at once.
 */
async function getAll<T>(
  kv: Deno.Kv,
  keys: Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<T>[]> {
  const reads: Promise<Deno.KvEntryMaybe<T>[]>[] = [];
  for (let first = 0; first < keys.length; first += 10) {
    reads.push(kv.getMany<T[]>(keys.slice(first, first + 10)));
  }
  return (await Promise.all(reads)).flat();
}

/** Starts a consumer loop over a store's pending messages. */
export function startConsumer(
  settings: ConsumerSettings,
  handler: StoredMessageHandler,
): StoreConsumer {
  return new Consumer(settings, handler);
}

class Consumer implements StoreConsumer {
  #settings: ConsumerSettings;
  #soft = new AbortController();
  #hard = new AbortController();
  #loop: Promise<void>;
  /**
   * Marks of dispatched messages: the consumer goes on to the next
   * message while a mark is committed, and marks made meanwhile share the
   * next commit (group commit). All are awaited before the next claim.
   */
  #marks = new GroupCommitter<Mark>((group) => this.#writeMarks(group));
  #marking = new Set<Promise<void>>();

  constructor(settings: ConsumerSettings, handler: StoredMessageHandler) {
    this.#settings = settings;
    this.#loop = this.#consumeLoop(
      handler,
      this.#soft.signal,
      this.#hard.signal,
    );
  }

  stop = async (deadline = 5_000): Promise<void> => {
    this.#soft.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      this.#loop.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), Math.max(0, deadline));
      }),
    ]);
    clearTimeout(timer);
    if (late) this.#hard.abort(new Error("The store consumer stopped"));
    await this.#loop;
  };

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#settings.prefix, ...parts];
  }

  async #consumeLoop(
    handler: StoredMessageHandler,
    soft: AbortSignal,
    hard: AbortSignal,
  ): Promise<void> {
    try {
      await this.#consumeBatches(handler, soft, hard);
    } finally {
      await Promise.all(this.#marking);
    }
  }

  async #consumeBatches(
    handler: StoredMessageHandler,
    soft: AbortSignal,
    hard: AbortSignal,
  ): Promise<void> {
    let failures = 0;
    while (!soft.aborted) {
      let claims: Claim[];
      try {
        claims = await this.#claimBatch();
        failures = 0;
      } catch (error) {
        if (this.#settings.closing() || soft.aborted) break;
        const wait = reconnectDelay(ERROR_BACKOFF, ++failures);
        logger.error("Store consumer cannot read the queue: {error}", {
          error,
        });
        await sleep(wait, soft);
        continue;
      }
      if (claims.length === 0) {
        await sleep(
          this.#settings.pollInterval,
          soft,
          this.#settings.wakeup.next,
        );
        continue;
      }
      for (const [i, first] of claims.entries()) {
        if (soft.aborted) {
          // Stopping: let go of the rest, so the next consumer takes them.
          for (const rest of claims.slice(i)) {
            await this.#update(rest, {
              ...rest.queue,
              attempts: rest.queue.attempts - 1,
              leaseOwner: undefined,
              leaseUntil: undefined,
            }).catch(() => {});
          }
          break;
        }
        try {
          // A claim made with the batch may need renewing before its turn.
          const claim = first.queue.leaseUntil! - this.#settings.now() >
              this.#settings.leaseMs / 2
            ? first
            : await this.#update(first, {
              ...first.queue,
              leaseUntil: this.#settings.now() + this.#settings.leaseMs,
            });
          if (claim) {
            await this.#dispatchClaimed(claim, handler, soft, hard, first.raw);
          }
        } catch (error) {
          if (this.#settings.closing()) return;
          logger.error("Store consumer failed on message {id}: {error}", {
            id: first.record.id,
            error,
          });
          await sleep(reconnectDelay(ERROR_BACKOFF, 1), soft);
        }
      }
      await Promise.all(this.#marking);
    }
  }

  /**
   * Claims up to {@linkcode BATCH} of the oldest pending messages that no
   * live consumer holds, in one commit (one at a time when the batch's
   * commit meets another consumer's change).
   */
  async #claimBatch(): Promise<Claim[]> {
    const kv = this.#settings.kv;
    const free: Deno.KvEntry<QueueEntry>[] = [];
    const entries = kv.list<QueueEntry>({ prefix: this.#key("ready") }, {
      limit: 200,
      batchSize: 16,
    });
    for await (const entry of entries) {
      const queue = entry.value;
      if (
        queue.leaseUntil !== undefined &&
        queue.leaseUntil > this.#settings.now()
      ) {
        continue;
      }
      free.push(entry);
      if (free.length === BATCH) break;
    }
    if (free.length === 0) return [];
    const claimAll = await this.#claim(free);
    if (claimAll.length > 0 || free.length === 1) return claimAll;
    for (const entry of free) {
      const one = await this.#claim([entry]);
      if (one.length > 0) return one;
    }
    return [];
  }

  /** Claims these queue entries in one commit; none if it fails. */
  async #claim(entries: Deno.KvEntry<QueueEntry>[]): Promise<Claim[]> {
    const kv = this.#settings.kv;
    const until = this.#settings.now() + this.#settings.leaseMs;
    const op = atomic(kv);
    const claimed = entries.map((entry) => {
      const queue: QueueEntry = {
        ...entry.value,
        attempts: entry.value.attempts + 1,
        leaseOwner: this.#settings.owner,
        leaseUntil: until,
      };
      op.check(entry).set(entry.key, queue);
      return queue;
    });
    const result = await op.commit();
    if (!result.ok) return [];
    const ids = entries.map((entry) => entry.key.at(-1) as string);
    const records = await getAll<StoredRecord>(
      kv,
      ids.map((id) => this.#key("msg", id)),
    );
    const claims = records.map((record, i): Claim => {
      if (!record.value) {
        throw new Error(
          `Cannot dispatch message ${ids[i]}: its record is gone`,
        );
      }
      return {
        record: record.value,
        queue: claimed[i],
        versionstamp: result.versionstamp,
      };
    });
    await this.#prefetch(claims);
    return claims;
  }

  /**
   * Reads the bytes of the claimed messages that fit in one chunk, 10 to a
   * read (Deno KV's limit), so that a batch costs a read or two rather
   * than one per message. A message whose bytes are not found whole here
   * is read again when its turn comes (which reports what is wrong).
   */
  async #prefetch(claims: Claim[]): Promise<void> {
    const small = claims.filter((c) => chunkCount(c.record.size) === 1);
    const entries = await getAll<Uint8Array>(
      this.#settings.kv,
      small.map((c) => this.#key("chunk", c.record.id, 0)),
    );
    for (const [i, entry] of entries.entries()) {
      const value = entry.value;
      if (
        value instanceof Uint8Array && value.length === small[i].record.size
      ) {
        small[i].raw = value;
      }
    }
  }

  /** Rewrites a claimed queue entry, if the claim still holds. */
  async #update(claim: Claim, queue: QueueEntry): Promise<Claim | undefined> {
    const key = this.#key("ready", claim.record.id);
    const result = await atomic(this.#settings.kv)
      .check({ key, versionstamp: claim.versionstamp })
      .set(key, queue).commit();
    return result.ok
      ? { record: claim.record, queue, versionstamp: result.versionstamp }
      : undefined;
  }

  /**
   * Takes a claimed message out of the queue with its final record, if
   * the claim still holds.
   */
  async #finish(
    claim: Claim,
    record: StoredRecord,
    more: (op: Deno.AtomicOperation) => void,
  ): Promise<boolean> {
    const key = this.#key("ready", record.id);
    const op = atomic(this.#settings.kv)
      .check({ key, versionstamp: claim.versionstamp })
      .delete(key)
      .set(this.#key("msg", record.id), record);
    more(op);
    return (await op.commit()).ok;
  }

  /**
   * Like {@linkcode Consumer.#finish}, in the next group commit of marks;
   * the promise is tracked until it settles.
   */
  #mark(
    claim: Claim,
    record: StoredRecord,
    more: (op: Deno.AtomicOperation) => void,
  ): Promise<boolean> {
    const { promise, resolve, reject } = Promise.withResolvers<boolean>();
    const key = keyBytes(this.#key("msg", record.id)) + 16;
    this.#marks.add({ claim, record, more, resolve, fail: reject }, {
      bytes: 4 * key + record.ack.length + record.size / 64 + 1024 +
        3 * (record.sendingApplication.length +
            record.sendingFacility.length + record.controlId.length +
            record.messageType.length + (record.certificateName?.length ?? 0)),
      keyBytes: 4 * key,
    });
    const tracked: Promise<void> = promise.then(() => {}, () => {})
      .finally(() => this.#marking.delete(tracked));
    this.#marking.add(tracked);
    return promise;
  }

  /** Commits a group of marks; one at a time if that fails. */
  async #writeMarks(group: Mark[]): Promise<void> {
    const op = atomic(this.#settings.kv);
    for (const { claim, record, more } of group) {
      const key = this.#key("ready", record.id);
      op.check({ key, versionstamp: claim.versionstamp })
        .delete(key)
        .set(this.#key("msg", record.id), record);
      more(op);
    }
    let ok: boolean;
    try {
      ok = (await op.commit()).ok;
    } catch (error) {
      if (group.length === 1) throw error;
      ok = false;
    }
    if (ok || group.length === 1) {
      for (const mark of group) mark.resolve(ok);
      return;
    }
    // A claim ran out (or the group was refused): the others still go.
    for (const mark of group) {
      await this.#writeMarks([mark]).catch((error) => mark.fail(error));
    }
  }

  /** Runs the handler on a claimed message until done, parked or let go. */
  async #dispatchClaimed(
    first: Claim,
    handler: StoredMessageHandler,
    soft: AbortSignal,
    hard: AbortSignal,
    prefetched?: Uint8Array,
  ): Promise<void> {
    let claim: Claim | undefined = first;
    const { id, size } = first.record;
    const raw = prefetched ?? await readChunks(
      this.#settings.kv,
      this.#settings.prefix,
      id,
      size,
    )
      .catch((error) => error as Error);
    while (claim) {
      // Renew the claim while the handler works, so only a dead process
      // lets it run out.
      let renewing = Promise.resolve();
      const heartbeat = setInterval(() => {
        renewing = renewing.then(async () => {
          if (!claim) return;
          claim = await this.#update(claim, {
            ...claim.queue,
            leaseUntil: this.#settings.now() + this.#settings.leaseMs,
          }).catch(() => claim);
        });
      }, this.#settings.leaseMs / 3);
      let outcome: StoredOutcome;
      try {
        const record = claim.record;
        outcome = raw instanceof Error
          ? { outcome: "park", reason: raw.message }
          : await handler({
            id,
            raw,
            receivedAt: new Date(record.receivedAt),
            peer: record.peer,
            local: record.local,
            certificateName: record.certificateName,
            attempt: claim.queue.attempts,
          }, hard);
      } catch (error) {
        outcome = { outcome: "retry", reason: reasonOf(error) };
      } finally {
        clearInterval(heartbeat);
      }
      await renewing;
      if (!claim) {
        logger.warn(
          "Lost the claim on message {id} while dispatching it: another consumer has it",
          { id },
        );
        return;
      }
      claim = await this.#settle(claim, outcome, soft);
    }
  }

  /**
   * Records an outcome. Returns the renewed claim when the message is to
   * be tried again now (after its backoff), else `undefined`.
   */
  async #settle(
    claim: Claim,
    outcome: StoredOutcome,
    soft: AbortSignal,
  ): Promise<Claim | undefined> {
    const { record, queue } = claim;
    const id = record.id;
    const attempts = queue.attempts;
    if (outcome.outcome === "done") {
      const dispatchedAt = Date.now();
      // Not awaited: the next message goes to the handler meanwhile.
      this.#mark(claim, {
        ...record,
        state: "dispatched",
        attempts,
        lastError: queue.lastError,
        dispatchedAt,
      }, (op) =>
        op.sum(this.#key("count", "dispatched"), 1n)
          // Retention finds dispatched messages here, oldest first.
          .set(this.#key("done", dispatchedAt, id), 0)).then((done) => {
          if (!done) {
            logger.warn("Lost the claim on message {id} before marking it", {
              id,
            });
          } else {
            logger.debug("Dispatched stored message {id} ({controlId})", {
              id,
              controlId: record.controlId,
            });
          }
        }, (error) => {
          logger.error("Cannot mark message {id} dispatched: {error}", {
            id,
            error,
          });
        });
      return undefined;
    }
    if (outcome.outcome === "park" || attempts >= this.#settings.maxAttempts) {
      const reason = outcome.outcome === "park"
        ? outcome.reason
        : `Gave up after ${attempts} attempts: ${outcome.reason}`;
      await this.#finish(claim, {
        ...record,
        state: "parked",
        attempts,
        parkedAt: Date.now(),
        lastError: reason,
      }, (op) =>
        op.set(this.#key("parked", id), reason)
          .sum(this.#key("count", "parked"), 1n));
      logger.warn("Parked stored message {id} ({controlId}): {reason}", {
        id,
        controlId: record.controlId,
        reason,
      });
      return undefined;
    }
    const free = { leaseOwner: undefined, leaseUntil: undefined };
    if (soft.aborted) {
      // Stopping: let go of it, so the next consumer takes it at once.
      await this.#update(claim, {
        ...queue,
        ...free,
        lastError: outcome.reason,
      });
      return undefined;
    }
    const delay = reconnectDelay(this.#settings.retry, attempts);
    logger.warn(
      "Dispatch of stored message {id} ({controlId}) failed (attempt {attempt}): {reason}; retrying in {delay} ms",
      {
        id,
        controlId: record.controlId,
        attempt: attempts,
        reason: outcome.reason,
        delay,
      },
    );
    const waiting = await this.#update(claim, {
      ...queue,
      lastError: outcome.reason,
      leaseUntil: this.#settings.now() + delay + this.#settings.leaseMs,
    });
    if (!waiting) return undefined;
    await sleep(delay, soft);
    if (soft.aborted) {
      await this.#update(waiting, { ...waiting.queue, ...free });
      return undefined;
    }
    return await this.#update(waiting, {
      ...waiting.queue,
      attempts: attempts + 1,
      leaseOwner: this.#settings.owner,
      leaseUntil: this.#settings.now() + this.#settings.leaseMs,
    });
  }
}
