/**
 * How `JetStreamOutbox` lays its queue out in JetStream, and the options
 * it checks: the headers of a queued message, the record a message
 * starts with, the stream of records (one message per subject), reading
 * a stream by subject, and what `enqueue` refuses before publishing.
 *
 * Subjects, for a destination token `<d>` (from `host:port`):
 * `<stream>.<d>.q` queued messages, `<stream>.<d>.r` requeued copies,
 * `<stream>_STATUS.<d>.<seq>` the latest record of each message,
 * `<stream>_PARKED.<d>.<seq>` parked copies with the reason.
 *
 * @module
 */

import {
  DiscardPolicy,
  type JetStreamManager,
  type JsMsg,
  type MsgRequest,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { BackoffOptions } from "../net/backoff.ts";
import { isNotFound } from "./_jetstream_setup.ts";
import type { JetStreamOutboxOptions } from "./jetstream_outbox_types.ts";
import type { OutboxRecord } from "./kv_outbox_types.ts";

const DEFAULT_RETRY: BackoffOptions = {
  initialDelay: 1000,
  maxDelay: 60_000,
  factor: 2,
  jitter: 0.1,
};

/** What a stream or consumer name may hold. */
const NAME = /^[A-Za-z0-9_-]+$/;

/** Headers on a queued message. */
export const HEADER = {
  /** `[MSH-10, MSH-9]` as JSON, URI-encoded (nulls when not HL7). */
  msh: "Mllp-Out-Msh",
  /** When it was queued, ms since the epoch. */
  enqueuedAt: "Mllp-Enqueued-At",
  /** On a requeued copy: the place of the message it copies. */
  seq: "Mllp-Out-Seq",
  /** On a parked copy: why, URI-encoded. */
  reason: "Mllp-Reason",
} as const;

/** The options, checked and with their defaults. */
export interface Settings {
  stream: string;
  statusStream: string;
  parkedStream: string;
  consumerPrefix: string;
  replicas: number;
  maxAge: number;
  publishTimeout: number;
  retry: BackoffOptions;
  maxAttempts: number;
  ackWait: number;
  pollInterval: number;
}

export function settingsOf(options: JetStreamOutboxOptions): Settings {
  const stream = options.stream ?? "HL7_OUT";
  const settings: Settings = {
    stream,
    statusStream: `${stream}_STATUS`,
    parkedStream: `${stream}_PARKED`,
    consumerPrefix: options.consumer ?? "mllp-out",
    replicas: options.replicas ?? 3,
    maxAge: options.maxAge ?? 7 * 24 * 3_600_000,
    publishTimeout: options.publishTimeout ?? 5_000,
    retry: options.retry ?? DEFAULT_RETRY,
    maxAttempts: Math.max(1, options.maxAttempts ?? 5),
    ackWait: Math.max(1_000, options.ackWait ?? 30_000),
    pollInterval: Math.max(1, options.pollInterval ?? 250),
  };
  for (
    const [key, value] of [
      ["stream", settings.stream],
      ["consumer", settings.consumerPrefix],
    ]
  ) {
    if (!NAME.test(value)) {
      throw new RangeError(
        `Cannot open JetStream outbox: ${key} must be letters, digits, "_" or "-", got "${value}"`,
      );
    }
  }
  if (![1, 3, 5].includes(settings.replicas)) {
    throw new RangeError(
      `Cannot open JetStream outbox: replicas must be 1, 3 or 5, got "${settings.replicas}"`,
    );
  }
  return settings;
}

/** The record a queued (or requeued) copy starts with. */
export function freshRecord(
  stored: StoredMsg | JsMsg,
  seq: number,
): OutboxRecord {
  const h = "header" in stored ? stored.header : stored.headers;
  const [controlId, messageType] = JSON.parse(
    decodeURIComponent(h?.get(HEADER.msh) || "%5B%5D"),
  ) as (string | null)[];
  const enqueuedAt = Number(h?.get(HEADER.enqueuedAt) || 0);
  return {
    seq,
    id: String(seq),
    ...(controlId != null ? { controlId } : {}),
    ...(messageType != null ? { messageType } : {}),
    size: stored.data.length,
    enqueuedAt,
    state: "pending",
    attempts: 0,
    possibleDuplicate: false,
  };
}

/** Creates the stream of records (one message per subject) when missing. */
export async function ensureStatusStream(
  jsm: JetStreamManager,
  settings: Settings,
): Promise<void> {
  const name = settings.statusStream;
  try {
    await jsm.streams.info(name);
    return;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  try {
    await jsm.streams.add({
      name,
      subjects: [`${name}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: settings.replicas,
      max_msgs_per_subject: 1,
      max_age: nanos(settings.maxAge),
    });
  } catch (error) {
    // Another process created it meanwhile: use it.
    await jsm.streams.info(name).catch(() => {
      throw error;
    });
  }
}

/**
 * The first message at or after `seq` on a subject filter (the client's
 * types leave out the API's `next_by_subj`, which 2.9 servers answer).
 */
export function nextOnSubject(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
  filter: string,
): Promise<StoredMsg | null> {
  const query = { seq, next_by_subj: filter } as unknown as MsgRequest;
  return jsm.streams.getMessage(stream, query);
}

/**
 * A NATS publish error as a short reason. Without a quorum the publish
 * times out, or (no stream leader to answer) fails with "no responders",
 * which the client reports as "jetstream is not enabled".
 */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return /timeout|not enabled|no responders|503/i.test(message)
    ? `JetStream did not acknowledge it (${message}): is a quorum of the stream's replicas up?`
    : `JetStream did not store it (${message})`;
}
