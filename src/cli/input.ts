/**
 * How `mllp send` reads its input: files, directories (recursively, in
 * sorted order) and stdin, each split into the messages it holds.
 *
 * A file is split into messages this way:
 *
 * - A file that starts with VT (`0x0b`) is a capture of MLLP frames: each
 *   frame is one message; whitespace between frames is skipped.
 * - A file whose first non-blank line starts with `MSH`, `FHS` or `BHS` is
 *   HL7: every line that starts with `MSH` starts a message, and a blank
 *   line ends one. Batch envelope segments (`FHS`, `BHS`, `BTS`, `FTS`) are
 *   not sent: each message of a batch goes on its own. A `BTS-1` count that
 *   disagrees with the batch is reported as a warning. With `--batch`
 *   (`ReadInputsOptions.batch`), a file whose first non-blank line starts
 *   with `FHS` or `BHS` (and a batch frame of a capture) is instead one
 *   payload, the batch, sent as one frame. A segment that is
 *   not inside a message (after a blank line, or before the first `MSH`)
 *   is an error.
 * - A file in UTF-16 or UTF-32 (`MSH` with zero bytes between the
 *   letters, or a byte order mark) is one message, sent byte for byte.
 * - Any other file is one payload, sent as it is (trailing blank lines
 *   removed): only with `--raw` (`ReadInputsOptions.raw`); without it,
 *   a file (or a frame of a capture) that does not start with `MSH`,
 *   `FHS` or `BHS` is refused.
 *
 * HL7 segments may be separated by CR, LF or CRLF; they are sent ended by
 * CR. A UTF-8 byte order mark is dropped.
 *
 * Every file is read and checked ({@linkcode readInputs}) before anything
 * is sent; each file with a problem is reported, with its reason.
 *
 * @module
 */

import { reasonOf } from "../dispatch/_util.ts";
import { type BatchMessage, isBatch, readBatch } from "../hl7/batch.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import { END_BLOCK, START_BLOCK } from "../wire/framer.ts";
import { isHl7 } from "../hl7/message.ts";
import {
  checkBatchCharsets,
  checkHl7,
  checkHl7Start,
  InputError,
  type InputReason,
} from "./check.ts";

export { InputError, type InputReason } from "./check.ts";

/** One message to send. */
export interface Outgoing {
  /** The file (or `<stdin>`) and, when it holds several, `#N`. */
  label: string;
  /** The file it came from, or `<stdin>`. */
  file: string;
  /** Its place in the file, from 1. */
  index: number;
  /** The bytes to send. */
  payload: Uint8Array;
  /** MSH-10, for HL7; BHS-11 (or FHS-11) for a batch. */
  controlId: string | undefined;
  /** The batch the payload holds, read with `--batch`: sent as one frame. */
  batch?: BatchMessage;
}

/** Options for {@linkcode readInputs}. */
export interface ReadInputsOptions {
  /**
   * Keep each FHS/BHS batch file (or batch frame of a capture) whole, as
   * one {@linkcode Outgoing} with `batch` set, instead of splitting it into
   * its messages.
   */
  batch?: boolean;
  /** Send payloads that are not HL7 whole (`--raw`) instead of refusing. */
  raw?: boolean;
  /** The charset flags: messages are checked as the client reads them. */
  charset?: CharsetOptions;
}

/** A file that cannot be sent, and why. */
export interface InputProblem {
  /** The file (or `<stdin>`, or a directory without message files). */
  file: string;
  /** The message's place in the file, when one message is the problem. */
  index: number | undefined;
  /** Why, in a word. */
  reason: InputReason;
  /** What to print after `error: `, starting with the file's name. */
  message: string;
}

/** What {@linkcode readInputs} read. */
export interface Inputs {
  /** The messages of the files without problems, in order. */
  messages: Outgoing[];
  /** One problem per file that cannot be sent, in order. */
  problems: InputProblem[];
  /** How many files (and stdin) were read, those with problems too. */
  files: number;
}

/** The file name endings read from a directory (any case). */
export const MESSAGE_EXTENSIONS: readonly string[] = [".hl7", ".er7", ".txt"];

const CR = 0x0d;
const LF = 0x0a;
const BOM = [0xef, 0xbb, 0xbf];

/**
 * Reads every path (`-` is stdin), splits each file into messages and
 * checks each one, before anything is sent. A file with a problem (it
 * cannot be read, is not HL7, holds a header or charset that cannot be
 * sent, ...) is left out whole and reported, and the others are still
 * read: every problem is found in one pass.
 *
 * @param warn Called with each warning line (without `warning: `).
 * @param options Whether to keep batches whole, send payloads that are
 *   not HL7, and the charset flags.
 * @returns The messages of the good files, and a problem per bad file.
 */
export async function readInputs(
  paths: readonly string[],
  stdin: () => ReadableStream<Uint8Array>,
  warn: (line: string) => void,
  options: ReadInputsOptions = {},
): Promise<Inputs> {
  const inputs: Inputs = { messages: [], problems: [], files: 0 };
  const take = (file: string, read: () => Promise<Uint8Array>) =>
    readFile(inputs, file, read, warn, options);
  for (const path of paths) {
    if (path === "-") {
      await take("<stdin>", () => new Response(stdin()).bytes());
      continue;
    }
    let files = [path];
    try {
      if ((await Deno.stat(path)).isDirectory) {
        files = await listDirectory(path);
        if (files.length === 0) {
          inputs.files++;
          inputs.problems.push({
            file: path,
            index: undefined,
            reason: "no_files",
            message: `${path}: No message files in the directory (${
              MESSAGE_EXTENSIONS.join(", ")
            })`,
          });
          continue;
        }
      }
    } catch {
      // Reading says why (not found, permission denied).
    }
    for (const file of files) await take(file, () => Deno.readFile(file));
  }
  return inputs;
}

/** Reads, splits and checks one file into `inputs`. */
async function readFile(
  inputs: Inputs,
  file: string,
  read: () => Promise<Uint8Array>,
  warn: (line: string) => void,
  options: ReadInputsOptions,
): Promise<void> {
  inputs.files++;
  let bytes: Uint8Array;
  try {
    bytes = await read();
  } catch (error) {
    inputs.problems.push({
      file,
      index: undefined,
      reason: "unreadable",
      message: `${file}: Cannot read file: ${reasonOf(error)}`,
    });
    return;
  }
  // Warnings wait until the file is known to be good.
  const warnings: string[] = [];
  try {
    const messages = toMessages(
      file,
      bytes,
      (line) => warnings.push(line),
      options,
    );
    inputs.messages.push(...messages);
    for (const line of warnings) warn(line);
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    // "FILE#N: ...": one message of the file is the problem.
    const index = error.message.startsWith(`${file}#`)
      ? error.message.slice(file.length + 1).match(/^(\d+): /)
      : null;
    inputs.problems.push({
      file,
      index: index ? Number(index[1]) : undefined,
      reason: error.reason,
      message: error.message,
    });
  }
}

/**
 * The message files under a directory, depth first, each directory's
 * entries in name order (by UTF-16 code units). Names starting with `.`
 * are skipped; symbolic links to files are followed, links to directories
 * are not (no cycles).
 */
export async function listDirectory(dir: string): Promise<string[]> {
  const entries: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const base = dir.endsWith("/") ? dir.slice(0, -1) : dir;
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith(".")) continue;
    const path = `${base}/${entry.name}`;
    if (entry.isDirectory) {
      files.push(...await listDirectory(path));
      continue;
    }
    if (!isMessageFile(entry.name)) continue;
    if (entry.isFile) {
      files.push(path);
    } else if (entry.isSymlink) {
      try {
        if ((await Deno.stat(path)).isFile) files.push(path);
      } catch {
        // A dangling link: nothing to read.
      }
    }
  }
  return files;
}

function isMessageFile(name: string): boolean {
  const lower = name.toLowerCase();
  return MESSAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Splits one file, and checks and reads each HL7 message. */
function toMessages(
  file: string,
  bytes: Uint8Array,
  warn: (line: string) => void,
  options: ReadInputsOptions,
): Outgoing[] {
  const data = withoutBom(bytes);
  // A capture's frames are checked one by one, below.
  if (data[0] !== START_BLOCK && !isBlankText(data)) {
    checkHl7Start(file, data, options);
  }
  const payloads = options.batch
    ? splitKeepingBatches(bytes, file, warn)
    : splitMessages(bytes, file, warn);
  if (payloads.length === 0) {
    throw new InputError(`${file}: Message is empty`, "empty");
  }
  return payloads.map((payload, i) => {
    const label = payloads.length === 1 ? file : `${file}#${i + 1}`;
    if (payload.length === 0) {
      throw new InputError(`${label}: Message is empty`, "empty");
    }
    for (const [byte, name] of [[START_BLOCK, "VT"], [END_BLOCK, "FS"]]) {
      const at = payload.indexOf(byte as number);
      if (at !== -1) {
        throw new InputError(
          `${label}: Contains a ${name} byte at offset ${at}, which would break the MLLP framing`,
          "framing",
        );
      }
    }
    if (data[0] === START_BLOCK) checkHl7Start(label, payload, options);
    if (options.batch && isBatch(payload)) {
      const outgoing = batchOutgoing(label, file, i + 1, payload, warn);
      checkBatchCharsets(label, outgoing.batch!, options);
      return outgoing;
    }
    const controlId = isHl7(payload)
      ? checkHl7(label, payload, options)
      : undefined;
    return { label, file, index: i + 1, payload, controlId };
  });
}

function withoutBom(bytes: Uint8Array): Uint8Array {
  return BOM.every((byte, i) => bytes[i] === byte) ? bytes.subarray(3) : bytes;
}

/** Whether bytes hold only blanks and line breaks (an empty file). */
function isBlankText(data: Uint8Array): boolean {
  return data.every((byte) =>
    byte === 0x20 || byte === 0x09 || byte === CR || byte === LF
  );
}

/**
 * The `--batch` form of one batch payload: read, with every message's MSH
 * checked and the batch's problems (counts, trailers) reported as
 * warnings.
 */
function batchOutgoing(
  label: string,
  file: string,
  index: number,
  payload: Uint8Array,
  warn: (line: string) => void,
): Outgoing {
  const batch = readBatch(payload);
  if (batch.entries.length === 0) {
    throw new InputError(`${label}: The batch holds no message`, "batch");
  }
  for (const [i, entry] of batch.entries.entries()) {
    if (entry.error) {
      throw new InputError(
        `${label}: message ${i + 1}: ${entry.error.message}`,
        "header",
      );
    }
  }
  for (const problem of batch.problems) warn(`${label}: ${problem}`);
  return { label, file, index, payload, controlId: batch.controlId, batch };
}

/**
 * Splits a file's bytes as {@linkcode splitMessages} does, except that a
 * file whose first non-blank line starts with `FHS` or `BHS` is one
 * payload, its segments ended by CR and blank lines dropped (`--batch`).
 */
function splitKeepingBatches(
  bytes: Uint8Array,
  file: string,
  warn: (line: string) => void,
): Uint8Array[] {
  let data = bytes;
  if (BOM.every((byte, i) => data[i] === byte)) data = data.subarray(3);
  if (data[0] === START_BLOCK) return splitMessages(data, file, warn);
  const lines = splitLines(data).filter((line) => !isBlank(line));
  if (lines.length === 0 || !startsWithAny(lines[0], ["FHS", "BHS"])) {
    return splitMessages(data, file, warn);
  }
  return [joinSegments(lines)];
}

/**
 * Splits a file's bytes into the payloads to send (see the module doc).
 *
 * @param file The file's name, for messages.
 * @param warn Called with each warning line.
 * @returns The payloads, in order; none for a blank file.
 * @throws {InputError} On a segment outside a message or a broken frame.
 */
export function splitMessages(
  bytes: Uint8Array,
  file = "input",
  warn: (line: string) => void = () => {},
): Uint8Array[] {
  let data = bytes;
  if (BOM.every((byte, i) => data[i] === byte)) data = data.subarray(3);
  if (data[0] === START_BLOCK) {
    // A frame is one message; only HL7 line endings are normalised.
    return splitFrames(data, file).map((frame) =>
      isHl7(frame) && !isWide(frame) ? joinSegments(splitLines(frame)) : frame
    );
  }
  // UTF-16 or UTF-32: one message, its bytes as they are.
  if (isWide(data)) return [data];
  const lines = splitLines(data);
  const first = lines.find((line) => !isBlank(line));
  if (first === undefined) return [];
  if (!startsWithAny(first, ["MSH", "FHS", "BHS"])) {
    return [trimPayload(data)];
  }
  const messages: Uint8Array[][] = [];
  let current: Uint8Array[] | undefined;
  /** Messages since the last BHS (or the start), for BTS-1. */
  let inBatch = 0;
  for (const [i, line] of lines.entries()) {
    if (isBlank(line)) {
      current = undefined;
      continue;
    }
    if (startsWithAny(line, ["MSH"])) {
      current = [line];
      messages.push(current);
      inBatch++;
      continue;
    }
    if (startsWithAny(line, ["FHS", "BHS", "BTS", "FTS"])) {
      current = undefined;
      const name = ascii(line.subarray(0, 3));
      if (name === "BHS") inBatch = 0;
      if (name === "BTS") {
        const stated = field(line, 1);
        if (/^\d+$/.test(stated) && Number(stated) !== inBatch) {
          warn(
            `${file}: line ${
              i + 1
            }: BTS-1 says ${stated} messages; the batch holds ${inBatch}`,
          );
        }
      }
      continue;
    }
    if (current === undefined) {
      const name = JSON.stringify(ascii(line.subarray(0, 3)));
      throw new InputError(
        `${file}: line ${
          i + 1
        }: Segment ${name} is outside a message (a message starts with an MSH segment; a blank line ends it)`,
        "segment",
      );
    }
    current.push(line);
  }
  return messages.map(joinSegments);
}

/**
 * Prepares one message's bytes for sending, as `send` does for a file that
 * holds one: drops a UTF-8 BOM and an MLLP frame, trims trailing blank
 * lines, and for HL7 ends every segment with CR.
 */
export function normalize(bytes: Uint8Array): Uint8Array {
  let data = bytes;
  if (BOM.every((byte, i) => data[i] === byte)) data = data.subarray(3);
  if (
    data[0] === START_BLOCK && data.length >= 3 &&
    data[data.length - 2] === END_BLOCK && data[data.length - 1] === CR
  ) {
    data = data.subarray(1, data.length - 2);
  }
  if (isWide(data)) return data;
  if (!isHl7(data)) return trimPayload(data);
  const lines = splitLines(data);
  while (lines.length > 0 && isBlank(lines[lines.length - 1])) lines.pop();
  return lines.length === 0 ? new Uint8Array(0) : joinSegments(lines);
}

/** The frames of an MLLP capture: VT payload FS [CR], repeated. */
function splitFrames(data: Uint8Array, file: string): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let i = 0;
  while (i < data.length) {
    const byte = data[i];
    if (byte === CR || byte === LF || byte === 0x20 || byte === 0x09) {
      i++;
      continue;
    }
    if (byte !== START_BLOCK) {
      throw new InputError(
        `${file}: Byte ${i} is outside an MLLP frame (the file starts with VT, so it is read as MLLP frames)`,
        "framing",
      );
    }
    const end = data.indexOf(END_BLOCK, i + 1);
    const nested = data.indexOf(START_BLOCK, i + 1);
    if (end === -1) {
      throw new InputError(
        `${file}: The MLLP frame at byte ${i} has no end block (FS)`,
        "framing",
      );
    }
    if (nested !== -1 && nested < end) {
      throw new InputError(
        `${file}: The MLLP frame at byte ${i} holds a start block (VT) at byte ${nested}`,
        "framing",
      );
    }
    frames.push(data.subarray(i + 1, end));
    i = end + 1;
    if (data[i] === CR) i++;
  }
  return frames;
}

/** Lines split at CR, LF or CRLF (views of `data`). */
function splitLines(data: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= data.length; i++) {
    if (i < data.length && data[i] !== CR && data[i] !== LF) continue;
    lines.push(data.subarray(start, i));
    if (data[i] === CR && data[i + 1] === LF) i++;
    start = i + 1;
  }
  // The line after a final line break is empty, not a line.
  if (lines.length > 1 && lines[lines.length - 1].length === 0) lines.pop();
  return lines;
}

/** Segments ended by CR, trailing blank ones dropped. */
function joinSegments(lines: Uint8Array[]): Uint8Array {
  let count = lines.length;
  while (count > 0 && isBlank(lines[count - 1])) count--;
  const kept = lines.slice(0, count);
  const out = new Uint8Array(kept.reduce((n, line) => n + line.length + 1, 0));
  let offset = 0;
  for (const line of kept) {
    out.set(line, offset);
    offset += line.length;
    out[offset++] = CR;
  }
  return out;
}

/** A payload that is not HL7: its bytes, without trailing blank lines. */
function trimPayload(data: Uint8Array): Uint8Array {
  const lines = splitLines(data);
  while (lines.length > 0 && isBlank(lines[lines.length - 1])) lines.pop();
  if (lines.length === 0) return new Uint8Array(0);
  const last = lines[lines.length - 1];
  return data.subarray(0, last.byteOffset - data.byteOffset + last.length);
}

/** Whether bytes are an HL7 message in UTF-16 or UTF-32. */
function isWide(data: Uint8Array): boolean {
  return isHl7(data) && !startsWithAny(data, ["MSH"]);
}

function isBlank(line: Uint8Array): boolean {
  return line.every((byte) => byte === 0x20 || byte === 0x09);
}

function startsWithAny(line: Uint8Array, names: string[]): boolean {
  return names.some((name) =>
    line.length >= 3 && line[0] === name.charCodeAt(0) &&
    line[1] === name.charCodeAt(1) && line[2] === name.charCodeAt(2)
  );
}

/** Field `n` of a segment, split at the separator that follows its name. */
function field(line: Uint8Array, n: number): string {
  const text = ascii(line);
  if (text.length < 4) return "";
  return (text.slice(4).split(text[3])[n - 1] ?? "").trim();
}

function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes.subarray(0, 256));
}
