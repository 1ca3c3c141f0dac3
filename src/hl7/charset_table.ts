/**
 * HL7 table 0211 (Alternate character sets), as this library maps it: each
 * MSH-18 code with its description, the aliases accepted for it, and the
 * encoding label it is decoded and encoded with on this runtime. The
 * public face of these is `@x/mllp/charset`, which re-exports them.
 *
 * @example Find an entry by an alias
 * ```ts
 * import { findCharset } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(findCharset("ISO-8859-1")?.name, "8859/1");
 * ```
 *
 * @module
 */

import { isWide } from "./_codecs.ts";

/**
 * One entry of HL7 table 0211 (Alternate character sets).
 *
 * @example The entries a receiver refuses by default
 * ```ts
 * import { listCharsets } from "@x/mllp/charset";
 * import type { CharsetEntry } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * const refused = (entry: CharsetEntry) =>
 *   entry.encoding === undefined || entry.wide;
 * assertEquals(listCharsets().filter(refused).map((e) => e.name), [
 *   "CNS 11643-1992",
 *   "UNICODE",
 *   "UNICODE UTF-16",
 *   "UNICODE UTF-32",
 * ]);
 * ```
 */
export interface CharsetEntry {
  /** The MSH-18 code, as the table spells it, such as `8859/1`. */
  readonly name: string;
  /** What the table says the charset is. */
  readonly description: string;
  /** Other spellings accepted for it (ISO-IR numbers, common labels). */
  readonly aliases: readonly string[];
  /**
   * The encoding label it is decoded and encoded with: a WHATWG label
   * `TextDecoder` knows, or one of this library's exact ones (`latin1`,
   * `ascii`, `iso-8859-9`, `jis-x0201`, `iso-2022-jp-1`, `utf-32le`).
   * `undefined` when this
   * runtime cannot decode it: messages naming it are refused.
   */
  readonly encoding: string | undefined;
  /**
   * Whether it is UTF-16 or UTF-32, whose bytes can contain the MLLP
   * framing bytes: refused unless `CharsetOptions.allowWide` is set.
   */
  readonly wide: boolean;
}

function entry(
  name: string,
  description: string,
  encoding: string | undefined,
  aliases: string[] = [],
): CharsetEntry {
  return Object.freeze({
    name,
    description,
    aliases: Object.freeze(aliases),
    encoding,
    wide: encoding !== undefined && isWide(encoding),
  });
}

const TABLE: readonly CharsetEntry[] = Object.freeze([
  entry("ASCII", "The printable 7-bit ASCII character set", "ascii", [
    "ISO IR6",
    "US-ASCII",
  ]),
  entry(
    "8859/1",
    "The printable characters from the ISO 8859/1 (Latin-1) character set",
    "latin1",
    [
      "ISO IR100",
      "ISO-8859-1",
    ],
  ),
  entry("8859/2", "ISO 8859/2 (Latin-2, Central European)", "iso-8859-2", [
    "ISO IR101",
    "ISO-8859-2",
  ]),
  entry("8859/3", "ISO 8859/3 (Latin-3, South European)", "iso-8859-3", [
    "ISO IR109",
    "ISO-8859-3",
  ]),
  entry("8859/4", "ISO 8859/4 (Latin-4, North European)", "iso-8859-4", [
    "ISO IR110",
    "ISO-8859-4",
  ]),
  entry("8859/5", "ISO 8859/5 (Cyrillic)", "iso-8859-5", [
    "ISO IR144",
    "ISO-8859-5",
  ]),
  entry("8859/6", "ISO 8859/6 (Arabic)", "iso-8859-6", [
    "ISO IR127",
    "ISO-8859-6",
  ]),
  entry("8859/7", "ISO 8859/7 (Greek)", "iso-8859-7", [
    "ISO IR126",
    "ISO-8859-7",
  ]),
  entry("8859/8", "ISO 8859/8 (Hebrew)", "iso-8859-8", [
    "ISO IR138",
    "ISO-8859-8",
  ]),
  entry("8859/9", "ISO 8859/9 (Latin-5, Turkish)", "iso-8859-9", [
    "ISO IR148",
    "ISO-8859-9",
  ]),
  entry("8859/15", "ISO 8859/15 (Latin-9)", "iso-8859-15", [
    "ISO IR203",
    "ISO-8859-15",
  ]),
  entry(
    "ISO IR14",
    "Code for Information Exchange (one byte) (JIS X 0201-1976)",
    "jis-x0201",
  ),
  entry(
    "ISO IR87",
    "Code for the Japanese Graphic Character set for information interchange (JIS X 0208-1990)",
    "iso-2022-jp",
    ["ISO-2022-JP"],
  ),
  entry(
    "ISO IR159",
    "Code of the supplementary Japanese Graphic Character set for information interchange (JIS X 0212-1990)",
    "iso-2022-jp-1",
  ),
  entry(
    "GB 18030",
    "Code for Chinese Character Set (GB 18030-2000)",
    "gb18030",
    ["GB18030"],
  ),
  entry("KS X 1001", "Code for Korean Character Set (KS X 1001)", "euc-kr", [
    "ISO IR149",
    "EUC-KR",
  ]),
  entry(
    "CNS 11643-1992",
    "Code for Taiwanese Character Set (CNS 11643-1992)",
    undefined,
  ),
  entry("BIG-5", "Code for Taiwanese Character Set (BIG-5)", "big5", ["BIG5"]),
  entry(
    "UNICODE",
    "The world wide character standard from ISO/IEC 10646-1-1993 (read as UTF-16)",
    "utf-16le",
  ),
  entry("UNICODE UTF-8", "UCS Transformation Format, 8-bit form", "utf-8", [
    "UTF-8",
    "ISO IR192",
  ]),
  entry(
    "UNICODE UTF-16",
    "UCS Transformation Format, 16-bit form",
    "utf-16le",
    ["UTF-16"],
  ),
  entry(
    "UNICODE UTF-32",
    "UCS Transformation Format, 32-bit form",
    "utf-32le",
    ["UTF-32"],
  ),
]);

/** Normalizes a name: upper case, single spaces, `ISO IR 100` as `ISO IR100`. */
function normalize(name: string): string {
  return name.trim().toUpperCase().replace(/[_\s]+/g, " ").replace(
    /^ISO IR (\d+)$/,
    "ISO IR$1",
  );
}

const BY_NAME = new Map<string, CharsetEntry>();
for (const charset of TABLE) {
  BY_NAME.set(charset.name, charset);
  for (const alias of charset.aliases) BY_NAME.set(normalize(alias), charset);
}

/**
 * Lists HL7 table 0211 as this library maps it: each entry's MSH-18 code,
 * description, accepted aliases, and the encoding it is read with here
 * (`undefined`: known, but this runtime cannot decode it).
 *
 * @returns The entries, in table order.
 *
 * @example Which entries this runtime cannot decode
 * ```ts
 * import { listCharsets } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * const unsupported = listCharsets()
 *   .filter((entry) => entry.encoding === undefined)
 *   .map((entry) => entry.name);
 * assertEquals(unsupported, ["CNS 11643-1992"]);
 * ```
 */
export function listCharsets(): CharsetEntry[] {
  return [...TABLE];
}

/**
 * Finds a table 0211 entry by its code or an alias, ignoring case and
 * extra spaces (`iso ir 100` finds `8859/1`).
 *
 * @param name An MSH-18 value (its first repetition).
 * @returns The entry, or `undefined` when the name is not in the table.
 *
 * @example Find entries
 * ```ts
 * import { findCharset } from "@x/mllp/charset";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(findCharset("ISO IR100")?.name, "8859/1");
 * assertEquals(findCharset("unicode utf-8")?.encoding, "utf-8");
 * assertEquals(findCharset("KLINGON"), undefined);
 * ```
 */
export function findCharset(name: string): CharsetEntry | undefined {
  return BY_NAME.get(name) ?? BY_NAME.get(normalize(name));
}
