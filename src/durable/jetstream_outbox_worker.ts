/**
 * The delivery worker of `JetStreamOutbox`: pulls its destination's queue
 * from a durable consumer with `max_ack_pending: 1` (so one message is out
 * at a time across every worker of every process, and the order holds),
 * records the message in flight, sends it with the library's client while
 * telling the server it is still at work, and settles it:
 *
 * - `AA`/`CA` (or a reply other than a NAK): recorded acked, then acked;
 * - `AR`/`CR`, a reply that is not an ACK: parked at once (a copy with the
 *   reason on the parked subject), then acked;
 * - `AE`/`CE`, a NAK, no reply in time, an ACK for another message:
 *   `nak` with the backoff's delay, parked once `maxAttempts` sends have
 *   failed; an unknown outcome is flagged `possibleDuplicate`;
 * - not reached (refused, dropped before it was written): `nak` with the
 *   backoff's delay, not counted as an attempt.
 *
 * A worker that dies (or stalls past `ackWait`) holding a message loses
 * it to the next worker that pulls, which finds it recorded in flight and
 * sends it again flagged `possibleDuplicate`. A pull that fails
 * (`heartbeats missed` while the consumer's leader moves, a lost
 * connection) is tried again after a short backoff.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { describe, DestinationClient, startAttempt } from "./_outbox_shared.ts";
import type {
  Consumer,
  ConsumerMessages,
  JetStreamClient,
  JsMsg,
} from "@nats-io/jetstream";
import type { SendResult } from "../client/client.ts";
import { ClientError } from "../client/errors.ts";
import { reasonOf } from "../dispatch/_util.ts";
import { type BackoffOptions, reconnectDelay } from "../net/backoff.ts";
import { isNak } from "../wire/release2.ts";
import { sleep } from "./_wakeup.ts";
import type {
  OutboxDestination,
  OutboxRecord,
  OutboxRetryDetail,
} from "./kv_outbox_types.ts";

const logger = getLogger(["mllp", "outbox"]);

/** The backoff after a pull fails. */
const ERROR_BACKOFF: BackoffOptions = { initialDelay: 100, maxDelay: 5_000 };

/** Where the worker reads and writes the records of its queue. */
export interface OutboxLedger {
  /** The record of a pulled message: its last status, or a fresh one. */
  recordOf(msg: JsMsg): Promise<OutboxRecord>;
  /** Writes a message's status (a publish the stream acknowledged). */
  write(record: OutboxRecord): Promise<void>;
  /** Publishes a parked copy with its record (once per copy). */
  park(record: OutboxRecord, msg: JsMsg): Promise<void>;
}

/** What the worker needs from its outbox. */
export interface JsWorkerSettings {
  js: JetStreamClient;
  stream: string;
  consumer: string;
  ledger: OutboxLedger;
  /** The destination as `host:port`. */
  destination: string;
  target: OutboxDestination;
  retry: BackoffOptions;
  maxAttempts: number;
  ackWait: number;
  publishTimeout: number;
  /** Whether the outbox (or its connection) is closing. */
  closing(): boolean;
  onFinished(state: "acked" | "parked", record: OutboxRecord): void;
  onRetry(detail: OutboxRetryDetail): void;
}

/** Delivers one destination's queue while it runs. */
export class JsOutboxWorker {
  #s: JsWorkerSettings;
  #client: DestinationClient;
  /** Sends in a row that did not reach the destination. */
  #failures = 0;

  constructor(settings: JsWorkerSettings) {
    this.#s = settings;
    this.#client = new DestinationClient(settings.target);
  }

  /** Closes the worker's connection to the destination. */
  async close(): Promise<void> {
    await this.#client.close();
  }

  async run(signal: AbortSignal): Promise<void> {
    const { js, stream, consumer: name } = this.#s;
    let consumer: Consumer | undefined;
    let failures = 0;
    while (!signal.aborted) {
      let msg: JsMsg | undefined;
      try {
        consumer ??= await js.consumers.get(stream, name);
        msg = await this.#next(consumer, signal);
        failures = 0;
      } catch (error) {
        if (this.#s.closing() || signal.aborted) break;
        failures++;
        // `heartbeats missed` when the consumer's leader moves; a lost
        // connection; a consumer not there yet: all worth another pull.
        // `logger.info` and `logger.warn` need their `this`.
        logger[failures === 1 ? "info" : "warn"](
          "Outbox for {destination}: pull failed ({failures} in a row): {error}; pulling again",
          {
            destination: this.#s.destination,
            failures,
            error: reasonOf(error),
          },
        );
        if (/not found/i.test(reasonOf(error))) consumer = undefined;
        await sleep(reconnectDelay(ERROR_BACKOFF, failures), signal);
        continue;
      }
      if (!msg) continue;
      // Tell the server every third of the ack wait that the message is
      // in hand, from the first read of its record to its ack (not only
      // while it is sent: a record write can wait for a stream's new
      // leader).
      const held = msg;
      const heartbeat = setInterval(() => {
        try {
          held.working();
        } catch {
          // The connection is gone: the server lets the message go to
          // another worker after the ack wait, as it should.
        }
      }, this.#s.ackWait / 3);
      try {
        await this.#deliver(msg);
      } catch (error) {
        // The queue's records could not be read or written: try later.
        logger.error(
          "Outbox for {destination}: message {seq} failed: {error}",
          { destination: this.#s.destination, seq: msg.seq, error },
        );
        nak(msg, reconnectDelay(ERROR_BACKOFF, 3));
      } finally {
        clearInterval(heartbeat);
      }
    }
  }

  /** One message from one pull, or none when it expired or was stopped. */
  async #next(
    consumer: Consumer,
    signal: AbortSignal,
  ): Promise<JsMsg | undefined> {
    const batch: ConsumerMessages = await consumer.fetch({
      max_messages: 1,
      expires: 5_000,
    });
    const stop = () => batch.stop();
    signal.addEventListener("abort", stop, { once: true });
    try {
      let msg: JsMsg | undefined;
      for await (const m of batch) msg ??= m;
      return msg;
    } finally {
      signal.removeEventListener("abort", stop);
    }
  }

  /** Sends a pulled message once and settles it. */
  async #deliver(msg: JsMsg): Promise<void> {
    const before = await this.#s.ledger.recordOf(msg);
    if (before.state === "acked" || before.state === "parked") {
      // Finished before, and the ack was lost: let it go.
      await msg.ackAck({ timeout: this.#s.publishTimeout }).catch(() => {});
      return;
    }
    const flying = startAttempt(before, this.#s.destination);
    // In flight before a byte is written: a worker dying from here on
    // leaves it so, and the next one flags its resend.
    await this.#s.ledger.write(flying);
    const started = performance.now();
    let result: SendResult;
    try {
      result = await this.#client.send(msg.data);
    } catch (error) {
      await this.#failed(msg, flying, error);
      return;
    }
    this.#failures = 0;
    const roundTripMs = performance.now() - started;
    const fields = { ...describe(result), roundTripMs };
    if (result.ok && !(result.outcome === "reply" && isNak(result.reply))) {
      await this.#finish(msg, flying, "acked", fields);
      return;
    }
    if (result.outcome === "reject" || result.outcome === "not_ack") {
      await this.#finish(msg, flying, "parked", fields);
      return;
    }
    // AE/CE, a NAK, an ACK for another message, no ACK: send it again.
    const unknown = result.outcome === "mismatch";
    await this.#again(msg, { ...flying, ...fields }, {
      reason: fields.reason ?? result.outcome,
      written: true,
      unknown,
    });
  }

  /** A send that threw: send again later, or park what is not a transport error. */
  async #failed(
    msg: JsMsg,
    flying: OutboxRecord,
    error: unknown,
  ): Promise<void> {
    const named = error instanceof Error ? error : new Error(String(error));
    if (!(named instanceof ClientError)) {
      await this.#finish(msg, flying, "parked", {
        outcome: "failed",
        reason: named.message,
      });
      return;
    }
    const written = this.#client.written(named);
    await this.#again(msg, flying, {
      reason: written ? `Outcome unknown: ${named.message}` : named.message,
      written,
      unknown: written,
      error: named,
    });
  }

  /**
   * Records the message pending again and naks it with the backoff's
   * delay; parks it instead once `maxAttempts` sends that reached the
   * destination have failed.
   */
  async #again(
    msg: JsMsg,
    flying: OutboxRecord,
    how: { reason: string; written: boolean; unknown: boolean; error?: Error },
  ): Promise<void> {
    const { maxAttempts, retry } = this.#s;
    if (how.written && flying.attempts >= maxAttempts) {
      await this.#finish(msg, flying, "parked", {
        outcome: flying.outcome ?? "failed",
        reason: `Gave up after ${flying.attempts} attempts: ${how.reason}`,
      });
      return;
    }
    const record: OutboxRecord = {
      ...flying,
      state: "pending",
      // A send that never reached the destination is not an attempt.
      attempts: how.written ? flying.attempts : flying.attempts - 1,
      possibleDuplicate: flying.possibleDuplicate || how.unknown,
      reason: how.reason,
    };
    const delayMs = how.written
      ? reconnectDelay(retry, flying.attempts)
      : reconnectDelay(retry, ++this.#failures);
    await this.#s.ledger.write(record);
    nak(msg, delayMs);
    logger.warn(
      "Outbox for {destination}: message {seq} ({controlId}) not delivered: {reason}; trying again in {delay} ms",
      {
        destination: this.#s.destination,
        seq: record.seq,
        controlId: record.controlId ?? "",
        reason: how.reason,
        delay: delayMs,
      },
    );
    this.#s.onRetry({
      record,
      error: how.error ?? new Error(how.reason),
      written: how.written,
      delayMs,
    });
  }

  /**
   * Records a final state (a parked copy first, when parked), then acks
   * the message.
   */
  async #finish(
    msg: JsMsg,
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
    if (state === "parked") await this.#s.ledger.park(record, msg);
    await this.#s.ledger.write(record);
    try {
      await msg.ackAck({ timeout: this.#s.publishTimeout });
    } catch (error) {
      // Delivered again later, it is found finished and let go.
      logger.warn(
        "Outbox for {destination}: cannot ack message {seq}: {error}",
        {
          destination: this.#s.destination,
          seq: record.seq,
          error: reasonOf(error),
        },
      );
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

/**
 * Naks a message with a delay; on a connection that is gone the server
 * redelivers it after its ack wait anyway.
 */
function nak(msg: JsMsg, delayMs: number): void {
  try {
    msg.nak(delayMs);
  } catch (error) {
    logger.debug("Cannot nak message {seq}: {error}", {
      seq: msg.seq,
      error: reasonOf(error),
    });
  }
}
