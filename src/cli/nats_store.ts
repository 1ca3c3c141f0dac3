/**
 * `listen --store nats://...`: opens a `JetStreamMessageStore`. Loaded
 * only when such a URL is given, so the rest of the command line loads no
 * NATS code.
 *
 * @module
 */

import { JetStreamMessageStore } from "../durable/jetstream.ts";
import type { NatsOptions } from "./nats_options.ts";

/**
 * Opens the store of `listen --store nats://...`.
 *
 * @throws {Error} If it cannot be opened (the message names the servers,
 *   never the credentials).
 */
export async function openNatsStore(
  options: NatsOptions,
): Promise<JetStreamMessageStore> {
  try {
    return await JetStreamMessageStore.open(options.servers, {
      stream: options.stream,
      consumer: options.consumer,
      replicas: options.replicas,
      connection: { ...options.connection, name: "mllp-listen" },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(
      message.startsWith("Cannot ")
        ? message
        : `Cannot open store on NATS at ${
          options.servers.join(",")
        }: ${message}`,
      { cause: error },
    );
  }
}
