/**
 * HL7 character sets: MSH-18 names from HL7 table 0211 (v2.5 to v2.9),
 * what each one maps to on this runtime, and the options a receiver takes
 * for them (a default, an override, a strict or replace policy for bytes
 * that do not decode, and whether UTF-16/UTF-32 may be accepted).
 *
 * Every entry this runtime can decode can also be encoded, so replies and
 * ACKs go back in the message's own charset: single-byte sets through a
 * 256-entry reverse table, GB 18030, BIG-5, KS X 1001 (EUC-KR) and
 * ISO IR87 / ISO IR159 (ISO-2022-JP with JIS X 0208 / JIS X 0212) through
 * a reverse map of their whole
 * two-byte code space, each built once from `TextDecoder` when first
 * needed. A character the charset cannot hold is encoded as `?`.
 *
 * @example List the table
 * ```ts
 * import { listCharsets } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * const latin1 = listCharsets().find((entry) => entry.name === "8859/1");
 * assertEquals(latin1?.encoding, "latin1");
 * const cns = listCharsets().find((entry) => entry.name === "CNS 11643-1992");
 * assertEquals(cns?.encoding, undefined); // known, not supported here
 * ```
 *
 * @module
 */

import { HeaderError } from "./errors.ts";
import type { Hl7Header } from "./header.ts";
import { type CharsetEntry, findCharset } from "./charset_table.ts";
import { decodeLabel, encodeLabel, InvalidBytesError } from "./_codecs.ts";

export {
  type CharsetEntry,
  findCharset,
  listCharsets,
} from "./charset_table.ts";

/**
 * What to do with bytes that do not decode in the message's charset.
 *
 * @example Replace or refuse a byte that is not ASCII
 * ```ts
 * import { CharsetError, decodeCharset } from "@x/mllp/charset";
 * import type { InvalidBytesPolicy } from "@x/mllp/charset";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * const bytes = new Uint8Array([0x41, 0xe9]);
 * const decode = (invalid: InvalidBytesPolicy) =>
 *   decodeCharset(bytes, "ASCII", { invalid });
 * assertEquals(decode("replace"), "A\ufffd");
 * assertThrows(() => decode("strict"), CharsetError);
 * ```
 */
export type InvalidBytesPolicy = "replace" | "strict";

/**
 * How a receiver (or {@linkcode readMessage}) picks and applies the charset
 * of HL7 payloads. Names are table 0211 codes or their aliases (see
 * {@linkcode listCharsets}).
 *
 * @example A receiver for a Latin-1 peer that leaves MSH-18 empty
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   charset: { default: "8859/1", invalid: "strict" },
 * });
 * ```
 */
export interface CharsetOptions {
  /**
   * The charset of messages whose MSH-18 is empty.
   *
   * @default {"UNICODE UTF-8"}
   */
  default?: string;
  /**
   * The charset of every message, whatever its MSH-18 says (for peers
   * whose MSH-18 is wrong). The message's header still shows the MSH-18
   * it sent, and replies copy it, but are encoded in this charset.
   */
  override?: string;
  /**
   * Bytes that do not decode: `"replace"` reads them as U+FFFD;
   * `"strict"` refuses the message (a receiver answers `AR`, naming the
   * charset and the byte offset) and also refuses an MSH-18 that is not in
   * table 0211 (which `"replace"` reads as UTF-8). Payloads that are not
   * HL7 are not affected.
   *
   * @default {"replace"}
   */
  invalid?: InvalidBytesPolicy;
  /**
   * Accept UTF-16 and UTF-32 (`UNICODE`, `UNICODE UTF-16`,
   * `UNICODE UTF-32`). Their bytes can equal the MLLP framing bytes (VT
   * `0x0b`, FS `0x1c`), so such a frame only arrives whole when none of
   * its bytes does; refused (`AR`) unless this is set. A wide payload is
   * recognised by its byte order mark or by `MSH` with zero bytes between
   * the letters, and its ACK is encoded the same way (same byte order).
   *
   * @default {false}
   */
  allowWide?: boolean;
}

/**
 * Checks charset options: names must be table 0211 entries this runtime
 * can decode (wide ones only with `allowWide`), and `invalid` one of the
 * two policies.
 *
 * @param options The options to check.
 * @param where Where they come from, for the error message.
 * @throws {TypeError} If a name is unknown or unsupported, or a value is
 *   of the wrong kind.
 *
 * @example An unknown name
 * ```ts
 * import { checkCharsetOptions } from "@x/mllp/charset";
 * import { assertThrows } from "@std/assert";
 *
 * checkCharsetOptions({ override: "8859/2" });
 * assertThrows(() => checkCharsetOptions({ default: "LATIN-7" }), TypeError);
 * ```
 */
export function checkCharsetOptions(
  options: CharsetOptions,
  where = "charset",
): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`${where} must be an object, got "${options}"`);
  }
  for (const key of ["default", "override"] as const) {
    const name = options[key];
    if (name === undefined) continue;
    if (typeof name !== "string") {
      throw new TypeError(`${where}.${key} must be a string, got "${name}"`);
    }
    const found = findCharset(name);
    if (!found) {
      throw new TypeError(
        `${where}.${key} "${name}" is not a charset of HL7 table 0211`,
      );
    }
    if (found.encoding === undefined) {
      throw new TypeError(
        `${where}.${key} "${name}" is not supported by this runtime`,
      );
    }
    if (found.wide && !options.allowWide) {
      throw new TypeError(
        `${where}.${key} "${name}" is UTF-16 or UTF-32: set ${where}.allowWide to use it`,
      );
    }
  }
  if (
    options.invalid !== undefined && options.invalid !== "replace" &&
    options.invalid !== "strict"
  ) {
    throw new TypeError(
      `${where}.invalid must be "replace" or "strict", got "${options.invalid}"`,
    );
  }
  if (
    options.allowWide !== undefined && typeof options.allowWide !== "boolean"
  ) {
    throw new TypeError(
      `${where}.allowWide must be a boolean, got "${options.allowWide}"`,
    );
  }
}

/**
 * Why a message's charset cannot be used.
 *
 * @example Explain a refused message
 * ```ts
 * import { CharsetError, readMessage } from "@x/mllp";
 * import type { CharsetProblem } from "@x/mllp/charset";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * function advice(problem: CharsetProblem): string {
 *   switch (problem) {
 *     case "unsupported":
 *       return "ask the sender for another MSH-18";
 *     case "wide_refused":
 *       return "set allowWide, if frames arrive whole";
 *     default:
 *       return "fix the sender's bytes or MSH-18";
 *   }
 * }
 * const error = assertThrows(
 *   () => readMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||TWN|UNICODE"),
 *   CharsetError,
 * );
 * assertEquals(error.problem, "wide_refused");
 * assertEquals(advice(error.problem), "set allowWide, if frames arrive whole");
 * ```
 */
export type CharsetProblem =
  /** Bytes that do not decode, in strict mode. */
  | "invalid_bytes"
  /** A table 0211 entry this runtime cannot decode. */
  | "unsupported"
  /** A name that is not in table 0211, in strict mode. */
  | "unknown"
  /** UTF-16 or UTF-32 without `allowWide`. */
  | "wide_refused"
  /** MSH-18 names UTF-16 or UTF-32, but the payload is not. */
  | "not_wide";

/**
 * What a {@linkcode CharsetError} carries.
 *
 * @example Throw the error a receiver would answer with `AR`
 * ```ts
 * import { CharsetError } from "@x/mllp/charset";
 * import type { CharsetErrorInit } from "@x/mllp/charset";
 * import { HeaderError } from "@x/mllp/errors";
 * import { assertEquals, assertInstanceOf } from "@std/assert";
 *
 * const init: CharsetErrorInit = {
 *   charset: "8859/8",
 *   problem: "invalid_bytes",
 *   offset: 123,
 *   encoding: "iso-8859-8",
 * };
 * const error = new CharsetError(
 *   'Cannot decode message: bytes are not valid "8859/8" at offset 123',
 *   init,
 * );
 * assertInstanceOf(error, HeaderError);
 * assertEquals([error.problem, error.offset], ["invalid_bytes", 123]);
 * ```
 */
export interface CharsetErrorInit {
  /** The charset: its table 0211 code, or the name as given. */
  charset: string;
  /** Why it cannot be used. */
  problem: CharsetProblem;
  /** For `invalid_bytes`: the offset of the byte where decoding failed. */
  offset?: number;
  /** The message's header, when it could be read. */
  header?: Hl7Header;
  /** For `invalid_bytes`: the encoding label a reply can be encoded in. */
  encoding?: string;
}

/**
 * A message whose charset cannot be used: bytes that do not decode (in
 * strict mode), a charset this runtime does not support, or UTF-16/32 not
 * allowed. It is a {@linkcode HeaderError}, so everything that handles an
 * unreadable header (a receiver's `AR`, a client's invalid reply) handles
 * it too.
 *
 * @example Catch it
 * ```ts
 * import { CharsetError, readMessage } from "@x/mllp";
 * import { assertInstanceOf } from "@std/assert";
 *
 * try {
 *   readMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||TWN|CNS 11643-1992");
 * } catch (error) {
 *   assertInstanceOf(error, CharsetError);
 * }
 * ```
 */
export class CharsetError extends HeaderError {
  /** The charset: its table 0211 code, or the name as given. */
  readonly charset: string;
  /** Why it cannot be used. */
  readonly problem: CharsetProblem;
  /** For `invalid_bytes`: the offset of the byte where decoding failed. */
  readonly offset: number | undefined;
  /** The message's header, when it could be read. */
  readonly header: Hl7Header | undefined;
  /** For `invalid_bytes`: the encoding label a reply can be encoded in. */
  readonly encoding: string | undefined;

  /**
   * Constructs a new error.
   *
   * @param message What went wrong.
   * @param init The charset, the problem and its details.
   * @param options An optional cause.
   */
  constructor(
    message: string,
    init: CharsetErrorInit,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "CharsetError";
    this.charset = init.charset;
    this.problem = init.problem;
    this.offset = init.offset;
    this.header = init.header;
    this.encoding = init.encoding;
  }
}

/**
 * The charset a message is read with.
 *
 * @example Resolve an empty MSH-18 to the receiver's default
 * ```ts
 * import { decodeCharset, resolveCharset } from "@x/mllp/charset";
 * import type { ResolvedCharset } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * const resolved: ResolvedCharset = resolveCharset("", { default: "ISO IR100" });
 * assertEquals(resolved, { name: "8859/1", encoding: "latin1" });
 * assertEquals(decodeCharset(new Uint8Array([0xe9]), resolved.name), "é");
 * ```
 */
export interface ResolvedCharset {
  /** The table 0211 code (`""` when none applies: UTF-8). */
  name: string;
  /** The encoding label. */
  encoding: string;
}

/**
 * Picks the charset of a message from its MSH-18 and the options:
 * `override` first, then MSH-18, then `default`, then UTF-8.
 *
 * @param characterSet MSH-18 (its first repetition).
 * @param options The charset options.
 * @returns The charset's code and encoding label.
 * @throws {CharsetError} If it is not supported by this runtime, is wide
 *   without `allowWide`, or (in strict mode) is not in table 0211.
 *
 * @example Override a wrong MSH-18
 * ```ts
 * import { resolveCharset } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(resolveCharset("8859/1", { override: "8859/2" }).encoding, "iso-8859-2");
 * assertEquals(resolveCharset("", { default: "8859/1" }).encoding, "latin1");
 * assertEquals(resolveCharset("KLINGON").encoding, "utf-8");
 * ```
 */
export function resolveCharset(
  characterSet: string,
  options: CharsetOptions = {},
): ResolvedCharset {
  const name = options.override || characterSet || options.default || "";
  if (name === "") return { name: "", encoding: "utf-8" };
  const found = findCharset(name);
  if (!found) {
    if (options.invalid === "strict") {
      throw new CharsetError(
        `Cannot decode message: charset "${name}" is not in HL7 table 0211`,
        { charset: name, problem: "unknown" },
      );
    }
    return { name, encoding: "utf-8" };
  }
  if (found.encoding === undefined) {
    throw new CharsetError(
      `Cannot decode message: charset "${found.name}" is not supported by this runtime`,
      { charset: found.name, problem: "unsupported" },
    );
  }
  if (found.wide && !options.allowWide) {
    throw new CharsetError(
      `Cannot decode message: charset "${found.name}" is refused, as its bytes can contain the MLLP framing bytes (allowWide is not set)`,
      { charset: found.name, problem: "wide_refused" },
    );
  }
  return { name: found.name, encoding: found.encoding };
}

/**
 * Decodes bytes in a table 0211 charset.
 *
 * @param bytes The bytes.
 * @param charset The charset's code or alias.
 * @param options `invalid`: `"replace"` (U+FFFD, the default) or
 *   `"strict"` (throw).
 * @returns The text.
 * @throws {CharsetError} If the charset is unknown or unsupported, or (in
 *   strict mode) the bytes do not decode; `offset` says where.
 *
 * @example Strict decoding names the offset
 * ```ts
 * import { CharsetError, decodeCharset } from "@x/mllp/charset";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * assertEquals(decodeCharset(new Uint8Array([0xe0]), "8859/8"), "א");
 * const error = assertThrows(
 *   () => decodeCharset(new Uint8Array([0x41, 0xff]), "8859/8", { invalid: "strict" }),
 *   CharsetError,
 * );
 * assertEquals(error.offset, 1);
 * ```
 */
export function decodeCharset(
  bytes: Uint8Array,
  charset: string,
  options: { invalid?: InvalidBytesPolicy } = {},
): string {
  const found = supported(charset);
  try {
    return decodeLabel(bytes, found.encoding!, options.invalid === "strict");
  } catch (error) {
    if (!(error instanceof InvalidBytesError)) throw error;
    throw new CharsetError(
      `Cannot decode text: bytes are not valid "${found.name}" at offset ${error.offset}`,
      {
        charset: found.name,
        problem: "invalid_bytes",
        offset: error.offset,
        encoding: found.encoding,
      },
    );
  }
}

/**
 * Encodes text in a table 0211 charset; characters it cannot hold become
 * `?`.
 *
 * @param text The text.
 * @param charset The charset's code or alias.
 * @returns The bytes.
 * @throws {CharsetError} If the charset is unknown or unsupported.
 *
 * @example Encode for a Korean peer
 * ```ts
 * import { decodeCharset, encodeCharset } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = encodeCharset("김민준", "KS X 1001");
 * assertEquals(bytes.length, 6);
 * assertEquals(decodeCharset(bytes, "KS X 1001"), "김민준");
 * ```
 */
export function encodeCharset(text: string, charset: string): Uint8Array {
  return encodeLabel(text, supported(charset).encoding!);
}

function supported(charset: string): CharsetEntry {
  const found = findCharset(charset);
  if (!found) {
    throw new CharsetError(
      `Cannot use charset "${charset}": it is not in HL7 table 0211`,
      { charset, problem: "unknown" },
    );
  }
  if (found.encoding === undefined) {
    throw new CharsetError(
      `Cannot use charset "${found.name}": it is not supported by this runtime`,
      { charset: found.name, problem: "unsupported" },
    );
  }
  return found;
}
