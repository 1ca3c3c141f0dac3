/**
 * Response batches (HL7 v2.5 section 2.10.3): the batch of ACKs that
 * answers a batch ({@linkcode buildBatchResponse}, what a receiver sends),
 * and the reading of a reply to a batch into one result per message
 * ({@linkcode batchResults}, what a client does with it). `@x/mllp/batch`
 * re-exports it.
 *
 * @example Answer a batch and read the answer
 * ```ts
 * import { batchResults, buildBatch, buildBatchResponse } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const sent = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ]);
 * const response = buildBatchResponse(sent, "AE", { acks: "all" });
 * const { ok, results } = batchResults(sent, response.raw);
 * assertEquals(ok, false);
 * assertEquals(results.map((r) => r.outcome), ["error", "error"]);
 * ```
 *
 * @module
 */

import { Ack, type AckCode } from "./ack.ts";
import { type HeaderFields, headerSegment, terminated } from "./batch_build.ts";
import {
  type BatchEntry,
  type BatchHeader,
  type BatchMessage,
  concat,
  readBatch,
} from "./batch_read.ts";
import { escapeText, formatTimestamp, newControlId } from "./fields.ts";
import type { Hl7Separators } from "./header.ts";
import { type Message, readMessage } from "./message.ts";
import { encodeText } from "./text.ts";

/**
 * Which ACKs a response batch carries: only those that do not accept
 * (`"errors"`, HL7's exception mode) or one per message (`"all"`).
 *
 * @example A receiver that acknowledges every message of a batch
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import type { BatchAcks } from "@x/mllp/batch";
 * import { assertEquals } from "@std/assert";
 *
 * const batchAcks: BatchAcks = "all";
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: (m) => Ack.forMessage(m, "AA"),
 *   batchAcks,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const { results } = await client.sendBatch([
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5\r",
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|M2|P|2.5\r",
 * ]);
 * assertEquals(results.map((r) => r.ack?.code), ["AA", "AA"]);
 * ```
 */
export type BatchAcks = "errors" | "all";

/**
 * Options for {@linkcode buildBatchResponse}.
 *
 * @example One `AA` per message, with a text
 * ```ts
 * import { buildBatch, buildBatchResponse } from "@x/mllp/batch";
 * import type { BatchResponseOptions } from "@x/mllp/batch";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ]);
 * const options: BatchResponseOptions = { acks: "all", text: "Filed" };
 * const response = buildBatchResponse(batch, "AA", options);
 * const acks = response.messages.map((m) => Ack.parse(m));
 * assertEquals(acks.map((a) => `${a.messageControlId} ${a.text}`), [
 *   "M1 Filed",
 *   "M2 Filed",
 * ]);
 * ```
 */
export interface BatchResponseOptions {
  /**
   * Which ACKs the response carries. With `"errors"`, messages that are
   * not in the response were accepted.
   *
   * @default {"errors"}
   */
  acks?: BatchAcks;
  /** MSA-3 of each ACK, when `acks` is given as a code. */
  text?: string;
  /**
   * FHS-7 and BHS-7 of the response.
   *
   * @default {the current time}
   */
  dateTime?: Date;
}

/**
 * Builds the response batch that acknowledges a batch: for each of its
 * batches a BHS (BHS-3..6 the original's BHS-5, 6, 3, 4; BHS-11 a fresh
 * id; BHS-12 the original's BHS-11), the ACKs, and a BTS whose BTS-1
 * counts them; with an FHS and FTS when the original had an FHS. Each ACK
 * is encoded in its own message's charset.
 *
 * @param batch The batch to acknowledge.
 * @param acks One ACK per entry (in {@linkcode BatchMessage.entries}
 *   order, `undefined` for "accepted, build its AA"), or one code for
 *   every message. A message whose MSH cannot be read always gets `AR`.
 * @param options Which ACKs to include, MSA-3, and the time.
 * @returns The response batch.
 *
 * @example Acknowledge a batch in exception mode
 * ```ts
 * import { buildBatch, buildBatchResponse } from "@x/mllp/batch";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ], { controlId: "B1" });
 * const [m1, m2] = batch.messages;
 * const response = buildBatchResponse(batch, [
 *   Ack.forMessage(m1, "AA"),
 *   Ack.forMessage(m2, "AE", { text: "No such patient" }),
 * ]);
 * const header = response.batches[0].header;
 * assertEquals([header.sendingApplication, header.referenceControlId], ["R", "B1"]);
 * assertEquals(response.messages.length, 1);
 * assertEquals(response.batches[0].messageCount, 1);
 * assertEquals(Ack.parse(response.messages[0]).code, "AE");
 * ```
 */
export function buildBatchResponse(
  batch: BatchMessage,
  acks: readonly (Ack | undefined)[] | AckCode,
  options: BatchResponseOptions = {},
): BatchMessage {
  const include = options.acks ?? "errors";
  const dateTime = formatTimestamp(options.dateTime ?? new Date());
  const encoding = batch.encoding;
  const parts: Uint8Array[] = [];
  const swapped = (h: BatchHeader): HeaderFields => ({
    sendingApplication: h.receivingApplication,
    sendingFacility: h.receivingFacility,
    receivingApplication: h.sendingApplication,
    receivingFacility: h.sendingFacility,
    dateTime,
    name: h.name,
    comment: "",
    controlId: newControlId(),
    referenceControlId: h.controlId,
  });
  const file = batch.file;
  if (file) {
    parts.push(encodeText(
      headerSegment("FHS", file.separators, file.encodingCharacters, {
        ...swapped(file),
        name: file.name,
      }),
      encoding,
    ));
  }
  let index = 0;
  for (const group of batch.batches) {
    const h = group.header;
    parts.push(encodeText(
      headerSegment("BHS", h.separators, h.encodingCharacters, swapped(h)),
      encoding,
    ));
    let count = 0;
    for (const entry of group.entries) {
      const given = typeof acks === "string" ? undefined : acks[index];
      index++;
      const ack = entry.message
        ? given ?? Ack.forMessage(
          entry.message,
          typeof acks === "string" ? acks : "AA",
          options.text ? { text: options.text } : {},
        )
        : unreadableAck(entry, h.separators);
      if (include === "errors" && ack.accepted) continue;
      parts.push(terminated(ack.toBytes()));
      count++;
    }
    parts.push(encodeText(`BTS${h.separators.field}${count}\r`));
  }
  if (file) {
    parts.push(
      encodeText(`FTS${file.separators.field}${batch.batches.length}\r`),
    );
  }
  return readBatch(concat(parts));
}

/**
 * The `AR` for a message of a batch whose MSH cannot be read: MSA-2 is its
 * control id as best it can be found, so the sender can tell which.
 */
function unreadableAck(entry: BatchEntry, separators: Hl7Separators): Ack {
  const f = separators.field;
  const reason = entry.error?.message ?? "Cannot read message";
  const controlId = entry.controlId.replace(/[\r\n]/g, "");
  const hl7 = [
    "MSH",
    separators.component + separators.repetition + separators.escape +
    separators.subcomponent + separators.truncation,
    "",
    "",
    "",
    "",
    formatTimestamp(new Date()),
    "",
    "ACK",
    newControlId(),
    "P",
    "2.5",
  ].join(f) +
    `\rMSA${f}AR${f}${escapeText(controlId, separators)}${f}${
      escapeText(reason, separators)
    }\r`;
  return Ack.parse(hl7);
}

/**
 * What became of one message of a batch sent.
 *
 * @example Pick the messages to send again
 * ```ts
 * import { batchResults, buildBatch, buildBatchResponse } from "@x/mllp/batch";
 * import type { BatchItemResult } from "@x/mllp/batch";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * function retry(item: BatchItemResult): boolean {
 *   switch (item.outcome) {
 *     case "accept":
 *     case "reject":
 *       return false;
 *     case "error":
 *     case "unknown":
 *       return true;
 *   }
 * }
 * const sent = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ]);
 * const reply = buildBatchResponse(sent, [
 *   undefined,
 *   Ack.forMessage(sent.messages[1], "AE"),
 * ]).raw;
 * const { results } = batchResults(sent, reply);
 * assertEquals(results.filter(retry).map((r) => r.controlId), ["M2"]);
 * ```
 */
export interface BatchItemResult {
  /** The message's MSH-10. */
  controlId: string;
  /**
   * `"accept"` (`AA`/`CA`, or no ACK in a response batch: accepted by
   * exception), `"error"` (`AE`/`CE`), `"reject"` (`AR`/`CR`), or
   * `"unknown"` when the reply says nothing that can be trusted about it.
   */
  outcome: "accept" | "error" | "reject" | "unknown";
  /** The ACK that named it, or the single ACK for the whole batch. */
  ack?: Ack;
}

/**
 * The outcome of a batch sent: one result per message, in order.
 *
 * @example A single ACK that rejects the whole batch
 * ```ts
 * import { batchResults, buildBatch } from "@x/mllp/batch";
 * import type { BatchResult } from "@x/mllp/batch";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals, assertInstanceOf } from "@std/assert";
 *
 * const sent = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ], { controlId: "B1" });
 * const result: BatchResult = batchResults(
 *   sent,
 *   "MSH|^~\\&|R|RF|S|SF|20240101||ACK|A1|P|2.5\rMSA|AR|B1|No batches\r",
 * );
 * assertInstanceOf(result.response, Ack);
 * assertEquals(result.ok, false);
 * assertEquals(result.results.map((r) => r.outcome), ["reject", "reject"]);
 * ```
 */
export interface BatchResult {
  /** Whether every message was accepted. */
  ok: boolean;
  /** One result per message of the batch sent, in its order. */
  results: BatchItemResult[];
  /** The reply payload, without framing. */
  reply: Uint8Array;
  /** The reply read as a response batch or an ACK, when it is one. */
  response: BatchMessage | Ack | undefined;
  /** Why the reply says nothing certain, when it does not. */
  problem?: string;
}

function outcomeOf(code: AckCode): BatchItemResult["outcome"] {
  return code === "AA" || code === "CA"
    ? "accept"
    : code === "AE" || code === "CE"
    ? "error"
    : "reject";
}

/**
 * Reads the reply to a batch into per-message results: a response batch
 * (messages without an ACK in it were accepted by exception), or one ACK
 * for the whole batch (MSA-2 the batch's or file's control id, or empty),
 * which applies to every message. Anything else leaves every message
 * `"unknown"`.
 *
 * @param sent The batch sent.
 * @param reply The reply payload, without framing.
 * @returns The results, in the order of the batch's entries.
 *
 * @example One error in a response batch
 * ```ts
 * import { batchResults, buildBatch, buildBatchResponse } from "@x/mllp/batch";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const sent = buildBatch([
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M1|P|2.5",
 *   "MSH|^~\\&|S|SF|R|RF|20240101||ADT^A04|M2|P|2.5",
 * ]);
 * const reply = buildBatchResponse(sent, [
 *   undefined,
 *   Ack.forMessage(sent.messages[1], "AE"),
 * ]).raw;
 * const { ok, results } = batchResults(sent, reply);
 * assertEquals(ok, false);
 * assertEquals(results.map((r) => r.outcome), ["accept", "error"]);
 * ```
 */
export function batchResults(
  sent: BatchMessage,
  reply: Uint8Array | string,
): BatchResult {
  const bytes = typeof reply === "string" ? encodeText(reply) : reply;
  const entries = sent.entries;
  const unknown = (
    problem: string,
    response?: BatchMessage | Ack,
  ): BatchResult => ({
    ok: false,
    results: entries.map((e) => ({
      controlId: e.controlId,
      outcome: "unknown",
    })),
    reply: bytes,
    response,
    problem,
  });
  let read: Message;
  try {
    read = readMessage(bytes);
  } catch (error) {
    return unknown(error instanceof Error ? error.message : String(error));
  }
  if (read.kind === "unknown") return unknown("The reply is not HL7");
  if (read.kind === "hl7") {
    let ack: Ack;
    try {
      ack = Ack.parse(read);
    } catch (error) {
      return unknown(error instanceof Error ? error.message : String(error));
    }
    const id = ack.messageControlId;
    if (id !== "" && id !== sent.controlId && id !== sent.file?.controlId) {
      return unknown(
        `The reply is an ACK for "${id}", not for batch "${sent.controlId}"`,
        ack,
      );
    }
    const outcome = outcomeOf(ack.code);
    return {
      ok: outcome === "accept",
      results: entries.map((e) => ({ controlId: e.controlId, outcome, ack })),
      reply: bytes,
      response: ack,
    };
  }
  const sentIds = new Set(sent.batches.map((b) => b.header.controlId));
  const answered = read.batches.map((b) => b.header.referenceControlId);
  const stranger = answered.find((id) => id !== "" && !sentIds.has(id));
  if (stranger !== undefined) {
    return unknown(
      `The response batch answers batch "${stranger}", not "${sent.controlId}"`,
      read,
    );
  }
  const acks = new Map<string, Ack>();
  for (const entry of read.entries) {
    if (!entry.message) continue;
    try {
      const ack = Ack.parse(entry.message);
      if (!acks.has(ack.messageControlId)) acks.set(ack.messageControlId, ack);
    } catch {
      // Not an ACK: it names no message.
    }
  }
  const results = entries.map((e): BatchItemResult => {
    const ack = acks.get(e.controlId);
    return ack
      ? { controlId: e.controlId, outcome: outcomeOf(ack.code), ack }
      : { controlId: e.controlId, outcome: "accept" };
  });
  return {
    ok: results.every((r) => r.outcome === "accept"),
    results,
    reply: bytes,
    response: read,
  };
}
