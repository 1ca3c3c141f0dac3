/**
 * `send --queue nats://...`: queues the messages in a `JetStreamOutbox`
 * and delivers the destination's queue, as `send --queue PATH` does with
 * a `KvOutbox`. Loaded only when such a URL is given, so the rest of the
 * command line loads no NATS code.
 *
 * @module
 */

import { JetStreamOutbox } from "../durable/jetstream.ts";
import type { NatsOptions } from "./nats_options.ts";
import { write } from "./common.ts";
import { deliverQueue, type QueuedSend } from "./queue.ts";

/**
 * Opens the destination's queue on NATS, queues the messages, and
 * delivers the queue (earlier messages first), printing one line per
 * message delivered or parked.
 *
 * @returns The exit status: 0 all acknowledged, 1 one was parked, 2 a
 *   send to be tried again (a transport failure, `AE`, no reply in time),
 *   or the queue cannot be opened (the message names the servers, never
 *   the credentials).
 */
export async function sendQueuedNats(
  options: QueuedSend,
  nats: NatsOptions,
): Promise<number> {
  let outbox: JetStreamOutbox;
  try {
    outbox = await JetStreamOutbox.open(nats.servers, {
      destination: {
        hostname: options.host,
        port: options.port,
        replyTimeout: options.timeout,
        connectTimeout: options.connectTimeout,
        tls: options.tls,
      },
      stream: nats.stream,
      consumer: nats.consumer,
      replicas: nats.replicas,
      connection: { ...nats.connection, name: "mllp-send" },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    write(
      options.stderr,
      `error: ${
        message.startsWith("Cannot ")
          ? message
          : `Cannot open queue on NATS at ${nats.servers.join(",")}: ${message}`
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
