/**
 * Store-and-forward for the receiver, independent of any database: the
 * {@linkcode MessageStore} interface the receiver's `store` option takes,
 * the dispatcher wrapper that persists each HL7 message before its ACK
 * goes out, and the consumer handler that runs the application's
 * dispatcher over stored messages. `KvMessageStore` (`@x/mllp/store`)
 * implements the interface on Deno KV; this module needs no `Deno.Kv`
 * types, so the receiver does not either.
 *
 * @module
 */

import { asFunction, plain, reasonOf } from "./_util.ts";
import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import type {
  DispatchContext,
  Dispatcher,
  DispatchFunction,
  DispatchReply,
} from "./dispatcher.ts";
import { type Address, formatAddress } from "../net/address.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import { type Hl7Message, type Message, readMessage } from "../hl7/message.ts";

const logger = getLogger(["mllp", "store"]);

/**
 * The MSA-3 text of the `AA` a receiver with a store sends once a message is stored.
 *
 * @example The text of the ACK for a stored message
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import { KvMessageStore, STORED_TEXT } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   store,
 *   dispatcher: () => {},
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * );
 * assertEquals(result.outcome === "accept" && result.ack.text, STORED_TEXT);
 * ```
 */
export const STORED_TEXT = "Stored";

/**
 * One HL7 message for {@linkcode MessageStore.put}, with the ACK it gets.
 *
 * @example Store a message by hand
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StoreEntry } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * ) as Hl7Message;
 * const entry: StoreEntry = {
 *   message,
 *   ack: Ack.forMessage(message, "AA").toBytes(),
 *   peer: { hostname: "192.0.2.7", port: 40_001 },
 *   local: { hostname: "0.0.0.0", port: 2575 },
 *   receivedAt: new Date(),
 * };
 * const { id } = await store.put(entry);
 * assertEquals((await store.get(id))?.peer.hostname, "192.0.2.7");
 * ```
 */
export interface StoreEntry {
  /** The message as received. */
  message: Hl7Message;
  /** The ACK to send now, and again to any resend of the message. */
  ack: Uint8Array;
  /** The sender's address. */
  peer: Address;
  /** The receiver's address the sender connected to. */
  local: Address;
  /** The subject CN of the sender's TLS certificate, when it sent one. */
  certificateName?: string;
  /** When the frame was received. */
  receivedAt: Date;
}

/**
 * What {@linkcode MessageStore.put} did: stored the message, or found that
 * the same sender (MSH-3, MSH-4) had sent the same control id (MSH-10)
 * before, and returns the ACK that message got.
 *
 * @example A resend gets the first ACK back
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StorePutResult } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * ) as Hl7Message;
 * const address = { hostname: "127.0.0.1", port: 2575 };
 * const ack = Ack.forMessage(message, "AA").toBytes();
 * const entry = {
 *   message,
 *   ack,
 *   peer: address,
 *   local: address,
 *   receivedAt: new Date(),
 * };
 * const first: StorePutResult = await store.put(entry);
 * const again: StorePutResult = await store.put(entry);
 * assertEquals(first.duplicate, false);
 * assertEquals(again.duplicate && [again.id, again.ack], [first.id, ack]);
 * ```
 */
export type StorePutResult =
  | { duplicate: false; id: string }
  | { duplicate: true; id: string; ack: Uint8Array };

/**
 * A stored message handed to the consumer.
 *
 * @example Read a stored message in a consumer
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StoredMessage } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * ) as Hl7Message;
 * const peer = { hostname: "127.0.0.1", port: 2575 };
 * const ack = Ack.forMessage(message, "AA").toBytes();
 * const entry = { message, ack, peer, local: peer, receivedAt: new Date() };
 * await store.put(entry);
 * const handed = Promise.withResolvers<StoredMessage>();
 * const consumer = store.consume((stored) => {
 *   handed.resolve(stored);
 *   return Promise.resolve({ outcome: "done" });
 * });
 * const stored = await handed.promise;
 * await consumer.stop();
 * assertEquals([stored.attempt, stored.raw], [1, message.raw]);
 * ```
 */
export interface StoredMessage {
  /** The store's id of the message. */
  id: string;
  /** The message's bytes, exactly as received. */
  raw: Uint8Array;
  /** When it was received. */
  receivedAt: Date;
  /** The sender's address. */
  peer: Address;
  /** The receiver's address it came in on. */
  local: Address;
  /** The subject CN of the sender's TLS certificate, when it sent one. */
  certificateName?: string;
  /**
   * Which attempt at dispatching it this is, from 1. More than 1 after a
   * failed attempt, or after a process died while dispatching it.
   */
  attempt: number;
}

/**
 * What became of one dispatch from the store: done (never dispatched
 * again), to be retried (after a backoff, up to the store's limit), or
 * parked for review.
 *
 * @example Retry, park or finish a stored message
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StoredOutcome } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * ) as Hl7Message;
 * const peer = { hostname: "127.0.0.1", port: 2575 };
 * const ack = Ack.forMessage(message, "AA").toBytes();
 * const entry = { message, ack, peer, local: peer, receivedAt: new Date() };
 * await store.put(entry);
 * const parked = Promise.withResolvers<void>();
 * const consumer = store.consume(() => {
 *   const outcome: StoredOutcome = { outcome: "park", reason: "Unknown patient" };
 *   queueMicrotask(parked.resolve);
 *   return Promise.resolve(outcome);
 * });
 * await parked.promise;
 * await consumer.stop();
 * assertEquals((await store.stats()).parked, 1);
 * ```
 */
export type StoredOutcome =
  | { outcome: "done" }
  | { outcome: "retry" | "park"; reason: string };

/**
 * Handles one stored message. Its `signal` is aborted when the consumer
 * gives up on it (the store is stopping past its deadline).
 *
 * @example A handler that forwards each message
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StoredMessageHandler } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const forwarded: string[] = [];
 * const done = Promise.withResolvers<void>();
 * const handler: StoredMessageHandler = (message, _signal) => {
 *   forwarded.push(message.id); // pass `_signal` on to slow work, such as fetch
 *   done.resolve();
 *   return Promise.resolve({ outcome: "done" });
 * };
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * ) as Hl7Message;
 * const peer = { hostname: "127.0.0.1", port: 2575 };
 * const ack = Ack.forMessage(message, "AA").toBytes();
 * const entry = { message, ack, peer, local: peer, receivedAt: new Date() };
 * const { id } = await store.put(entry);
 * const consumer = store.consume(handler);
 * await done.promise;
 * await consumer.stop();
 * assertEquals(forwarded, [id]);
 * ```
 */
export type StoredMessageHandler = (
  message: StoredMessage,
  signal: AbortSignal,
) => Promise<StoredOutcome>;

/**
 * A running consumer of a {@linkcode MessageStore}.
 *
 * @example Stop a consumer
 * ```ts
 * import { KvMessageStore, type StoreConsumer } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const consumer: StoreConsumer = store.consume(() =>
 *   Promise.resolve({ outcome: "done" })
 * );
 * await consumer.stop(1_000); // a message in hand gets at most one second
 * assertEquals((await store.stats()).dispatched, 0);
 * ```
 */
export interface StoreConsumer {
  /**
   * Stops taking messages; waits for the one being handled for at most
   * `deadline` ms, then aborts its signal and stops waiting.
   *
   * @param deadline How long the message in hand may take, in ms.
   * @returns A promise that resolves when the consumer has stopped.
   */
  stop(deadline?: number): Promise<void>;
}

/**
 * A durable store of received HL7 messages, for the receiver's `store`
 * option. `KvMessageStore` from `@x/mllp/store` implements it on Deno KV;
 * any object of this shape will do (a test can inject one that fails).
 *
 * @example A store that always fails makes the receiver answer AE
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import type { MessageStore } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * const failing: MessageStore = {
 *   put: () => Promise.reject(new Error("disk full")),
 *   consume: () => ({ stop: () => Promise.resolve() }),
 * };
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   store: failing,
 *   dispatcher: () => {},
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * );
 * assertEquals(
 *   result.outcome === "error" && result.ack.text,
 *   "Cannot store message: disk full",
 * );
 * ```
 */
export interface MessageStore {
  /**
   * Stores one message with its ACK and queues it for dispatch, in one
   * atomic step, unless the same sender (MSH-3, MSH-4) sent the same
   * control id (MSH-10) before.
   *
   * @param entry The message, its ACK and where it came from.
   * @returns Whether it was stored, or the earlier message's ACK.
   * @throws {Error} If it cannot be stored: nothing was stored.
   */
  put(entry: StoreEntry): Promise<StorePutResult>;
  /**
   * Starts handing stored messages, in order, to `handler` until stopped.
   *
   * @param handler Dispatches one message and says what became of it.
   * @returns The running consumer.
   */
  consume(handler: StoredMessageHandler): StoreConsumer;
}

/**
 * The context of a dispatch from a store: the usual
 * {@linkcode DispatchContext}, plus the message's id and attempt.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Use the message id as an idempotency key
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import { KvMessageStore, type StoredDispatchContext } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const seen = Promise.withResolvers<[string, number]>();
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   store,
 *   dispatcher: (_message, ctx) => {
 *     const { messageId, attempt } = ctx as StoredDispatchContext;
 *     seen.resolve([messageId, attempt]);
 *   },
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r");
 * const [messageId, attempt] = await seen.promise;
 * assertEquals([await store.lookup("LAB", "HOSP", "L1"), attempt], [
 *   messageId,
 *   1,
 * ]);
 * ```
 */
export interface StoredDispatchContext<C = unknown> extends DispatchContext<C> {
  /**
   * The store's id of the message: stable across attempts and restarts,
   * so it can serve as an idempotency key downstream.
   */
  messageId: string;
  /** Which attempt this is, from 1 (see {@linkcode StoredMessage.attempt}). */
  attempt: number;
}

/**
 * Wraps a receiver's dispatcher for a store: each HL7 message is stored
 * with its `AA` before the `AA` is returned (a resend gets the ACK stored
 * the first time; a failed store gets `AE`); other payloads go to the
 * dispatcher at once, unstored.
 */
export function storingDispatcher<C>(
  store: MessageStore,
  dispatcher: Dispatcher<C>,
): DispatchFunction<C> {
  const inline = asFunction(dispatcher);
  return async (message, ctx) => {
    if (message.kind !== "hl7") return inline(message, ctx);
    const ack = Ack.forMessage(message, "AA", { text: STORED_TEXT });
    let result: StorePutResult;
    try {
      result = await store.put({
        message,
        ack: ack.toBytes(),
        peer: ctx.peer,
        local: ctx.local,
        certificateName: ctx.certificateName,
        receivedAt: ctx.receivedAt,
      });
    } catch (error) {
      const reason = reasonOf(error);
      logger.error(
        "Cannot store message {controlId} from {peer}: {reason}; replying AE",
        {
          controlId: message.header.controlId,
          peer: formatAddress(ctx.peer),
          reason,
        },
      );
      return Ack.forMessage(message, "AE", {
        text: plain(`Cannot store message: ${reason}`),
      });
    }
    if (!result.duplicate) return ack;
    logger.info(
      "Message {controlId} from {peer} is a resend of stored message {id}; replying its ACK again",
      {
        controlId: message.header.controlId,
        peer: formatAddress(ctx.peer),
        id: result.id,
      },
    );
    return sameAck(result.ack);
  };
}

/**
 * The stored ACK as an {@linkcode Ack} when it reads back to the same
 * bytes (so the receiver's events carry its code), else the bytes.
 */
function sameAck(bytes: Uint8Array): Ack | Uint8Array {
  try {
    const ack = Ack.parse(bytes);
    const again = ack.toBytes();
    if (
      again.length === bytes.length && again.every((b, i) => b === bytes[i])
    ) return ack;
  } catch {
    // Not readable as an ACK: send the bytes as they are.
  }
  return bytes;
}

/** Options for {@linkcode startStoredDispatch}. */
export interface StoredDispatchOptions<C> {
  /** The receiver's `context` option. */
  context: C | undefined;
  /** How long one dispatch may take, in ms; 0 for no limit. */
  dispatchTimeout: number;
  /** The receiver's `charset` option: stored messages are read with it. */
  charset?: CharsetOptions;
}

/**
 * Starts the consumer that runs the receiver's dispatcher over stored
 * messages. A dispatcher that returns normally (or an accepting ACK) is
 * done; one that throws, times out or returns `AE`/`CE` is retried; one
 * that returns `AR`/`CR` parks the message. Its other replies are
 * dropped: the sender had its ACK when the message was stored.
 */
export function startStoredDispatch<C>(
  store: MessageStore,
  dispatcher: Dispatcher<C>,
  options: StoredDispatchOptions<C>,
): StoreConsumer {
  const dispatch = asFunction(dispatcher);
  return store.consume(async (stored, signal) => {
    let message: Message;
    try {
      message = readMessage(stored.raw, { charset: options.charset });
    } catch (error) {
      return {
        outcome: "park",
        reason: `Cannot read message: ${
          error instanceof Error ? error.message : String(error)
        }`,
      };
    }
    let reply: DispatchReply;
    try {
      reply = await bounded(
        dispatch,
        message,
        {
          peer: stored.peer,
          local: stored.local,
          certificateName: stored.certificateName,
          receivedAt: stored.receivedAt,
          context: options.context as C,
          messageId: stored.id,
          attempt: stored.attempt,
        },
        options.dispatchTimeout,
        signal,
      );
    } catch (error) {
      return {
        outcome: "retry",
        reason: error instanceof Error ? error.message : String(error),
      };
    }
    if (reply instanceof Ack && !reply.accepted) {
      const reason = `Dispatcher answered ${reply.code}${
        reply.text ? `: ${reply.text}` : ""
      }`;
      return reply.code === "AR" || reply.code === "CR"
        ? { outcome: "park", reason }
        : { outcome: "retry", reason };
    }
    return { outcome: "done" };
  });
}

/**
 * Runs a dispatch with its own signal, aborted when `timeout` passes (0:
 * never) or `outer` aborts; a dispatcher that ignores its signal is not
 * waited for past either.
 */
async function bounded<C>(
  dispatch: DispatchFunction<C>,
  message: Message,
  ctx: Omit<StoredDispatchContext<C>, "signal">,
  timeout: number,
  outer: AbortSignal,
): Promise<DispatchReply> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const running = Promise.resolve(
      dispatch(message, { ...ctx, signal: controller.signal }),
    );
    running.catch(() => {});
    const limit = new Promise<never>((_, reject) => {
      const give = (reason: Error) => {
        controller.abort(reason);
        reject(reason);
      };
      if (timeout > 0) {
        timer = setTimeout(
          () =>
            give(new Error(`Dispatcher did not answer within ${timeout} ms`)),
          timeout,
        );
      }
      onAbort = () =>
        give(new Error("Dispatch given up on: the store stopped"));
      if (outer.aborted) onAbort();
      else outer.addEventListener("abort", onAbort, { once: true });
    });
    const reply = await Promise.race([running, limit]);
    // Given up on (it may have answered in the same turn): not done.
    if (controller.signal.aborted) throw controller.signal.reason;
    return reply;
  } finally {
    clearTimeout(timer);
    if (onAbort) outer.removeEventListener("abort", onAbort);
  }
}
