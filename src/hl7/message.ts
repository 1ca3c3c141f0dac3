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
import { type BatchMessage, isBatch, readBatch } from "./batch.ts";
import {
  CharsetError,
  type CharsetOptions,
  findCharset,
  resolveCharset,
} from "./charset.ts";
import {
  type Hl7Header,
  isHl7,
  parseMsh,
  readHeader,
  segmentEnd,
} from "./header.ts";
import {
  charsetEncoding,
  decodeLatin1,
  decodeText,
  encodeText,
} from "./text.ts";
import {
  decodeLabel,
  InvalidBytesError,
  isWide,
  wideEncoding,
} from "./_codecs.ts";

export {
  type Hl7Header,
  type Hl7Separators,
  isHl7,
  readHeader,
} from "./header.ts";
export { charsetEncoding, decodeText, encodeText } from "./text.ts";

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
const utf8Encoder = new TextEncoder();

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
    segment = decodeLatin1(payload, 0, end);
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
