/**
 * An HL7 v2 message ({@linkcode Hl7Message}) and the reading of one from a
 * payload that starts with `MSH` ({@linkcode readHl7}): the charset its
 * MSH-18 names, or the options' override or default, ISO 2022 code
 * extensions, UTF-16 and UTF-32, strict decoding. `readMessage` reads
 * every such payload with it, and `readBatch` each message of a batch;
 * `@x/mllp/hl7` exports {@linkcode Hl7Message}.
 *
 * @example A message's text in the charset MSH-18 names
 * ```ts
 * import { Hl7Message, readMessage } from "@x/mllp/hl7";
 * import { assertEquals, assertInstanceOf } from "@std/assert";
 *
 * const message = readMessage(new Uint8Array([
 *   ...new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5|||||DEU|8859/1\rPID|1||"),
 *   0xe9, // "é" in ISO 8859-1
 * ]));
 * assertInstanceOf(message, Hl7Message);
 * assertEquals([message.encoding, message.text.at(-1)], ["latin1", "é"]);
 * ```
 *
 * @module
 */

import { HeaderError } from "./errors.ts";
import {
  CharsetError,
  type CharsetOptions,
  resolveCharset,
} from "./charset.ts";
import { findCharset } from "./charset_table.ts";
import { type Hl7Header, parseMsh, readHeader, segmentEnd } from "./header.ts";
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

const CR = 0x0d;
const LF = 0x0a;

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
   * Constructs a message from parts already read; use `readMessage`
   * (`@x/mllp/hl7`) to read one from a payload.
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
 * Reads an HL7 payload (one that `isHl7` accepts) as a message: what
 * `readMessage` does with such a payload (see there for how the charset
 * is picked).
 *
 * @param payload The payload, without MLLP framing.
 * @param charset The charset options.
 * @param utf8 Where UTF-8 text is encoded (a caller's pool), if not fresh.
 * @returns The message.
 * @throws {HeaderError} If its header cannot be read.
 * @throws {CharsetError} If its charset cannot be used, or, in strict
 *   mode, its bytes do not decode.
 */
export function readHl7(
  payload: Uint8Array | string,
  charset: CharsetOptions,
  utf8?: { encodeUtf8(text: string): Uint8Array },
): Hl7Message {
  if (typeof payload === "string") {
    const header = readHeader(payload);
    // Text that is not ASCII, for an ISO 2022 code extension (the header
    // says first whether one can apply: most text is never searched).
    const extension = mayExtend(header, charset) &&
        /[\u0080-\uffff]/.test(payload)
      ? codeExtension(payload, header, charset)
      : undefined;
    const { encoding } = resolveFor(header, charset, extension);
    return new Hl7Message(
      encoding === "utf-8" && utf8
        ? utf8.encodeUtf8(payload)
        : encodeText(payload, encoding),
      header,
      payload,
      encoding,
    );
  }
  const wide = wideEncoding(payload);
  if (wide) return readWide(payload, wide, charset);
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
/**
 * Whether an ISO 2022 code extension can apply to a message: not with an
 * override, and only when MSH-18's first repetition is empty or ASCII.
 */
function mayExtend(header: Hl7Header, options: CharsetOptions): boolean {
  const first = header.characterSet;
  return !options.override && (!first || findCharset(first)?.name === "ASCII");
}

function codeExtension(
  payload: Uint8Array | string,
  header: Hl7Header,
  options: CharsetOptions,
): string | undefined {
  if (!mayExtend(header, options)) return undefined;
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
