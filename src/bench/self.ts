/**
 * The `"self"` target: this library's receiver with the EchoDispatcher,
 * as the bench runs it, in a child process or in this one.
 *
 * @module
 */

import { EchoDispatcher } from "../dispatch/dispatcher.ts";
import { Receiver } from "../receiver/receiver.ts";

/**
 * Starts this library's receiver with the EchoDispatcher and no logging
 * configured, with room for any number of connections from one address
 * (the load comes from one, and may be thousands of connections).
 */
export function startSelf(
  port: number,
  hostname: string,
  tls: { cert: string; key: string } | undefined,
): Promise<Receiver> {
  return Receiver.start({
    port,
    hostname,
    dispatcher: EchoDispatcher,
    tls,
    maxConnections: 1_000_000,
    maxConnectionsPerClient: 1_000_000,
  });
}
