/**
 * What MSH and the batch headers (FHS, BHS) share: their separators, read
 * from field 1 and 2 and checked, and the MSH fields as an
 * {@linkcode Hl7Header}.
 *
 * @module
 */

import type { HeaderError } from "./errors.ts";
import type { Hl7Header, Hl7Separators } from "./message.ts";

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
  const get = (n: number) => fields[n - 1] ?? "";
  const messageType = get(9).split(separators.component);
  const characterSet = get(18);
  const repetition = characterSet.indexOf(separators.repetition);
  return {
    separators,
    encodingCharacters: get(2),
    sendingApplication: get(3),
    sendingFacility: get(4),
    receivingApplication: get(5),
    receivingFacility: get(6),
    dateTime: get(7),
    security: get(8),
    messageType: get(9),
    messageCode: messageType[0] ?? "",
    triggerEvent: messageType[1] ?? "",
    messageStructure: messageType[2] ?? "",
    controlId: get(10),
    processingId: get(11),
    versionId: get(12),
    acceptAckType: get(15),
    applicationAckType: get(16),
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
