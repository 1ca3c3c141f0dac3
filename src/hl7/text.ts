/**
 * Text codecs by encoding label: which label an MSH-18 name maps to
 * ({@linkcode charsetEncoding}), and decoding and encoding text with it
 * ({@linkcode decodeText}, {@linkcode encodeText}). `@x/mllp/hl7`
 * re-exports the three.
 *
 * @example Round-trip Latin-1 text
 * ```ts
 * import { charsetEncoding, decodeText, encodeText } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const encoding = charsetEncoding("8859/1")!;
 * assertEquals(decodeText(encodeText("Müller", encoding), encoding), "Müller");
 * ```
 *
 * @module
 */

import { findCharset } from "./charset_table.ts";
import { decodeLabel, encodeLabel } from "./_codecs.ts";

const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

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
  if (encoding === "latin1") return decodeLatin1(bytes, 0, bytes.length);
  if (encoding === "ascii") {
    return decodeLatin1(bytes, 0, bytes.length).replace(
      /[\x80-\xff]/g,
      "\ufffd",
    );
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

/**
 * Decodes `bytes[start..end)` as exact ISO-8859-1 (each byte is one
 * character).
 */
export function decodeLatin1(
  bytes: Uint8Array,
  start: number,
  end: number,
): string {
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

function isAscii(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] > 0x7f) return false;
  return true;
}
