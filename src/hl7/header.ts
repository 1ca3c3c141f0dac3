/**
 * The MSH header: the separators a message declares in MSH-1 and MSH-2,
 * the fields this library reads ({@linkcode Hl7Header}), telling HL7 from
 * other payloads ({@linkcode isHl7}) and reading the header of one
 * ({@linkcode readHeader}); with the separator checks and field names that
 * MSH shares with the batch headers (FHS, BHS). `@x/mllp/hl7` re-exports
 * the public part.
 *
 * @example Read a header
 * ```ts
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const header = readHeader("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|7|P|2.5\r");
 * assertEquals([header.messageType, header.controlId], ["ADT^A01", "7"]);
 * ```
 *
 * @module
 */

import { HeaderError } from "./errors.ts";
import { charsetEncoding, decodeLatin1, decodeText } from "./text.ts";
import { decodeLabel, isWide, wideEncoding } from "./_codecs.ts";

/**
 * The separators a message declares in MSH-1 and MSH-2.
 *
 * @example Split a field with the message's own separators
 * ```ts
 * import { type Hl7Separators, readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const header = readHeader(
 *   "MSH|^~\\&|App|Fac|Rcv|RFac|20240101||ADT^A01|1|P|2.5\r",
 * );
 * const separators: Hl7Separators = header.separators;
 * assertEquals(separators.field, "|");
 * assertEquals("Smith^John".split(separators.component), ["Smith", "John"]);
 * ```
 */
export interface Hl7Separators {
  /** MSH-1, usually `|`. */
  field: string;
  /** The first MSH-2 character, usually `^`. */
  component: string;
  /** The second MSH-2 character, usually `~`. */
  repetition: string;
  /** The third MSH-2 character, usually `\`. */
  escape: string;
  /** The fourth MSH-2 character, usually `&`. */
  subcomponent: string;
  /** The fifth MSH-2 character (HL7 v2.7 and later), usually `#`, or `""`. */
  truncation: string;
}

/**
 * The fields of an MSH segment this library reads. Absent fields are `""`.
 *
 * @example Route by message type
 * ```ts
 * import { type Hl7Header, readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const header: Hl7Header = readHeader(
 *   "MSH|^~\\&|Lab|Fac|Rcv|RFac|20240101||ORU^R01^ORU_R01|42|P|2.5.1\r",
 * );
 * assertEquals([header.messageCode, header.triggerEvent], ["ORU", "R01"]);
 * assertEquals([header.controlId, header.versionId], ["42", "2.5.1"]);
 * assertEquals(header.characterSet, ""); // absent fields are ""
 * ```
 */
export interface Hl7Header {
  /** MSH-1 and MSH-2, split into named characters. */
  separators: Hl7Separators;
  /** MSH-2 as it appears in the message, such as `^~\&` or `^~\&#`. */
  encodingCharacters: string;
  /** MSH-3 Sending Application. */
  sendingApplication: string;
  /** MSH-4 Sending Facility. */
  sendingFacility: string;
  /** MSH-5 Receiving Application. */
  receivingApplication: string;
  /** MSH-6 Receiving Facility. */
  receivingFacility: string;
  /** MSH-7 Date/Time of Message. */
  dateTime: string;
  /** MSH-8 Security. */
  security: string;
  /** MSH-9 Message Type, whole, such as `ADT^A01^ADT_A01`. */
  messageType: string;
  /** MSH-9.1 Message Code, such as `ADT`. */
  messageCode: string;
  /** MSH-9.2 Trigger Event, such as `A01`. */
  triggerEvent: string;
  /** MSH-9.3 Message Structure, such as `ADT_A01`. */
  messageStructure: string;
  /** MSH-10 Message Control ID. */
  controlId: string;
  /** MSH-11 Processing ID, such as `P`. */
  processingId: string;
  /** MSH-12 Version ID, such as `2.5`. */
  versionId: string;
  /** MSH-15 Accept Acknowledgment Type (`AL`, `NE`, `ER`, `SU`). */
  acceptAckType: string;
  /** MSH-16 Application Acknowledgment Type (`AL`, `NE`, `ER`, `SU`). */
  applicationAckType: string;
  /** MSH-18 Character Set, its first repetition, such as `UNICODE UTF-8`. */
  characterSet: string;
}

const CR = 0x0d;
const LF = 0x0a;
const utf8Decoder = new TextDecoder();

/** The separators HL7 recommends: `|^~\&`. */
export const DEFAULT_SEPARATORS: Hl7Separators = {
  field: "|",
  component: "^",
  repetition: "~",
  escape: "\\",
  subcomponent: "&",
  truncation: "",
};

/**
 * Checks a header's field separator and encoding characters (MSH-1 and
 * MSH-2, or the same fields of FHS and BHS) and names them.
 *
 * @param field Field 1, the field separator.
 * @param encodingCharacters Field 2.
 * @param fail Makes the error for a problem, such as `invalid field
 *   separator "A"`.
 */
export function checkedSeparators(
  field: string,
  encodingCharacters: string,
  fail: (problem: string) => HeaderError,
): Hl7Separators {
  if (field === "" || isWordOrSpace(field)) {
    throw fail(`invalid field separator "${field}"`);
  }
  if (
    encodingCharacters.length < 4 || encodingCharacters.length > 5 ||
    hasRepeats(encodingCharacters + field) ||
    isWordOrSpace(encodingCharacters)
  ) {
    throw fail(`invalid encoding characters "${encodingCharacters}"`);
  }
  return {
    field,
    component: encodingCharacters[0],
    repetition: encodingCharacters[1],
    escape: encodingCharacters[2],
    subcomponent: encodingCharacters[3],
    truncation: encodingCharacters[4] ?? "",
  };
}

/**
 * The header of MSH fields: `fields[n - 1]` is MSH-n (`fields[0]` is
 * `"MSH"`, `fields[1]` MSH-2); absent fields are `""`.
 */
export function headerOfFields(
  fields: readonly string[],
  separators: Hl7Separators,
): Hl7Header {
  const messageType = fields[8] ?? "";
  const types = messageType.split(separators.component, 3);
  const characterSet = fields[17] ?? "";
  const repetition = characterSet.indexOf(separators.repetition);
  return {
    separators,
    encodingCharacters: fields[1] ?? "",
    sendingApplication: fields[2] ?? "",
    sendingFacility: fields[3] ?? "",
    receivingApplication: fields[4] ?? "",
    receivingFacility: fields[5] ?? "",
    dateTime: fields[6] ?? "",
    security: fields[7] ?? "",
    messageType,
    messageCode: types[0] ?? "",
    triggerEvent: types[1] ?? "",
    messageStructure: types[2] ?? "",
    controlId: fields[9] ?? "",
    processingId: fields[10] ?? "",
    versionId: fields[11] ?? "",
    acceptAckType: fields[14] ?? "",
    applicationAckType: fields[15] ?? "",
    // Its first repetition.
    characterSet: repetition === -1
      ? characterSet
      : characterSet.slice(0, repetition),
  };
}

/**
 * Whether a string (of a few characters) holds a letter, digit or white
 * space, which cannot be a separator: `/[A-Za-z0-9\s]/` without the
 * regular expression for ASCII.
 */
function isWordOrSpace(chars: string): boolean {
  for (let i = 0; i < chars.length; i++) {
    const c = chars.charCodeAt(i);
    if (c >= 0x80) {
      if (/\s/.test(chars[i])) return true;
    } else if (
      (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) || c === 0x20 || (c >= 0x09 && c <= 0x0d)
    ) return true;
  }
  return false;
}

/** Whether any character occurs twice (in a string of a few characters). */
function hasRepeats(chars: string): boolean {
  for (let i = 0; i < chars.length; i++) {
    if (chars.indexOf(chars[i], i + 1) !== -1) return true;
  }
  return false;
}

/**
 * Tells whether a payload is HL7: it starts with the bytes `MSH`, or with
 * `MSH` in UTF-16 or UTF-32 (a byte order mark, or zero bytes between the
 * letters).
 *
 * @param payload The frame payload.
 * @returns `true` when the payload starts with `MSH`.
 *
 * @example Check payloads
 * ```ts
 * import { isHl7 } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isHl7("MSH|^~\\&|A"), true);
 * assertEquals(isHl7("Hip hip hurray"), false);
 * ```
 */
export function isHl7(payload: Uint8Array | string): boolean {
  if (typeof payload === "string") return payload.startsWith("MSH");
  return (payload.length >= 3 && payload[0] === 0x4d &&
    payload[1] === 0x53 && payload[2] === 0x48) ||
    wideEncoding(payload) !== undefined;
}

/** The end of the first segment of a text: its first CR or LF. */
export function segmentEnd(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === CR || c === LF) return i;
  }
  return text.length;
}

/**
 * Reads the MSH segment at the start of an HL7 payload.
 *
 * @param payload The payload, as text or bytes. Bytes are read with the
 *   charset MSH-18 names (UTF-8 when it names none, or one this library
 *   does not know); UTF-16 and UTF-32 payloads are recognised by their
 *   bytes (see {@linkcode isHl7}).
 * @returns The header fields.
 * @throws {HeaderError} If the payload does not start with a readable MSH
 *   segment.
 *
 * @example Custom separators
 * ```ts
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const header = readHeader("MSH*:~\\&#*A*B*C*D*20240101**ADT:A08*X1*P*2.7");
 * assertEquals(header.separators.component, ":");
 * assertEquals(header.separators.truncation, "#");
 * assertEquals(header.controlId, "X1");
 * assertEquals(header.triggerEvent, "A08");
 * ```
 */
export function readHeader(payload: Uint8Array | string): Hl7Header {
  if (typeof payload === "string") {
    return parseMsh(payload.slice(0, segmentEnd(payload)));
  }
  if (!isHl7(payload)) throw notHl7();
  const wide = wideEncoding(payload);
  if (wide) return readHeader(decodeLabel(payload, wide));
  // One pass to the end of the segment, noting whether it is ASCII.
  let end = payload.length;
  let ascii = true;
  for (let i = 0; i < end; i++) {
    const byte = payload[i];
    if (byte === CR || byte === LF) end = i;
    else if (byte > 0x7f) ascii = false;
  }
  const header = parseMsh(
    ascii
      ? utf8Decoder.decode(payload.subarray(0, end))
      : decodeLatin1(payload, 0, end),
  );
  // Unknown charsets are read as UTF-8, as Hl7Message decodes its text;
  // a UTF-16 or UTF-32 name on single-byte bytes is wrong (readMessage
  // refuses it), and read as UTF-8 too.
  let encoding = charsetEncoding(header.characterSet) ?? "utf-8";
  if (isWide(encoding)) encoding = "utf-8";
  // An ASCII header reads the same in every ASCII-compatible charset.
  if (encoding === "latin1" || (encoding !== "iso-2022-jp" && ascii)) {
    return header;
  }
  return parseMsh(decodeText(payload.subarray(0, end), encoding));
}

function notHl7(): HeaderError {
  return new HeaderError("Cannot read header: payload does not start with MSH");
}

/**
 * Reads an MSH segment (without its terminator) into a header.
 *
 * @throws {HeaderError} If it is not an MSH segment or cannot be read.
 */
export function parseMsh(segment: string): Hl7Header {
  if (!segment.startsWith("MSH")) throw notHl7();
  if (segment.length < 8) {
    throw new HeaderError(
      `Cannot read header: MSH segment is too short (${segment.length} characters)`,
    );
  }
  // fields[0] is "MSH", fields[1] is MSH-2, fields[n - 1] is MSH-n; no
  // field past MSH-18 is read.
  const field = segment[3];
  const fields = segment.split(field, 18);
  const separators = checkedSeparators(field, fields[1], mshError);
  return headerOfFields(fields, separators);
}

/** The error for an MSH whose separators cannot be used. */
function mshError(problem: string): HeaderError {
  return new HeaderError(`Cannot read header: ${problem}`);
}
