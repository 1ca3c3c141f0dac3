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
 * - Any other file is one payload, sent as it is (trailing blank lines
 *   removed).
 *
 * HL7 segments may be separated by CR, LF or CRLF; they are sent ended by
 * CR. A UTF-8 byte order mark is dropped.
 *
 * @module
 */

import { reasonOf } from "../dispatch/_util.ts";
import { type BatchMessage, isBatch, readBatch } from "../hl7/batch.ts";
import { HeaderError } from "../hl7/errors.ts";
import { END_BLOCK, START_BLOCK } from "../wire/framer.ts";
import { isHl7, readHeader } from "../hl7/message.ts";

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
}

/** A problem with the input: printed as `error: MESSAGE`, exit 2. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

/** The file name endings read from a directory (any case). */
export const MESSAGE_EXTENSIONS: readonly string[] = [".hl7", ".er7", ".txt"];

const CR = 0x0d;
const LF = 0x0a;
const BOM = [0xef, 0xbb, 0xbf];

/**
 * Reads every path (`-` is stdin) and splits it into messages, checking
 * each HL7 header, before anything is sent.
 *
 * @param warn Called with each warning line (without `warning: `).
 * @param options Whether to keep batches whole.
 * @throws {InputError} On an unreadable file, an empty one, a bad header
 *   or a segment outside a message.
 */
export async function readInputs(
  paths: readonly string[],
  stdin: () => ReadableStream<Uint8Array>,
  warn: (line: string) => void,
  options: ReadInputsOptions = {},
): Promise<Outgoing[]> {
  const messages: Outgoing[] = [];
  for (const path of paths) {
    if (path === "-") {
      let bytes: Uint8Array;
      try {
        bytes = await new Response(stdin()).bytes();
      } catch (error) {
        throw new InputError(`<stdin>: Cannot read file: ${reasonOf(error)}`);
      }
      messages.push(...toMessages("<stdin>", bytes, warn, options));
      continue;
    }
    let files = [path];
    try {
      if ((await Deno.stat(path)).isDirectory) {
        files = await listDirectory(path);
        if (files.length === 0) {
          throw new InputError(
            `${path}: No message files in the directory (${
              MESSAGE_EXTENSIONS.join(", ")
            })`,
          );
        }
      }
    } catch (error) {
      if (error instanceof InputError) throw error;
      // Reading says why (not found, permission denied).
    }
    for (const file of files) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(file);
      } catch (error) {
        throw new InputError(`${file}: Cannot read file: ${reasonOf(error)}`);
      }
      messages.push(...toMessages(file, bytes, warn, options));
    }
  }
  return messages;
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

/** Splits one file and reads each HL7 message's control id. */
function toMessages(
  file: string,
  bytes: Uint8Array,
  warn: (line: string) => void,
  options: ReadInputsOptions,
): Outgoing[] {
  const payloads = options.batch
    ? splitKeepingBatches(bytes, file, warn)
    : splitMessages(bytes, file, warn);
  if (payloads.length === 0) throw new InputError(`${file}: Message is empty`);
  return payloads.map((payload, i) => {
    const label = payloads.length === 1 ? file : `${file}#${i + 1}`;
    if (payload.length === 0) {
      throw new InputError(`${label}: Message is empty`);
    }
    for (const [byte, name] of [[START_BLOCK, "VT"], [END_BLOCK, "FS"]]) {
      const at = payload.indexOf(byte as number);
      if (at !== -1) {
        throw new InputError(
          `${label}: Contains a ${name} byte at offset ${at}, which would break the MLLP framing`,
        );
      }
    }
    if (options.batch && isBatch(payload)) {
      return batchOutgoing(label, file, i + 1, payload, warn);
    }
    let controlId: string | undefined;
    if (isHl7(payload)) {
      try {
        controlId = readHeader(payload).controlId;
      } catch (error) {
        if (!(error instanceof HeaderError)) throw error;
        throw new InputError(`${label}: ${error.message}`);
      }
    }
    return { label, file, index: i + 1, payload, controlId };
  });
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
    throw new InputError(`${label}: The batch holds no message`);
  }
  for (const [i, entry] of batch.entries.entries()) {
    if (entry.error) {
      throw new InputError(
        `${label}: message ${i + 1}: ${entry.error.message}`,
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
      isHl7(frame) ? joinSegments(splitLines(frame)) : frame
    );
  }
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
      );
    }
    const end = data.indexOf(END_BLOCK, i + 1);
    const nested = data.indexOf(START_BLOCK, i + 1);
    if (end === -1) {
      throw new InputError(
        `${file}: The MLLP frame at byte ${i} has no end block (FS)`,
      );
    }
    if (nested !== -1 && nested < end) {
      throw new InputError(
        `${file}: The MLLP frame at byte ${i} holds a start block (VT) at byte ${nested}`,
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
