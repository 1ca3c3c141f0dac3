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

import type { AckCode } from "./ack.ts";
import type { Hl7Header } from "./header.ts";

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
