/**
 * The command line's durable delivery: `listen --store PATH` opens a
 * `KvMessageStore`, and `send --queue PATH` queues the files in a
 * `KvOutbox` and delivers the queue. Loaded only when those flags are
 * given, so the rest of the command line needs no Deno KV.
 *
 * @module
 */

import type { ClientTlsOptions } from "../client/client.ts";
import { NAK } from "../dispatch/dispatcher.ts";
import { UNKNOWN_REPLY } from "../dispatch/echo.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import { KvOutbox, type OutboxRecord } from "../durable/kv_outbox.ts";
import { KvMessageStore } from "../durable/kv_store.ts";

/** A synchronous byte sink (the CLI's stdout or stderr). */
interface Writer {
  writeSync(data: Uint8Array): number;
}

function write(writer: Writer, text: string): void {
  const data = new TextEncoder().encode(text);
  let written = 0;
  while (written < data.length) {
    written += writer.writeSync(data.subarray(written));
  }
}

/**
 * Opens the store of `listen --store PATH`.
 *
 * @throws {Error} If it cannot be opened (the message says so).
 */
export async function openStore(path: string): Promise<KvMessageStore> {
  try {
    return await KvMessageStore.open(path);
  } catch (error) {
    throw new Error(
      `Cannot open store "${path}": ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
}

/** What `send --queue` needs from the command line. */
export interface QueuedSend {
  /** The outbox's KV: a path or a KV Connect URL. */
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

/**
 * Queues the messages, then delivers the destination's queue (earlier
 * messages first) and prints one line per message delivered or parked,
 * as `send` does.
 * Stops at the first transport failure, leaving the rest queued.
 *
 * @returns The exit status: 0 all acknowledged, 1 one was parked, 2 a
 *   transport failure (or the queue cannot be opened).
 */
export async function sendQueued(options: QueuedSend): Promise<number> {
  const { stdout, stderr } = options;
  let outbox: KvOutbox;
  try {
    outbox = await KvOutbox.open(options.path, {
      destination: {
        hostname: options.host,
        port: options.port,
        replyTimeout: options.timeout,
        connectTimeout: options.connectTimeout,
        tls: options.tls,
        charset: options.charset,
      },
    });
  } catch (error) {
    write(
      stderr,
      `error: Cannot open queue "${options.path}": ${
        error instanceof Error ? error.message : String(error)
      }\n`,
    );
    return 2;
  }
  try {
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
  } finally {
    await outbox.close();
  }
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
