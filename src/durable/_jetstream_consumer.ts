/**
 * The dispatching side of `JetStreamMessageStore`: loops that pull stored
 * messages one at a time from durable pull consumers, hand each to the
 * handler, and settle it:
 *
 * - done: `ackAck` (an ack the server confirms), never delivered again;
 * - retry: `nak` with the store's backoff, so the server delivers it again
 *   after the delay (to this receiver or another in the group);
 * - park: published to the parked stream with the reason, then acked; a
 *   delivery past `maxAttempts` is parked without being handed out.
 *
 * While the handler works the loop tells the server every third of the ack
 * wait (`working()`), so only a dead or stalled receiver lets a message be
 * delivered again. A pull that fails (`heartbeats missed` while the
 * consumer's leader moves, a lost connection) is tried again after a short
 * backoff. With `ordered`, there is one consumer per sender (MSH-3,
 * MSH-4), each with `max_ack_pending: 1`; this group finds new ones by
 * listing the stream's consumers.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type {
  Consumer,
  ConsumerMessages,
  JetStreamClient,
  JsMsg,
} from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { reasonOf } from "../dispatch/_util.ts";
import type {
  StoreConsumer,
  StoredMessageHandler,
  StoredOutcome,
} from "../dispatch/message_store.ts";
import { type BackoffOptions, reconnectDelay } from "../net/backoff.ts";
import { HEADER, parsePeer } from "./_jetstream_codec.ts";
import { sleep, type Wakeup } from "./_wakeup.ts";

const logger = getLogger(["mllp", "store"]);

/** The backoff after a pull fails. */
const ERROR_BACKOFF: BackoffOptions = { initialDelay: 100, maxDelay: 5_000 };

/** What the dispatch loops need from their store. */
export interface JsConsumerSettings {
  js: JetStreamClient;
  stream: string;
  parkedPrefix: string;
  maxAttempts: number;
  retry: BackoffOptions;
  ackWait: number;
  publishTimeout: number;
  /** How long one pull waits for a message, in ms (at least 1000). */
  pullExpires: number;
  /**
   * The names of the group's consumers now (one, or one per sender when
   * ordered); called again every `discoveryInterval` ms and on `wakeup`.
   */
  consumers(): Promise<string[]>;
  discoveryInterval: number;
  wakeup: Wakeup;
  closing(): boolean;
}

/** Starts the loops of a store's consumer group. */
export function startJsConsumer(
  settings: JsConsumerSettings,
  handler: StoredMessageHandler,
): StoreConsumer {
  return new JsConsumerGroup(settings, handler);
}

class JsConsumerGroup implements StoreConsumer {
  #settings: JsConsumerSettings;
  #handler: StoredMessageHandler;
  #soft = new AbortController();
  #hard = new AbortController();
  #loops = new Map<string, Promise<void>>();
  #discovery: Promise<void>;

  constructor(settings: JsConsumerSettings, handler: StoredMessageHandler) {
    this.#settings = settings;
    this.#handler = handler;
    this.#discovery = this.#discover();
  }

  async #discover(): Promise<void> {
    const soft = this.#soft.signal;
    let failures = 0;
    while (!soft.aborted) {
      try {
        for (const name of await this.#settings.consumers()) {
          if (soft.aborted || this.#loops.has(name)) continue;
          this.#loops.set(
            name,
            new PullLoop(this.#settings, name).run(
              this.#handler,
              soft,
              this.#hard.signal,
            ),
          );
        }
        failures = 0;
      } catch (error) {
        if (this.#settings.closing() || soft.aborted) break;
        logger.warn("Cannot list the store's consumers: {error}", { error });
        await sleep(reconnectDelay(ERROR_BACKOFF, ++failures), soft);
        continue;
      }
      await sleep(
        this.#settings.discoveryInterval,
        soft,
        this.#settings.wakeup.next,
      );
    }
  }

  stop = async (deadline = 5_000): Promise<void> => {
    this.#soft.abort();
    await this.#discovery;
    const all = Promise.all(this.#loops.values());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), Math.max(0, deadline));
      }),
    ]);
    clearTimeout(timer);
    if (late) this.#hard.abort(new Error("The store consumer stopped"));
    await all;
  };
}

/** One durable pull consumer's loop. */
class PullLoop {
  #settings: JsConsumerSettings;
  #name: string;

  constructor(settings: JsConsumerSettings, name: string) {
    this.#settings = settings;
    this.#name = name;
  }

  async run(
    handler: StoredMessageHandler,
    soft: AbortSignal,
    hard: AbortSignal,
  ): Promise<void> {
    const { js, stream } = this.#settings;
    let consumer: Consumer | undefined;
    let failures = 0;
    while (!soft.aborted) {
      let msg: JsMsg | undefined;
      try {
        consumer ??= await js.consumers.get(stream, this.#name);
        msg = await this.#next(consumer, soft);
        failures = 0;
      } catch (error) {
        if (this.#settings.closing() || soft.aborted) break;
        failures++;
        // `heartbeats missed` when the consumer's leader moves; a lost
        // connection; a consumer not there yet: all worth another pull.
        const fields = {
          consumer: this.#name,
          failures,
          error: reasonOf(error),
        };
        const text =
          "Pull from consumer {consumer} failed ({failures} in a row): {error}; pulling again";
        if (failures === 1) logger.info(text, fields);
        else logger.warn(text, fields);
        if (/not found/i.test(reasonOf(error))) consumer = undefined;
        await sleep(reconnectDelay(ERROR_BACKOFF, failures), soft);
        continue;
      }
      if (!msg) continue;
      try {
        await this.#handle(msg, handler, soft, hard);
      } catch (error) {
        logger.error("Store consumer failed on message {seq}: {error}", {
          seq: msg.seq,
          error,
        });
      }
    }
  }

  /** One message from one pull, or none when it expired or was stopped. */
  async #next(
    consumer: Consumer,
    soft: AbortSignal,
  ): Promise<JsMsg | undefined> {
    const batch: ConsumerMessages = await consumer.fetch({
      max_messages: 1,
      expires: this.#settings.pullExpires,
    });
    const stop = () => batch.stop();
    soft.addEventListener("abort", stop, { once: true });
    try {
      let msg: JsMsg | undefined;
      for await (const m of batch) msg ??= m;
      return msg;
    } finally {
      soft.removeEventListener("abort", stop);
    }
  }

  async #handle(
    msg: JsMsg,
    handler: StoredMessageHandler,
    soft: AbortSignal,
    hard: AbortSignal,
  ): Promise<void> {
    const { maxAttempts, ackWait } = this.#settings;
    const attempt = msg.info.deliveryCount;
    const h = msg.headers;
    const id = h?.get(HEADER.id) || String(msg.seq);
    if (attempt > maxAttempts) {
      // Its last attempts ended without an outcome (a receiver died).
      await this.#park(
        msg,
        id,
        `Gave up after ${maxAttempts} attempts (the last ended without an outcome)`,
      );
      return;
    }
    const heartbeat = setInterval(() => msg.working(), ackWait / 3);
    let outcome: StoredOutcome;
    try {
      outcome = await handler({
        id,
        raw: msg.data,
        receivedAt: new Date(Number(h?.get(HEADER.received) || 0)),
        peer: parsePeer(h?.get(HEADER.peer)),
        local: parsePeer(h?.get(HEADER.local)),
        certificateName: h?.get(HEADER.certificate)
          ? decodeURIComponent(h.get(HEADER.certificate))
          : undefined,
        attempt,
      }, hard);
    } catch (error) {
      outcome = { outcome: "retry", reason: reasonOf(error) };
    } finally {
      clearInterval(heartbeat);
    }
    if (outcome.outcome === "done") {
      try {
        await msg.ackAck({ timeout: this.#settings.publishTimeout });
        logger.debug("Dispatched stored message {id}", { id });
      } catch (error) {
        logger.warn(
          "Cannot mark stored message {id} dispatched: {error}; it will be dispatched again",
          { id, error: reasonOf(error) },
        );
      }
      return;
    }
    if (outcome.outcome === "park") {
      await this.#park(msg, id, outcome.reason);
      return;
    }
    if (attempt >= maxAttempts) {
      await this.#park(
        msg,
        id,
        `Gave up after ${attempt} attempts: ${outcome.reason}`,
      );
      return;
    }
    if (soft.aborted) {
      // Stopping: let go of it, so the next receiver takes it at once.
      msg.nak();
      return;
    }
    const delay = reconnectDelay(this.#settings.retry, attempt);
    logger.warn(
      "Dispatch of stored message {id} failed (attempt {attempt}): {reason}; retrying in {delay} ms",
      { id, attempt, reason: outcome.reason, delay },
    );
    msg.nak(delay);
  }

  /**
   * Publishes a copy to the parked stream (once: its subject names the
   * message, and must be empty), then acks the message.
   */
  async #park(msg: JsMsg, id: string, reason: string): Promise<void> {
    const { js, parkedPrefix, publishTimeout } = this.#settings;
    const h: MsgHdrs = natsHeaders();
    for (const [key, values] of msg.headers ?? []) {
      if (key.toLowerCase().startsWith("nats-")) continue;
      for (const value of values) h.append(key, value);
    }
    h.set(HEADER.id, id);
    h.set(HEADER.reason, encodeURIComponent(reason));
    h.set(HEADER.attempts, String(msg.info.deliveryCount));
    h.set(HEADER.parkedAt, String(Date.now()));
    h.set(HEADER.subject, msg.subject);
    h.set(HEADER.seq, String(msg.seq));
    try {
      await js.publish(`${parkedPrefix}.${id}`, msg.data, {
        headers: h,
        msgID: `park|${this.#settings.stream}|${msg.seq}`,
        expect: { lastSubjectSequence: 0 },
        timeout: publishTimeout,
      });
    } catch (error) {
      if ((error as { code?: number }).code !== 10071) {
        logger.warn(
          "Cannot park stored message {id}: {error}; trying again later",
          { id, error: reasonOf(error) },
        );
        msg.nak(reconnectDelay(ERROR_BACKOFF, 3));
        return;
      }
      // Its subject has a message: parked before (an ack that was lost).
    }
    logger.warn("Parked stored message {id}: {reason}", { id, reason });
    try {
      await msg.ackAck({ timeout: publishTimeout });
    } catch (error) {
      logger.warn("Cannot ack parked message {id}: {error}", {
        id,
        error: reasonOf(error),
      });
    }
  }
}
