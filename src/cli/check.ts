/**
 * What `mllp send` checks of each message it read, before anything is
 * sent: that the input is HL7 (unless `--raw`), that its header can be
 * read, that its charset can be sent with the charset flags given (as the
 * client would read it), and that it asks for an acknowledgment. Each
 * problem is an {@linkcode InputError} with a stable `reason`.
 *
 * @module
 */

import type { BatchMessage } from "../hl7/batch.ts";
import { ackModeOf } from "../hl7/ack_conditions.ts";
import { CharsetError, type CharsetOptions } from "../hl7/charset.ts";
import { HeaderError } from "../hl7/errors.ts";
import { isHl7, readMessage } from "../hl7/message.ts";

/**
 * Why an input cannot be sent, as `--json` names it in `reason`:
 *
 * - `unreadable`: the file (or stdin) cannot be read;
 * - `no_files`: a directory holds no message file;
 * - `empty`: a file or message holds nothing;
 * - `not_hl7`: it does not start with `MSH`, `FHS` or `BHS` (without
 *   `--raw`);
 * - `header`: its MSH (or a batch header) cannot be read;
 * - `charset`: its charset cannot be sent with the charset flags given;
 * - `framing`: it holds a VT or FS byte, or a capture's frame is broken;
 * - `segment`: a segment outside a message;
 * - `batch`: a batch (with `--batch`) that holds no message;
 * - `no_ack`: MSH-15 and MSH-16 are both `NE`.
 */
export type InputReason =
  | "unreadable"
  | "no_files"
  | "empty"
  | "not_hl7"
  | "header"
  | "charset"
  | "framing"
  | "segment"
  | "batch"
  | "no_ack";

/**
 * A problem with the input: printed as `error: MESSAGE`, exit 2 (the
 * message starts with the file's name).
 */
export class InputError extends Error {
  /** Why, in a word. */
  readonly reason: InputReason;

  constructor(message: string, reason: InputReason) {
    super(message);
    this.name = "InputError";
    this.reason = reason;
  }
}

/** How messages are checked. */
export interface CheckOptions {
  /** Send payloads that are not HL7 (`--raw`) instead of refusing them. */
  raw?: boolean;
  /** The charset flags, as the client is given them. */
  charset?: CharsetOptions;
}

const MSH = [0x4d, 0x53, 0x48];
const FHS = [0x46, 0x48, 0x53];
const BHS = [0x42, 0x48, 0x53];

/**
 * Refuses bytes that do not start as HL7 does: with `MSH`, `FHS` or `BHS`
 * (upper case), or an HL7 message in UTF-16 or UTF-32. The caller has
 * dropped a byte order mark and the MLLP frame first.
 *
 * @param label The file (or `FILE#N`), for the message.
 * @throws {InputError} With `not_hl7`, unless `options.raw`.
 */
export function checkHl7Start(
  label: string,
  data: Uint8Array,
  options: CheckOptions,
): void {
  if (options.raw || startsAsHl7(data)) return;
  throw new InputError(
    `${label}: Not HL7: it starts with ${
      describeStart(data)
    }, not MSH, FHS or BHS (give --raw to send it as it is)`,
    "not_hl7",
  );
}

/** Whether bytes start with `MSH`, `FHS` or `BHS`, or are wide HL7. */
export function startsAsHl7(data: Uint8Array): boolean {
  return [MSH, FHS, BHS].some((name) => name.every((c, i) => data[i] === c)) ||
    isHl7(data);
}

/**
 * Reads an HL7 message as the client will (with the charset flags), and
 * checks that it can be sent.
 *
 * @param label The file (or `FILE#N`), for the message.
 * @returns Its control id (MSH-10).
 * @throws {InputError} With `header`, `charset` or `no_ack`.
 */
export function checkHl7(
  label: string,
  payload: Uint8Array,
  options: CheckOptions,
): string {
  let message;
  try {
    message = readMessage(payload, { charset: options.charset });
  } catch (error) {
    throw asInputError(label, error);
  }
  if (message.kind !== "hl7") return "";
  const mode = ackModeOf(message.header);
  if (
    mode.mode === "enhanced" && mode.accept === "NE" &&
    mode.application === "NE"
  ) {
    throw new InputError(
      `${label}: MSH-15 and MSH-16 are both NE, so the receiver sends no acknowledgment, and send waits for one: give one of them another value`,
      "no_ack",
    );
  }
  return message.header.controlId;
}

/**
 * Checks that each message of a batch (`--batch`) can be read with the
 * charset flags, as the client reads them.
 *
 * @throws {InputError} With `charset`.
 */
export function checkBatchCharsets(
  label: string,
  batch: BatchMessage,
  options: CheckOptions,
): void {
  for (const [i, entry] of batch.entries.entries()) {
    try {
      readMessage(entry.raw, { charset: options.charset });
    } catch (error) {
      throw asInputError(`${label}: message ${i + 1}`, error);
    }
  }
}

/** A header or charset error as an input error, in the flags' words. */
function asInputError(label: string, error: unknown): InputError {
  if (error instanceof CharsetError) {
    return new InputError(`${label}: ${charsetProblem(error)}`, "charset");
  }
  if (error instanceof HeaderError) {
    return new InputError(`${label}: ${error.message}`, "header");
  }
  throw error;
}

/** A charset error, saying which flag would change it. */
function charsetProblem(error: CharsetError): string {
  switch (error.problem) {
    case "wide_refused":
      return `Charset "${error.charset}" is UTF-16 or UTF-32, whose bytes can be MLLP framing bytes: give --allow-wide to send it (the receiver must allow it too)`;
    case "invalid_bytes":
      return `${
        error.message.replace(/^Cannot decode text:/, "Cannot decode message:")
      } (--strict-charset): name its charset with --charset NAME (when MSH-18 is empty) or --charset-override NAME`;
    case "unknown":
      return `${error.message} (--strict-charset)`;
    default:
      return error.message;
  }
}

/**
 * How bytes start, for a message: `a blank line`, or their first line's
 * first 16 characters (each byte as one), quoted.
 */
function describeStart(data: Uint8Array): string {
  let end = 0;
  while (
    end < data.length && end < 16 && data[end] !== 0x0d &&
    data[end] !== 0x0a
  ) {
    end++;
  }
  if (end === 0) return "a blank line";
  return JSON.stringify(String.fromCharCode(...data.subarray(0, end)));
}
