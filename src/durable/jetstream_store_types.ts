/**
 * The options of `JetStreamMessageStore` and what it reports: a stored
 * message's record, a parked message, and the store's counts.
 *
 * @module
 */

import type { JetStreamConnectionOptions } from "./jetstream_connection.ts";
import type { Address } from "../net/address.ts";
import type { BackoffOptions } from "../net/backoff.ts";

/**
 * Options for `JetStreamMessageStore.open`. Every field has a default; a
 * receiver group (several receivers sharing one consumer) must use the
 * same `stream`, `consumer` and `ordered` in each receiver.
 *
 * @example A store for one interface, in order per sender
 * ```ts
 * import type { JetStreamMessageStoreOptions } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * const options: JetStreamMessageStoreOptions = {
 *   stream: "ADT_IN",
 *   consumer: "adt_dispatch",
 *   ordered: true,
 *   replicas: 3,
 *   maxAge: 14 * 24 * 3_600_000, // keep messages, and duplicate keys, 14 days
 *   duplicateWindow: 10 * 60_000,
 *   connection: { user: "mllp", pass: "secret" },
 * };
 * assertEquals(options.ordered, true);
 * ```
 */
export interface JetStreamMessageStoreOptions {
  /**
   * The stream messages are published to. Created (with `replicas`,
   * `maxAge` and `duplicateWindow`) when it is missing; when it is there,
   * it is used as it is (a warning names settings that differ).
   *
   * @default {"HL7_IN"}
   */
  stream?: string;
  /**
   * The first token of the stream's subjects: each message goes to
   * `<subjectPrefix>.<MSH-3>.<MSH-4>.<MSH-10>`.
   *
   * @default {the stream's name}
   */
  subjectPrefix?: string;
  /**
   * The stream parked messages are published to, at
   * `<parkedStream>.<id>`. It has no age limit: parked messages stay until
   * requeued or purged.
   *
   * @default {`${stream}_PARKED`}
   */
  parkedStream?: string;
  /**
   * The name of the durable pull consumer the receivers of one group share
   * (with `ordered`, the prefix of one consumer per sender).
   *
   * @default {"mllp"}
   */
  consumer?: string;
  /**
   * Dispatch each sender's messages (MSH-3, MSH-4) in the order they were
   * stored: one consumer per sender, each with `max_ack_pending: 1`, so a
   * sender's next message waits until the one before is done or parked
   * (retries included), while other senders go on. Without it, one
   * consumer takes every sender's messages with `maxAckPending` in flight
   * across the group: a retried message lets later ones pass.
   *
   * @default {false}
   */
  ordered?: boolean;
  /**
   * Replicas of the streams (1, 3 or 5): with 3, a publish is acknowledged
   * once two of the three nodes have it, and the store survives one node.
   *
   * @default {3}
   */
  replicas?: number;
  /**
   * How long the stream keeps a message, in ms (the stream's `max_age`):
   * its bytes, its ACK and its duplicate key go together. It must exceed
   * the longest a sender may resend a message, and the longest dispatch
   * may be down: a message older than this is removed whether or not it
   * was dispatched. 0 keeps messages forever.
   *
   * @default {604800000} (7 days)
   */
  maxAge?: number;
  /**
   * The stream's duplicate window, in ms: a resend within it is recognised
   * by its `Nats-Msg-Id` from the server's memory; after it, by its
   * subject, as long as the first copy is kept (`maxAge`). Never more than
   * `maxAge`: `open` refuses a larger window (with `maxAge` shorter than
   * the default window and no window given, the window is `maxAge`).
   *
   * @default {120000}
   */
  duplicateWindow?: number;
  /**
   * How long a publish may wait for the stream's acknowledgment (a quorum
   * of replicas), in ms. A publish that times out fails the `put`, and the
   * sender gets `AE`.
   *
   * @default {5000}
   */
  publishTimeout?: number;
  /**
   * How many times a message is handed to a dispatcher before it is
   * parked.
   *
   * @default {10}
   */
  maxAttempts?: number;
  /**
   * The delay before a failed dispatch is tried again (the message is
   * `nak`ed with it).
   *
   * @default {{ initialDelay: 1000, maxDelay: 60000, factor: 2, jitter: 0.1 }}
   */
  retry?: BackoffOptions;
  /**
   * The consumer's ack wait, in ms: a message handed out and neither
   * acked nor nak'ed within it (its receiver died or stalled) is delivered
   * again. A receiver dispatching it says it is still working every third
   * of this.
   *
   * @default {30000}
   */
  ackWait?: number;
  /**
   * Messages handed out and not yet done across the group, without
   * `ordered` (the consumer's `max_ack_pending`).
   *
   * @default {1000}
   */
  maxAckPending?: number;
  /**
   * How often a running consumer looks for new per-sender consumers made
   * by other receivers, with `ordered`, in ms.
   *
   * @default {1000}
   */
  discoveryInterval?: number;
  /**
   * Connection options for NATS when `open` is given server URLs:
   * credentials (`user`/`pass`, `token`, an nkey seed file or a creds
   * file), `tls`, `name`, reconnect settings.
   *
   * @default {{ name: "mllp-store", maxReconnectAttempts: -1, reconnectTimeWait: 250 }}
   */
  connection?: JetStreamConnectionOptions;
}

/**
 * A stored message's record, from `JetStreamMessageStore.get`.
 *
 * @example Read a record's ACK
 * ```ts
 * import type { JetStreamStoredRecord } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * function ackCode(record: JetStreamStoredRecord): string {
 *   return new TextDecoder().decode(record.ack).split("\r")[1].split("|")[1];
 * }
 * const record: JetStreamStoredRecord = {
 *   id: "1",
 *   subject: "HL7_IN.LAB.HOSP.L1",
 *   sendingApplication: "LAB",
 *   sendingFacility: "HOSP",
 *   controlId: "L1",
 *   messageType: "ORU^R01",
 *   size: 50,
 *   receivedAt: 0,
 *   storedAt: 0,
 *   peer: { hostname: "127.0.0.1", port: 40_001 },
 *   local: { hostname: "127.0.0.1", port: 2575 },
 *   ack: new TextEncoder().encode("MSH|^~\\&|EHR|HOSP|LAB|HOSP|1||ACK|A1|P|2.5\rMSA|AA|L1\r"),
 * };
 * assertEquals(ackCode(record), "AA");
 * ```
 */
export interface JetStreamStoredRecord {
  /** The store's id: the stream sequence it was first stored at. */
  id: string;
  /** The subject it is stored on. */
  subject: string;
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
  /** When the stream stored it, in ms since the epoch. */
  storedAt: number;
  /** The sender's address. */
  peer: Address;
  /** The receiver's address. */
  local: Address;
  /** The sender's certificate name, with mutual TLS. */
  certificateName?: string;
  /** The ACK it got (and that resends of it get). */
  ack: Uint8Array;
}

/**
 * A parked message, from `JetStreamMessageStore.parked`.
 *
 * @example Say why a message was parked
 * ```ts
 * import type { JetStreamParkedRecord } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * const parked: JetStreamParkedRecord = {
 *   id: "7",
 *   reason: "Dispatcher answered AR: unknown patient",
 *   attempts: 1,
 *   parkedAt: 0,
 *   controlId: "L7",
 *   sendingApplication: "LAB",
 *   sendingFacility: "HOSP",
 * };
 * assertEquals(`${parked.controlId}: ${parked.reason}`,
 *   "L7: Dispatcher answered AR: unknown patient");
 * ```
 */
export interface JetStreamParkedRecord {
  /** The message's id (give it to `requeue` or `purge`). */
  id: string;
  /** Why it was parked. */
  reason: string;
  /** How many times it had been delivered. */
  attempts: number;
  /** When it was parked, in ms since the epoch. */
  parkedAt: number;
  /** MSH-3 Sending Application. */
  sendingApplication: string;
  /** MSH-4 Sending Facility. */
  sendingFacility: string;
  /** MSH-10 Message Control ID. */
  controlId: string;
}

/**
 * Counts from `JetStreamMessageStore.stats`, read from the server (the
 * streams' and consumers' state), except `duplicates`.
 *
 * @example Watch the backlog and what retention removed
 * ```ts
 * import type { JetStreamStoreStats } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(stats: JetStreamStoreStats): string {
 *   return `${stats.pending} waiting (oldest ${stats.oldestAgeMs} ms), ` +
 *     `${stats.removed} removed by max_age, ${stats.bytes} bytes kept`;
 * }
 * assertEquals(
 *   describe({ stored: 3, pending: 1, dispatched: 2, parked: 0, duplicates: 0,
 *     oldestAgeMs: 120, removed: 0, bytes: 900 }),
 *   "1 waiting (oldest 120 ms), 0 removed by max_age, 900 bytes kept",
 * );
 * ```
 */
export interface JetStreamStoreStats {
  /**
   * Messages kept in the stream (resends and requeued copies not counted;
   * messages removed by `maxAge` no longer counted). Read from the
   * stream's message count, so the stream must be the store's own.
   */
  stored: number;
  /** Messages waiting for dispatch or being dispatched, across the group. */
  pending: number;
  /** Messages kept and dispatched (`stored - pending - parked`). */
  dispatched: number;
  /** Messages parked now. */
  parked: number;
  /**
   * Resends this store object answered with a stored ACK since it was
   * opened (the server keeps no such count).
   */
  duplicates: number;
  /** The age of the oldest pending message, in ms (0 when none). */
  oldestAgeMs: number;
  /**
   * Messages retention (`maxAge`) removed from the stream: its first
   * sequence minus one. JetStream counts per stream, not per subject, and
   * the store never deletes from this stream itself, so this is exact for
   * a stream only this store writes.
   */
  removed: number;
  /** The stream's size on the servers, in bytes (per replica). */
  bytes: number;
}
