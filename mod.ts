/**
 * MLLP transport for HL7 v2 on Deno: send and receive HL7 messages (and
 * any other payload) framed as `0x0b` + payload + `0x1c 0x0d` over TCP.
 *
 * - {@linkcode Receiver} listens and hands each message to a
 *   {@linkcode Dispatcher}, replying with what it returns (an
 *   {@linkcode Ack}, text, bytes or nothing).
 * - {@linkcode Client} connects, sends, and returns the verified, typed
 *   ACK outcome.
 * - {@linkcode MllpDecoderStream} and {@linkcode MllpEncoderStream} are the
 *   runtime-neutral Web-Streams framer both sides use.
 *
 * The library logs through LogTape under the category `["mllp"]` and stays
 * silent until the application configures LogTape.
 *
 * @example HL7 over MLLP
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|MegaReg|XYZHospC|SuperOE|XYZImgCtr|20060529090131-0500||ADT^A01^ADT_A01|01052901|P|2.5\r",
 * );
 * assertEquals(result.ok, true);
 * ```
 *
 * @module
 */

export * from "./src/hl7/ack.ts";
export * from "./src/hl7/charset.ts";
export * from "./src/dispatch/ack_modes.ts";
export * from "./src/net/allow.ts";
export * from "./src/hl7/batch.ts";
export * from "./src/client/client.ts";
export * from "./src/dispatch/dispatcher.ts";
export * from "./src/wire/envelope.ts";
export * from "./src/errors.ts";
export * from "./src/observe/events.ts";
export * from "./src/wire/framer.ts";
export * from "./src/hl7/message.ts";
export * from "./src/receiver/receiver.ts";
