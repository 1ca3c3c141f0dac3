/**
 * Typed HL7 acknowledgments: build an ACK for a message, read one from a
 * reply, and verify a reply against the message it answers.
 *
 * @example Build and verify an ACK
 * ```ts
 * import { Ack, verifyAck } from "@x/mllp/ack";
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const message = readMessage(
 *   "MSH|^~\\&|MegaReg|XYZHospC|SuperOE|XYZImgCtr|20060529090131-0500||ADT^A01^ADT_A01|01052901|P|2.5\r",
 * );
 * const ack = Ack.forMessage(message, "AA");
 * assertEquals(ack.header.messageType, "ACK^A01^ACK");
 * assertEquals(ack.header.sendingApplication, "SuperOE");
 * const result = verifyAck(message, ack.toString());
 * assertEquals(result.outcome, "accept");
 * ```
 *
 * @module
 */

import { HeaderError } from "./errors.ts";
import {
  escapeText,
  formatTimestamp,
  newControlId,
  timestampNow,
  unescapeText,
} from "./fields.ts";
import {
  DEFAULT_SEPARATORS,
  headerOfFields,
  type Hl7Header,
  type Hl7Separators,
  readHeader,
} from "./header.ts";
import { type Message, readMessage } from "./message.ts";
import { charsetEncoding, encodeText } from "./text.ts";

export {
  escapeText,
  formatTimestamp,
  newControlId,
  unescapeText,
} from "./fields.ts";

/**
 * An acknowledgment code (MSA-1): application accept / error / reject
 * (`AA`, `AE`, `AR`) or commit accept / error / reject (`CA`, `CE`, `CR`).
 *
 * @example Pick a code for an ACK
 * ```ts
 * import { Ack, type AckCode } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const code: AckCode = "AE";
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r", code);
 * assertEquals(ack.code, "AE");
 * ```
 */
export type AckCode = "AA" | "AE" | "AR" | "CA" | "CE" | "CR";

/**
 * Every {@linkcode AckCode}, in table order.
 *
 * @example List the codes
 * ```ts
 * import { ACK_CODES } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(ACK_CODES.length, 6);
 * assertEquals(ACK_CODES.filter((code) => code.startsWith("C")), [
 *   "CA",
 *   "CE",
 *   "CR",
 * ]);
 * ```
 */
export const ACK_CODES: readonly AckCode[] = [
  "AA",
  "AE",
  "AR",
  "CA",
  "CE",
  "CR",
];

/**
 * Tells whether a string is an {@linkcode AckCode}.
 *
 * @param code The string to test.
 * @returns Whether it is one of the six codes.
 *
 * @example Check codes
 * ```ts
 * import { isAckCode } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isAckCode("AA"), true);
 * assertEquals(isAckCode("OK"), false);
 * ```
 */
export function isAckCode(code: string): code is AckCode {
  return (ACK_CODES as readonly string[]).includes(code);
}

/**
 * Options for {@linkcode Ack.forMessage}.
 *
 * @example Fix the text, control id and time of an ACK
 * ```ts
 * import { Ack, type AckOptions } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const options: AckOptions = {
 *   text: "Stored",
 *   controlId: "ACK0001",
 *   dateTime: new Date(Date.UTC(2024, 0, 1)),
 * };
 * const ack = Ack.forMessage(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r",
 *   "AA",
 *   options,
 * );
 * assertEquals(ack.text, "Stored");
 * assertEquals(ack.header.controlId, "ACK0001");
 * ```
 */
export interface AckOptions {
  /**
   * MSA-3, a human-readable text. It is escaped with the message's
   * escape sequences.
   *
   * @default {""}
   */
  text?: string;
  /**
   * MSH-10 of the ACK itself.
   *
   * @default {a fresh unique id}
   */
  controlId?: string;
  /**
   * MSH-7 of the ACK.
   *
   * @default {the current time}
   */
  dateTime?: Date;
}

/** An ACK's MSH fields (`msh[n - 1]` is MSH-n), read as a header lazily. */
interface HeaderFields {
  msh: readonly string[];
  separators: Hl7Separators;
}

interface AckParts {
  code: AckCode;
  messageControlId: string;
  text: string;
  /** The header, or the fields to read it from when first asked for. */
  header: Hl7Header | HeaderFields;
  /** MSH-18 (its first repetition): what {@linkcode Ack.toBytes} encodes in. */
  characterSet: string;
  hl7: string;
}

/**
 * An HL7 acknowledgment (an MSH + MSA message), built for a message with
 * {@linkcode Ack.forMessage} or read from a reply with {@linkcode Ack.parse}.
 * Dispatchers return one; the receiver encodes and frames it.
 *
 * @example A dispatcher's reply
 * ```ts
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const ack = Ack.forMessage(
 *   "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|42|P|2.5.1\r",
 *   "AA",
 *   { text: "Stored" },
 * );
 * assertEquals(ack.code, "AA");
 * assertEquals(ack.messageControlId, "42");
 * assertEquals(ack.toString().split("\r")[1], "MSA|AA|42|Stored");
 * ```
 */
export class Ack {
  /** MSA-1, the acknowledgment code. */
  readonly code: AckCode;
  /** MSA-2, the control id (MSH-10) of the message acknowledged. */
  readonly messageControlId: string;
  /** MSA-3, the text message, unescaped; `""` when absent. */
  readonly text: string;
  /** The header, or the fields it is read from when first asked for. */
  #header: Hl7Header | HeaderFields;
  #characterSet: string;
  #hl7: string;

  private constructor(parts: AckParts) {
    this.code = parts.code;
    this.messageControlId = parts.messageControlId;
    this.text = parts.text;
    this.#header = parts.header;
    this.#characterSet = parts.characterSet;
    this.#hl7 = parts.hl7;
  }

  /** The ACK's own MSH header (read when first asked for). */
  get header(): Hl7Header {
    const header = this.#header;
    if ("msh" in header) {
      return this.#header = headerOfFields(header.msh, header.separators);
    }
    return header;
  }

  /** Whether the code accepts the message (`AA` or `CA`). */
  get accepted(): boolean {
    return this.code === "AA" || this.code === "CA";
  }

  /**
   * The ACK as HL7 text, each segment ended by `\r`.
   *
   * @returns The HL7 text.
   */
  toString(): string {
    return this.#hl7;
  }

  /**
   * The ACK as bytes, in the charset its MSH-18 names (UTF-8 by default).
   *
   * @returns The encoded payload, without MLLP framing.
   */
  toBytes(): Uint8Array {
    return encodeText(this.#hl7, this.encoding);
  }

  /**
   * The encoding {@linkcode Ack.toBytes} uses: the one its MSH-18 names
   * (see {@linkcode charsetEncoding}), or UTF-8 when it names none or one
   * this library does not know.
   */
  get encoding(): string {
    return charsetEncoding(this.#characterSet) ?? "utf-8";
  }

  /**
   * Builds the ACK for a message: MSH-3/4 and MSH-5/6 swapped, MSH-9
   * `ACK^<trigger>^ACK`, the message's separators, processing id, version
   * and charset, a fresh MSH-10 and the current MSH-7; MSA-1 the code,
   * MSA-2 the message's MSH-10, MSA-3 the text.
   *
   * Input that cannot be read as HL7 gets an `AR` whatever code was asked
   * for, with MSA-3 saying why.
   *
   * @param message The message to acknowledge.
   * @param code The acknowledgment code.
   * @param options MSA-3 text, the ACK's control id and time.
   * @returns The ACK.
   *
   * @example Unreadable input gets AR
   * ```ts
   * import { Ack } from "@x/mllp/ack";
   * import { assertEquals } from "@std/assert";
   *
   * assertEquals(Ack.forMessage("MSH|", "AA").code, "AR");
   * ```
   */
  static forMessage(
    message: Message | string | Uint8Array,
    code: AckCode,
    options: AckOptions = {},
  ): Ack {
    let read: Message;
    try {
      read = typeof message === "string" || message instanceof Uint8Array
        ? readMessage(message)
        : message;
    } catch (error) {
      if (!(error instanceof HeaderError)) throw error;
      return Ack.#reject(error.message, options);
    }
    if (read.kind !== "hl7") {
      return Ack.#reject("Cannot read message: payload is not HL7", options);
    }
    const h = read.header;
    const c = h.separators.component;
    const msh = [
      "MSH",
      h.encodingCharacters,
      h.receivingApplication,
      h.receivingFacility,
      h.sendingApplication,
      h.sendingFacility,
      options.dateTime ? formatTimestamp(options.dateTime) : timestampNow(),
      "",
      h.triggerEvent ? `ACK${c}${h.triggerEvent}${c}ACK` : "ACK",
      options.controlId ?? newControlId(),
      h.processingId || "P",
      h.versionId || "2.5",
    ];
    // MSH-18 as the message has it: its first repetition, or the whole
    // field when the message was read as ISO 2022 (Japanese), whose code
    // extensions (`~ISO IR87`) are named in the later repetitions, so that
    // the ACK names them too.
    const characterSet = read.encoding.startsWith("iso-2022-jp")
      ? wholeMsh18(read.text, h.separators.field)
      : h.characterSet;
    if (characterSet) {
      // msh[n - 1] is MSH-n: pad through MSH-17, then MSH-18.
      while (msh.length < 17) msh.push("");
      msh.push(characterSet);
    }
    return Ack.#build(msh, h.separators, code, h.controlId, options.text);
  }

  static #reject(reason: string, options: AckOptions): Ack {
    const msh = [
      "MSH",
      "^~\\&",
      "",
      "",
      "",
      "",
      options.dateTime ? formatTimestamp(options.dateTime) : timestampNow(),
      "",
      "ACK",
      options.controlId ?? newControlId(),
      "P",
      "2.5",
    ];
    const text = options.text ? `${options.text}: ${reason}` : reason;
    return Ack.#build(msh, DEFAULT_SEPARATORS, "AR", "", text);
  }

  static #build(
    msh: string[],
    separators: Hl7Separators,
    code: AckCode,
    messageControlId: string,
    text = "",
  ): Ack {
    const f = separators.field;
    const msa = text
      ? `MSA${f}${code}${f}${messageControlId}${f}${
        escapeText(text, separators)
      }`
      : `MSA${f}${code}${f}${messageControlId}`;
    const hl7 = `${msh.join(f)}\r${msa}\r`;
    // The fields are the header, unless a control id given in the options
    // breaks the segment apart: then the header is what the text reads as.
    const controlId = msh[9];
    const header = controlId.includes(f) || controlId.includes("\r") ||
        controlId.includes("\n")
      ? readHeader(hl7)
      : { msh, separators };
    let characterSet: string;
    if ("msh" in header) {
      const msh18 = msh[17] ?? "";
      const repetition = msh18.indexOf(separators.repetition);
      characterSet = repetition === -1 ? msh18 : msh18.slice(0, repetition);
    } else {
      characterSet = header.characterSet;
    }
    return new Ack({
      code,
      messageControlId,
      // As Ack.parse would read MSA-3 back: line breaks became spaces.
      text: text.includes("\r") || text.includes("\n")
        ? text.replace(/[\r\n]/g, " ")
        : text,
      header,
      characterSet,
      hl7,
    });
  }

  /**
   * Reads an ACK from a reply: an HL7 message with an MSA segment whose
   * MSA-1 is one of the six codes.
   *
   * @param reply The reply payload, without MLLP framing.
   * @returns The ACK.
   * @throws {HeaderError} If the reply's MSH cannot be read.
   * @throws {TypeError} If the reply is not HL7, has no MSA segment, or
   *   MSA-1 is not an acknowledgment code.
   *
   * @example Read a sample ACK
   * ```ts
   * import { Ack } from "@x/mllp/ack";
   * import { assertEquals } from "@std/assert";
   *
   * const ack = Ack.parse(
   *   "MSH|^~\\&|SuperOE|XYZImgCtr|MegaReg|XYZHospC|20060529090131-0500||ACK^A01^ACK|01052901|P|2.5\rMSA|AA|01052901",
   * );
   * assertEquals([ack.code, ack.messageControlId, ack.text], ["AA", "01052901", ""]);
   * ```
   */
  static parse(reply: Message | string | Uint8Array): Ack {
    const message = typeof reply === "string" || reply instanceof Uint8Array
      ? readMessage(reply)
      : reply;
    if (message.kind !== "hl7") {
      throw new TypeError("Cannot read ACK: reply is not HL7");
    }
    const hl7 = message.text;
    const { separators } = message.header;
    const prefix = `MSA${separators.field}`;
    const segment = hl7.split(/\r\n|\r|\n/).find((s) =>
      s.startsWith(prefix) || s === "MSA"
    );
    if (segment === undefined) {
      throw new TypeError("Cannot read ACK: reply has no MSA segment");
    }
    const fields = segment.split(separators.field);
    const code = (fields[1] ?? "").trim();
    if (!isAckCode(code)) {
      throw new TypeError(
        `Cannot read ACK: MSA-1 "${code}" is not an acknowledgment code`,
      );
    }
    return new Ack({
      code,
      messageControlId: fields[2] ?? "",
      text: unescapeText(fields[3] ?? "", separators),
      header: message.header,
      characterSet: message.header.characterSet,
      hl7,
    });
  }
}

/** MSH-18 of a message's text, all its repetitions. */
function wholeMsh18(text: string, field: string): string {
  const end = text.search(/[\r\n]/);
  const segment = end === -1 ? text : text.slice(0, end);
  return segment.split(field, 18)[17] ?? "";
}

/**
 * A reply that accepts the message: `AA` or `CA`.
 *
 * @example An accepting reply
 * ```ts
 * import { Ack, verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r", "CA");
 * const result = verifyAck("7", ack.toString());
 * assertEquals(result.ok, true);
 * if (result.ok) assertEquals(result.code, "CA"); // narrowed to AckAccepted
 * ```
 */
export interface AckAccepted {
  /** Always `true`. */
  ok: true;
  /** Always `"accept"`. */
  outcome: "accept";
  /** The acknowledgment code. */
  code: "AA" | "CA";
  /** The ACK. */
  ack: Ack;
}

/**
 * A reply that reports an error processing the message: `AE` or `CE`.
 *
 * @example An erroring reply
 * ```ts
 * import { Ack, verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r", "AE", {
 *   text: "Unknown patient",
 * });
 * const result = verifyAck("7", ack.toString());
 * if (result.outcome !== "error") throw new Error("expected an error outcome");
 * assertEquals(result.code, "AE");
 * assertEquals(result.ack.text, "Unknown patient");
 * ```
 */
export interface AckErrored {
  /** Always `false`. */
  ok: false;
  /** Always `"error"`. */
  outcome: "error";
  /** The acknowledgment code. */
  code: "AE" | "CE";
  /** The ACK. */
  ack: Ack;
}

/**
 * A reply that rejects the message: `AR` or `CR`.
 *
 * @example A rejecting reply
 * ```ts
 * import { Ack, verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r", "AR");
 * const result = verifyAck("7", ack.toString());
 * if (result.outcome !== "reject") throw new Error("expected a reject outcome");
 * assertEquals(result.ok, false);
 * assertEquals(result.code, "AR");
 * ```
 */
export interface AckRejected {
  /** Always `false`. */
  ok: false;
  /** Always `"reject"`. */
  outcome: "reject";
  /** The acknowledgment code. */
  code: "AR" | "CR";
  /** The ACK. */
  ack: Ack;
}

/**
 * An ACK whose MSA-2 is not the sent message's MSH-10: it answers some
 * other message, so it proves nothing about this one.
 *
 * @example An ACK for another message
 * ```ts
 * import { Ack, verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|8|P|2.5\r", "AA");
 * const result = verifyAck("7", ack.toString());
 * if (result.outcome !== "mismatch") throw new Error("expected a mismatch");
 * assertEquals(result.expected, "7");
 * assertEquals(result.ack.messageControlId, "8");
 * ```
 */
export interface AckMismatch {
  /** Always `false`. */
  ok: false;
  /** Always `"mismatch"`. */
  outcome: "mismatch";
  /** The acknowledgment code the ACK carries. */
  code: AckCode;
  /** The ACK. */
  ack: Ack;
  /** The control id expected in MSA-2 (the message's MSH-10). */
  expected: string;
}

/**
 * A reply that cannot be read as an ACK.
 *
 * @example A reply that is not an ACK
 * ```ts
 * import { verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const result = verifyAck("7", "hello");
 * if (result.outcome !== "not_ack") throw new Error("expected not_ack");
 * assertEquals(new TextDecoder().decode(result.reply), "hello");
 * assertEquals(result.reason.length > 0, true);
 * ```
 */
export interface NotAnAck {
  /** Always `false`. */
  ok: false;
  /** Always `"not_ack"`. */
  outcome: "not_ack";
  /** Why the reply is not an ACK. */
  reason: string;
  /** The reply payload. */
  reply: Uint8Array;
}

/**
 * The verified outcome of a reply to an HL7 message. `ok` is true only for
 * an accept whose MSA-2 matches; `outcome` tells the cases apart.
 *
 * @example Tell the outcomes apart
 * ```ts
 * import { Ack, type AckResult, verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(result: AckResult): string {
 *   switch (result.outcome) {
 *     case "accept":
 *       return `accepted (${result.code})`;
 *     case "mismatch":
 *       return `answers ${result.ack.messageControlId}, not ${result.expected}`;
 *     case "not_ack":
 *       return `not an ACK: ${result.reason}`;
 *     default: // "error" or "reject"
 *       return `refused (${result.code})`;
 *   }
 * }
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r", "AA");
 * assertEquals(describe(verifyAck("7", ack.toString())), "accepted (AA)");
 * ```
 */
export type AckResult =
  | AckAccepted
  | AckErrored
  | AckRejected
  | AckMismatch
  | NotAnAck;

/**
 * Verifies a reply against the message it answers: it must be an ACK whose
 * MSA-2 equals the message's MSH-10 exactly.
 *
 * @param sent The message sent, its header, or its control id. A non-HL7
 *   message has no control id: only an ACK with an empty MSA-2 matches it.
 * @param reply The reply payload, without MLLP framing.
 * @returns The typed outcome.
 *
 * @example A reply for another message is a mismatch
 * ```ts
 * import { Ack, verifyAck } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const ack = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|0105|P|2.5", "AA");
 * assertEquals(verifyAck("01052901", ack.toString()).outcome, "mismatch");
 * assertEquals(verifyAck("0105", ack.toString()).outcome, "accept");
 * ```
 */
export function verifyAck(
  sent: Message | Hl7Header | string,
  reply: Message | string | Uint8Array,
): AckResult {
  const expected = typeof sent === "string"
    ? sent
    : "kind" in sent
    ? sent.header?.controlId ?? ""
    : sent.controlId;
  let ack: Ack;
  try {
    ack = Ack.parse(reply);
  } catch (error) {
    if (!(error instanceof TypeError) && !(error instanceof HeaderError)) {
      throw error;
    }
    const raw = typeof reply === "string"
      ? new TextEncoder().encode(reply)
      : reply instanceof Uint8Array
      ? reply
      : reply.raw;
    return { ok: false, outcome: "not_ack", reason: error.message, reply: raw };
  }
  if (ack.messageControlId !== expected) {
    return { ok: false, outcome: "mismatch", code: ack.code, ack, expected };
  }
  switch (ack.code) {
    case "AA":
    case "CA":
      return { ok: true, outcome: "accept", code: ack.code, ack };
    case "AE":
    case "CE":
      return { ok: false, outcome: "error", code: ack.code, ack };
    case "AR":
    case "CR":
      return { ok: false, outcome: "reject", code: ack.code, ack };
  }
}
