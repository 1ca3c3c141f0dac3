/**
 * The receiver's handling of batches: a dispatcher wrapper that runs the
 * application's dispatcher once per message of a batch (`"each"`) or once
 * for the whole batch (`"whole"`), and answers the batch with one response
 * batch. Other payloads pass straight through, unchanged and in the same
 * turn.
 *
 * @module
 */

import { asFunction, isThenable, plain, reasonOf } from "./_util.ts";
import { COMMIT_FRAME } from "../wire/release2.ts";
import {
  COMMITS_ITSELF,
  commitsItself,
  FAILURE_REPLY,
  type FailureReply,
  failureReply,
  sendFirst,
} from "./_send_first.ts";
import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import {
  type BatchAcks,
  type BatchMessage,
  buildBatchResponse,
} from "../hl7/batch.ts";
import type {
  DispatchContext,
  Dispatcher,
  DispatchFunction,
  DispatchReply,
} from "./dispatcher.ts";
import { formatAddress } from "../net/address.ts";
import type { Hl7Message } from "../hl7/message.ts";

const logger = getLogger(["mllp", "batch"]);

/** How a receiver hands a batch to its dispatcher. */
export type BatchMode = "each" | "whole";

/** How the receiver handles batches. */
export interface BatchSettings {
  /** Once per message, or the whole batch once. */
  mode: BatchMode;
  /** Which ACKs the response batch carries. */
  acks: BatchAcks;
}

/**
 * Wraps a dispatcher for batches; anything that is not a batch goes to the
 * dispatcher as it is.
 */
export function batchDispatcher<C>(
  dispatcher: Dispatcher<C>,
  settings: BatchSettings,
): DispatchFunction<C> {
  const inner = asFunction(dispatcher);
  return (message, ctx) => {
    if (message.kind !== "batch") return inner(message, ctx);
    logBatch(message, ctx);
    if (settings.mode === "each") {
      return dispatchEach(message, ctx, inner, settings);
    }
    const reply = inner(message, ctx);
    const whole = (answer: DispatchReply): DispatchReply =>
      answer === undefined || answer === null
        ? buildBatchResponse(message, "AA", { acks: settings.acks }).raw
        : answer;
    return isThenable(reply)
      ? Promise.resolve(reply).then(whole)
      : whole(reply);
  };
}

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
 * Runs the dispatcher over each readable message of a batch, in order,
 * and builds the response batch: the dispatcher's ACK for a message, `AA`
 * when it returns something else (or nothing), `AE` when it throws, `AR`
 * for a message whose MSH cannot be read (not dispatched).
 */
async function dispatchEach<C>(
  batch: BatchMessage,
  ctx: DispatchContext<C>,
  dispatch: DispatchFunction<C>,
  settings: BatchSettings,
): Promise<Uint8Array> {
  const acks: (Ack | undefined)[] = [];
  for (const entry of batch.entries) {
    // Given up on (timeout, stop): dispatch nothing more.
    if (ctx.signal.aborted) throw ctx.signal.reason;
    acks.push(
      entry.message ? await ackFor(entry.message, ctx, dispatch) : undefined,
    );
  }
  return buildBatchResponse(batch, acks, { acks: settings.acks }).raw;
}

async function ackFor<C>(
  message: Hl7Message,
  ctx: DispatchContext<C>,
  dispatch: DispatchFunction<C>,
): Promise<Ack | undefined> {
  let reply: DispatchReply;
  try {
    reply = await dispatch(message, ctx);
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

/**
 * A receiver's dispatcher: `single` for every frame that is not a batch,
 * and for a batch, {@linkcode batchDispatcher} over `inBatch`. The
 * messages of a batch are answered in its response batch, in original
 * mode: `inBatch` is the application's dispatcher with the store, but
 * without enhanced mode and release 2 commit frames, so that one batch
 * frame gets one reply (and, with release 2, one commit frame). With
 * release 2 and a `single` that commits itself (it stores), so does this:
 * a batch's commit frame goes out once each of its messages is stored.
 */
export function withBatches<C>(
  single: DispatchFunction<C>,
  inBatch: Dispatcher<C>,
  settings: BatchSettings & { release: 1 | 2 },
): DispatchFunction<C> {
  const batches = batchDispatcher(inBatch, settings);
  const commitAfter = settings.release === 2 && commitsItself(single);
  const wrapped: DispatchFunction<C> = (message, ctx) => {
    if (message.kind !== "batch") return single(message, ctx);
    if (!commitAfter) return batches(message, ctx);
    return Promise.resolve(batches(message, ctx)).then((reply) => {
      sendFirst(ctx)(COMMIT_FRAME);
      return reply;
    });
  };
  if (commitAfter) {
    (wrapped as unknown as Record<symbol, boolean>)[COMMITS_ITSELF] = true;
  }
  // Frames that are not batches fail as `single` says (a batch that fails
  // gets a response batch of AE, see DispatchStream).
  const onFailure = failureReply(single);
  if (onFailure) {
    (wrapped as unknown as Record<symbol, FailureReply>)[FAILURE_REPLY] =
      onFailure;
  }
  return wrapped;
}
