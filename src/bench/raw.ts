/**
 * The load tool's payload and its yardstick: {@linkcode makeAdtMessage}
 * makes the message sent, {@linkcode startRawResponder} is the bare TCP
 * responder that answers it with the least possible work. Re-exported by
 * `bench.ts`.
 *
 * @module
 */

import { Ack } from "../hl7/ack.ts";
import { ECHO_TEXT, UNKNOWN_REPLY } from "../dispatch/dispatcher.ts";
import { encodeFrame } from "../wire/framer.ts";
import { readMessage } from "../hl7/message.ts";
import {
  listenBare,
  noDelay,
  type RawResponder,
  serveBare,
  writeAll,
} from "./_serve.ts";

export type { RawResponder } from "./_serve.ts";

const FS = 0x1c;
const CR = 0x0d;
const encoder = new TextEncoder();

/**
 * The default payload size of {@linkcode makeAdtMessage}, in bytes.
 *
 * @example The default message is 1 KiB
 * ```ts
 * import { DEFAULT_MESSAGE_SIZE, makeAdtMessage } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_MESSAGE_SIZE, 1024);
 * assertEquals(makeAdtMessage().length, DEFAULT_MESSAGE_SIZE);
 * assertEquals(makeAdtMessage(4 * DEFAULT_MESSAGE_SIZE).length, 4096);
 * ```
 */
export const DEFAULT_MESSAGE_SIZE = 1024;
/**
 * The control id (MSH-10) of the messages {@linkcode makeAdtMessage} makes.
 *
 * @example Every bench message has the same control id
 * ```ts
 * import { BENCH_CONTROL_ID, makeAdtMessage } from "@x/mllp/unstable-bench";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(readHeader(makeAdtMessage()).controlId, BENCH_CONTROL_ID);
 * assertEquals(readHeader(makeAdtMessage(4096)).controlId, "BENCH00001");
 * ```
 */
export const BENCH_CONTROL_ID = "BENCH00001";

// A realistic ADT^A01 (admit), ASCII only; NTE segments pad it to size.
// MSH-15 and MSH-16 (the acknowledgment conditions) go between the halves.
const MSH_HEAD =
  `MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|20240315084512-0500||ADT^A01^ADT_A01|${BENCH_CONTROL_ID}|P|2.5.1|||`;
const MSH_TAIL = "|USA|UNICODE UTF-8";
const ADT_SEGMENTS = [
  "EVN|A01|20240315084500|||ANDERSON^JANE^M^^^^^^^^^^L|20240315084000",
  "PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^MR~123456789^^^USSSA^SS||EVERYMAN^ADAM^A^III^^^L||19610615|M||2106-3^White^CDCREC|2222 HOME STREET^^GREENSBORO^NC^27401-1020^USA^H||^PRN^PH^^1^555^5552004|^WPN^PH^^1^955^5551009|ENG^English^ISO6392|M^Married^HL70002|CHR^Christian^HL70006|PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC",
  "PV1|1|I|2000^2012^01^GHH^^^^^2000 WEST WING|R^Routine^HL70007|||004777^ATTEND^AARON^A^^^DR^^^^^^^^^^MD|||SUR^Surgery^HL70069||||7^Physician referral^HL70023|||004777^ATTEND^AARON^A^^^DR|IN^Inpatient^HL70004|V1001^^^GHH^VN|||||||||||||||||||||||||20240315084000",
  "OBX|1|NM|29463-7^Body weight^LN||79|kg^kilogram^UCUM|||||F|||20240315083000",
  "AL1|1|DA|1605^ACETAMINOPHEN^L|MO|HIVES|20100101",
  "DG1|1||R07.9^Chest pain, unspecified^I10||20240315|A",
];

/**
 * Options for {@linkcode makeAdtMessage}.
 *
 * @example An ADT^A01 that asks for enhanced acknowledgment mode
 * ```ts
 * import { type AdtMessageOptions, makeAdtMessage } from "@x/mllp/unstable-bench";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const options: AdtMessageOptions = { ackMode: "enhanced" };
 * const header = readHeader(makeAdtMessage(1024, options));
 * assertEquals([header.acceptAckType, header.applicationAckType], ["AL", "NE"]);
 * ```
 */
export interface AdtMessageOptions {
  /**
   * The acknowledgment mode the message asks for: `"original"` leaves
   * MSH-15 and MSH-16 empty (one ACK, `AA`); `"enhanced"` sets them to
   * `AL` and `NE` (a commit ACK, `CA`, and no application ACK).
   *
   * @default {"original"}
   */
  ackMode?: "original" | "enhanced";
}

/**
 * Makes a realistic ADT^A01 message (MSH, EVN, PID, PV1, OBX, AL1, DG1),
 * padded with an NTE segment to `size` bytes when that is larger than the
 * message without it (982 bytes in original mode, 986 in enhanced mode).
 * Its control id is {@linkcode BENCH_CONTROL_ID}; segments end with CR.
 *
 * @param size The payload size wanted, in bytes.
 * @param options The acknowledgment mode it asks for.
 * @returns The message text (ASCII, so its length is its size in bytes).
 *
 * @example A 1 KiB ADT^A01
 * ```ts
 * import { makeAdtMessage } from "@x/mllp/unstable-bench";
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const text = makeAdtMessage(1024);
 * assertEquals(text.length, 1024);
 * const message = readMessage(text);
 * assertEquals(message.kind === "hl7" && message.header.messageType, "ADT^A01^ADT_A01");
 * ```
 */
export function makeAdtMessage(
  size: number = DEFAULT_MESSAGE_SIZE,
  options: AdtMessageOptions = {},
): string {
  const conditions = options.ackMode === "enhanced" ? "AL|NE" : "|";
  const base = [MSH_HEAD + conditions + MSH_TAIL, ...ADT_SEGMENTS]
    .map((segment) => segment + "\r").join("");
  const nte = "NTE|1|L|";
  const room = size - base.length - nte.length - 1;
  if (room <= 0) return base;
  let filler = "";
  const words = "Patient admitted for observation of chest pain. ";
  while (filler.length < room) filler += words;
  return `${base}${nte}${filler.slice(0, room)}\r`;
}

/**
 * Options for {@linkcode startRawResponder}.
 *
 * @example A responder with a fixed reply
 * ```ts
 * import { type RawResponderOptions, startRawResponder } from "@x/mllp/unstable-bench";
 * import { Client } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const options: RawResponderOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   reply: "PONG",
 * };
 * await using raw = startRawResponder(options);
 * await using client = await Client.connect(raw.hostname, raw.port);
 * const result = await client.send("PING");
 * assertEquals(result.outcome === "reply" && result.text, "PONG");
 * ```
 */
export interface RawResponderOptions {
  /**
   * The port to listen on; `0` picks a free one.
   *
   * @default {0}
   */
  port?: number;
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The reply payload sent (framed) for every message, whatever it was.
   *
   * @default {the EchoDispatcher's ACK for `makeAdtMessage()`}
   */
  reply?: Uint8Array | string;
  /** Serve TLS with this certificate chain and key (PEM text). */
  tls?: { cert: string; key: string };
}

/**
 * The reply a target answers `payload` with: the EchoDispatcher's ACK for
 * HL7 (its MSH-10 matches, so the client accepts it), `mllp_unknown` for
 * anything else. The raw responder sends it, fixed, for every message.
 *
 * @param payload The message the load tool will send.
 * @returns The reply payload, not framed.
 *
 * @example The ACK names the message
 * ```ts
 * import { BENCH_CONTROL_ID, makeAdtMessage, replyFor } from "@x/mllp/unstable-bench";
 * import { verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const reply = replyFor(makeAdtMessage());
 * assertEquals(verifyAck(BENCH_CONTROL_ID, reply).outcome, "accept");
 * ```
 */
export function replyFor(payload: Uint8Array | string): Uint8Array {
  const message = readMessage(payload);
  if (message.kind !== "hl7") return encoder.encode(UNKNOWN_REPLY);
  return Ack.forMessage(message, "AA", { text: ECHO_TEXT }).toBytes();
}

/**
 * Starts the raw baseline: a bare TCP (or TLS) server that reads into one
 * 16 KiB buffer per connection and, for every `FS CR` it sees (also split across
 * reads), writes one fixed, pre-framed reply. No framing library, no
 * streams, no HL7: the least work an MLLP receiver can do, so that the
 * difference to it is what a receiver costs.
 *
 * @param options Port, address, the reply and TLS.
 * @returns The running responder.
 *
 * @example Answer a frame
 * ```ts
 * import { startRawResponder } from "@x/mllp/unstable-bench";
 * import { Client } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using raw = startRawResponder({ reply: "OK" });
 * await using client = await Client.connect(raw.hostname, raw.port);
 * const result = await client.send("ping");
 * assertEquals(result.outcome === "reply" && result.text, "OK");
 * ```
 */
export function startRawResponder(
  options: RawResponderOptions = {},
): RawResponder {
  const hostname = options.hostname ?? "127.0.0.1";
  const reply = encodeFrame(
    typeof options.reply === "string"
      ? encoder.encode(options.reply)
      : options.reply ?? replyFor(makeAdtMessage()),
  );
  const listener = listenBare(hostname, options.port ?? 0, options.tls);
  return serveBare(listener, hostname, (conn) => serveRaw(conn, reply));
}

async function serveRaw(conn: Deno.Conn, reply: Uint8Array): Promise<void> {
  noDelay(conn);
  // 16 KiB: a 1 KiB message fits many times over, and an idle connection
  // costs little more than the kernel's socket.
  const buffer = new Uint8Array(16 * 1024);
  let afterFs = false;
  let replies = reply;
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) break;
    const data = buffer.subarray(0, n);
    let count = afterFs && data[0] === CR ? 1 : 0;
    for (
      let at = data.indexOf(FS);
      at !== -1;
      at = data.indexOf(FS, at + 1)
    ) {
      if (data[at + 1] === CR) count++;
    }
    afterFs = data[n - 1] === FS;
    if (count === 0) continue;
    if (replies.length < count * reply.length) {
      replies = new Uint8Array(count * reply.length);
      for (let i = 0; i < count; i++) replies.set(reply, i * reply.length);
    }
    await writeAll(
      conn,
      count === 1 ? reply : replies.subarray(0, count * reply.length),
    );
  }
}
