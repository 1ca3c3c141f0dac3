/**
 * The enhanced acknowledgment mode stage (MSH-15 and MSH-16 valued). For
 * such a message the receiver first answers with a commit (accept) ACK —
 * `CA` once the message is safely received, `CE` when it could not be
 * kept, `CR` when MSH-15/16 hold values outside HL7 table 0155 — sent as
 * MSH-15 asks; then the dispatcher's answer is the application ACK, sent
 * as MSH-16 asks, on the connection or to the `applicationAcks` function.
 *
 * - Without a store, a message is received on arrival: the `CA` goes out
 *   ahead (through `exchange.send`), then the dispatcher runs and its
 *   answer becomes the application ACK.
 * - With a store (a store stage below), the store's verdict is the commit
 *   ACK and the reply; the dispatcher runs later from the store's
 *   consumer, which hands final application ACKs to the `applicationAcks`
 *   function ({@linkcode withApplicationAcks}).
 *
 * Messages in original mode (MSH-15 and MSH-16 empty), batches and other
 * payloads pass through unchanged. A receiver with `enhancedMode: false`
 * leaves this stage out: every message is answered in original mode.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Ack } from "../../hl7/ack.ts";
import {
  type AckMode,
  ackModeOf,
  invalidAckConditions,
  isCommitCode,
  wantsAck,
} from "../../hl7/ack_conditions.ts";
import type { Hl7Message } from "../../hl7/message.ts";
import { formatAddress } from "../../net/address.ts";
import { asFunction, plain, reasonOf } from "../_util.ts";
import type {
  ApplicationAckHandler,
  ApplicationAckRoute,
} from "../ack_modes.ts";
import { type Exchange, isThenable, type Stage, thenReply } from "../stage.ts";
import type { DispatchContext, Dispatcher, DispatchReply } from "../types.ts";

const logger = getLogger(["mllp", "receiver"]);

type Enhanced = Extract<AckMode, { mode: "enhanced" }>;

/** What the enhanced-mode stage needs to know. */
export interface EnhancedSettings<C> {
  /** Where application ACKs go. */
  applicationAcks: ApplicationAckRoute<C>;
  /** Whether a store stage below takes messages (its verdict commits). */
  store: boolean;
}

/**
 * The enhanced-mode stage; put it above the store stage, if any.
 *
 * @param settings Where application ACKs go, and whether there is a store.
 * @returns The stage.
 */
export function enhancedStage<C>(settings: EnhancedSettings<C>): Stage<C> {
  const { applicationAcks, store } = settings;
  /** Exchanges whose commit ACK was decided (sent or held back by MSH-15). */
  const committed = new WeakSet<Exchange<C>>();

  /** Answers with the commit ACK alone, as MSH-15 asks. */
  const commitOnly = (exchange: Exchange<C>, mode: Enhanced, commit: Ack) => {
    committed.add(exchange);
    return wantsAck(mode.accept, commit.code) ? commit : undefined;
  };

  /** Sends an application ACK as MSH-16 and `applicationAcks` ask. */
  const route = (
    exchange: Exchange<C>,
    mode: Enhanced,
    ack: Ack | undefined,
  ): DispatchReply => {
    if (!ack || !wantsAck(mode.application, ack.code)) return undefined;
    if (applicationAcks === "connection") return ack;
    deliver(applicationAcks, ack, exchange.message as Hl7Message, exchange.ctx);
    return undefined;
  };

  return {
    name: store ? "enhanced mode (commit once stored)" : "enhanced mode",
    handle(exchange, next) {
      const { message } = exchange;
      if (message.kind !== "hl7") return next(exchange);
      const mode = ackModeOf(message.header);
      if (mode.mode !== "enhanced") return next(exchange);
      const problems = invalidAckConditions(message.header);
      if (problems.length > 0) {
        const reject = Ack.forMessage(message, "CR", {
          text: problems.join("; "),
        });
        return commitOnly(exchange, mode, reject);
      }
      if (store) {
        return thenReply(
          next(exchange),
          (stored) => commitOnly(exchange, mode, toCommit(stored, message)),
        );
      }
      committed.add(exchange);
      if (wantsAck(mode.accept, "CA")) {
        exchange.send(Ack.forMessage(message, "CA").toBytes());
      }
      const failed = (error: unknown) => {
        logger.error(
          "Dispatcher failed on enhanced-mode message {controlId} from {peer}: {error}",
          {
            controlId: message.header.controlId,
            peer: formatAddress(exchange.ctx.peer),
            error,
          },
        );
        return route(
          exchange,
          mode,
          Ack.forMessage(message, "AE", {
            text: plain(`Dispatcher failed: ${reasonOf(error)}`),
          }),
        );
      };
      const answer = (reply: DispatchReply) =>
        route(exchange, mode, applicationAck(reply, message));
      let reply: DispatchReply | PromiseLike<DispatchReply>;
      try {
        reply = next(exchange);
      } catch (error) {
        return failed(error);
      }
      return isThenable(reply)
        ? Promise.resolve(reply).then(answer, failed)
        : answer(reply);
    },
    failed(exchange, reply) {
      const { message } = exchange;
      if (message.kind !== "hl7") return reply;
      const mode = ackModeOf(message.header);
      if (mode.mode !== "enhanced") return reply;
      const ae = reply instanceof Ack
        ? reply
        : Ack.forMessage(message, "AE", { text: "Dispatcher failed" });
      if (!committed.has(exchange)) {
        // Not received in time (a slow store): a CE, as MSH-15 asks.
        return wantsAck(mode.accept, "CE")
          ? Ack.forMessage(message, "CE", { text: ae.text })
          : undefined;
      }
      return route(exchange, mode, ae);
    },
  };
}

/**
 * The dispatcher the store's consumer runs, for a receiver in enhanced
 * mode with an `applicationAcks` function: for an enhanced-mode message
 * whose answer is final (`AA`: done, `AR`: parked) and wanted by MSH-16,
 * the application ACK goes to that function; `AE` and failures are
 * retried, so nothing is sent for them (the message may be dispatched
 * again). With `"connection"` there is nowhere to send it: the dispatcher
 * is returned as it is.
 *
 * @param dispatcher The application's dispatcher.
 * @param applicationAcks Where application ACKs go.
 * @returns The dispatcher for the consumer.
 */
export function withApplicationAcks<C>(
  dispatcher: Dispatcher<C>,
  applicationAcks: ApplicationAckRoute<C>,
): Dispatcher<C> {
  if (applicationAcks === "connection") return dispatcher;
  const app = asFunction(dispatcher);
  return async (message, ctx) => {
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
