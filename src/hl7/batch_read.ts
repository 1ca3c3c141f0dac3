/**
 * Reading HL7 v2 batches (v2.5 section 2.10.3): a payload of the shape
 * `[FHS] { BHS { MSH ... } BTS } [FTS]`, read into a
 * {@linkcode BatchMessage}. Each message of a batch is an `Hl7Message`
 * read exactly as a framed message would be, with its own MSH-18 charset.
 * `@x/mllp/batch` re-exports it.
 *
 * @example Read a batch
 * ```ts
 * import { readBatch } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = readBatch(
 *   "BHS|^~\\&|S|SF|R|RF|20240101||||B1\r" +
 *     "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5\rPID|1\r" +
 *     "BTS|1\r",
 * );
 * assertEquals(batch.controlId, "B1");
 * assertEquals(batch.messages.map((m) => m.header.controlId), ["M1"]);
 * assertEquals(batch.problems, []);
 * ```
 *
 * @module
 */

import type { CharsetOptions } from "./charset.ts";
import { HeaderError } from "./errors.ts";
import { checkedSeparators, type Hl7Separators, readHeader } from "./header.ts";
import { type Hl7Message, readHl7 } from "./hl7_message.ts";
import { charsetEncoding, decodeText, encodeText } from "./text.ts";

/**
 * The fields of an FHS or BHS segment. Absent fields are `""`.
 *
 * @example Read the BHS of a response batch
 * ```ts
 * import { readBatch } from "@x/mllp/batch";
 * import type { BatchHeader } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = readBatch(
 *   "BHS|^~\\&|Lab|LabFac|EHR|Hosp|20240101||||R7|B6\rBTS|0\r",
 * );
 * const header: BatchHeader = batch.batches[0].header;
 * assertEquals([header.segment, header.sendingApplication], ["BHS", "Lab"]);
 * assertEquals([header.controlId, header.referenceControlId], ["R7", "B6"]);
 * ```
 */
export interface BatchHeader {
  /** Which segment this is: the file header or a batch header. */
  segment: "FHS" | "BHS";
  /** FHS-1/BHS-1 and FHS-2/BHS-2, split into named characters. */
  separators: Hl7Separators;
  /** FHS-2/BHS-2 as it appears, such as `^~\&`. */
  encodingCharacters: string;
  /** FHS-3/BHS-3 Sending Application. */
  sendingApplication: string;
  /** FHS-4/BHS-4 Sending Facility. */
  sendingFacility: string;
  /** FHS-5/BHS-5 Receiving Application. */
  receivingApplication: string;
  /** FHS-6/BHS-6 Receiving Facility. */
  receivingFacility: string;
  /** FHS-7/BHS-7 Creation Date/Time. */
  dateTime: string;
  /** FHS-8/BHS-8 Security. */
  security: string;
  /** FHS-9 File Name/ID, BHS-9 Batch Name/ID/Type. */
  name: string;
  /** FHS-10/BHS-10 Comment. */
  comment: string;
  /** FHS-11 File Control ID, BHS-11 Batch Control ID. */
  controlId: string;
  /** FHS-12/BHS-12 Reference Control ID: in a response, the original's id. */
  referenceControlId: string;
}

/**
 * One message of a batch, as found between its MSH and the next one.
 *
 * @example Find the messages whose MSH cannot be read
 * ```ts
 * import { readBatch } from "@x/mllp/batch";
 * import type { BatchEntry } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = readBatch(
 *   "BHS|^~\\&|S|SF|R|RF|20240101\r" +
 *     "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5\r" +
 *     "MSH|^~|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5\r" +
 *     "BTS|2\r",
 * );
 * const unreadable = batch.entries.filter((e: BatchEntry) => !e.message);
 * assertEquals(unreadable.map((e) => e.controlId), ["M2"]);
 * assertEquals(unreadable[0].error?.name, "HeaderError");
 * ```
 */
export interface BatchEntry {
  /** The message's bytes, exactly as in the batch. */
  raw: Uint8Array;
  /** The message, or `undefined` when its MSH cannot be read. */
  message: Hl7Message | undefined;
  /** Why its MSH cannot be read, when it cannot. */
  error: HeaderError | undefined;
  /**
   * MSH-10; for a message whose MSH cannot be read, the tenth field of its
   * first segment split at its fourth character (a best guess, maybe `""`).
   */
  controlId: string;
}

/**
 * One batch of a payload: a BHS, its messages, and its BTS.
 *
 * @example Count the messages of each batch in a batch file
 * ```ts
 * import { readBatch } from "@x/mllp/batch";
 * import type { BatchGroup } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const msh = (id: string) => `MSH|^~\\&|S|SF|R|RF|1||ADT^A04|${id}|P|2.5\r`;
 * const file = readBatch(
 *   "FHS|^~\\&|S\r" +
 *     "BHS|^~\\&|S||||||||B1\r" + msh("M1") + "BTS|1\r" +
 *     "BHS|^~\\&|S||||||||B2\r" + msh("M2") + msh("M3") + "BTS|2\r" +
 *     "FTS|2\r",
 * );
 * const sizes = file.batches.map((group: BatchGroup) =>
 *   `${group.header.controlId}: ${group.entries.length}/${group.messageCount}`
 * );
 * assertEquals(sizes, ["B1: 1/1", "B2: 2/2"]);
 * ```
 */
export interface BatchGroup {
  /**
   * The BHS; for messages that follow an FHS without a BHS (noted in
   * {@linkcode BatchMessage.problems}), the FHS.
   */
  header: BatchHeader;
  /** The messages, in order. */
  entries: readonly BatchEntry[];
  /** BTS-1 Batch Message Count, or `undefined` without a BTS or a count. */
  messageCount: number | undefined;
}

const FHS = 0x464853; // "FHS"
const BHS = 0x424853;
const MSH = 0x4d5348;
const BTS = 0x425453;
const FTS = 0x465453;
const CR = 0x0d;
const LF = 0x0a;
const NO_CHARSET_OPTIONS: CharsetOptions = {};

function tagOf(bytes: Uint8Array, at: number): number {
  return at + 3 <= bytes.length
    ? (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2]
    : -1;
}

/**
 * Tells whether a payload is an HL7 batch: it starts with `FHS` or `BHS`.
 *
 * @param payload The frame payload.
 * @returns Whether it starts with `FHS` or `BHS`.
 *
 * @example Check payloads
 * ```ts
 * import { isBatch } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isBatch("BHS|^~\\&|A"), true);
 * assertEquals(isBatch("MSH|^~\\&|A"), false);
 * ```
 */
export function isBatch(payload: Uint8Array | string): boolean {
  if (typeof payload === "string") {
    return payload.startsWith("FHS") || payload.startsWith("BHS");
  }
  const tag = tagOf(payload, 0);
  return tag === FHS || tag === BHS;
}

/**
 * An HL7 batch (or batch file): a payload that starts with `FHS` or `BHS`.
 * Read one with `readMessage` (or {@linkcode readBatch}), build one with
 * `buildBatch`.
 *
 * Reading is forgiving: a missing BTS or FTS, counts that do not match,
 * and segments outside any message are noted in
 * {@linkcode BatchMessage.problems} rather than thrown. Only an FHS or BHS
 * that cannot be read makes the whole payload unreadable.
 *
 * @example Read a batch file
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = readMessage(
 *   "FHS|^~\\&|S|SF|R|RF|20240101||||F1\r" +
 *     "BHS|^~\\&|S|SF|R|RF|20240101||||B1\r" +
 *     "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5\rPID|1\r" +
 *     "BTS|2\rFTS|1\r",
 * );
 * if (batch.kind === "batch") {
 *   assertEquals(batch.file?.controlId, "F1");
 *   assertEquals(batch.controlId, "B1");
 *   assertEquals(batch.entries.length, 1);
 *   assertEquals(batch.problems, [
 *     'BTS-1 of batch "B1" counts 2 messages, the batch holds 1',
 *   ]);
 * }
 * ```
 */
export class BatchMessage {
  /** Always `"batch"`. */
  readonly kind = "batch" as const;
  /**
   * Always `undefined`: a batch has no MSH. See {@linkcode BatchMessage.file}
   * and {@linkcode BatchMessage.batches} for its FHS and BHS.
   */
  readonly header: undefined = undefined;
  /** The payload bytes, exactly as framed. */
  readonly raw: Uint8Array;
  /**
   * The encoding of the batch's own segments and of
   * {@linkcode BatchMessage.text}: the one its first message's MSH-18
   * names, UTF-8 when it names none.
   */
  readonly encoding: string;
  /** The FHS, when the payload is a batch file. */
  readonly file: BatchHeader | undefined;
  /** The batches, in order; usually one. */
  readonly batches: readonly BatchGroup[];
  /** FTS-1 File Batch Count, or `undefined` without an FTS or a count. */
  readonly batchCount: number | undefined;
  /** What does not add up: missing trailers, wrong counts, stray segments. */
  readonly problems: readonly string[];
  #text: string | undefined;

  /**
   * Constructs a batch from parts already read; use {@linkcode readBatch}
   * or {@linkcode readMessage} to read one from a payload.
   *
   * @param raw The payload bytes.
   * @param parts The parts read from them.
   */
  constructor(raw: Uint8Array, parts: BatchParts) {
    this.raw = raw;
    this.encoding = parts.encoding;
    this.file = parts.file;
    this.batches = parts.batches;
    this.batchCount = parts.batchCount;
    this.problems = parts.problems;
  }

  /** Every message of every batch, in order, readable or not. */
  get entries(): BatchEntry[] {
    return this.batches.flatMap((batch) => batch.entries);
  }

  /** The messages whose MSH can be read, in order. */
  get messages(): Hl7Message[] {
    return this.entries.flatMap((entry) => entry.message ?? []);
  }

  /** The first batch's BHS-11, or the FHS-11 when there is no BHS. */
  get controlId(): string {
    return this.batches[0]?.header.controlId ?? this.file?.controlId ?? "";
  }

  /** The separators of the first FHS or BHS. */
  get separators(): Hl7Separators {
    return (this.file ?? this.batches[0].header).separators;
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
 * What {@linkcode BatchMessage}'s constructor takes.
 *
 * @example Rebuild a batch without its problems
 * ```ts
 * import { BatchMessage, readBatch } from "@x/mllp/batch";
 * import type { BatchParts } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const read = readBatch("BHS|^~\\&|S|SF|R|RF|20240101||||B1\r");
 * assertEquals(read.problems, ['Batch "B1" has no BTS']);
 * const parts: BatchParts = { ...read, problems: [] };
 * const batch = new BatchMessage(read.raw, parts);
 * assertEquals([batch.controlId, batch.problems], ["B1", []]);
 * ```
 */
export interface BatchParts {
  /** The encoding of the batch's own segments. */
  encoding: string;
  /** The FHS, if any. */
  file: BatchHeader | undefined;
  /** The batches. */
  batches: readonly BatchGroup[];
  /** FTS-1, if any. */
  batchCount: number | undefined;
  /** What does not add up. */
  problems: readonly string[];
}

function parseHeader(segment: string, tag: "FHS" | "BHS"): BatchHeader {
  const field = segment[3] ?? "";
  const fields = segment.split(field, 12);
  const encodingCharacters = fields[1] ?? "";
  const get = (n: number) => fields[n - 1] ?? "";
  return {
    segment: tag,
    separators: checkedSeparators(
      field,
      encodingCharacters,
      (problem) => new HeaderError(`Cannot read batch: ${problem} in ${tag}`),
    ),
    encodingCharacters,
    sendingApplication: get(3),
    sendingFacility: get(4),
    receivingApplication: get(5),
    receivingFacility: get(6),
    dateTime: get(7),
    security: get(8),
    name: get(9),
    comment: get(10),
    controlId: get(11),
    referenceControlId: get(12),
  };
}

/** The first field of a trailer segment (BTS-1, FTS-1) as a count. */
function trailerCount(segment: string, separator: string): number | undefined {
  const value = (segment.split(separator)[1] ?? "").trim();
  return /^\d+$/.test(value) ? Number(value) : undefined;
}

/** MSH-10 of a message whose MSH does not read, as best it can be found. */
function guessControlId(raw: Uint8Array): string {
  let end = 0;
  while (end < raw.length && raw[end] !== CR && raw[end] !== LF) end++;
  const segment = decodeText(raw.subarray(0, end), "latin1");
  const field = segment[3];
  if (!field) return "";
  // fields[0] is "MSH", fields[9] is MSH-10.
  return segment.split(field)[9] ?? "";
}

/**
 * Reads a batch payload (one that starts with `FHS` or `BHS`).
 * `readMessage` calls it for such payloads.
 *
 * @param payload The payload, without MLLP framing. Text is encoded
 *   message by message, each in the charset its MSH-18 names.
 * @returns The batch.
 * @throws {HeaderError} If the payload does not start with `FHS` or `BHS`,
 *   or an FHS or BHS cannot be read.
 *
 * @example A bare batch without FHS
 * ```ts
 * import { readBatch } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = readBatch(
 *   "BHS|^~\\&|S|SF|R|RF|20240101||||B7\r" +
 *     "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5\rBTS|1\r",
 * );
 * assertEquals(batch.file, undefined);
 * assertEquals(batch.batches[0].messageCount, 1);
 * assertEquals(batch.messages[0].header.controlId, "M1");
 * ```
 */
export function readBatch(payload: Uint8Array | string): BatchMessage {
  const raw = typeof payload === "string" ? encodeBatchText(payload) : payload;
  if (!isBatch(raw)) {
    throw new HeaderError(
      "Cannot read batch: payload does not start with FHS or BHS",
    );
  }
  const segments = splitSegments(raw);
  // The batch's own segments are read in its first message's charset.
  let encoding = "utf-8";
  const first = segments.find((s) => s.tag === MSH);
  if (first) {
    try {
      encoding = charsetEncoding(
        readHeader(raw.subarray(first.start)).characterSet,
      ) ?? "utf-8";
    } catch {
      // An unreadable first MSH: UTF-8.
    }
  }
  const text = (s: Segment) =>
    decodeText(raw.subarray(s.start, s.end), encoding);
  const problems: string[] = [];
  const batches: BatchGroup[] = [];
  let file: BatchHeader | undefined;
  let batchCount: number | undefined;
  let sawFts = false;
  let group: { header: BatchHeader; entries: BatchEntry[] } | undefined;
  let messageStart = -1;
  const describe = (header: BatchHeader) =>
    header.controlId ? `"${header.controlId}"` : `${batches.length + 1}`;

  const endMessage = (at: number) => {
    if (messageStart < 0 || !group) return;
    const bytes = raw.subarray(messageStart, at);
    messageStart = -1;
    try {
      const message = readHl7(bytes, NO_CHARSET_OPTIONS);
      group.entries.push({
        raw: bytes,
        message,
        error: undefined,
        controlId: message.header.controlId,
      });
    } catch (error) {
      if (!(error instanceof HeaderError)) throw error;
      group.entries.push({
        raw: bytes,
        message: undefined,
        error,
        controlId: guessControlId(bytes),
      });
    }
  };
  const endGroup = (count: number | undefined) => {
    if (!group) return;
    if (count !== undefined && count !== group.entries.length) {
      problems.push(
        `BTS-1 of batch ${
          describe(group.header)
        } counts ${count} messages, the batch holds ${group.entries.length}`,
      );
    }
    batches.push({ ...group, messageCount: count });
    group = undefined;
  };

  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    switch (segment.tag) {
      case FHS:
        if (i === 0) file = parseHeader(text(segment), "FHS");
        else problems.push("An FHS after the start of the payload is ignored");
        break;
      case BHS:
        endMessage(segment.start);
        if (group) {
          problems.push(`Batch ${describe(group.header)} has no BTS`);
          endGroup(undefined);
        }
        group = { header: parseHeader(text(segment), "BHS"), entries: [] };
        break;
      case MSH:
        endMessage(segment.start);
        if (!group) {
          // Only after an FHS (a payload starts with FHS or BHS).
          problems.push(
            "Messages follow the FHS without a BHS: read as one batch",
          );
          group = { header: file!, entries: [] };
        }
        messageStart = segment.start;
        break;
      case BTS:
        endMessage(segment.start);
        if (group) {
          endGroup(trailerCount(text(segment), group.header.separators.field));
        } else problems.push("A BTS without its BHS is ignored");
        break;
      case FTS: {
        endMessage(segment.start);
        if (group) {
          problems.push(`Batch ${describe(group.header)} has no BTS`);
          endGroup(undefined);
        }
        sawFts = true;
        const separator = (file ?? batches[0]?.header)?.separators.field ?? "|";
        batchCount = trailerCount(text(segment), separator);
        break;
      }
      default:
        if (messageStart < 0) {
          problems.push(
            `A segment outside any message is ignored: "${
              text(segment).slice(0, 3)
            }"`,
          );
        }
    }
  }
  endMessage(raw.length);
  if (group) {
    problems.push(`Batch ${describe(group.header)} has no BTS`);
    endGroup(undefined);
  }
  if (file && !sawFts) problems.push("The batch file has no FTS");
  if (!file && sawFts) problems.push("An FTS without an FHS");
  if (batchCount !== undefined && batchCount !== batches.length) {
    problems.push(
      `FTS-1 counts ${batchCount} batches, the file holds ${batches.length}`,
    );
  }
  if (batches.length === 0) {
    // An FHS and FTS around nothing: keep the FHS as the (empty) batch.
    batches.push({ header: file!, entries: [], messageCount: undefined });
  }
  return new BatchMessage(raw, {
    encoding,
    file,
    batches,
    batchCount,
    problems,
  });
}

interface Segment {
  tag: number;
  start: number;
  end: number;
}

/** The non-empty segments of a payload, ended by CR, LF or CR LF. */
function splitSegments(raw: Uint8Array): Segment[] {
  const segments: Segment[] = [];
  let start = 0;
  for (let i = 0; i <= raw.length; i++) {
    if (i === raw.length || raw[i] === CR || raw[i] === LF) {
      if (i > start) segments.push({ tag: tagOf(raw, start), start, end: i });
      start = i + 1;
    }
  }
  return segments;
}

/**
 * Encodes batch text: each message in the charset its MSH-18 names, the
 * batch's own segments in UTF-8.
 */
function encodeBatchText(text: string): Uint8Array {
  const parts: Uint8Array[] = [];
  // Split before every FHS, BHS, MSH, BTS and FTS segment.
  const pieces = text.split(/(?<=^|[\r\n])(?=(?:FHS|BHS|MSH|BTS|FTS))/);
  for (const piece of pieces) {
    if (piece.startsWith("MSH")) {
      try {
        const encoding = charsetEncoding(readHeader(piece).characterSet) ??
          "utf-8";
        parts.push(encodeText(piece, encoding));
        continue;
      } catch {
        // Unreadable: UTF-8, as below.
      }
    }
    parts.push(encodeText(piece));
  }
  return concat(parts);
}

/** The bytes of the parts, one after the other. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
