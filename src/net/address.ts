/**
 * Network addresses: a host and a port, and how they are written in logs.
 *
 * @module
 */

/**
 * A network address: host name or IP address, and port.
 *
 * @example Log where a message came from
 * ```ts
 * import {
 *   type Address,
 *   DispatchStream,
 *   formatAddress,
 * } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const peer: Address = { hostname: "192.0.2.7", port: 40_001 };
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")])
 *     .pipeThrough(
 *       new DispatchStream((_message, ctx) => `from ${formatAddress(ctx.peer)}`, {
 *         peer,
 *       }),
 *     ),
 * );
 * assertEquals(new TextDecoder().decode(reply), "from 192.0.2.7:40001");
 * ```
 */
export interface Address {
  /** The IP address or host name. */
  hostname: string;
  /** The port. */
  port: number;
}

/**
 * Formats an address as `host:port`, with IPv6 hosts in brackets.
 *
 * @param address The address.
 * @returns The text.
 *
 * @example Format addresses
 * ```ts
 * import { formatAddress } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(formatAddress({ hostname: "::1", port: 2575 }), "[::1]:2575");
 * ```
 */
export function formatAddress(address: Address): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}
