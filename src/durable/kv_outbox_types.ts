/**
 * What `KvOutbox` keeps and reports about each queued message, shared by
 * the outbox and its delivery worker: the destination it sends to
 * ({@linkcode OutboxDestination}), the record of a message
 * ({@linkcode OutboxRecord}, with its {@linkcode OutboxState}), the numbers
 * the outbox reports ({@linkcode OutboxStats}), what `enqueue` returns
 * ({@linkcode Enqueued}), and its events ({@linkcode OutboxEventMap},
 * {@linkcode OutboxRetryDetail}).
 *
 * @module
 */

import type { ClientOptions, SendResult } from "../client/client.ts";

/**
 * Where an outbox sends: a receiver's address and the client's options.
 *
 * @example A destination with its own reply timeout
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { KvOutbox, type OutboxDestination } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const destination: OutboxDestination = {
 *   hostname: "127.0.0.1",
 *   port: receiver.port,
 *   replyTimeout: 5_000,
 *   connectTimeout: 2_000,
 * };
 * await using outbox = await KvOutbox.open(":memory:", { destination });
 * const { seq } = await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r");
 * outbox.start();
 * assertEquals((await outbox.waitFor(seq)).state, "acked");
 * ```
 */
export interface OutboxDestination extends ClientOptions {
  /** The receiver's host name or IP address. */
  hostname: string;
  /** The receiver's port. */
  port: number;
}

/**
 * Where a queued message is.
 *
 * @example List the messages still waiting
 * ```ts
 * import { KvOutbox, type OutboxState } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 * });
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r");
 * const state: OutboxState = "pending";
 * const waiting = await Array.fromAsync(outbox.list({ state }));
 * assertEquals(waiting.map((record) => record.controlId), ["Q1"]);
 * ```
 */
export type OutboxState = "pending" | "in_flight" | "acked" | "parked";

/**
 * What the outbox keeps about one message (its bytes are kept apart).
 *
 * @example Inspect a queued message
 * ```ts
 * import { KvOutbox, type OutboxRecord } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 * });
 * const { seq } = await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r");
 * const record: OutboxRecord | undefined = await outbox.get(seq);
 * assertEquals(record?.state, "pending");
 * assertEquals([record?.controlId, record?.messageType], ["Q1", "ADT^A01"]);
 * assertEquals([record?.attempts, record?.possibleDuplicate], [0, false]);
 * ```
 */
export interface OutboxRecord {
  /** Its place in the destination's queue, from 1. */
  seq: number;
  /** The id its bytes are kept under. */
  id: string;
  /** MSH-10, for HL7. */
  controlId?: string;
  /** MSH-9, for HL7. */
  messageType?: string;
  /** Its size in bytes. */
  size: number;
  /** When it was queued, in ms since the epoch. */
  enqueuedAt: number;
  /** Where it is. */
  state: OutboxState;
  /** How many times it was marked in flight (about to be written). */
  attempts: number;
  /**
   * Whether the receiver may have it already: it was sent again after a
   * send whose outcome is unknown (a process that died mid-send, or
   * `resendUnknown`), always with the same control id.
   */
  possibleDuplicate: boolean;
  /** When the last attempt started, in ms since the epoch. */
  sentAt?: number;
  /** When it was acknowledged or parked, in ms since the epoch. */
  finishedAt?: number;
  /** The result's outcome, as in {@linkcode SendResult}, or `"failed"`. */
  outcome?: SendResult["outcome"] | "failed";
  /** The ACK code (MSA-1). */
  ackCode?: string;
  /** The ACK's text (MSA-3). */
  ackText?: string;
  /** The whole ACK (or the reply, for a payload that is not HL7). */
  reply?: string;
  /** The last round trip, in ms. */
  roundTripMs?: number;
  /** Why it was parked, or why the last attempt failed. */
  reason?: string;
}

/**
 * Numbers from {@linkcode KvOutbox.stats}.
 *
 * @example Watch the queue depth
 * ```ts
 * import { KvOutbox, type OutboxStats } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 * });
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r");
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A08|Q2|P|2.5\r");
 * const stats: OutboxStats = await outbox.stats();
 * assertEquals([stats.depth, stats.enqueued, stats.parked], [2, 2, 0]);
 * ```
 */
export interface OutboxStats {
  /** Messages queued and not yet acknowledged or parked. */
  depth: number;
  /** The age of the oldest of them, in ms (0 when none). */
  oldestAgeMs: number;
  /** Messages parked now. */
  parked: number;
  /** Messages queued in all. */
  enqueued: number;
  /** Acknowledged messages removed by retention (`retentionMs`). */
  removed: number;
  /** Messages removed by `purge()`. */
  purged: number;
}

/**
 * What {@linkcode KvOutbox.enqueue} returns.
 *
 * @example Keep the place of each message
 * ```ts
 * import { type Enqueued, KvOutbox } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 * });
 * const hl7: Enqueued = await outbox.enqueue(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r",
 * );
 * const other: Enqueued = await outbox.enqueue("not HL7");
 * assertEquals(hl7, { seq: 1, controlId: "Q1" });
 * assertEquals([other.seq, other.controlId], [2, undefined]);
 * ```
 */
export interface Enqueued {
  /** The message's place in the queue. */
  seq: number;
  /** Its MSH-10, for HL7. */
  controlId?: string;
}

/**
 * Detail of the `retrying` event: the destination could not be reached.
 *
 * @example See why a destination cannot be reached
 * ```ts
 * import { ConnectionRefusedError } from "@x/mllp";
 * import { KvOutbox, type OutboxRetryDetail } from "@x/mllp/outbox";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr;
 * listener.close(); // nothing listens on this port now
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port },
 *   retry: { initialDelay: 60_000, jitter: 0 },
 * });
 * const retrying = new Promise<OutboxRetryDetail>((resolve) =>
 *   outbox.addEventListener("retrying", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r");
 * outbox.start();
 * const detail = await retrying;
 * assert(detail.error instanceof ConnectionRefusedError);
 * assertEquals(detail.record.controlId, "Q1");
 * assertEquals([detail.written, detail.delayMs], [false, 60_000]);
 * ```
 */
export interface OutboxRetryDetail {
  /** The message at the head of the queue. */
  record: OutboxRecord;
  /** Why. */
  error: Error;
  /** Whether the message was written (its outcome is then unknown). */
  written: boolean;
  /** The wait before the next attempt, in ms. */
  delayMs: number;
}

/**
 * The events a {@linkcode KvOutbox} emits, each a `CustomEvent`.
 *
 * @example Log acknowledged messages
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { KvOutbox, type OutboxEventMap } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: receiver.port },
 * });
 * const acked: OutboxEventMap["acked"]["detail"][] = [];
 * outbox.addEventListener("acked", (event) => acked.push(event.detail));
 * const { seq } = await outbox.enqueue("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q1|P|2.5\r");
 * outbox.start();
 * await outbox.waitFor(seq);
 * assertEquals(acked.map((record) => [record.controlId, record.ackCode]), [[
 *   "Q1",
 *   "AA",
 * ]]);
 * ```
 */
export interface OutboxEventMap {
  /** A message was acknowledged (`AA`/`CA`, or a reply other than NAK). */
  acked: CustomEvent<OutboxRecord>;
  /** A message was parked for review. */
  parked: CustomEvent<OutboxRecord>;
  /** Sending failed in transport; the message will be tried again. */
  retrying: CustomEvent<OutboxRetryDetail>;
}
