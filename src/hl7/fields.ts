/**
 * Values for HL7 fields that this library writes: fresh control ids
 * (MSH-10, BHS-11), timestamps (MSH-7, BHS-7), and text escaped with a
 * message's own escape sequences (MSA-3). ACKs and batches are built with
 * them; `@x/mllp/ack` re-exports them.
 *
 * @example Escape a text for a field, and read it back
 * ```ts
 * import { escapeText, unescapeText } from "@x/mllp/ack";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const { separators } = readHeader("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5");
 * const escaped = escapeText("Smith|John", separators);
 * assertEquals(escaped, "Smith\\F\\John");
 * assertEquals(unescapeText(escaped, separators), "Smith|John");
 * ```
 *
 * @module
 */

import type { Hl7Separators } from "./header.ts";

let idCounter = 0;

/**
 * Makes a fresh message control id: 20 characters at most, unique within
 * the process and unlikely to repeat across processes.
 *
 * @returns A control id such as `M1HQZK8T2A0001K3F9`.
 *
 * @example Two ids differ
 * ```ts
 * import { newControlId } from "@x/mllp/ack";
 * import { assertNotEquals } from "@std/assert";
 *
 * assertNotEquals(newControlId(), newControlId());
 * ```
 */
export function newControlId(): string {
  idCounter = (idCounter + 1) % 1679616; // 36^4
  const now = Date.now();
  if (now !== idTime) {
    idTime = now;
    idPrefix = "M" + now.toString(36).toUpperCase();
  }
  return idPrefix + base36x4(idCounter) +
    base36x4(Math.floor(Math.random() * 1679616));
}

let idTime = -1;
/** `"M"` and the time of {@linkcode idTime} in base 36. */
let idPrefix = "";
const BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Four base-36 digits (upper case) for a number below 36^4. */
function base36x4(n: number): string {
  return BASE36[Math.floor(n / 46656)] + BASE36[Math.floor(n / 1296) % 36] +
    BASE36[Math.floor(n / 36) % 36] + BASE36[n % 36];
}

/** The current time as an HL7 timestamp, formatted once per second. */
export function timestampNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== stampSecond) {
    stampSecond = second;
    stamp = formatTimestamp(new Date(now));
  }
  return stamp;
}

let stampSecond = NaN;
let stamp = "";

/**
 * Formats a date as an HL7 timestamp with its UTC offset, such as
 * `20240101120000+0100`.
 *
 * @param date The date to format.
 * @returns The HL7 DTM text.
 *
 * @example Format a date
 * ```ts
 * import { formatTimestamp } from "@x/mllp/ack";
 * import { assertMatch } from "@std/assert";
 *
 * assertMatch(formatTimestamp(new Date()), /^\d{14}[+-]\d{4}$/);
 * ```
 */
export function formatTimestamp(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${pad(date.getFullYear(), 4)}${pad(date.getMonth() + 1)}${
    pad(date.getDate())
  }${pad(date.getHours())}${pad(date.getMinutes())}${
    pad(date.getSeconds())
  }${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

/**
 * Escapes text for an HL7 field with the message's escape sequences
 * (`\F\`, `\S\`, `\T\`, `\R\`, `\E\`, `\P\`); line breaks become spaces.
 *
 * @param text The text to escape.
 * @param separators The message's separators.
 * @returns The escaped text.
 *
 * @example Escape a field separator
 * ```ts
 * import { escapeText } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(escapeText("a|b^c", {
 *   field: "|", component: "^", repetition: "~", escape: "\\",
 *   subcomponent: "&", truncation: "",
 * }), "a\\F\\b\\S\\c");
 * ```
 */
export function escapeText(text: string, separators: Hl7Separators): string {
  const e = separators.escape;
  // Most texts (the EchoDispatcher's, for one) need no escaping: return
  // them as they are, without building the map.
  if (
    !text.includes(e) && !text.includes(separators.field) &&
    !text.includes(separators.component) &&
    !text.includes(separators.subcomponent) &&
    !text.includes(separators.repetition) &&
    !(separators.truncation && text.includes(separators.truncation)) &&
    !text.includes("\r") && !text.includes("\n")
  ) return text;
  const map = new Map<string, string>([
    [e, `${e}E${e}`],
    [separators.field, `${e}F${e}`],
    [separators.component, `${e}S${e}`],
    [separators.subcomponent, `${e}T${e}`],
    [separators.repetition, `${e}R${e}`],
    ["\r", " "],
    ["\n", " "],
  ]);
  if (separators.truncation) {
    map.set(separators.truncation, `${e}P${e}`);
  }
  let out = "";
  for (const char of text) out += map.get(char) ?? char;
  return out;
}

/**
 * Reverses {@linkcode escapeText} for the separator escapes; other escape
 * sequences (formatting, hex) are left as they are.
 *
 * @param text The escaped field text.
 * @param separators The message's separators.
 * @returns The plain text.
 *
 * @example Unescape
 * ```ts
 * import { unescapeText } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(unescapeText("a\\F\\b", {
 *   field: "|", component: "^", repetition: "~", escape: "\\",
 *   subcomponent: "&", truncation: "",
 * }), "a|b");
 * ```
 */
export function unescapeText(text: string, separators: Hl7Separators): string {
  const e = separators.escape;
  if (!text.includes(e)) return text;
  const map: Record<string, string> = {
    E: e,
    F: separators.field,
    S: separators.component,
    T: separators.subcomponent,
    R: separators.repetition,
  };
  if (separators.truncation) map.P = separators.truncation;
  let out = "";
  let i = 0;
  while (i < text.length) {
    if (text[i] === e && text[i + 2] === e && map[text[i + 1]] !== undefined) {
      out += map[text[i + 1]];
      i += 3;
    } else {
      out += text[i++];
    }
  }
  return out;
}
