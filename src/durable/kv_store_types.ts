/**
 * What `KvMessageStore` keeps in Deno KV about each message, shared by the
 * store and its consumer loop: the record ({@linkcode StoredRecord}, with
 * its {@linkcode StoredState}), the message's entry in the dispatch queue
 * ({@linkcode QueueEntry}, where the claims live), and the counts the store
 * reports ({@linkcode StoreStats}).
 *
 * @module
 */

import type { Address } from "../net/address.ts";

/**
 * Where a stored message is: waiting for (or in) dispatch, done, or parked.
 *
 * @example List the parked messages
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StoredState } from "@x/mllp/store";
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
 * const state: StoredState = "pending";
 * const pending = await Array.fromAsync(store.list({ state }));
 * assertEquals(pending.map((record) => record.controlId), ["L1"]);
 * assertEquals(await Array.fromAsync(store.list({ state: "parked" })), []);
 * ```
 */
export type StoredState = "pending" | "dispatched" | "parked";

/**
 * What the store keeps about one message (its bytes are kept apart).
 *
 * @example Inspect a stored message
 * ```ts
 * import { Ack, type Hl7Message, readMessage } from "@x/mllp";
 * import { KvMessageStore, type StoredRecord } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const message = readMessage(
 *   "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|L1|P|2.5\r",
 * ) as Hl7Message;
 * const peer = { hostname: "127.0.0.1", port: 2575 };
 * const ack = Ack.forMessage(message, "AA").toBytes();
 * const entry = { message, ack, peer, local: peer, receivedAt: new Date() };
 * const { id } = await store.put(entry);
 * const record: StoredRecord | undefined = await store.get(id);
 * assertEquals([
 *   record?.sendingApplication,
 *   record?.controlId,
 *   record?.messageType,
 * ], ["LAB", "L1", "ORU^R01"]);
 * assertEquals([record?.state, record?.attempts, record?.size], [
 *   "pending",
 *   0,
 *   message.size,
 * ]);
 * ```
 */
export interface StoredRecord {
  /** The store's id: sortable by arrival. */
  id: string;
  /** MSH-3 Sending Application. */
  sendingApplication: string;
  /** MSH-4 Sending Facility. */
  sendingFacility: string;
  /** MSH-10 Message Control ID. */
  controlId: string;
  /** MSH-9 Message Type. */
  messageType: string;
  /** The message's size in bytes. */
  size: number;
  /** When it was received, in ms since the epoch. */
  receivedAt: number;
  /** The sender's address. */
  peer: Address;
  /** The receiver's address. */
  local: Address;
  /** The sender's certificate name, with mutual TLS. */
  certificateName?: string;
  /** The ACK it got (and that resends of it get). */
  ack: Uint8Array;
  /** Where it is. */
  state: StoredState;
  /**
   * How many times it was handed to a dispatcher. (While it is pending,
   * this and the claim below are read from its entry in the queue.)
   */
  attempts: number;
  /** The consumer that holds it, while one does. */
  leaseOwner?: string;
  /** Until when that consumer's claim lasts, in ms since the epoch. */
  leaseUntil?: number;
  /** Why the last attempt failed or it was parked. */
  lastError?: string;
  /** When it was dispatched, in ms since the epoch. */
  dispatchedAt?: number;
  /** When it was parked, in ms since the epoch. */
  parkedAt?: number;
}

/**
 * Counts from {@linkcode KvMessageStore.stats}.
 *
 * @example Watch the backlog
 * ```ts
 * import { KvMessageStore, type StoreStats } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:");
 * const stats: StoreStats = await store.stats();
 * const backlog = stats.pending > 0
 *   ? `${stats.pending} waiting, oldest ${stats.oldestAgeMs} ms`
 *   : "empty";
 * assertEquals(backlog, "empty");
 * assertEquals([stats.stored, stats.duplicates, stats.parked], [0, 0, 0]);
 * ```
 */
export interface StoreStats {
  /** Messages stored in all (resends not counted). */
  stored: number;
  /** Messages waiting for dispatch or being dispatched. */
  pending: number;
  /** Messages dispatched. */
  dispatched: number;
  /** Messages parked now. */
  parked: number;
  /** Resends answered with a stored ACK. */
  duplicates: number;
  /** The age of the oldest pending message, in ms (0 when none). */
  oldestAgeMs: number;
  /** Dispatched messages removed by retention (`retentionMs`). */
  removed: number;
  /** Messages removed by `purge()`. */
  purged: number;
}

/**
 * A pending message's entry in the queue (`[...prefix, "ready", id]`):
 * the claim on it lives here, so that claiming reads nothing but the
 * queue, and the record is written once more, when it is done or parked.
 */
export interface QueueEntry {
  /** When the message was received, in ms since the epoch. */
  receivedAt: number;
  /** How many times it was handed out. */
  attempts: number;
  /** The consumer that holds it, while one does. */
  leaseOwner?: string;
  /** Until when that claim lasts, in ms since the epoch. */
  leaseUntil?: number;
  /** Why the last attempt failed. */
  lastError?: string;
}
