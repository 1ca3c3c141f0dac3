/**
 * How a wrapped dispatcher writes frames before its reply: the
 * {@linkcode DispatchStream} puts a function under {@linkcode SEND_FIRST}
 * on each dispatch context, which enqueues a payload at once, ahead of the
 * reply (MLLP release 2 commit frames, enhanced-mode commit ACKs). A
 * dispatcher marked with {@linkcode COMMITS_ITSELF} sends its own release 2
 * commit frame (after storing the message), so the stream does not.
 *
 * @module
 */

import type { Ack } from "../hl7/ack.ts";
import type { DispatchContext, DispatchReply } from "./dispatcher.ts";
import type { Hl7Message } from "../hl7/message.ts";

/** The context key of the function that sends a payload ahead of the reply. */
export const SEND_FIRST: unique symbol = Symbol("mllp.sendFirst");

/** Marks a dispatcher that sends its own release 2 commit frame. */
export const COMMITS_ITSELF: unique symbol = Symbol("mllp.commitsItself");

/** A dispatch context that may carry the send-first function. */
export type WithSendFirst = { [SEND_FIRST]?: (payload: Uint8Array) => void };

/**
 * The function that sends a payload ahead of the reply, or one that drops
 * it (with a context not made by a `DispatchStream`).
 */
export function sendFirst(
  ctx: DispatchContext<unknown>,
): (payload: Uint8Array) => void {
  return (ctx as WithSendFirst)[SEND_FIRST] ?? (() => {});
}

/** Whether a dispatcher is marked with {@linkcode COMMITS_ITSELF}. */
export function commitsItself(dispatcher: unknown): boolean {
  return typeof dispatcher === "function" &&
    (dispatcher as { [COMMITS_ITSELF]?: boolean })[COMMITS_ITSELF] === true;
}

/**
 * The key of a dispatcher's failure route: given the `AE` the dispatch
 * stream would send for an HL7 message whose dispatch failed (timed out),
 * it returns what to send instead (`undefined`: nothing), so that an
 * enhanced-mode message is answered as its MSH-15 and MSH-16 and the
 * receiver's `applicationAcks` ask.
 */
export const FAILURE_REPLY: unique symbol = Symbol("mllp.failureReply");

/** A failure route (see {@linkcode FAILURE_REPLY}). */
export type FailureReply = (
  message: Hl7Message,
  ae: Ack,
  ctx: DispatchContext<unknown>,
) => DispatchReply;

/** A dispatcher's failure route, if it has one. */
export function failureReply(dispatcher: unknown): FailureReply | undefined {
  return typeof dispatcher === "function"
    ? (dispatcher as { [FAILURE_REPLY]?: FailureReply })[FAILURE_REPLY]
    : undefined;
}
