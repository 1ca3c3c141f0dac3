/**
 * Dispatchers: the application side of a receiver. A dispatcher gets each
 * message with its context and returns the reply (an {@linkcode Ack}, text,
 * bytes, or nothing). {@linkcode DispatchStream} runs one over a stream of
 * frames, so a dispatcher can be exercised without a socket.
 *
 * @example Test a dispatcher without a socket
 * ```ts
 * import { Ack, DispatchStream, type Dispatcher, wrap } from "@x/mllp";
 * import { MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const dispatcher: Dispatcher = (message) =>
 *   message.kind === "hl7" ? Ack.forMessage(message, "AA") : "Got the BLOB";
 * const replies = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode(wrap("Hip hip hurray"))])
 *     .pipeThrough(new MllpDecoderStream())
 *     .pipeThrough(new DispatchStream(dispatcher)),
 * );
 * assertEquals(new TextDecoder().decode(replies[0]), "Got the BLOB");
 * ```
 *
 * @module
 */

import { COMMIT_NAK } from "../wire/release2.ts";

export type {
  DispatchContext,
  Dispatcher,
  DispatcherObject,
  DispatchFunction,
  DispatchReply,
} from "./types.ts";
export { ECHO_TEXT, EchoDispatcher, UNKNOWN_REPLY } from "./echo.ts";
export {
  type DispatchOutcome,
  DispatchStream,
  type DispatchStreamOptions,
} from "./stream.ts";
export { type Address, formatAddress } from "../net/address.ts";

/**
 * The one-byte MLLP release 2 negative commit reply (NAK).
 *
 * @example A failing dispatcher's reply to non-HL7
 * ```ts
 * import { DispatchStream, NAK } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const failing = () => {
 *   throw new Error("database down");
 * };
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")])
 *     .pipeThrough(new DispatchStream(failing)),
 * );
 * assertEquals(reply, new Uint8Array([NAK]));
 * ```
 */
export const NAK: typeof COMMIT_NAK = COMMIT_NAK;
