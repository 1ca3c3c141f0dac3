/**
 * HL7 v2 batches (v2.5 section 2.10.3): a payload of the shape
 * `[FHS] { BHS { MSH ... } BTS } [FTS]`. Read one (what `readMessage`
 * returns for a payload that starts with `FHS` or `BHS`), build one from
 * messages, build the response batch that acknowledges one, and read a
 * response back into per-message results.
 *
 * Each message of a batch is an `Hl7Message` read exactly as a framed
 * message would be, with its own MSH-18 charset.
 *
 * @example Build a batch and read it back
 * ```ts
 * import { buildBatch } from "@x/mllp/batch";
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const batch = buildBatch([
 *   "MSH|^~\\&|App|Fac|Rcv|RFac|20240101||ADT^A01|M1|P|2.5\rPID|1",
 *   "MSH|^~\\&|App|Fac|Rcv|RFac|20240101||ADT^A01|M2|P|2.5\rPID|2",
 * ], { controlId: "B1" });
 * const read = readMessage(batch.raw);
 * assertEquals(read.kind, "batch");
 * if (read.kind === "batch") {
 *   assertEquals(read.controlId, "B1");
 *   assertEquals(read.messages.map((m) => m.header.controlId), ["M1", "M2"]);
 *   assertEquals(read.problems, []);
 * }
 * ```
 *
 * @module
 */

export {
  type BatchEntry,
  type BatchGroup,
  type BatchHeader,
  BatchMessage,
  type BatchParts,
  isBatch,
  readBatch,
} from "./batch_read.ts";
export { buildBatch, type BuildBatchOptions } from "./batch_build.ts";
export {
  type BatchAcks,
  type BatchItemResult,
  type BatchResponseOptions,
  type BatchResult,
  batchResults,
  buildBatchResponse,
} from "./batch_response.ts";
