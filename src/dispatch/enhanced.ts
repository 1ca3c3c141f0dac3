/**
 * The receiver's side of enhanced acknowledgment mode and of MLLP release
 * 2 with a store: a wrapper around the dispatcher a connection runs.
 *
 * - Original mode (MSH-15 and MSH-16 empty), no store: the application's
 *   dispatcher, called as it is (the synchronous path stays synchronous).
 * - Enhanced mode: the commit ACK (`CA` once the message is safely
 *   received: at once, or after the store's commit; `CE` when the store
 *   fails; `CR` when MSH-15/16 hold values outside table 0155) is sent
 *   ahead of the reply as MSH-15 asks; then the dispatcher's answer is the
 *   application ACK, sent as MSH-16 asks, on the connection or to the
 *   `applicationAcks` function.
 * - Release 2 with a store: the commit frame `0x06` goes out after the
 *   store's commit, `0x15` (and nothing else) when it fails.
 *
 * @module
 */

import { asFunction, plain, reasonOf } from "./_util.ts";
import { COMMIT_FRAME, NAK_FRAME } from "../wire/release2.ts";
import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import {
  type AckMode,
  invalidAckConditions,
  isCommitCode,
  wantsAck,
} from "../hl7/ack_conditions.ts";
import type {
  ApplicationAckHandler,
  ApplicationAckRoute,
} from "./ack_modes.ts";
import type {
  DispatchContext,
  Dispatcher,
  DispatchFunction,
  DispatchReply,
} from "./dispatcher.ts";
import { formatAddress } from "../net/address.ts";
import { ackModeOf } from "../hl7/ack_conditions.ts";
import type { Hl7Message, Message } from "../hl7/message.ts";
import { type MessageStore, storingDispatcher } from "./message_store.ts";
import {
  COMMITS_ITSELF,
  FAILURE_REPLY,
  type FailureReply,
  sendFirst,
} from "./_send_first.ts";

const logger = getLogger(["mllp", "receiver"]);
const ORIGINAL: AckMode = { mode: "original" };

/** What {@linkcode ackModeDispatcher} needs. */
export interface AckModeSettings<C> {
  /** The application's dispatcher. */
  dispatcher: Dispatcher<C>;
  /** The receiver's store, if it has one. */
  store?: MessageStore;
  /** The MLLP release. */
  release: 1 | 2;
  /** Where application ACKs go. */
  applicationAcks: ApplicationAckRoute<C>;
  /** Whether enhanced mode is honoured (else every message is original). */
  enhancedMode: boolean;
}

/**
 * The dispatcher a receiver's connections run: the application's, wrapped
 * for the store, enhanced mode and release 2 (see the module doc).
 */
export function ackModeDispatcher<C>(
  settings: AckModeSettings<C>,
): DispatchFunction<C> {
  const app = asFunction(settings.dispatcher);
  const { store, release, applicationAcks } = settings;
  const connection = store
    ? storingDispatcher(store, settings.dispatcher)
    : app;
  const wrapped: DispatchFunction<C> = (message, ctx) => {
    if (message.kind !== "hl7") {
      if (store && release === 2) sendFirst(ctx)(COMMIT_FRAME);
      return connection(message, ctx);
    }
    const mode = settings.enhancedMode ? ackModeOf(message.header) : ORIGINAL;
    if (mode.mode === "enhanced") {
      return enhanced(message, ctx, mode);
    }
    if (!store || release === 1) return connection(message, ctx);
    return storedRelease2(message, ctx);
  };

  /** Original mode, release 2, with a store: commit after storing. */
  async function storedRelease2(
    message: Hl7Message,
    ctx: DispatchContext<C>,
  ): Promise<DispatchReply> {
    const reply = await connection(message, ctx);
    // The storing dispatcher answers AE only when the store failed.
    if (reply instanceof Ack && reply.code === "AE") return NAK_FRAME;
    sendFirst(ctx)(COMMIT_FRAME);
    return reply;
  }

  function enhanced(
    message: Hl7Message,
    ctx: DispatchContext<C>,
    mode: Extract<AckMode, { mode: "enhanced" }>,
  ): DispatchReply | Promise<DispatchReply> {
    const problems = invalidAckConditions(message.header);
    if (problems.length > 0) {
      const reject = Ack.forMessage(message, "CR", {
        text: problems.join("; "),
      });
      return committed(message, ctx, mode, reject);
    }
    if (store) {
      return Promise.resolve(connection(message, ctx)).then((stored) =>
        committed(message, ctx, mode, toCommit(stored, message))
      );
    }
    return committed(message, ctx, mode, Ack.forMessage(message, "CA"));
  }

  /**
   * Sends the commit ACK as MSH-15 asks; then, for an accepted message
   * without a store, runs the dispatcher for the application ACK. Stays
   * synchronous while the dispatcher does.
   */
  function committed(
    message: Hl7Message,
    ctx: DispatchContext<C>,
    mode: Extract<AckMode, { mode: "enhanced" }>,
    commit: Ack,
  ): DispatchReply | Promise<DispatchReply> {
    // Past the dispatch timeout (a slow store): the failure route answered.
    if (ctx.signal.aborted) return undefined;
    const send = sendFirst(ctx);
    committedIn.add(ctx);
    if (store && release === 2) {
      // Not taken: the sender resends the same frame.
      if (commit.code === "CE") return NAK_FRAME;
      // Without a store, the dispatch stream sent it before the dispatch.
      send(COMMIT_FRAME);
    }
    if (wantsAck(mode.accept, commit.code)) send(commit.toBytes());
    // A message not accepted gets no application ACK; with a store, the
    // dispatcher runs from the store's consumer (see storedApplicationAcks).
    if (commit.code !== "CA" || store) return undefined;
    const failed = (error: unknown) => {
      logger.error(
        "Dispatcher failed on enhanced-mode message {controlId} from {peer}: {error}",
        {
          controlId: message.header.controlId,
          peer: formatAddress(ctx.peer),
          error,
        },
      );
      return answer(
        Ack.forMessage(message, "AE", {
          text: plain(`Dispatcher failed: ${reasonOf(error)}`),
        }),
      );
    };
    const answer = (reply: DispatchReply): DispatchReply => {
      const ack = applicationAck(reply, message);
      if (!ack || !wantsAck(mode.application, ack.code)) return undefined;
      if (applicationAcks === "connection") return ack;
      deliver(applicationAcks, ack, message, ctx);
      return undefined;
    };
    let reply: DispatchReply | Promise<DispatchReply>;
    try {
      reply = app(message, ctx);
    } catch (error) {
      return failed(error);
    }
    return reply instanceof Promise
      ? reply.then(answer, failed)
      : answer(reply);
  }

  /** Dispatches whose commit ACK went out (or was held back by MSH-15). */
  const committedIn = new WeakSet<DispatchContext<C>>();

  /**
   * What to send when an HL7 message's dispatch failed (timed out): for
   * an enhanced-mode message, a `CE` as MSH-15 asks (a NAK with release 2
   * and a store) if its commit ACK had not gone out yet, else the `AE` as
   * MSH-16 and `applicationAcks` ask.
   */
  const onFailure: FailureReply = (message, ae, ctx) => {
    const mode = settings.enhancedMode ? ackModeOf(message.header) : ORIGINAL;
    if (mode.mode !== "enhanced") return ae;
    const context = ctx as DispatchContext<C>;
    if (!committedIn.has(context)) {
      if (store && release === 2) return NAK_FRAME;
      return wantsAck(mode.accept, "CE")
        ? Ack.forMessage(message, "CE", { text: ae.text })
        : undefined;
    }
    if (!wantsAck(mode.application, "AE")) return undefined;
    if (applicationAcks === "connection") return ae;
    deliver(applicationAcks, ae, message, context);
    return undefined;
  };
  (wrapped as unknown as Record<symbol, FailureReply>)[FAILURE_REPLY] =
    onFailure;

  if (store) {
    (wrapped as unknown as Record<symbol, boolean>)[COMMITS_ITSELF] = true;
  }
  return wrapped;
}

/** The storing dispatcher's answer (AA, AE, or a stored ACK) as a commit ACK. */
function toCommit(reply: DispatchReply, message: Hl7Message): Ack {
  let ack: Ack | undefined;
  if (reply instanceof Ack) ack = reply;
  else if (reply instanceof Uint8Array || typeof reply === "string") {
    try {
      ack = Ack.parse(reply);
    } catch {
      // Not an ACK: fall through.
    }
  }
  if (!ack) return Ack.forMessage(message, "CA");
  if (isCommitCode(ack.code)) {
    return ack.code === "CA"
      ? Ack.forMessage(message, "CA", { text: ack.text })
      : ack;
  }
  const code = ack.code === "AA" ? "CA" : ack.code === "AE" ? "CE" : "CR";
  return Ack.forMessage(message, code, { text: ack.text });
}

/**
 * The dispatcher's answer as an application ACK: `undefined` for none; an
 * `Ack` (or an ACK as text or bytes) with `AA`, `AE` or `AR` as it is;
 * anything else is logged and becomes `AE`.
 */
function applicationAck(
  reply: DispatchReply,
  message: Hl7Message,
): Ack | undefined {
  if (reply === undefined || reply === null) return undefined;
  let ack: Ack | undefined;
  let problem: string;
  if (reply instanceof Ack) ack = reply;
  else if (reply instanceof Uint8Array || typeof reply === "string") {
    try {
      ack = Ack.parse(reply);
    } catch {
      // Reported below.
    }
  }
  if (ack && !isCommitCode(ack.code)) return ack;
  if (ack) {
    problem =
      `the dispatcher answered ${ack.code}, a commit code, but the receiver sends the commit ACK itself`;
  } else {
    problem = "the dispatcher's answer is not an ACK";
  }
  logger.error(
    "Enhanced-mode message {controlId}: {problem}; sending AE instead",
    { controlId: message.header.controlId, problem },
  );
  return Ack.forMessage(message, "AE", {
    text: plain(`Dispatcher failed: ${problem}`),
  });
}

/** Hands an application ACK to the user's function; logs its failure. */
function deliver<C>(
  handler: ApplicationAckHandler<C>,
  ack: Ack,
  message: Hl7Message,
  ctx: DispatchContext<C>,
) {
  const failed = (error: unknown) =>
    logger.error(
      "Cannot deliver application ACK {code} for message {controlId}: {error}",
      { code: ack.code, controlId: message.header.controlId, error },
    );
  try {
    const delivered = handler(ack, message, ctx);
    if (delivered instanceof Promise) delivered.catch(failed);
  } catch (error) {
    failed(error);
  }
}

/**
 * With a store: the dispatcher the store's consumer runs. For an
 * enhanced-mode message whose answer is final (`AA`: done, `AR`: parked)
 * and wanted by MSH-16, the application ACK goes to `applicationAcks` when
 * it is a function; `AE` and failures are retried, so nothing is sent for
 * them (the message may be dispatched again).
 */
export function storedApplicationAcks<C>(
  dispatcher: Dispatcher<C>,
  applicationAcks: ApplicationAckRoute<C>,
  enhancedMode: boolean,
): Dispatcher<C> {
  if (applicationAcks === "connection" || !enhancedMode) return dispatcher;
  const app = asFunction(dispatcher);
  return async (message: Message, ctx: DispatchContext<C>) => {
    const reply = await app(message, ctx);
    if (message.kind !== "hl7") return reply;
    const mode = ackModeOf(message.header);
    if (mode.mode !== "enhanced") return reply;
    const ack = applicationAck(reply, message);
    if (
      ack && (ack.code === "AA" || ack.code === "AR") &&
      wantsAck(mode.application, ack.code)
    ) deliver(applicationAcks, ack, message, ctx);
    return reply;
  };
}
