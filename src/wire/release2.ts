/**
 * MLLP release 2's commit frames: a receiver answers each frame with the
 * one byte `0x06` (ACK) once it has taken the message, or `0x15` (NAK)
 * when it could not, before any reply.
 *
 * @module
 */

/**
 * The one-byte MLLP release 2 positive commit reply (ACK).
 *
 * @example A release 2 receiver commits a frame before it replies
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { COMMIT_ACK } from "@x/mllp/ack-modes";
 * import { encodeFrame } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   mllpRelease: 2,
 * });
 * using conn = await Deno.connect({
 *   hostname: "127.0.0.1",
 *   port: receiver.port,
 * });
 * const hl7 = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r";
 * await conn.write(encodeFrame(new TextEncoder().encode(hl7)));
 * const first = new Uint8Array(4);
 * for (let n = 0; n < 4;) n += (await conn.read(first.subarray(n))) ?? 4;
 * assertEquals(first, encodeFrame(new Uint8Array([COMMIT_ACK])));
 * ```
 */
export const COMMIT_ACK = 0x06;

/**
 * The one-byte MLLP release 2 negative commit reply (NAK).
 *
 * @example Tell a commit from a NAK
 * ```ts
 * import { COMMIT_NAK, isCommitFrame } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * function commitOf(payload: Uint8Array): "ack" | "nak" | undefined {
 *   if (!isCommitFrame(payload)) return undefined;
 *   return payload[0] === COMMIT_NAK ? "nak" : "ack";
 * }
 * assertEquals(commitOf(new Uint8Array([0x15])), "nak");
 * assertEquals(commitOf(new Uint8Array([0x06])), "ack");
 * ```
 */
export const COMMIT_NAK = 0x15;

/**
 * Whether a frame payload is an MLLP release 2 commit reply: the single
 * byte `0x06` (ACK) or `0x15` (NAK).
 *
 * @param payload The frame payload.
 * @returns Whether it is a commit reply.
 *
 * @example Commit frames
 * ```ts
 * import { isCommitFrame } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isCommitFrame(new Uint8Array([0x06])), true);
 * assertEquals(isCommitFrame(new Uint8Array([0x06, 0x06])), false);
 * ```
 */
export function isCommitFrame(payload: Uint8Array): boolean {
  return payload.length === 1 &&
    (payload[0] === COMMIT_ACK || payload[0] === COMMIT_NAK);
}

/** The payload of a release 2 commit frame that accepts: `0x06`. */
export const COMMIT_FRAME: Uint8Array = new Uint8Array([COMMIT_ACK]);

/**
 * The payload of a release 2 commit frame that refuses, `0x15`; also the
 * one-byte NAK a receiver answers a failed non-HL7 payload with.
 */
export const NAK_FRAME: Uint8Array = new Uint8Array([COMMIT_NAK]);

/** Whether a reply is the one-byte NAK (`0x15`). */
export function isNak(reply: Uint8Array): boolean {
  return reply.length === 1 && reply[0] === COMMIT_NAK;
}
