/**
 * HL7 v2 acknowledgment modes: original mode (MSH-15 and MSH-16 both
 * empty: one ACK, `AA`/`AE`/`AR`) and enhanced mode (either one valued: an
 * accept, or commit, ACK `CA`/`CE`/`CR` as MSH-15 asks, then an
 * application ACK `AA`/`AE`/`AR` as MSH-16 asks). The receiver and the
 * client use these rules; a dispatcher can use them to know which mode a
 * message asked for.
 *
 * HL7 gives no default for a blank MSH-15 or MSH-16 in an otherwise
 * enhanced message. This library reads a blank one as `AL` (always): it
 * errs on the side of sending the acknowledgment.
 *
 * @example Read a message's acknowledgment mode
 * ```ts
 * import { ackModeOf, wantsAck } from "@x/mllp/ack-modes";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const header = readHeader(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5|||AL|ER\r",
 * );
 * const mode = ackModeOf(header);
 * assertEquals(mode, { mode: "enhanced", accept: "AL", application: "ER" });
 * if (mode.mode === "enhanced") {
 *   assertEquals(wantsAck(mode.application, "AA"), false);
 *   assertEquals(wantsAck(mode.application, "AE"), true);
 * }
 * ```
 *
 * @module
 */

import type { Ack, AckCode } from "./ack.ts";
import type { DispatchContext } from "../dispatch/dispatcher.ts";
import type { Hl7Header, Hl7Message } from "./message.ts";

/**
 * When an acknowledgment is sent (HL7 table 0155): `AL` always, `NE`
 * never, `ER` only on an error or reject, `SU` only on success.
 *
 * @example Ask for an application ACK only on errors
 * ```ts
 * import { wantsAck } from "@x/mllp/ack-modes";
 * import type { AckCondition } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * const msh16: AckCondition = "ER";
 * assertEquals(wantsAck(msh16, "AE"), true);
 * assertEquals(wantsAck(msh16, "AA"), false);
 * ```
 */
export type AckCondition = "AL" | "NE" | "ER" | "SU";

/**
 * The acknowledgment mode a message asked for, with its conditions.
 *
 * @example Narrow the mode of a message
 * ```ts
 * import { ackModeOf } from "@x/mllp/ack-modes";
 * import type { AckMode } from "@x/mllp/ack-modes";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(mode: AckMode): string {
 *   switch (mode.mode) {
 *     case "original":
 *       return "one ACK";
 *     case "enhanced":
 *       return `commit ${mode.accept}, application ${mode.application}`;
 *   }
 * }
 * const header = readHeader("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5|||NE|AL\r");
 * assertEquals(describe(ackModeOf(header)), "commit NE, application AL");
 * ```
 */
export type AckMode =
  | { mode: "original" }
  | {
    mode: "enhanced";
    /** MSH-15: when the commit ACK (`CA`/`CE`/`CR`) is sent. */
    accept: AckCondition;
    /** MSH-16: when the application ACK (`AA`/`AE`/`AR`) is sent. */
    application: AckCondition;
  };

/**
 * Delivers the application ACK of an enhanced-mode message some other way
 * than on the connection it came in on: the receiver's `applicationAcks`
 * option. Typically it sends the ACK with a `Client` to the sender's own
 * receiver. It is called once the dispatcher has answered (and MSH-16 wants
 * the ACK); the receiver does not wait for it, and logs its failure.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Send application ACKs back to the sender's own receiver
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const received = Promise.withResolvers<string>();
 * await using senderSide = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: (m) => {
 *     received.resolve(m.text.split("\r")[1]);
 *     return Ack.forMessage(m, "AA");
 *   },
 * });
 * await using back = await Client.connect("127.0.0.1", senderSide.port);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: (m) => Ack.forMessage(m, "AA"),
 *   applicationAcks: async (ack) => {
 *     await back.send(ack.toString());
 *   },
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5|||AL|AL\r",
 * );
 * assertEquals(result.outcome === "accept" && result.code, "CA");
 * assertEquals(await received.promise, "MSA|AA|M1");
 * ```
 */
export type ApplicationAckHandler<C = unknown> = (
  ack: Ack,
  message: Hl7Message,
  ctx: DispatchContext<C>,
) => void | Promise<void>;

/**
 * Where a receiver sends the application ACKs of enhanced-mode messages:
 * `"connection"` (on the connection the message came in on) or an
 * {@linkcode ApplicationAckHandler}.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Application ACKs on the same connection, after the commit ACK
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import type { ApplicationAckRoute } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * const route: ApplicationAckRoute = "connection"; // the default
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: (m) => Ack.forMessage(m, "AA"),
 *   applicationAcks: route,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5|||AL|AL\r",
 * );
 * if (result.outcome !== "accept") throw new Error("expected an accept");
 * assertEquals(result.code, "CA");
 * assertEquals((await result.applicationAck)?.code, "AA");
 * ```
 */
export type ApplicationAckRoute<C = unknown> =
  | "connection"
  | ApplicationAckHandler<C>;

const ORIGINAL: AckMode = Object.freeze({ mode: "original" });

/**
 * Every {@linkcode AckCondition}.
 *
 * @example Which MSH-15 values get a `CE` commit ACK
 * ```ts
 * import { ACK_CONDITIONS, wantsAck } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(ACK_CONDITIONS.filter((c) => wantsAck(c, "CE")), ["AL", "ER"]);
 * ```
 */
export const ACK_CONDITIONS: readonly AckCondition[] = ["AL", "NE", "ER", "SU"];

/**
 * Tells whether a string is an {@linkcode AckCondition}.
 *
 * @param value The string to test.
 * @returns Whether it is `AL`, `NE`, `ER` or `SU`.
 *
 * @example Check conditions
 * ```ts
 * import { isAckCondition } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isAckCondition("SU"), true);
 * assertEquals(isAckCondition("XX"), false);
 * ```
 */
export function isAckCondition(value: string): value is AckCondition {
  return (ACK_CONDITIONS as readonly string[]).includes(value);
}

/**
 * Reads the acknowledgment mode of a message from its header: original
 * when MSH-15 and MSH-16 are both empty, enhanced otherwise, with a blank
 * one read as `AL`. A value outside table 0155 is read as `AL` too (see
 * {@linkcode invalidAckConditions}, which reports it).
 *
 * @param header The message's header (MSH-15 and MSH-16 are read).
 * @returns The mode, and for enhanced mode the two conditions.
 *
 * @example Original mode
 * ```ts
 * import { ackModeOf } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(ackModeOf({ acceptAckType: "", applicationAckType: "" }), {
 *   mode: "original",
 * });
 * assertEquals(ackModeOf({ acceptAckType: "NE", applicationAckType: "" }), {
 *   mode: "enhanced",
 *   accept: "NE",
 *   application: "AL",
 * });
 * ```
 */
export function ackModeOf(
  header: Pick<Hl7Header, "acceptAckType" | "applicationAckType">,
): AckMode {
  // Most messages leave both fields empty: no trimming, no allocation.
  if (header.acceptAckType === "" && header.applicationAckType === "") {
    return ORIGINAL;
  }
  const accept = header.acceptAckType.trim().toUpperCase();
  const application = header.applicationAckType.trim().toUpperCase();
  if (accept === "" && application === "") return { mode: "original" };
  return {
    mode: "enhanced",
    accept: isAckCondition(accept) ? accept : "AL",
    application: isAckCondition(application) ? application : "AL",
  };
}

/**
 * Lists the MSH-15 and MSH-16 values that are neither empty nor in HL7
 * table 0155: a receiver rejects such a message with `CR`.
 *
 * @param header The message's header.
 * @returns Sentences naming each bad field; empty when both are fine.
 *
 * @example A bad MSH-16
 * ```ts
 * import { invalidAckConditions } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(
 *   invalidAckConditions({ acceptAckType: "AL", applicationAckType: "XX" }),
 *   ['MSH-16 "XX" is not an acknowledgment condition (AL, NE, ER, SU)'],
 * );
 * ```
 */
export function invalidAckConditions(
  header: Pick<Hl7Header, "acceptAckType" | "applicationAckType">,
): string[] {
  const problems: string[] = [];
  const check = (field: string, value: string) => {
    const v = value.trim().toUpperCase();
    if (v !== "" && !isAckCondition(v)) {
      problems.push(
        `${field} "${value}" is not an acknowledgment condition (AL, NE, ER, SU)`,
      );
    }
  };
  check("MSH-15", header.acceptAckType);
  check("MSH-16", header.applicationAckType);
  return problems;
}

/**
 * Tells whether an acknowledgment with a code is sent under a condition:
 * `AL` always, `NE` never, `ER` for an error or reject (`AE`, `AR`, `CE`,
 * `CR`), `SU` for an accept (`AA`, `CA`).
 *
 * @param condition MSH-15 for a commit ACK, MSH-16 for an application ACK.
 * @param code The acknowledgment's code.
 * @returns Whether to send it.
 *
 * @example Only errors
 * ```ts
 * import { wantsAck } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(wantsAck("ER", "CA"), false);
 * assertEquals(wantsAck("ER", "CE"), true);
 * assertEquals(wantsAck("SU", "AA"), true);
 * ```
 */
export function wantsAck(condition: AckCondition, code: AckCode): boolean {
  switch (condition) {
    case "AL":
      return true;
    case "NE":
      return false;
    case "ER":
      return code !== "AA" && code !== "CA";
    case "SU":
      return code === "AA" || code === "CA";
  }
}

/**
 * What it means when a receiver sends no acknowledgment at all for a
 * message in enhanced mode, as MSH-15 and MSH-16 may allow:
 * `"accepted"` when both are `ER` or `NE` (only errors are reported, so
 * silence is success); `"not_accepted"` when silence can only follow a
 * failure (MSH-15 `SU`, whose `CE`/`CR` are not sent and leave no
 * application ACK to come; or MSH-15 `ER`/`NE` with MSH-16 `SU`, whose
 * `AE`/`AR` are not sent); `undefined` when some acknowledgment always
 * comes (original mode, MSH-15 `AL`, or MSH-16 `AL` after a silent
 * commit). Blank fields count as `AL`, as the receiver reads them.
 *
 * @param mode The message's mode, from {@linkcode ackModeOf}.
 * @returns The meaning of silence, or `undefined` if there is always an
 *   acknowledgment.
 *
 * @example Silence under MSH-15 and MSH-16 ER
 * ```ts
 * import { ackModeOf, silenceMeans } from "@x/mllp/ack-modes";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const msh = (ack: string) =>
 *   readHeader(`MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5|||${ack}\r`);
 * assertEquals(silenceMeans(ackModeOf(msh("ER|ER"))), "accepted");
 * assertEquals(silenceMeans(ackModeOf(msh("NE|SU"))), "not_accepted");
 * assertEquals(silenceMeans(ackModeOf(msh("AL|NE"))), undefined);
 * assertEquals(silenceMeans(ackModeOf(msh(""))), undefined);
 * ```
 */
export function silenceMeans(
  mode: AckMode,
): "accepted" | "not_accepted" | undefined {
  if (mode.mode !== "enhanced") return undefined;
  const { accept, application } = mode;
  if (accept === "AL") return undefined;
  if (accept === "SU") return "not_accepted";
  // MSH-15 ER or NE: no commit ACK after a success.
  if (application === "ER" || application === "NE") return "accepted";
  if (application === "SU") return "not_accepted";
  return undefined;
}

/**
 * Whether a code is a commit (accept) acknowledgment code: `CA`, `CE` or
 * `CR`.
 *
 * @param code The code.
 * @returns Whether it is a commit code.
 *
 * @example Commit and application codes
 * ```ts
 * import { isCommitCode } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isCommitCode("CE"), true);
 * assertEquals(isCommitCode("AE"), false);
 * ```
 */
export function isCommitCode(code: AckCode): code is "CA" | "CE" | "CR" {
  return code === "CA" || code === "CE" || code === "CR";
}

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
