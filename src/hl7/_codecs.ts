/**
 * Byte codecs behind the HL7 charsets, by encoding label: the WHATWG
 * labels `TextDecoder` knows, plus a few exact ones of this library's own
 * (`latin1`, `ascii`, `iso-8859-9`, `jis-x0201`, `iso-2022-jp-1`,
 * `utf-32le`, `utf-32be`).
 *
 * Decoding uses `TextDecoder` wherever it is exact. Encoding (which
 * `TextEncoder` only does for UTF-8) uses reverse tables built from the
 * decoder, once per label and only when first needed: 256 entries for a
 * single-byte set, the whole two-byte code space for GB 18030, BIG-5,
 * EUC-KR, JIS X 0208 and JIS X 0212. A character the target cannot hold becomes `?`.
 *
 * @module
 */

/** Bytes that do not decode in strict mode; `offset` is where it failed. */
export class InvalidBytesError extends Error {
  /** The offset of the byte at which decoding failed. */
  readonly offset: number;

  constructor(offset: number) {
    super(`Invalid bytes at offset ${offset}`);
    this.name = "InvalidBytesError";
    this.offset = offset;
  }
}

const QUESTION = 0x3f;
const utf8Encoder = new TextEncoder();

/** Labels whose decoding this module does itself (no `TextDecoder`). */
const OWN_SINGLE_BYTE = new Set(["latin1", "ascii", "iso-8859-9", "jis-x0201"]);

/** Single-byte labels `TextDecoder` decodes exactly. */
const NATIVE_SINGLE_BYTE = new Set([
  "iso-8859-2",
  "iso-8859-3",
  "iso-8859-4",
  "iso-8859-5",
  "iso-8859-6",
  "iso-8859-7",
  "iso-8859-8",
  "iso-8859-15",
]);

/** Whether a label names a wide (UTF-16 or UTF-32) encoding. */
export function isWide(label: string): boolean {
  return label.startsWith("utf-16") || label.startsWith("utf-32");
}

/**
 * The wide encoding a payload is in when it is an HL7 message in UTF-16
 * or UTF-32 (by its byte order mark, or by `MSH` with zero bytes between
 * the letters), or `undefined`.
 */
export function wideEncoding(payload: Uint8Array): string | undefined {
  const b0 = payload[0];
  if (b0 === 0x4d && payload[1] === 0x53) return undefined; // "MS": 8-bit
  if (payload.length < 6) return undefined;
  // UTF-32 first: its LE pattern starts like UTF-16 LE's BOM-less one.
  if (
    b0 === 0xff && payload[1] === 0xfe && payload[2] === 0 && payload[3] === 0
  ) {
    return "utf-32le";
  }
  if (
    b0 === 0 && payload[1] === 0 && payload[2] === 0xfe && payload[3] === 0xff
  ) {
    return "utf-32be";
  }
  if (matches(payload, 0, [0x4d, 0, 0, 0, 0x53, 0, 0, 0, 0x48, 0, 0, 0])) {
    return "utf-32le";
  }
  if (matches(payload, 0, [0, 0, 0, 0x4d, 0, 0, 0, 0x53, 0, 0, 0, 0x48])) {
    return "utf-32be";
  }
  if (b0 === 0xff && payload[1] === 0xfe) {
    return matches(payload, 2, [0x4d, 0, 0x53, 0, 0x48, 0])
      ? "utf-16le"
      : undefined;
  }
  if (b0 === 0xfe && payload[1] === 0xff) {
    return matches(payload, 2, [0, 0x4d, 0, 0x53, 0, 0x48])
      ? "utf-16be"
      : undefined;
  }
  if (matches(payload, 0, [0x4d, 0, 0x53, 0, 0x48, 0])) return "utf-16le";
  if (matches(payload, 0, [0, 0x4d, 0, 0x53, 0, 0x48])) return "utf-16be";
  return undefined;
}

function matches(bytes: Uint8Array, at: number, pattern: number[]): boolean {
  if (bytes.length < at + pattern.length) return false;
  for (let i = 0; i < pattern.length; i++) {
    if (bytes[at + i] !== pattern[i]) return false;
  }
  return true;
}

// ---- decoding ---------------------------------------------------------------

const decoders = new Map<string, TextDecoder>();
const fatalDecoders = new Map<string, TextDecoder>();

function nativeDecoder(label: string, fatal: boolean): TextDecoder {
  const cache = fatal ? fatalDecoders : decoders;
  let decoder = cache.get(label);
  if (!decoder) {
    decoder = new TextDecoder(label, { fatal });
    cache.set(label, decoder);
  }
  return decoder;
}

/**
 * ISO-2022-JP-1 (RFC 2237): ISO-2022-JP plus JIS X 0212 (`ESC $ ( D`),
 * which `TextDecoder`'s ISO-2022-JP lacks; decoded by rewriting it as
 * EUC-JP, whose decoder has both JIS X 0208 and JIS X 0212.
 */
export const ISO_2022_JP_1 = "iso-2022-jp-1";

/**
 * Decodes bytes with a label. Replace mode turns bytes that do not decode
 * into U+FFFD; fatal mode throws {@linkcode InvalidBytesError}.
 *
 * @throws {RangeError} If the label is unknown to `TextDecoder` too.
 */
export function decodeLabel(
  bytes: Uint8Array,
  label: string,
  fatal = false,
): string {
  if (OWN_SINGLE_BYTE.has(label)) {
    return decodeSingleByte(bytes, singleByteTable(label), fatal);
  }
  if (label === "utf-32le" || label === "utf-32be") {
    return decodeUtf32(bytes, label === "utf-32be", fatal);
  }
  if (label === ISO_2022_JP_1) return decodeIso2022Jp1(bytes, fatal);
  if (!fatal) return nativeDecoder(label, false).decode(bytes);
  try {
    return nativeDecoder(label, true).decode(bytes);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw new InvalidBytesError(failureOffset(bytes, label));
  }
}

/**
 * Where a fatal `TextDecoder` first fails on bytes it rejected: the
 * length of the shortest prefix that fails when decoded as a stream
 * (an incomplete sequence at the end of a stream is not an error), less
 * one. A prefix that fails stays failing as it grows, so a binary search
 * finds it.
 */
function failureOffset(bytes: Uint8Array, label: string): number {
  let good = 0; // a prefix length known to decode
  let bad = bytes.length; // a prefix length known to fail (whole: flushed)
  while (bad - good > 1) {
    const mid = (good + bad) >>> 1;
    try {
      new TextDecoder(label, { fatal: true }).decode(bytes.subarray(0, mid), {
        stream: true,
      });
      good = mid;
    } catch {
      bad = mid;
    }
  }
  return bad - 1;
}

const ESC = 0x1b;
/** A byte EUC-JP never decodes: stands for bytes that are not valid. */
const INVALID = 0xff;

function decodeIso2022Jp1(bytes: Uint8Array, fatal: boolean): string {
  // The EUC-JP bytes, and for each the offset of the byte it came from.
  const euc = new Uint8Array(bytes.length * 3);
  const origin = new Uint32Array(bytes.length * 3);
  let length = 0;
  const put = (byte: number, from: number) => {
    euc[length] = byte;
    origin[length++] = from;
  };
  let mode: "ascii" | "katakana" | "jis0208" | "jis0212" = "ascii";
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === ESC) {
      const a = bytes[i + 1], b = bytes[i + 2], c = bytes[i + 3];
      if (a === 0x28 && (b === 0x42 || b === 0x4a)) mode = "ascii";
      else if (a === 0x28 && b === 0x49) mode = "katakana";
      else if (a === 0x24 && (b === 0x40 || b === 0x42)) mode = "jis0208";
      else if (a === 0x24 && b === 0x28 && c === 0x44) mode = "jis0212";
      else {
        if (fatal) throw new InvalidBytesError(i);
        put(INVALID, i);
        continue;
      }
      i += a === 0x24 && b === 0x28 ? 3 : 2;
      continue;
    }
    if (byte < 0x21 || byte > 0x7e || mode === "ascii") {
      // Controls (CR ends segments in any mode) and ASCII; bytes above
      // 0x7e have no place in a 7-bit code.
      if (byte > 0x7f) {
        if (fatal) throw new InvalidBytesError(i);
        put(INVALID, i);
      } else put(byte, i);
    } else if (mode === "katakana") {
      if (byte <= 0x5f) {
        put(0x8e, i);
        put(byte | 0x80, i);
      } else {
        if (fatal) throw new InvalidBytesError(i);
        put(INVALID, i);
      }
    } else {
      const trail = bytes[i + 1];
      if (trail === undefined || trail < 0x21 || trail > 0x7e) {
        if (fatal) throw new InvalidBytesError(i);
        put(INVALID, i);
        continue;
      }
      if (mode === "jis0212") put(0x8f, i);
      put(byte | 0x80, i);
      put(trail | 0x80, i++);
    }
  }
  const converted = euc.subarray(0, length);
  if (!fatal) return nativeDecoder("euc-jp", false).decode(converted);
  try {
    return nativeDecoder("euc-jp", true).decode(converted);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw new InvalidBytesError(origin[failureOffset(converted, "euc-jp")]);
  }
}

/**
 * The 256 characters of a single-byte set (`-1` for a byte that is not
 * in it), built once.
 */
const tables = new Map<string, Int32Array>();

function singleByteTable(label: string): Int32Array {
  let table = tables.get(label);
  if (table) return table;
  table = new Int32Array(256).fill(-1);
  if (label === "latin1") {
    for (let i = 0; i < 256; i++) table[i] = i;
  } else if (label === "ascii") {
    for (let i = 0; i < 128; i++) table[i] = i;
  } else if (label === "jis-x0201") {
    // JIS X 0201: its Roman set read as ASCII (0x5c and 0x7e stay `\`
    // and `~`, as Shift_JIS decoders read them and as HL7 separators need
    // them), and the half-width katakana at 0xa1..0xdf.
    for (let i = 0; i < 128; i++) table[i] = i;
    for (let i = 0xa1; i <= 0xdf; i++) table[i] = 0xff61 + i - 0xa1;
  } else if (label === "iso-8859-9") {
    // TextDecoder reads ISO-8859-9 as windows-1254, which puts printable
    // characters at 0x80..0x9f; ISO-8859-9 has the C1 controls there.
    const text = nativeDecoder("windows-1254", false).decode(allBytes());
    for (let i = 0; i < 256; i++) {
      table[i] = i >= 0x80 && i <= 0x9f ? i : text.charCodeAt(i);
    }
  } else {
    const decoder = new TextDecoder(label, { fatal: true });
    for (let i = 0; i < 256; i++) {
      try {
        table[i] = decoder.decode(new Uint8Array([i])).charCodeAt(0);
      } catch {
        table[i] = -1;
      }
    }
  }
  tables.set(label, table);
  return table;
}

function allBytes(): Uint8Array {
  return new Uint8Array(256).map((_, i) => i);
}

function decodeSingleByte(
  bytes: Uint8Array,
  table: Int32Array,
  fatal: boolean,
): string {
  const units = new Uint16Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const code = table[bytes[i]];
    if (code >= 0) units[i] = code;
    else if (fatal) throw new InvalidBytesError(i);
    else units[i] = 0xfffd;
  }
  let text = "";
  for (let i = 0; i < units.length; i += 8192) {
    text += String.fromCharCode.apply(
      null,
      units.subarray(i, i + 8192) as unknown as number[],
    );
  }
  return text;
}

function decodeUtf32(
  bytes: Uint8Array,
  bigEndian: boolean,
  fatal: boolean,
): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = 0;
  if (bytes.length >= 4 && view.getUint32(0, !bigEndian) === 0xfeff) start = 4;
  const points: number[] = [];
  let text = "";
  for (let i = start; i < bytes.length; i += 4) {
    let point = i + 4 <= bytes.length ? view.getUint32(i, !bigEndian) : -1;
    if (point < 0 || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) {
      if (fatal) throw new InvalidBytesError(i);
      point = 0xfffd;
    }
    points.push(point);
    if (points.length === 8192) {
      text += String.fromCodePoint(...points);
      points.length = 0;
    }
  }
  return text + String.fromCodePoint(...points);
}

// ---- encoding ---------------------------------------------------------------

/**
 * Encodes text with a label; characters the encoding cannot hold become
 * `?`.
 *
 * @throws {RangeError} If the label is unknown.
 */
export function encodeLabel(text: string, label: string): Uint8Array {
  switch (label) {
    case "utf-8":
      return utf8Encoder.encode(text);
    case "utf-16le":
    case "utf-16be":
      return encodeUtf16(text, label === "utf-16be");
    case "utf-32le":
    case "utf-32be":
      return encodeUtf32(text, label === "utf-32be");
    case "iso-2022-jp":
      return encodeIso2022Jp(text, false);
    case ISO_2022_JP_1:
      return encodeIso2022Jp(text, true);
    case "gb18030":
    case "big5":
    case "euc-kr":
      return encodeMultiByte(text, reverseMultiByte(label));
  }
  if (OWN_SINGLE_BYTE.has(label) || NATIVE_SINGLE_BYTE.has(label)) {
    return encodeSingleByte(text, reverseSingleByte(label));
  }
  throw new RangeError(`Cannot encode text: unknown encoding "${label}"`);
}

const singleByteReverse = new Map<string, Map<number, number>>();

function reverseSingleByte(label: string): Map<number, number> {
  let reverse = singleByteReverse.get(label);
  if (reverse) return reverse;
  reverse = new Map();
  const table = singleByteTable(label);
  for (let i = 255; i >= 0; i--) if (table[i] >= 0) reverse.set(table[i], i);
  singleByteReverse.set(label, reverse);
  return reverse;
}

function encodeSingleByte(
  text: string,
  reverse: Map<number, number>,
): Uint8Array {
  const out = new Uint8Array(text.length);
  let length = 0;
  // By code point, so a character outside the BMP becomes one `?`.
  for (const char of text) {
    const code = char.codePointAt(0)!;
    out[length++] = reverse.get(code) ?? QUESTION;
  }
  return length === out.length ? out : out.slice(0, length);
}

function encodeUtf16(text: string, bigEndian: boolean): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    out[2 * i + (bigEndian ? 1 : 0)] = unit & 0xff;
    out[2 * i + (bigEndian ? 0 : 1)] = unit >> 8;
  }
  return out;
}

function encodeUtf32(text: string, bigEndian: boolean): Uint8Array {
  const points = Array.from(text, (char) => char.codePointAt(0)!);
  const out = new Uint8Array(points.length * 4);
  const view = new DataView(out.buffer);
  points.forEach((point, i) => view.setUint32(i * 4, point, !bigEndian));
  return out;
}

/** Code point to its bytes (one number: up to four bytes, big-endian). */
type ReverseMap = Map<number, number>;

const multiByteReverse = new Map<string, ReverseMap>();

/**
 * Every two-byte sequence of a multi-byte set, decoded in one call with a
 * line feed after each (no trail byte is a line feed, and a sequence that
 * does not decode becomes U+FFFD, perhaps followed by its trail byte): the
 * code points that decode to one character, mapped back to their bytes.
 */
function reverseMultiByte(label: string): ReverseMap {
  let reverse = multiByteReverse.get(label);
  if (reverse) return reverse;
  reverse = new Map();
  const trails: number[] = [];
  const addTrails = (from: number, to: number) => {
    for (let t = from; t <= to; t++) trails.push(t);
  };
  if (label === "big5") {
    addTrails(0x40, 0x7e);
    addTrails(0xa1, 0xfe);
  } else if (label === "euc-kr") {
    addTrails(0x41, 0xfe);
  } else {
    addTrails(0x40, 0x7e);
    addTrails(0x80, 0xfe);
  }
  const sequences: number[] = [];
  for (let lead = 0x81; lead <= 0xfe; lead++) {
    for (const trail of trails) sequences.push((lead << 8) | trail);
  }
  addDecoded(reverse, label, sequences, 2);
  if (label === "gb18030") {
    // Four-byte sequences: the rest of the BMP (pointers 0..39419), and
    // the supplementary planes, which follow the pointer arithmetically.
    const four: number[] = [];
    for (let pointer = 0; pointer < 39420; pointer++) {
      four.push(gbFourBytes(pointer));
    }
    addDecoded(reverse, label, four, 4);
  }
  multiByteReverse.set(label, reverse);
  return reverse;
}

function gbFourBytes(pointer: number): number {
  const b1 = Math.floor(pointer / 12600) + 0x81;
  const b2 = Math.floor((pointer % 12600) / 1260) + 0x30;
  const b3 = Math.floor((pointer % 1260) / 10) + 0x81;
  const b4 = (pointer % 10) + 0x30;
  return ((b1 << 24) | (b2 << 16) | (b3 << 8) | b4) >>> 0;
}

function addDecoded(
  reverse: ReverseMap,
  label: string,
  sequences: number[],
  width: number,
): void {
  const buffer = new Uint8Array(sequences.length * (width + 1));
  let at = 0;
  for (const sequence of sequences) {
    for (let shift = (width - 1) * 8; shift >= 0; shift -= 8) {
      buffer[at++] = (sequence >>> shift) & 0xff;
    }
    buffer[at++] = 0x0a;
  }
  const decoded = nativeDecoder(label, false).decode(buffer).split("\n");
  for (let i = 0; i < sequences.length; i++) {
    const char = decoded[i];
    const point = char.codePointAt(0)!;
    // One character (a surrogate pair counts as one), and not a failure.
    if (
      point === 0xfffd || char.length !== (point > 0xffff ? 2 : 1) ||
      reverse.has(point)
    ) continue;
    reverse.set(point, sequences[i]);
  }
}

function encodeMultiByte(text: string, reverse: ReverseMap): Uint8Array {
  const out: number[] = [];
  for (const char of text) {
    const point = char.codePointAt(0)!;
    if (point < 0x80) {
      out.push(point);
      continue;
    }
    let sequence = reverse.get(point);
    if (sequence === undefined && point > 0xffff && reverse.size > 40000) {
      // GB 18030 (the only table this large): supplementary planes.
      sequence = gbFourBytes(189000 + point - 0x10000);
    }
    if (sequence === undefined) out.push(QUESTION);
    else if (sequence > 0xffff) {
      out.push(
        sequence >>> 24,
        (sequence >>> 16) & 0xff,
        (sequence >>> 8) & 0xff,
        sequence & 0xff,
      );
    } else out.push(sequence >> 8, sequence & 0xff);
  }
  return new Uint8Array(out);
}

/**
 * JIS X 0208 and JIS X 0212, from EUC-JP (whose JIS X 0208 index is the
 * one ISO-2022-JP uses): code point to the 7-bit pair.
 */
let jis0208: ReverseMap | undefined;
let jis0212: ReverseMap | undefined;

/**
 * JIS X 0212 (EUC-JP 0x8f lead trail) or JIS X 0208 (lead trail). For
 * JIS X 0208 only its own rows (1 to 84, less the NEC row 13) are used:
 * the decoder also reads the NEC and IBM extension rows, which a JIS X
 * 0208 peer would not, and most of their characters are in JIS X 0212.
 */
function jisMap(supplementary: boolean): ReverseMap {
  const sequences: number[] = [];
  const lastLead = supplementary ? 0xfe : 0xf4; // row 84
  for (let lead = 0xa1; lead <= lastLead; lead++) {
    if (!supplementary && lead === 0xad) continue; // row 13
    for (let trail = 0xa1; trail <= 0xfe; trail++) {
      sequences.push((lead << 8) | trail);
    }
  }
  const map: ReverseMap = new Map();
  if (supplementary) {
    addDecoded(map, "euc-jp", sequences.map((s) => 0x8f0000 | s), 3);
  } else addDecoded(map, "euc-jp", sequences, 2);
  // The 7-bit pair (0x8f a1 a1 and a1 a1 both become 21 21).
  for (const [point, sequence] of map) map.set(point, sequence & 0x7f7f);
  return map;
}

function encodeIso2022Jp(text: string, withJis0212: boolean): Uint8Array {
  jis0208 ??= jisMap(false);
  if (withJis0212) jis0212 ??= jisMap(true);
  type Mode = "ascii" | "jis0208" | "jis0212";
  const out: number[] = [];
  let mode: Mode = "ascii";
  const switchTo = (to: Mode) => {
    if (mode === to) return;
    mode = to;
    if (to === "ascii") out.push(0x1b, 0x28, 0x42); // ESC ( B
    else if (to === "jis0208") out.push(0x1b, 0x24, 0x42); // ESC $ B
    else out.push(0x1b, 0x24, 0x28, 0x44); // ESC $ ( D
  };
  for (const char of text) {
    const point = char.codePointAt(0)!;
    let sequence = point < 0x80 ? undefined : jis0208.get(point);
    let to: Mode = "jis0208";
    if (sequence === undefined && point >= 0x80 && withJis0212) {
      sequence = jis0212!.get(point);
      to = "jis0212";
    }
    if (sequence === undefined) {
      switchTo("ascii");
      out.push(point < 0x80 ? point : QUESTION);
    } else {
      switchTo(to);
      out.push(sequence >> 8, sequence & 0xff);
    }
  }
  switchTo("ascii");
  return new Uint8Array(out);
}
