/**
 * The batch stage: an FHS/BHS batch (one frame) is answered with one
 * response batch. With `"each"` (the default) every readable message of
 * the batch goes, in order, through the `each` path (the store stage, if
 * any, and the dispatcher; original mode, nothing sent ahead), and the
 * response batch carries the dispatcher's ACK for each (or `AA` when it
 * returned something else or nothing, `AE` when it threw, `AR` for a
 * message whose MSH cannot be read); with `"whole"` the batch goes on to
 * the dispatcher once, and a dispatcher that answers nothing gets a
 * response batch of `AA`. Frames that are not batches pass through.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Ack } from "../../hl7/ack.ts";
import {
  type BatchAcks,
  type BatchMessage,
  buildBatchResponse,
} from "../../hl7/batch.ts";
import type { Hl7Message } from "../../hl7/message.ts";
import { formatAddress } from "../../net/address.ts";
import { plain, reasonOf } from "../_util.ts";
import { type Path, type Stage, thenReply } from "../stage.ts";
import type { DispatchContext, DispatchReply } from "../types.ts";

const logger = getLogger(["mllp", "batch"]);

/** How a receiver hands a batch to its dispatcher. */
export type BatchMode = "each" | "whole";

/** What the batch stage needs to know. */
export interface BatchSettings<C> {
  /** Once per message, or the whole batch once. */
  mode: BatchMode;
  /** Which ACKs the response batch carries. */
  acks: BatchAcks;
  /** What each message of a batch goes through in `"each"` mode. */
  each: Path<C>;
}

/**
 * The batch stage.
 *
 * @param settings The mode, the response batch's ACKs, the `each` path.
 * @returns The stage.
 */
export function batchStage<C>(settings: BatchSettings<C>): Stage<C> {
  const { mode, acks, each } = settings;
  return {
    name: `batches (${mode})`,
    handle(exchange, next) {
      const { message, ctx } = exchange;
      if (message.kind !== "batch") return next(exchange);
      logBatch(message, ctx);
      if (mode === "each") return dispatchEach(message, ctx, each, acks);
      return thenReply(
        next(exchange),
        (answer) =>
          answer === undefined || answer === null
            ? buildBatchResponse(message, "AA", { acks }).raw
            : answer,
      );
    },
  };
}

/** Messages of a batch send nothing ahead of the response batch. */
function sendNothing() {}

function logBatch(batch: BatchMessage, ctx: DispatchContext<unknown>) {
  const peer = formatAddress(ctx.peer);
  logger.info(
    "Batch {controlId} from {peer}: {messages} messages in {batches} batches",
    {
      controlId: batch.controlId,
      peer,
      messages: batch.entries.length,
      batches: batch.batches.length,
    },
  );
  for (const problem of batch.problems) {
    logger.warn("Batch {controlId} from {peer}: {problem}", {
      controlId: batch.controlId,
      peer,
      problem,
    });
  }
}

/**
 * Runs each readable message of a batch through `each`, in order, and
 * builds the response batch.
 */
async function dispatchEach<C>(
  batch: BatchMessage,
  ctx: DispatchContext<C>,
  each: Path<C>,
  acks: BatchAcks,
): Promise<Uint8Array> {
  const replies: (Ack | undefined)[] = [];
  for (const entry of batch.entries) {
    // Given up on (timeout, stop): dispatch nothing more.
    if (ctx.signal.aborted) throw ctx.signal.reason;
    replies.push(
      entry.message ? await ackFor(entry.message, ctx, each) : undefined,
    );
  }
  return buildBatchResponse(batch, replies, { acks }).raw;
}

/**
 * Runs one message of a batch through `each`: its ACK for the response
 * batch (`undefined`: the `AA` built for it).
 */
async function ackFor<C>(
  message: Hl7Message,
  ctx: DispatchContext<C>,
  each: Path<C>,
): Promise<Ack | undefined> {
  let reply: DispatchReply;
  try {
    reply = await each.handle({ message, ctx, send: sendNothing });
  } catch (error) {
    const reason = reasonOf(error);
    logger.error(
      "Dispatcher failed on message {controlId} of a batch from {peer}: {error}",
      {
        controlId: message.header.controlId,
        peer: formatAddress(ctx.peer),
        error,
      },
    );
    return Ack.forMessage(message, "AE", {
      text: plain(`Dispatcher failed: ${reason}`),
    });
  }
  if (reply instanceof Ack) return reply;
  if (typeof reply === "string" || reply instanceof Uint8Array) {
    try {
      return Ack.parse(reply);
    } catch {
      // Not an ACK: the message was handled; it gets the AA built for it.
    }
  }
  return undefined;
}
