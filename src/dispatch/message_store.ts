/**
 * Store-and-forward for the receiver, independent of any database: the
 * {@linkcode MessageStore} interface the receiver's `store` option takes,
 * and what passes through it. The store stage
 * (`src/dispatch/stages/store.ts`) persists each HL7 message before its ACK
 * goes out; `startStoredDispatch` (`src/dispatch/stored_dispatch.ts`) runs
 * the application's dispatcher over stored messages. `KvMessageStore`
 * (`@x/mllp/store`) implements the interface on Deno KV; this module needs
 * no `Deno.Kv` types, so the receiver does not either.
 *
 * @module
 */

import type { Hl7Message } from "../hl7/message.ts";
import type { Address } from "../net/address.ts";
import type { DispatchContext } from "./types.ts";

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
   * failed attempt, or when the claim on it ran out before it was marked
   * dispatched (a process that died or stalled mid-dispatch, a failed
   * mark): dispatch is at least once.
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
 *     // From a store, the context carries the message's id and attempt.
 *     const { messageId, attempt }: Partial<StoredDispatchContext> = ctx;
 *     if (messageId && attempt) seen.resolve([messageId, attempt]);
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
