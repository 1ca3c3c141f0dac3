/**
 * Stages: what a message goes through between the framer and the
 * dispatcher. A receiver's store, enhanced acknowledgment mode, batches and
 * MLLP release 2 are each a {@linkcode Stage}; {@linkcode compose} chains
 * them, outermost first, in front of the dispatcher, into one
 * {@linkcode Path}. The receiver builds its path in one place
 * (`src/receiver/path.ts`); `DispatchStream` runs a path over frames.
 *
 * The contract of a stage:
 *
 * - `handle(exchange, next)` gets each message (HL7, batch or not HL7) and
 *   returns the reply, at once or as a promise. It either answers itself
 *   or calls `next(exchange)` once to hand the message on to the stages
 *   below it and the dispatcher, and may shape what comes back. A stage
 *   that stays synchronous while `next` does keeps the whole path free of
 *   promises for a dispatcher that answers at once.
 * - It writes nothing anywhere but through its exchange: the reply it
 *   returns, `exchange.send(payload)` for a frame that must go out ahead
 *   of the reply (a release 2 commit frame, an enhanced-mode commit ACK),
 *   and the fields of the exchange that say what happened to the message
 *   (`stored`).
 * - `failed(exchange, reply)`, when a stage has it, decides what an HL7
 *   message whose dispatch failed (the dispatcher threw, rejected or ran
 *   out of time) is answered with instead of `reply`, the answer the
 *   stages below it settled on (the stream starts with an `AE`).
 *
 * @module
 */

import type { Message } from "../hl7/message.ts";
import type {
  DispatchContext,
  DispatchFunction,
  DispatchReply,
} from "./types.ts";

/** One message on its way through a {@linkcode Path}. */
export interface Exchange<C = unknown> {
  /** The message, read from one frame. */
  readonly message: Message;
  /** The context the dispatcher gets. */
  readonly ctx: DispatchContext<C>;
  /**
   * Sends a payload to the peer now, as its own frame, ahead of the
   * reply. Dropped once the dispatch has been given up on (`ctx.signal`
   * aborted) or the stream has stopped.
   */
  send(payload: Uint8Array): void;
  /**
   * Whether the message is safely stored: set by the store stage, `true`
   * once stored (or found stored before), `false` when storing failed.
   * `undefined` without a store, for what the store does not keep (not
   * HL7, a batch frame as a whole), or while storing is under way.
   */
  stored?: boolean;
}

/** What a stage calls to hand a message on to the stages below it. */
export type Next<C = unknown> = (
  exchange: Exchange<C>,
) => DispatchReply | Promise<DispatchReply>;

/** A step of the message path (see the module doc for the contract). */
export interface Stage<C = unknown> {
  /** A short name, for logs and the architecture notes. */
  readonly name: string;
  /**
   * Handles one message: answers it, or hands it on with `next`.
   *
   * @param exchange The message, its context, and the way to send ahead.
   * @param next Runs the stages below and the dispatcher.
   * @returns The reply, or nothing for no reply.
   */
  handle(
    exchange: Exchange<C>,
    next: Next<C>,
  ): DispatchReply | Promise<DispatchReply>;
  /**
   * What an HL7 message whose dispatch failed is answered with.
   *
   * @param exchange The message whose dispatch failed.
   * @param reply What the stages below settled on (first: the `AE`).
   * @returns The reply to send instead, or nothing for no reply.
   */
  failed?(exchange: Exchange<C>, reply: DispatchReply): DispatchReply;
}

/** Stages chained in front of a dispatcher: what a stream runs. */
export interface Path<C = unknown> {
  /** The names of the stages, outermost first. */
  readonly stages: readonly string[];
  /**
   * Runs a message through the stages and the dispatcher.
   *
   * @param exchange The message and its context.
   * @returns The reply, at once when every step answered at once.
   */
  handle(exchange: Exchange<C>): DispatchReply | Promise<DispatchReply>;
  /**
   * The reply for an HL7 message whose dispatch failed: `ae`, as each
   * stage with a `failed` hook reshapes it, innermost first.
   *
   * @param exchange The message whose dispatch failed.
   * @param ae The `AE` the stream would send.
   * @returns The reply to send, or nothing.
   */
  failed(exchange: Exchange<C>, ae: DispatchReply): DispatchReply;
}

/**
 * Chains stages in front of a dispatcher. The chain is built once: running
 * a message through it allocates nothing per stage.
 *
 * @param stages The stages, outermost first; `undefined` entries (stages a
 * configuration leaves out) are skipped.
 * @param dispatcher What the innermost stage's `next` runs.
 * @returns The path.
 */
export function compose<C>(
  stages: readonly (Stage<C> | undefined)[],
  dispatcher: DispatchFunction<C>,
): Path<C> {
  const used = stages.filter((stage): stage is Stage<C> => !!stage);
  let run: Next<C> = (exchange) => dispatcher(exchange.message, exchange.ctx);
  for (const stage of [...used].reverse()) {
    const next = run;
    run = (exchange) => stage.handle(exchange, next);
  }
  const hooks = used.filter((stage) => stage.failed).reverse();
  return {
    stages: used.map((stage) => stage.name),
    handle: run,
    failed: (exchange, ae) =>
      hooks.reduce((reply, stage) => stage.failed!(exchange, reply), ae),
  };
}

/**
 * Applies `then` to a reply that may still be a promise: at once when it
 * is not, so a synchronous path stays synchronous.
 *
 * @param reply A stage's or dispatcher's answer.
 * @param then What to make of it.
 * @returns The result, a promise only when `reply` was one.
 */
export function thenReply(
  reply: DispatchReply | PromiseLike<DispatchReply>,
  then: (reply: DispatchReply) => DispatchReply | Promise<DispatchReply>,
): DispatchReply | Promise<DispatchReply> {
  return isThenable(reply) ? Promise.resolve(reply).then(then) : then(reply);
}

/** Whether a dispatcher's return value is a promise (or another thenable). */
export function isThenable(
  value: DispatchReply | PromiseLike<DispatchReply>,
): value is PromiseLike<DispatchReply> {
  return typeof value === "object" && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}
