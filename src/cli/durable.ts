/**
 * The command line's durable delivery: `listen --store PATH` opens a
 * `KvMessageStore`, and `send --queue PATH` queues the files in a
 * `KvOutbox` and delivers the queue. Loaded only when those flags are
 * given, so the rest of the command line needs no Deno KV.
 *
 * @module
 */

import { KvOutbox } from "../durable/kv_outbox.ts";
import { KvMessageStore } from "../durable/kv_store.ts";
import { write } from "./common.ts";
import { deliverQueue, type QueuedSend } from "./queue.ts";

export type { QueuedSend } from "./queue.ts";

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
  const { stderr } = options;
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
    return await deliverQueue(outbox, options);
  } finally {
    await outbox.close();
  }
}
