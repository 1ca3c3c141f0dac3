/**
 * The other half of store-and-forward: the consumer loop that runs the
 * application's dispatcher over stored messages, one at a time, each
 * bounded by the receiver's dispatch timeout, and tells the store what
 * became of it (done, retry later, or park).
 *
 * @module
 */

import { Ack } from "../hl7/ack.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import { type Message, readMessage } from "../hl7/message.ts";
import { asFunction, reasonOf } from "./_util.ts";
import type {
  MessageStore,
  StoreConsumer,
  StoredDispatchContext,
} from "./message_store.ts";
import type { Dispatcher, DispatchFunction, DispatchReply } from "./types.ts";

/** Options for {@linkcode startStoredDispatch}. */
export interface StoredDispatchOptions<C> {
  /** The receiver's `context` option. */
  context: C | undefined;
  /** How long one dispatch may take, in ms; 0 for no limit. */
  dispatchTimeout: number;
  /** The receiver's `charset` option: stored messages are read with it. */
  charset?: CharsetOptions;
}

/**
 * Starts the consumer that runs the receiver's dispatcher over stored
 * messages. A dispatcher that returns normally (or an accepting ACK) is
 * done; one that throws, times out or returns `AE`/`CE` is retried; one
 * that returns `AR`/`CR` parks the message. Its other replies are
 * dropped: the sender had its ACK when the message was stored.
 */
export function startStoredDispatch<C>(
  store: MessageStore,
  dispatcher: Dispatcher<C>,
  options: StoredDispatchOptions<C>,
): StoreConsumer {
  const dispatch = asFunction(dispatcher);
  return store.consume(async (stored, signal) => {
    let message: Message;
    try {
      message = readMessage(stored.raw, { charset: options.charset });
    } catch (error) {
      return {
        outcome: "park",
        reason: `Cannot read message: ${reasonOf(error)}`,
      };
    }
    let reply: DispatchReply;
    try {
      reply = await bounded(
        dispatch,
        message,
        {
          peer: stored.peer,
          local: stored.local,
          certificateName: stored.certificateName,
          receivedAt: stored.receivedAt,
          context: options.context as C,
          messageId: stored.id,
          attempt: stored.attempt,
        },
        options.dispatchTimeout,
        signal,
      );
    } catch (error) {
      return {
        outcome: "retry",
        reason: reasonOf(error),
      };
    }
    if (reply instanceof Ack && !reply.accepted) {
      const reason = `Dispatcher answered ${reply.code}${
        reply.text ? `: ${reply.text}` : ""
      }`;
      return reply.code === "AR" || reply.code === "CR"
        ? { outcome: "park", reason }
        : { outcome: "retry", reason };
    }
    return { outcome: "done" };
  });
}

/**
 * Runs a dispatch with its own signal, aborted when `timeout` passes (0:
 * never) or `outer` aborts; a dispatcher that ignores its signal is not
 * waited for past either.
 */
async function bounded<C>(
  dispatch: DispatchFunction<C>,
  message: Message,
  ctx: Omit<StoredDispatchContext<C>, "signal">,
  timeout: number,
  outer: AbortSignal,
): Promise<DispatchReply> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const running = Promise.resolve(
      dispatch(message, { ...ctx, signal: controller.signal }),
    );
    running.catch(() => {});
    const limit = new Promise<never>((_, reject) => {
      const give = (reason: Error) => {
        controller.abort(reason);
        reject(reason);
      };
      if (timeout > 0) {
        timer = setTimeout(
          () =>
            give(new Error(`Dispatcher did not answer within ${timeout} ms`)),
          timeout,
        );
      }
      onAbort = () =>
        give(new Error("Dispatch given up on: the store stopped"));
      if (outer.aborted) onAbort();
      else outer.addEventListener("abort", onAbort, { once: true });
    });
    const reply = await Promise.race([running, limit]);
    // Given up on (it may have answered in the same turn): not done.
    if (controller.signal.aborted) throw controller.signal.reason;
    return reply;
  } finally {
    clearTimeout(timer);
    if (onAbort) outer.removeEventListener("abort", onAbort);
  }
}
