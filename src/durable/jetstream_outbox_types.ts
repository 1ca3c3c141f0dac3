/**
 * The options of `JetStreamOutbox` ({@linkcode JetStreamOutboxOptions})
 * and the numbers it reports ({@linkcode JetStreamOutboxStats}). The
 * records, events and `enqueue` results are `KvOutbox`'s
 * (`kv_outbox_types.ts`): the two outboxes are used the same way.
 *
 * @module
 */

import type { BackoffOptions } from "../net/backoff.ts";
import type { OutboxDestination, OutboxStats } from "./kv_outbox_types.ts";
import type { JetStreamConnectionOptions } from "./jetstream_connection.ts";

/**
 * Options for `JetStreamOutbox.open`.
 *
 * @example An outbox on a three-node cluster, with credentials
 * ```ts
 * import type { JetStreamOutboxOptions } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * const options: JetStreamOutboxOptions = {
 *   destination: { hostname: "lab.example.org", port: 2575 },
 *   stream: "HL7_OUT",
 *   replicas: 3,
 *   maxAttempts: 5,
 *   ackWait: 30_000,
 *   connection: { user: "mllp", pass: "secret" },
 * };
 * assertEquals(options.destination.port, 2575);
 * ```
 */
export interface JetStreamOutboxOptions {
  /**
   * The receiver to send to, with the client's options (TLS, reply
   * timeout...). The outbox paces its own retries, so `reconnect` is
   * ignored.
   */
  destination: OutboxDestination;
  /**
   * The stream the queue is kept in (subjects `<stream>.>`; one subject
   * per destination). `<stream>_STATUS` keeps each message's record and
   * `<stream>_PARKED` the parked messages.
   *
   * @default {"HL7_OUT"}
   */
  stream?: string;
  /**
   * The name the destination's durable consumer starts with (the rest
   * names the destination). Workers in every process that open the same
   * stream and destination share it.
   *
   * @default {"mllp-out"}
   */
  consumer?: string;
  /**
   * How many nodes keep each stream (1, 3 or 5). With 3, `enqueue`
   * returns once two have the message. Used when the streams are created.
   *
   * @default {3}
   */
  replicas?: number;
  /**
   * How long the queue stream keeps a message, in ms, delivered or not
   * (the stream's `max_age`; the records go with them). Parked messages
   * are kept until requeued.
   *
   * @default {604800000} (7 days)
   */
  maxAge?: number;
  /**
   * How long to wait for JetStream to acknowledge a publish, in ms.
   *
   * @default {5000}
   */
  publishTimeout?: number;
  /**
   * The backoff between attempts: after the destination could not be
   * reached, after `AE`/`CE`, after no reply in time.
   *
   * @default {{ initialDelay: 1000, maxDelay: 60000, factor: 2, jitter: 0.1 }}
   */
  retry?: BackoffOptions;
  /**
   * How many times a message is sent (answered `AE`/`CE`, a NAK, no
   * reply in time, an ACK for another message) before it is parked.
   * Attempts that never reached the destination (refused, not connected)
   * do not count: the queue waits for it.
   *
   * @default {5}
   */
  maxAttempts?: number;
  /**
   * How long a worker may hold a message without telling the server it is
   * still at work, in ms (it tells it every third of this while it
   * sends). A worker that died or stalled for longer loses the message
   * to another worker, which sends it again flagged `possibleDuplicate`.
   *
   * @default {30000}
   */
  ackWait?: number;
  /**
   * How often `waitFor` reads a message's record, in ms (results recorded
   * by this outbox's worker wake it at once).
   *
   * @default {250}
   */
  pollInterval?: number;
  /**
   * How to connect to NATS when `open` is given server URLs: one way to
   * authenticate (user and password, token, nkey seed file, creds file)
   * and TLS, as plain data; files are read when the outbox opens.
   */
  connection?: JetStreamConnectionOptions;
}

/**
 * Numbers from `JetStreamOutbox.stats`: {@linkcode OutboxStats} for one
 * destination, read from the consumer and the streams, and what retention
 * removed.
 *
 * @example What the numbers mean
 * ```ts
 * import type { JetStreamOutboxStats } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * const stats: JetStreamOutboxStats = {
 *   depth: 2, // queued, not yet acknowledged or parked
 *   oldestAgeMs: 1_500,
 *   parked: 1,
 *   enqueued: 10, // of these, still in the stream
 *   removed: 0,
 *   purged: 0, // parked messages removed by purge()
 *   bytes: 4_096,
 * };
 * assertEquals(stats.depth + stats.parked <= stats.enqueued, true);
 * ```
 */
export interface JetStreamOutboxStats extends OutboxStats {
  /**
   * Messages queued to this destination that the stream still holds
   * (`maxAge` removes older ones; a requeued copy is not counted again).
   */
  enqueued: number;
  /** Messages the queue stream's `maxAge` removed (every destination). */
  removed: number;
  /** The bytes the queue stream holds now (every destination). */
  bytes: number;
}
