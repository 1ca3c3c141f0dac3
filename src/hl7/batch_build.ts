/**
 * Building HL7 v2 batches from messages ({@linkcode buildBatch}): BHS, the
 * messages, BTS, and with a batch file FHS and FTS around them; with the
 * header segments and message terminators that response batches are built
 * of too. `@x/mllp/batch` re-exports it.
 *
 * @example Build a batch of two messages
 * ```ts
 * import { buildBatch } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ], { controlId: "B1" });
 * assertEquals(batch.batches[0].messageCount, 2);
 * assertEquals(batch.text.split("\r").at(-2), "BTS|2");
 * ```
 *
 * @module
 */

import { type BatchMessage, concat, readBatch } from "./batch_read.ts";
import { formatTimestamp, newControlId } from "./fields.ts";
import { DEFAULT_SEPARATORS, type Hl7Separators } from "./header.ts";
import { type Message, readMessage } from "./message.ts";
import { encodeText } from "./text.ts";

const CR = 0x0d;
const LF = 0x0a;

/**
 * Options for {@linkcode buildBatch}.
 *
 * @example A batch file with a chosen control id and name
 * ```ts
 * import { buildBatch } from "@x/mllp/batch";
 * import type { BuildBatchOptions } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const options: BuildBatchOptions = {
 *   file: true,
 *   controlId: "B1",
 *   name: "ADT",
 *   sendingApplication: "Feed",
 * };
 * const batch = buildBatch(["MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5"], options);
 * const header = batch.batches[0].header;
 * assertEquals([header.controlId, header.name, header.sendingApplication], [
 *   "B1",
 *   "ADT",
 *   "Feed",
 * ]);
 * assertEquals([batch.file?.receivingApplication, batch.batchCount], ["C", 1]);
 * ```
 */
export interface BuildBatchOptions {
  /**
   * Wrap the batch in a batch file: FHS before the BHS, FTS after the BTS.
   *
   * @default {false}
   */
  file?: boolean;
  /**
   * BHS-11 Batch Control ID (FHS-11 gets its own fresh id).
   *
   * @default {a fresh unique id}
   */
  controlId?: string;
  /** BHS-12 (and FHS-12): the control id of the batch this one answers. */
  referenceControlId?: string;
  /** BHS-9 (and FHS-9) Name/ID/Type. */
  name?: string;
  /** BHS-10 (and FHS-10) Comment. */
  comment?: string;
  /**
   * BHS-3 and FHS-3 Sending Application.
   *
   * @default {the first message's MSH-3}
   */
  sendingApplication?: string;
  /**
   * BHS-4 and FHS-4 Sending Facility.
   *
   * @default {the first message's MSH-4}
   */
  sendingFacility?: string;
  /**
   * BHS-5 and FHS-5 Receiving Application.
   *
   * @default {the first message's MSH-5}
   */
  receivingApplication?: string;
  /**
   * BHS-6 and FHS-6 Receiving Facility.
   *
   * @default {the first message's MSH-6}
   */
  receivingFacility?: string;
  /**
   * BHS-7 and FHS-7 Creation Date/Time.
   *
   * @default {the current time}
   */
  dateTime?: Date;
}

/** The fields of one FHS or BHS to write. */
export interface HeaderFields {
  sendingApplication: string;
  sendingFacility: string;
  receivingApplication: string;
  receivingFacility: string;
  dateTime: string;
  name: string;
  comment: string;
  controlId: string;
  referenceControlId: string;
}

/** An FHS or BHS segment, ended by CR; empty trailing fields are left out. */
export function headerSegment(
  tag: "FHS" | "BHS",
  separators: Hl7Separators,
  encodingCharacters: string,
  h: HeaderFields,
): string {
  const fields = [
    tag,
    encodingCharacters,
    h.sendingApplication,
    h.sendingFacility,
    h.receivingApplication,
    h.receivingFacility,
    h.dateTime,
    "",
    h.name,
    h.comment,
    h.controlId,
    h.referenceControlId,
  ];
  while (fields.length > 2 && fields[fields.length - 1] === "") fields.pop();
  return fields.join(separators.field) + "\r";
}

/** A message's bytes, ended by a segment terminator. */
export function terminated(raw: Uint8Array): Uint8Array {
  const last = raw[raw.length - 1];
  return last === CR || last === LF ? raw : concat([raw, new Uint8Array([CR])]);
}

/**
 * Builds a batch from messages: BHS, the messages (each in its own
 * charset, as {@linkcode readMessage} encodes it), BTS with their count;
 * with `file`, FHS and FTS around them. The batch's separators are the
 * first message's.
 *
 * @param messages The messages, as text, bytes or read messages.
 * @param options Control ids, names, and whether to make a batch file.
 * @returns The batch, read back from the bytes built.
 * @throws {HeaderError} If a message's MSH cannot be read.
 * @throws {TypeError} If a message is not HL7 (or is itself a batch), or
 *   a header field holds a separator or line break.
 *
 * @example A batch file of one message
 * ```ts
 * import { buildBatch } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = buildBatch(
 *   ["MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5\rPID|1"],
 *   { file: true, controlId: "B1", dateTime: new Date(2024, 0, 1) },
 * );
 * const segments = batch.text.split("\r");
 * assertEquals(segments[0].slice(0, 3), "FHS");
 * assertEquals(segments[1].startsWith("BHS|^~\\&|S|SF|R|RF|2024010100"), true);
 * assertEquals(segments[1].endsWith("||||B1"), true);
 * assertEquals(segments.slice(-3), ["BTS|1", "FTS|1", ""]);
 * ```
 */
export function buildBatch(
  messages: readonly (string | Uint8Array | Message)[],
  options: BuildBatchOptions = {},
): BatchMessage {
  const read = messages.map((payload, i) => {
    const message = typeof payload === "string" ||
        payload instanceof Uint8Array
      ? readMessage(payload)
      : payload;
    if (message.kind !== "hl7") {
      throw new TypeError(
        `Cannot build batch: message ${
          i + 1
        } is not HL7 (kind "${message.kind}")`,
      );
    }
    return message;
  });
  const first = read[0]?.header;
  const separators = first?.separators ?? DEFAULT_SEPARATORS;
  const encodingCharacters = first?.encodingCharacters ?? "^~\\&";
  const fields: HeaderFields = {
    sendingApplication: options.sendingApplication ??
      first?.sendingApplication ?? "",
    sendingFacility: options.sendingFacility ?? first?.sendingFacility ?? "",
    receivingApplication: options.receivingApplication ??
      first?.receivingApplication ?? "",
    receivingFacility: options.receivingFacility ?? first?.receivingFacility ??
      "",
    dateTime: formatTimestamp(options.dateTime ?? new Date()),
    name: options.name ?? "",
    comment: options.comment ?? "",
    controlId: options.controlId ?? newControlId(),
    referenceControlId: options.referenceControlId ?? "",
  };
  checkFields(fields, separators);
  const encoding = read[0]?.encoding ?? "utf-8";
  const head = (tag: "FHS" | "BHS", controlId: string) =>
    encodeText(
      headerSegment(tag, separators, encodingCharacters, {
        ...fields,
        controlId,
      }),
      encoding,
    );
  const parts: Uint8Array[] = [];
  if (options.file) parts.push(head("FHS", newControlId()));
  parts.push(head("BHS", fields.controlId));
  for (const message of read) parts.push(terminated(message.raw));
  parts.push(encodeText(`BTS${separators.field}${read.length}\r`));
  if (options.file) parts.push(encodeText(`FTS${separators.field}1\r`));
  return readBatch(concat(parts));
}

function checkFields(fields: HeaderFields, separators: Hl7Separators) {
  for (const [name, value] of Object.entries(fields)) {
    if (
      value.includes(separators.field) || value.includes("\r") ||
      value.includes("\n")
    ) {
      throw new TypeError(
        `Cannot build batch: ${name} "${value}" holds a field separator or line break`,
      );
    }
  }
}
