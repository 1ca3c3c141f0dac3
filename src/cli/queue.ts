/**
 * `send --queue`'s delivery, whatever the queue is built on (a `KvOutbox`
 * or a `JetStreamOutbox`): queues the messages, delivers the destination's
 * queue (earlier messages first), and prints one line per message
 * delivered or parked, as `send` does. Imports only types from the
 * durable layer, so loading it loads neither Deno KV nor NATS code.
 *
 * @module
 */

import type { ClientTlsOptions } from "../client/client.ts";
import { NAK } from "../dispatch/dispatcher.ts";
import { UNKNOWN_REPLY } from "../dispatch/echo.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import type {
  Enqueued,
  OutboxEventMap,
  OutboxRecord,
  OutboxStats,
} from "../durable/kv_outbox_types.ts";

import { write, type Writer } from "./common.ts";

/** What `send --queue` needs from the command line. */
export interface QueuedSend {
  /** The queue as given: a KV path or URL, or NATS URLs. */
  path: string;
  host: string;
  port: number;
  /** The reply timeout, in ms. */
  timeout: number;
  connectTimeout: number;
  tls: ClientTlsOptions | undefined;
  /** The charset flags, for the outbox's client. */
  charset: CharsetOptions | undefined;
  /** The messages to queue, as `send` read them. */
  messages: { label: string; payload: Uint8Array }[];
  stdout: Writer;
  stderr: Writer;
  /** How the command line is run, for the hint to run it again. */
  program: string;
}

/** What `deliverQueue` uses of an outbox (`KvOutbox` and `JetStreamOutbox` have it). */
export interface QueueOutbox {
  readonly destination: string;
  enqueue(payload: Uint8Array): Promise<Enqueued>;
  stats(): Promise<OutboxStats>;
  addEventListener<K extends keyof OutboxEventMap>(
    type: K,
    listener: (event: OutboxEventMap[K]) => void,
    options?: AddEventListenerOptions,
  ): void;
  start(): void;
  stop(): Promise<void>;
}

/**
 * Queues the messages, then delivers the destination's queue (earlier
 * messages first) and prints one line per message delivered or parked,
 * as `send` does. Stops at the first send to be tried again (a transport
 * failure; with JetStream also `AE`), leaving the rest queued. The caller
 * opens and closes the outbox.
 *
 * @returns The exit status: 0 all acknowledged, 1 one was parked, 2 a
 *   transport failure.
 */
export async function deliverQueue(
  outbox: QueueOutbox,
  options: QueuedSend,
): Promise<number> {
  const { stdout, stderr } = options;
  const earlier = (await outbox.stats()).depth;
  const mine = new Map<number, string>();
  for (const message of options.messages) {
    const { seq } = await outbox.enqueue(message.payload);
    mine.set(seq, message.label);
  }
  const { depth } = await outbox.stats();
  if (earlier > 0) {
    write(
      stderr,
      `${earlier} message(s) queued earlier for ${outbox.destination} go first\n`,
    );
  }
  if (depth === 0) return 0;
  let status = 0;
  const finished = Promise.withResolvers<void>();
  let left = depth;
  const onFinal = (event: CustomEvent<OutboxRecord>) => {
    const record = event.detail;
    const [line, code] = describeRecord(record);
    write(stdout, line + "\n");
    status = Math.max(status, code);
    if (--left === 0) finished.resolve();
  };
  outbox.addEventListener("acked", onFinal);
  outbox.addEventListener("parked", onFinal);
  outbox.addEventListener("retrying", (event) => {
    const { record, error } = event.detail;
    const label = mine.get(record.seq) ?? `queued message ${record.seq}`;
    write(stderr, `error: ${label}: ${error.message}\n`);
    status = 2;
    finished.resolve();
  }, { once: true });
  outbox.start();
  await finished.promise;
  await outbox.stop();
  if (status === 2) {
    const remaining = (await outbox.stats()).depth;
    write(
      stderr,
      `${remaining} message(s) remain queued in "${options.path}"; run "${options.program} send --queue ${options.path} --port ${options.port}" again to deliver them\n`,
    );
  }
  return status;
}

/** A result line, as `send` prints them, and its exit status. */
function describeRecord(record: OutboxRecord): [string, number] {
  const id = record.controlId || "-";
  const time = `${(record.roundTripMs ?? 0).toFixed(1)} ms`;
  const flag = record.possibleDuplicate ? " (possible duplicate)" : "";
  const text = record.ackText ? ` ${JSON.stringify(record.ackText)}` : "";
  switch (record.outcome) {
    case "accept":
      return [`${id} ${record.ackCode} ${time}${flag}`, 0];
    case "error":
    case "reject":
      return [`${id} ${record.ackCode} ${time}${text}${flag}`, 1];
    case "reply":
      if (
        record.reason === "NAK" || record.reply === String.fromCharCode(NAK)
      ) {
        return [`- NAK ${time}${flag}`, 1];
      }
      if (record.reply?.trim() === UNKNOWN_REPLY) {
        return [
          `- reply ${time} ${
            JSON.stringify(record.reply)
          } (not accepted: the receiver does not know this payload)${flag}`,
          1,
        ];
      }
      return [`- reply ${time} ${JSON.stringify(record.reply)}${flag}`, 0];
    default:
      return [`${id} parked ${record.reason ?? ""}${flag}`, 1];
  }
}
