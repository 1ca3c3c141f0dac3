/**
 * Just enough HL7 v2 to move messages: read the MSH header with the
 * message's own separators, decode text with the charset MSH-18 names, and
 * tell HL7 payloads from unknown ones. This is not a general HL7 parser.
 *
 * @example Read a message
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const message = readMessage(
 *   "MSH|^~\\&|App|Fac|Rcv|RFac|20240101120000||ADT^A01^ADT_A01|MSG001|P|2.5\r",
 * );
 * assertEquals(message.kind, "hl7");
 * if (message.kind === "hl7") {
 *   assertEquals(message.header.controlId, "MSG001");
 *   assertEquals(message.header.triggerEvent, "A01");
 * }
 * ```
 *
 * @module
 */

import { HeaderError } from "./errors.ts";
import { checkedSeparators, headerOfFields } from "./_msh.ts";
import { type BatchMessage, isBatch, readBatch } from "./batch.ts";
import {
  CharsetError,
  type CharsetOptions,
  findCharset,
  resolveCharset,
} from "./charset.ts";
import {
  decodeLabel,
  encodeLabel,
  InvalidBytesError,
  isWide,
  wideEncoding,
} from "./_codecs.ts";

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

/**
 * The kind of a framed payload: HL7 (starts with `MSH`), an HL7 batch
 * (starts with `FHS` or `BHS`, see `@x/mllp/batch`) or anything else.
 *
 * @example Count payloads by kind
 * ```ts
 * import { type MessageKind, readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const counts: Record<MessageKind, number> = { hl7: 0, batch: 0, unknown: 0 };
 * for (const payload of ["MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r", "PING"]) {
 *   counts[readMessage(payload).kind]++;
 * }
 * assertEquals(counts, { hl7: 1, batch: 0, unknown: 1 });
 * ```
 */
export type MessageKind = "hl7" | "batch" | "unknown";

const CR = 0x0d;
const LF = 0x0a;
const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

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

/**
 * Maps an MSH-18 character set name to the encoding used to decode it.
 *
 * @param characterSet MSH-18, such as `8859/1` or `UNICODE UTF-8`.
 * @returns A WHATWG encoding label, or one of this library's exact ones
 *   (`"latin1"`, `"ascii"`, `"iso-8859-9"`, `"jis-x0201"`,
 *   `"iso-2022-jp-1"`, `"utf-32le"`),
 *   or `undefined` when the name is not in HL7 table 0211 or this runtime
 *   cannot decode it (see `listCharsets` in `@x/mllp/charset`).
 *
 * @example Look up charsets
 * ```ts
 * import { charsetEncoding } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(charsetEncoding("8859/1"), "latin1");
 * assertEquals(charsetEncoding("UNICODE UTF-8"), "utf-8");
 * assertEquals(charsetEncoding(""), "utf-8");
 * ```
 */
export function charsetEncoding(characterSet: string): string | undefined {
  if (characterSet === "") return "utf-8";
  return findCharset(characterSet)?.encoding;
}

/**
 * Decodes bytes with an encoding label from {@linkcode charsetEncoding}.
 * Bytes that do not decode become U+FFFD (for `"ascii"`: every byte above
 * `0x7f`).
 *
 * @param bytes The bytes to decode.
 * @param encoding The encoding label.
 * @returns The text.
 * @throws {RangeError} If the label is not an encoding `TextDecoder` knows.
 *
 * @example Decode ISO-8859-1 exactly
 * ```ts
 * import { decodeText } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(decodeText(new Uint8Array([0x4d, 0xfc]), "latin1"), "Mü");
 * ```
 */
export function decodeText(bytes: Uint8Array, encoding = "utf-8"): string {
  if (encoding === "latin1") return latin1(bytes, 0, bytes.length);
  if (encoding === "ascii") {
    return latin1(bytes, 0, bytes.length).replace(/[\x80-\xff]/g, "\ufffd");
  }
  if (encoding === "utf-8") return utf8Decoder.decode(bytes);
  return decodeLabel(bytes, encoding);
}

/**
 * Encodes text for a payload in an encoding from
 * {@linkcode charsetEncoding}: UTF-8 with `TextEncoder`, every other one
 * through a reverse table built from its decoder. Characters the encoding
 * cannot hold become `?`.
 *
 * @param text The text to encode.
 * @param encoding The encoding label from {@linkcode charsetEncoding}.
 * @returns The bytes.
 * @throws {RangeError} If the label is not one {@linkcode charsetEncoding}
 *   returns.
 *
 * @example Encode for an 8859/1 peer
 * ```ts
 * import { encodeText } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(encodeText("Mü", "latin1"), new Uint8Array([0x4d, 0xfc]));
 * ```
 */
export function encodeText(text: string, encoding = "utf-8"): Uint8Array {
  if (encoding === "latin1" || encoding === "ascii") {
    const max = encoding === "latin1" ? 0xff : 0x7f;
    const bytes = new Uint8Array(text.length);
    let length = 0;
    // By code point, so a character outside the BMP becomes one `?`.
    for (const char of text) {
      const code = char.codePointAt(0)!;
      bytes[length++] = code <= max ? code : 0x3f;
    }
    return length === bytes.length ? bytes : bytes.slice(0, length);
  }
  if (encoding === "utf-8") return utf8Encoder.encode(text);
  return encodeLabel(text, encoding);
}

/** Decodes bytes as exact ISO-8859-1 (each byte is one character). */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  // ASCII (nearly every header, most messages) reads the same as UTF-8,
  // which the runtime decodes natively: over ten times faster than
  // building the string from char codes.
  if (isAscii(bytes, start, end)) {
    return utf8Decoder.decode(bytes.subarray(start, end));
  }
  let text = "";
  for (let i = start; i < end; i += 8192) {
    // apply() takes the typed array as it is; spreading it into arguments
    // is several times slower.
    text += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(end, i + 8192)) as unknown as number[],
    );
  }
  return text;
}

function segmentEnd(text: string): number {
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
      : latin1(payload, 0, end),
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

function isAscii(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] > 0x7f) return false;
  return true;
}

function notHl7(): HeaderError {
  return new HeaderError("Cannot read header: payload does not start with MSH");
}

function parseMsh(segment: string): Hl7Header {
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
  const separators = checkedSeparators(
    field,
    fields[1],
    (problem) => new HeaderError(`Cannot read header: ${problem}`),
  );
  return headerOfFields(fields, separators);
}

/**
 * An HL7 v2 message: a payload that starts with a readable MSH segment.
 *
 * @example Read an HL7 message from bytes
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new Uint8Array([...new TextEncoder().encode(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A04|X9|P|2.5|||||DEU|8859/1\rPID|1||7||M",
 * ), 0xfc]);
 * const message = readMessage(bytes);
 * assertEquals(message.kind, "hl7");
 * assertEquals(message.text.endsWith("Mü"), true);
 * ```
 */
export class Hl7Message {
  /** Always `"hl7"`. */
  readonly kind = "hl7" as const;
  /** The fields of the MSH segment. */
  readonly header: Hl7Header;
  /** The payload bytes, exactly as framed. */
  readonly raw: Uint8Array;
  /** The encoding label used to decode {@linkcode Hl7Message.text}. */
  readonly encoding: string;
  #text: string | undefined;

  /**
   * Constructs a message from parts already read; use
   * {@linkcode readMessage} to read one from a payload.
   *
   * @param raw The payload bytes.
   * @param header The header read from them.
   * @param text The decoded text, when already known.
   * @param encoding The encoding label of the text; by default the one
   *   MSH-18 names (see {@linkcode charsetEncoding}), or UTF-8.
   */
  constructor(
    raw: Uint8Array,
    header: Hl7Header,
    text?: string,
    encoding?: string,
  ) {
    this.raw = raw;
    this.encoding = encoding ?? charsetEncoding(header.characterSet) ??
      "utf-8";
    this.#text = text;
    this.header = header;
  }

  /** The payload decoded as text (decoded on first use). */
  get text(): string {
    return this.#text ??= decodeText(this.raw, this.encoding);
  }

  /** The payload's size in bytes. */
  get size(): number {
    return this.raw.length;
  }
}

/**
 * A payload that is not HL7 (it does not start with `MSH`): the seed's
 * `mllp_unknown`. Its text is decoded as UTF-8.
 *
 * @example Read a non-HL7 payload
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const message = readMessage("Hip hip hurray");
 * assertEquals(message.kind, "unknown");
 * assertEquals(message.text, "Hip hip hurray");
 * ```
 */
export class UnknownMessage {
  /** Always `"unknown"`. */
  readonly kind = "unknown" as const;
  /** Always `undefined`: unknown payloads have no header. */
  readonly header: undefined = undefined;
  /** The payload bytes, exactly as framed. */
  readonly raw: Uint8Array;
  /** The encoding label used to decode {@linkcode UnknownMessage.text}. */
  readonly encoding: string;
  #text: string | undefined;

  /**
   * Constructs an unknown payload.
   *
   * @param raw The payload bytes.
   * @param text The decoded text, when already known.
   */
  constructor(raw: Uint8Array, text?: string) {
    this.raw = raw;
    this.encoding = "utf-8";
    this.#text = text;
  }

  /** The payload decoded as text (decoded on first use). */
  get text(): string {
    return this.#text ??= decodeText(this.raw, this.encoding);
  }

  /** The payload's size in bytes. */
  get size(): number {
    return this.raw.length;
  }
}

/**
 * A framed payload: HL7, a batch, or unknown. Tell them apart by `kind`.
 *
 * @example Narrow a message by kind
 * ```ts
 * import { type Message, readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(message: Message): string {
 *   return message.kind === "hl7"
 *     ? `${message.header.messageType} ${message.header.controlId}`
 *     : `${message.size} bytes of ${message.kind}`;
 * }
 * assertEquals(
 *   describe(readMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r")),
 *   "ADT^A01 7",
 * );
 * assertEquals(describe(readMessage("PING")), "4 bytes of unknown");
 * ```
 */
export type Message = Hl7Message | BatchMessage | UnknownMessage;

/**
 * Options for {@linkcode readMessage}.
 *
 * @example Read a Latin-1 message that leaves MSH-18 empty
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import type { ReadMessageOptions } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new Uint8Array([
 *   ...new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\rPID|1||"),
 *   0xe9, // "é" in ISO 8859-1
 * ]);
 * const options: ReadMessageOptions = { charset: { default: "8859/1" } };
 * assertEquals(readMessage(bytes, options).text.endsWith("é"), true);
 * assertEquals(readMessage(bytes).text.endsWith("\ufffd"), true);
 * ```
 */
export interface ReadMessageOptions {
  /**
   * How to pick and apply the charset: a default for an empty MSH-18, an
   * override, strict or replace decoding, and whether UTF-16/UTF-32 are
   * accepted (see `CharsetOptions` in `@x/mllp/charset`).
   *
   * @default {{}}
   */
  charset?: CharsetOptions;
}

const NO_CHARSET_OPTIONS: CharsetOptions = {};

/**
 * Reads a payload as a message. Text is encoded with the charset its
 * MSH-18 names (UTF-8 by default); bytes are kept exactly, and decoded
 * with that charset when the text is first asked for (at once in strict
 * mode).
 *
 * The charset is `options.charset.override`, else MSH-18, else
 * `options.charset.default`, else UTF-8; an MSH-18 that is not in HL7
 * table 0211 is read as UTF-8 (refused in strict mode). A table entry this
 * runtime cannot decode, and UTF-16/UTF-32 without `allowWide`, are
 * refused: never read as UTF-8.
 *
 * @param payload The payload, without MLLP framing.
 * @param options The charset options.
 * @returns An {@linkcode Hl7Message} when the payload starts with `MSH`,
 *   a `BatchMessage` when it starts with `FHS` or `BHS`, an
 *   {@linkcode UnknownMessage} otherwise.
 * @throws {HeaderError} If the payload starts with `MSH` but its header
 *   cannot be read, or with `FHS`/`BHS` but a batch header cannot be read.
 * @throws {CharsetError} (a {@linkcode HeaderError}) If its charset cannot
 *   be used, or, in strict mode, its bytes do not decode: `charset`,
 *   `problem`, `offset` and `header` say which, where and what.
 *
 * @example Unknown payloads are not errors
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(readMessage(new Uint8Array([1, 2, 3])).kind, "unknown");
 * ```
 *
 * @example Strict decoding
 * ```ts
 * import { CharsetError, readMessage } from "@x/mllp";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * const bytes = new Uint8Array([
 *   ...new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\rPID|1||"),
 *   0xff,
 * ]);
 * const replaced = readMessage(bytes);
 * assertEquals(replaced.text.endsWith("\ufffd"), true);
 * const error = assertThrows(
 *   () => readMessage(bytes, { charset: { invalid: "strict" } }),
 *   CharsetError,
 * );
 * assertEquals([error.charset, error.offset], ["UNICODE UTF-8", 43]);
 * ```
 */
export function readMessage(
  payload: Uint8Array | string,
  options: ReadMessageOptions = {},
): Message {
  const charset = options.charset ?? NO_CHARSET_OPTIONS;
  if (typeof payload === "string") {
    if (!isHl7(payload)) {
      if (isBatch(payload)) return readBatch(payload);
      return new UnknownMessage(utf8Encoder.encode(payload), payload);
    }
    const header = readHeader(payload);
    // Text that is not ASCII, for an ISO 2022 code extension.
    const extension = /[\u0080-\uffff]/.test(payload)
      ? codeExtension(payload, header, charset)
      : undefined;
    const { encoding } = resolveFor(header, charset, extension);
    return new Hl7Message(
      encodeText(payload, encoding),
      header,
      payload,
      encoding,
    );
  }
  const wide = wideEncoding(payload);
  if (wide) return readWide(payload, wide, charset);
  if (!isHl7(payload)) {
    return isBatch(payload) ? readBatch(payload) : new UnknownMessage(payload);
  }
  let header = readHeader(payload);
  const extension =
    hasRepeatedMsh18(payload, header) && payload.indexOf(0x1b) !== -1
      ? codeExtension(payload, header, charset)
      : undefined;
  const { name, encoding } = resolveFor(header, charset, extension);
  if (isWide(encoding)) {
    throw new CharsetError(
      `Cannot decode message: MSH-18 names "${name}", but the payload is not in it (its MSH segment is single-byte)`,
      { charset: name, problem: "not_wide", header },
    );
  }
  if (
    (extension || charset.override ||
      (charset.default && !header.characterSet)) &&
    encoding !== (charsetEncoding(header.characterSet) ?? "utf-8")
  ) {
    // A default, override or code extension: the header's own bytes are in
    // that charset.
    let end = 0;
    while (
      end < payload.length && payload[end] !== CR && payload[end] !== LF
    ) end++;
    header = parseMsh(decodeText(payload.subarray(0, end), encoding));
  }
  const text = charset.invalid === "strict"
    ? decodeOrRefuse(payload, encoding, name, header)
    : undefined;
  return new Hl7Message(payload, header, text, encoding);
}

/**
 * The Japanese set an ISO 2022 code extension brings in: MSH-18 such as
 * `~ISO IR87` or `ISO IR6~ISO IR87~ISO IR159` (ASCII by default, the later
 * repetitions switched to by escape sequences, as JAHIS peers send);
 * `undefined` otherwise. Called only for payloads holding an escape byte
 * (text holding other than ASCII).
 */
function codeExtension(
  payload: Uint8Array | string,
  header: Hl7Header,
  options: CharsetOptions,
): string | undefined {
  const first = header.characterSet;
  if (options.override || (first && findCharset(first)?.name !== "ASCII")) {
    return undefined;
  }
  let segment: string;
  if (typeof payload === "string") {
    segment = payload.slice(0, segmentEnd(payload));
  } else {
    let end = 0;
    while (
      end < payload.length && payload[end] !== CR && payload[end] !== LF
    ) end++;
    segment = latin1(payload, 0, end);
  }
  const { field, repetition } = header.separators;
  const msh18 = segment.split(field, 18)[17] ?? "";
  const names = msh18.split(repetition).slice(1).map((name) =>
    findCharset(name)?.name
  );
  return names.includes("ISO IR159")
    ? "ISO IR159"
    : names.includes("ISO IR87")
    ? "ISO IR87"
    : undefined;
}

/**
 * Whether MSH-18 holds a repetition separator: a byte scan of the MSH
 * segment that stops at its end or past MSH-18, so that messages without
 * a code extension (nearly all) are not scanned for escape bytes.
 */
function hasRepeatedMsh18(payload: Uint8Array, header: Hl7Header): boolean {
  const field = header.separators.field.charCodeAt(0);
  const repetition = header.separators.repetition.charCodeAt(0);
  // payload[3] is MSH-1, the first field separator; MSH-18 follows the
  // seventeenth.
  let separators = 0;
  for (let i = 3; i < payload.length; i++) {
    const byte = payload[i];
    if (byte === CR || byte === LF) return false;
    if (byte === field) {
      if (++separators > 17) return false;
    } else if (separators === 17 && byte === repetition) return true;
  }
  return false;
}

/** {@linkcode resolveCharset}, with the header in any error it throws. */
function resolveFor(
  header: Hl7Header,
  options: CharsetOptions,
  characterSet = header.characterSet,
) {
  if (!characterSet && !options.override && !options.default) {
    return { name: "", encoding: "utf-8" }; // the usual case, at once
  }
  try {
    return resolveCharset(characterSet, options);
  } catch (error) {
    if (!(error instanceof CharsetError)) throw error;
    throw new CharsetError(error.message, { ...error, header });
  }
}

/** Reads a UTF-16 or UTF-32 payload, if allowed. */
function readWide(
  payload: Uint8Array,
  wide: string,
  options: CharsetOptions,
): Hl7Message {
  const named = wide.startsWith("utf-16") ? "UNICODE UTF-16" : "UNICODE UTF-32";
  let header: Hl7Header | undefined;
  let unreadable: unknown;
  try {
    header = readHeader(decodeLabel(payload, wide));
  } catch (error) {
    if (!(error instanceof HeaderError)) throw error;
    unreadable = error;
  }
  const found = header && findCharset(header.characterSet);
  const name = found?.wide ? found.name : named;
  if (!options.allowWide) {
    throw new CharsetError(
      `Cannot decode message: charset "${name}" is refused, as its bytes can contain the MLLP framing bytes (allowWide is not set)`,
      { charset: name, problem: "wide_refused", header },
      { cause: unreadable },
    );
  }
  if (!header) throw unreadable;
  const text = options.invalid === "strict"
    ? decodeOrRefuse(payload, wide, name, header)
    : undefined;
  return new Hl7Message(payload, header, text, wide);
}

/** Decodes strictly, or throws a {@linkcode CharsetError} naming where. */
function decodeOrRefuse(
  payload: Uint8Array,
  encoding: string,
  name: string,
  header: Hl7Header,
): string {
  try {
    return decodeLabel(payload, encoding, true);
  } catch (error) {
    if (!(error instanceof InvalidBytesError)) throw error;
    const charset = name || "UNICODE UTF-8";
    throw new CharsetError(
      `Cannot decode message: bytes are not valid "${charset}" at offset ${error.offset}`,
      {
        charset,
        problem: "invalid_bytes",
        offset: error.offset,
        header,
        encoding,
      },
    );
  }
}
