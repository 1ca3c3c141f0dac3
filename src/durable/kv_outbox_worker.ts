/**
 * The delivery worker of `KvOutbox`: holds a lease on its destination's
 * queue (one worker per destination, across processes, while the lease
 * holds), sends the head of the queue with the library's client after
 * marking it in flight, and records the outcome: acked, parked, or back to
 * pending for a later try.
 *
 * Its log lines say what happened: a send that failed (and that the
 * message stays queued), and a retry when it is made. The wait between
 * them is not logged (the `retrying` event tells of it): an outbox
 * stopped during the wait never claims to try again.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { describe, DestinationClient, startAttempt } from "./_outbox_shared.ts";
import { atomic } from "./_kv.ts";
import { readChunks } from "./_kv_chunks.ts";
import { sleep, type Wakeup } from "./_wakeup.ts";
import type { SendResult } from "../client/client.ts";
import { type BackoffOptions, reconnectDelay } from "../net/backoff.ts";
import { isNak } from "../wire/release2.ts";
import { reasonOf } from "../dispatch/_util.ts";
import { ClientError } from "../client/errors.ts";
import type {
  OutboxDestination,
  OutboxRecord,
  OutboxRetryDetail,
} from "./kv_outbox_types.ts";

const logger = getLogger(["mllp", "outbox"]);

/** What the worker needs from its outbox. */
export interface WorkerSettings {
  kv: Deno.Kv;
  /** The destination's key prefix. */
  base: Deno.KvKey;
  /** The destination as `host:port`. */
  destination: string;
  target: OutboxDestination;
  retry: BackoffOptions;
  resendUnknown: boolean;
  maxAttempts: number;
  leaseMs: number;
  pollInterval: number;
  /** This outbox's id, recorded in the lease. */
  owner: string;
  /** Notified when a message is queued through this outbox. */
  queued: Wakeup;
  /** Reads the numbers the gauges show. */
  refreshStats(): Promise<unknown>;
  onFinished(state: "acked" | "parked", record: OutboxRecord): void;
  onRetry(detail: OutboxRetryDetail): void;
  /**
   * The clock the lease is measured on, in ms since the epoch: `Date.now`
   * (tests give a clock of their own, to let a lease run out exactly when
   * they say).
   */
  now(): number;
}

/** The backoff after the queue itself cannot be read. */
const ERROR_BACKOFF: BackoffOptions = { initialDelay: 50, maxDelay: 5_000 };

/** Delivers one destination's queue while it runs. */
export class OutboxWorker {
  #s: WorkerSettings;
  #lease: { versionstamp: string; until: number } | undefined;
  #waitingForLease = false;
  #client: DestinationClient;
  #failures = 0;
  /**
   * The renewal of the lease in progress, if any: one at a time (two
   * would fail each other's check), and releasing the lease waits for it.
   */
  #renewing: Promise<void> | undefined;

  constructor(settings: WorkerSettings) {
    this.#s = settings;
    this.#client = new DestinationClient(settings.target);
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#s.base, ...parts];
  }

  /** Closes the worker's connection. */
  async close(): Promise<void> {
    await this.#client.close();
  }

  async run(signal: AbortSignal): Promise<void> {
    const heartbeat = setInterval(() => {
      this.#renewing ??= this.#renew().catch(() => {}).finally(() => {
        this.#renewing = undefined;
      });
    }, this.#s.leaseMs / 3);
    const refresh = setInterval(
      () => void this.#s.refreshStats().catch(() => {}),
      1000,
    );
    let errors = 0;
    try {
      await this.#s.refreshStats().catch(() => {});
      while (!signal.aborted) {
        try {
          if (!await this.#holdLease()) {
            await sleep(Math.min(this.#s.leaseMs / 2, 1000), signal);
            continue;
          }
          const head = await this.#head();
          if (!head) {
            await sleep(this.#s.pollInterval, signal, this.#s.queued.next);
            continue;
          }
          const delay = await this.#deliver(head);
          errors = 0;
          if (delay > 0) await sleep(delay, signal);
        } catch (error) {
          if (signal.aborted) break;
          logger.error("Outbox for {destination} failed: {error}", {
            destination: this.#s.destination,
            error,
          });
          await sleep(reconnectDelay(ERROR_BACKOFF, ++errors), signal);
        }
      }
    } finally {
      clearInterval(heartbeat);
      clearInterval(refresh);
      // A renewal landing after the release would leave the lease behind.
      await this.#renewing;
      await this.#releaseLease().catch(() => {});
    }
  }

  /** Takes or renews the claim on this destination's queue. */
  async #holdLease(): Promise<boolean> {
    const now = this.#s.now();
    if (this.#lease && this.#lease.until - now > this.#s.leaseMs / 2) {
      return true;
    }
    const key = this.#key("lease");
    const entry = await this.#s.kv.get<{ owner: string; until: number }>(key);
    const held = entry.value;
    if (held && held.owner !== this.#s.owner && held.until > now) {
      if (!this.#waitingForLease) {
        this.#waitingForLease = true;
        logger.info(
          "Outbox for {destination}: another worker holds the queue until {until}; waiting",
          { destination: this.#s.destination, until: new Date(held.until) },
        );
      }
      this.#lease = undefined;
      return false;
    }
    this.#waitingForLease = false;
    const until = now + this.#s.leaseMs;
    const result = await atomic(this.#s.kv).check(entry)
      .set(key, { owner: this.#s.owner, until }).commit();
    this.#lease = result.ok
      ? { versionstamp: result.versionstamp, until }
      : undefined;
    return result.ok;
  }

  /** Renews the claim if this worker holds it. */
  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (!lease) return;
    const until = this.#s.now() + this.#s.leaseMs;
    const result = await atomic(this.#s.kv)
      .check({ key: this.#key("lease"), versionstamp: lease.versionstamp })
      .set(this.#key("lease"), { owner: this.#s.owner, until }).commit();
    if (this.#lease !== lease) return;
    this.#lease = result.ok
      ? { versionstamp: result.versionstamp, until }
      : undefined;
  }

  async #releaseLease(): Promise<void> {
    const lease = this.#lease;
    this.#lease = undefined;
    if (!lease) return;
    await atomic(this.#s.kv)
      .check({ key: this.#key("lease"), versionstamp: lease.versionstamp })
      .delete(this.#key("lease")).commit();
  }

  /** The first message not yet acknowledged or parked. */
  async #head(): Promise<Deno.KvEntry<OutboxRecord> | undefined> {
    for await (
      const entry of this.#s.kv.list({ prefix: this.#key("pending") }, {
        limit: 1,
      })
    ) {
      const item = await this.#s.kv.get<OutboxRecord>(
        this.#key("item", entry.key.at(-1) as number),
      );
      if (item.value) return item as Deno.KvEntry<OutboxRecord>;
    }
    return undefined;
  }

  /**
   * Sends the head of the queue once and records what became of it.
   * Returns how long to wait before the next attempt (0: go on).
   */
  async #deliver(head: Deno.KvEntry<OutboxRecord>): Promise<number> {
    const lease = this.#lease;
    if (!lease) return 0;
    const before = head.value;
    const flying = startAttempt(before, this.#s.destination);
    // In flight before a byte is written: a crash from here on is seen.
    const marked = await atomic(this.#s.kv).check(head)
      .check({ key: this.#key("lease"), versionstamp: lease.versionstamp })
      .set(this.#key("item", before.seq), flying).commit();
    if (!marked.ok) return 0;
    const entry = { key: head.key, versionstamp: marked.versionstamp };
    let raw: Uint8Array;
    try {
      raw = await readChunks(this.#s.kv, this.#s.base, before.id, before.size);
    } catch (error) {
      await this.#finish(entry, flying, "parked", {
        outcome: "failed",
        reason: reasonOf(error),
      });
      return 0;
    }
    if (before.state === "pending" && before.attempts > 0) {
      logger.info(
        "Outbox for {destination}: sending message {seq} ({controlId}) again (attempt {attempt})",
        {
          destination: this.#s.destination,
          seq: before.seq,
          controlId: before.controlId ?? "",
          attempt: flying.attempts,
        },
      );
    }
    const started = performance.now();
    let result: SendResult;
    try {
      result = await this.#client.send(raw);
    } catch (error) {
      return await this.#failed(entry, flying, error);
    }
    this.#failures = 0;
    const roundTripMs = performance.now() - started;
    const fields = describe(result);
    const unknown = result.outcome === "mismatch";
    if (
      unknown && this.#s.resendUnknown && flying.attempts < this.#s.maxAttempts
    ) {
      await this.#retryLater(entry, flying, fields.reason ?? "", true);
      return reconnectDelay(this.#s.retry, flying.attempts);
    }
    const ok = result.ok &&
      !(result.outcome === "reply" && isNak(result.reply));
    await this.#finish(entry, flying, ok ? "acked" : "parked", {
      ...fields,
      roundTripMs,
    });
    return 0;
  }

  /** A send that threw: retry later (not written, or resendUnknown) or park. */
  async #failed(
    entry: { key: Deno.KvKey; versionstamp: string },
    flying: OutboxRecord,
    error: unknown,
  ): Promise<number> {
    const named = error instanceof Error ? error : new Error(String(error));
    if (!(named instanceof ClientError)) {
      await this.#finish(entry, flying, "parked", {
        outcome: "failed",
        reason: named.message,
      });
      return 0;
    }
    const written = this.#client.written(named);
    if (
      written &&
      !(this.#s.resendUnknown && flying.attempts < this.#s.maxAttempts)
    ) {
      await this.#finish(entry, flying, "parked", {
        outcome: "failed",
        reason: `Outcome unknown: ${named.message}`,
      });
      return 0;
    }
    const retried = await this.#retryLater(
      entry,
      flying,
      named.message,
      written,
    );
    const delayMs = written
      ? reconnectDelay(this.#s.retry, flying.attempts)
      : reconnectDelay(this.#s.retry, ++this.#failures);
    logger.warn(
      "Outbox for {destination}: cannot send message {seq} ({controlId}): {error}; {fate}",
      {
        destination: this.#s.destination,
        seq: flying.seq,
        controlId: flying.controlId ?? "",
        error: named.message,
        fate: written
          ? "its outcome is unknown, so it stays queued, flagged as a possible duplicate"
          : "it stays queued",
      },
    );
    this.#s.onRetry({ record: retried, error: named, written, delayMs });
    return delayMs;
  }

  /** Puts an in-flight message back to pending. */
  async #retryLater(
    entry: { key: Deno.KvKey; versionstamp: string },
    flying: OutboxRecord,
    reason: string,
    written: boolean,
  ): Promise<OutboxRecord> {
    const record: OutboxRecord = {
      ...flying,
      state: "pending",
      possibleDuplicate: flying.possibleDuplicate || written,
      reason,
    };
    await atomic(this.#s.kv).check(entry).set(entry.key, record).commit();
    return record;
  }

  /** Records a final state: acknowledged or parked. */
  async #finish(
    entry: { key: Deno.KvKey; versionstamp: string },
    flying: OutboxRecord,
    state: "acked" | "parked",
    fields: Partial<OutboxRecord>,
  ): Promise<void> {
    const record: OutboxRecord = {
      ...flying,
      ...fields,
      state,
      finishedAt: Date.now(),
    };
    const op = atomic(this.#s.kv).check(entry).set(entry.key, record)
      .delete(this.#key("pending", record.seq))
      .sum(this.#key("count", "finished"), 1n);
    if (state === "parked") {
      op.set(this.#key("parked", record.seq), record.reason ?? "")
        .sum(this.#key("count", "parked"), 1n);
    } else {
      // Retention finds acknowledged messages here, oldest first.
      op.set(this.#key("done", record.finishedAt!, record.seq), 0);
    }
    if (!(await op.commit()).ok) {
      logger.warn(
        "Outbox for {destination}: message {seq} changed while it was sent; its result is not recorded",
        { destination: this.#s.destination, seq: record.seq },
      );
      return;
    }
    if (state === "parked") {
      logger.warn(
        "Outbox for {destination}: parked message {seq} ({controlId}): {reason}",
        {
          destination: this.#s.destination,
          seq: record.seq,
          controlId: record.controlId ?? "",
          reason: record.reason ?? "",
        },
      );
    } else {
      logger.debug("Outbox for {destination}: message {seq} acknowledged", {
        destination: this.#s.destination,
        seq: record.seq,
      });
    }
    this.#s.onFinished(state, record);
  }
}
