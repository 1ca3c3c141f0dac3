/**
 * Dispatchers: the application side of a receiver. A dispatcher gets each
 * message with its context and returns the reply (an {@linkcode Ack}, text,
 * bytes, or nothing). {@linkcode DispatchStream} runs one over a stream of
 * frames, so a dispatcher can be exercised without a socket.
 *
 * @example Test a dispatcher without a socket
 * ```ts
 * import { Ack, DispatchStream, type Dispatcher, wrap } from "@x/mllp";
 * import { MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const dispatcher: Dispatcher = (message) =>
 *   message.kind === "hl7" ? Ack.forMessage(message, "AA") : "Got the BLOB";
 * const replies = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode(wrap("Hip hip hurray"))])
 *     .pipeThrough(new MllpDecoderStream())
 *     .pipeThrough(new DispatchStream(dispatcher)),
 * );
 * assertEquals(new TextDecoder().decode(replies[0]), "Got the BLOB");
 * ```
 *
 * @module
 */

import { COMMIT_FRAME, NAK_FRAME } from "../wire/release2.ts";
import { isThenable } from "./_util.ts";
import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import { buildBatchResponse } from "../hl7/batch.ts";
import { isWrapped, unwrap } from "../wire/envelope.ts";
import { HeaderError } from "../hl7/errors.ts";
import { BytePool } from "../wire/_pool.ts";
import { isCommitFrame } from "../wire/release2.ts";
import {
  commitsItself,
  type FailureReply,
  failureReply,
  SEND_FIRST,
  type WithSendFirst,
} from "./_send_first.ts";
import { framingProblem } from "../wire/_scan.ts";
import { endSpan, startDispatchSpan } from "../observe/telemetry.ts";
import {
  charsetRefusal,
  refusalBytes,
  replyEncoding,
} from "../hl7/charset_reply.ts";
import { CharsetError, type CharsetOptions } from "../hl7/charset.ts";
import type { Span } from "@opentelemetry/api";
import {
  charsetEncoding,
  encodeText,
  isHl7,
  type Message,
  readHeader,
  readMessage,
  type ReadMessageOptions,
} from "../hl7/message.ts";

export { type Address, formatAddress } from "../net/address.ts";
import { type Address, formatAddress } from "../net/address.ts";

const logger = getLogger(["mllp", "dispatcher"]);

/**
 * What a dispatcher knows about where a message came from.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Read the context in a dispatcher
 * ```ts
 * import { type DispatchContext, DispatchStream } from "@x/mllp/dispatcher";
 * import type { Message } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function dispatch(
 *   _message: Message,
 *   ctx: DispatchContext<{ site: string }>,
 * ): string {
 *   return `${ctx.context.site} via ${ctx.local.port}, aborted: ${ctx.signal.aborted}`;
 * }
 * const stream = new DispatchStream(dispatch, {
 *   context: { site: "lab" },
 *   local: { hostname: "127.0.0.1", port: 2575 },
 * });
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")]).pipeThrough(stream),
 * );
 * assertEquals(new TextDecoder().decode(reply), "lab via 2575, aborted: false");
 * ```
 */
export interface DispatchContext<C = unknown> {
  /** The sender's address. */
  peer: Address;
  /** The receiver's address the sender connected to. */
  local: Address;
  /** The subject CN of the peer's TLS certificate, when it sent one. */
  certificateName?: string;
  /**
   * Aborted when the dispatch is given up on: its time ran out (the sender
   * got an `AE`), the receiver closed the connection, or the receiver's
   * stop deadline passed. A dispatcher doing slow work can pass it on (to
   * `fetch`, say).
   */
  signal: AbortSignal;
  /** The value of the receiver's `context` option. */
  context: C;
  /** When the frame was received. */
  receivedAt: Date;
}

/**
 * A dispatcher's reply: an {@linkcode Ack}, text (encoded in the message's
 * charset), bytes, or `undefined`/`null` for no reply. A reply that is
 * already wrapped in an MLLP frame is unwrapped first, so it is never
 * framed twice. A reply that still holds a VT (`0x0b`) or FS (`0x1c`)
 * byte would break the framing: it is treated as a dispatcher failure.
 *
 * @example Reply with an ACK, text or nothing
 * ```ts
 * import { Ack, type DispatchReply, DispatchStream } from "@x/mllp";
 * import type { Message } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function reply(message: Message): DispatchReply {
 *   if (message.kind === "hl7") return Ack.forMessage(message, "AA");
 *   return message.text === "PING" ? "PONG" : undefined; // no reply
 * }
 * const replies = await Array.fromAsync(
 *   ReadableStream.from(
 *     ["PING", "NOISE"].map((text) => new TextEncoder().encode(text)),
 *   )
 *     .pipeThrough(new DispatchStream(reply)),
 * );
 * assertEquals(replies.map((bytes) => new TextDecoder().decode(bytes)), ["PONG"]);
 * ```
 */
export type DispatchReply = Ack | string | Uint8Array | null | undefined | void;

/**
 * A dispatcher as a function of the message and its context.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example A function dispatcher
 * ```ts
 * import { type DispatchFunction, DispatchStream } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const upper: DispatchFunction = (message) => message.text.toUpperCase();
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("hello")])
 *     .pipeThrough(new DispatchStream(upper)),
 * );
 * assertEquals(new TextDecoder().decode(reply), "HELLO");
 * ```
 */
export type DispatchFunction<C = unknown> = (
  message: Message,
  ctx: DispatchContext<C>,
) => DispatchReply | Promise<DispatchReply>;

/**
 * A dispatcher as an object with a `dispatch` method, like the seed's
 * `MLLP.Dispatcher` behaviour.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example An object dispatcher with state
 * ```ts
 * import { type DispatcherObject, DispatchStream } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * class Counter implements DispatcherObject {
 *   count = 0;
 *   dispatch(): string {
 *     return `message ${++this.count}`;
 *   }
 * }
 * const counter = new Counter();
 * const replies = await Array.fromAsync(
 *   ReadableStream.from([new Uint8Array([0x41]), new Uint8Array([0x42])])
 *     .pipeThrough(new DispatchStream(counter)),
 * );
 * assertEquals(counter.count, 2);
 * assertEquals(new TextDecoder().decode(replies[1]), "message 2");
 * ```
 */
export interface DispatcherObject<C = unknown> {
  /**
   * Handles one message.
   *
   * @param message The message: HL7 or unknown.
   * @param ctx Where it came from.
   * @returns The reply, or nothing for no reply.
   */
  dispatch(
    message: Message,
    ctx: DispatchContext<C>,
  ): DispatchReply | Promise<DispatchReply>;
}

/**
 * A dispatcher: a function or an object with `dispatch`.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Accept either form
 * ```ts
 * import { Ack, type Dispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const asFunction: Dispatcher = (message) => Ack.forMessage(message, "AA");
 * const asObject: Dispatcher = {
 *   dispatch: (message) => Ack.forMessage(message, "AA"),
 * };
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: asFunction,
 * });
 * assertEquals(
 *   typeof asObject === "object" && typeof asObject.dispatch,
 *   "function",
 * );
 * assertEquals(receiver.port > 0, true);
 * ```
 */
export type Dispatcher<C = unknown> = DispatchFunction<C> | DispatcherObject<C>;

/**
 * The MSA-3 text the {@linkcode EchoDispatcher} answers with.
 *
 * @example The EchoDispatcher's ACK text
 * ```ts
 * import { DispatchStream, ECHO_TEXT, EchoDispatcher } from "@x/mllp/dispatcher";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const message = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r";
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode(message)])
 *     .pipeThrough(new DispatchStream(EchoDispatcher)),
 * );
 * assertEquals(Ack.parse(reply).text, ECHO_TEXT);
 * ```
 */
export const ECHO_TEXT = "A real MLLP message dispatcher was not provided";

/**
 * The reply the {@linkcode EchoDispatcher} gives to non-HL7 payloads.
 *
 * @example The EchoDispatcher's reply to non-HL7
 * ```ts
 * import {
 *   DispatchStream,
 *   EchoDispatcher,
 *   UNKNOWN_REPLY,
 * } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")])
 *     .pipeThrough(new DispatchStream(EchoDispatcher)),
 * );
 * assertEquals(new TextDecoder().decode(reply), UNKNOWN_REPLY);
 * ```
 */
export const UNKNOWN_REPLY = "mllp_unknown";

/**
 * The seed's default dispatcher: it logs each message's type and control
 * id at info (the body only at debug) and answers HL7 with `AA` and the
 * text {@linkcode ECHO_TEXT}, and anything else with `mllp_unknown`.
 *
 * @example Use it in a receiver
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 *
 * await using receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * ```
 */
export const EchoDispatcher: DispatcherObject = {
  dispatch(message: Message, ctx: DispatchContext): DispatchReply {
    if (!logger.isEnabledFor("info")) {
      // Nothing to log: skip building the log lines' properties.
      return message.kind === "hl7"
        ? Ack.forMessage(message, "AA", { text: ECHO_TEXT })
        : UNKNOWN_REPLY;
    }
    const peer = formatAddress(ctx.peer);
    if (message.kind === "hl7") {
      logger.info(
        "The EchoDispatcher simply logs and discards messages. Message type: mllp_hl7 {messageType} control id {controlId} ({size} bytes) from {peer}",
        {
          messageType: message.header.messageType,
          controlId: message.header.controlId,
          size: message.size,
          peer,
        },
      );
      logger.debug("EchoDispatcher message body: {body}", () => ({
        body: message.text,
      }));
      return Ack.forMessage(message, "AA", { text: ECHO_TEXT });
    }
    logger.info(
      "The EchoDispatcher simply logs and discards messages. Message type: mllp_unknown ({size} bytes) from {peer}",
      { size: message.size, peer },
    );
    logger.debug("EchoDispatcher message body: {body}", () => ({
      body: message.text,
    }));
    return UNKNOWN_REPLY;
  },
};

/**
 * The one-byte MLLP release 2 negative commit reply (NAK).
 *
 * @example A failing dispatcher's reply to non-HL7
 * ```ts
 * import { DispatchStream, NAK } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const failing = () => {
 *   throw new Error("database down");
 * };
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")])
 *     .pipeThrough(new DispatchStream(failing)),
 * );
 * assertEquals(reply, new Uint8Array([NAK]));
 * ```
 */
export const NAK = 0x15;

/**
 * What happened to one frame in a {@linkcode DispatchStream}.
 *
 * @example Collect what happened to each frame
 * ```ts
 * import {
 *   type DispatchOutcome,
 *   DispatchStream,
 *   EchoDispatcher,
 * } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const outcomes: DispatchOutcome[] = [];
 * const message = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r";
 * await Array.fromAsync(
 *   ReadableStream.from(
 *     [message, "PING"].map((text) => new TextEncoder().encode(text)),
 *   )
 *     .pipeThrough(
 *       new DispatchStream(EchoDispatcher, {
 *         onDispatched: (o) => outcomes.push(o),
 *       }),
 *     ),
 * );
 * assertEquals(outcomes.map((o) => [o.kind, o.controlId, o.ackCode, o.failed]), [
 *   ["hl7", "7", "AA", false],
 *   ["unknown", undefined, undefined, false],
 * ]);
 * ```
 */
export interface DispatchOutcome {
  /**
   * `"hl7"`, `"batch"` (an FHS/BHS batch, one frame), `"unknown"`, or
   * `"unreadable"` (MSH, FHS or BHS that cannot be read).
   */
  kind: "hl7" | "batch" | "unknown" | "unreadable";
  /** MSH-10 of the message, when it is HL7. */
  controlId?: string;
  /** The code of the ACK replied, when the reply was an ACK. */
  ackCode?: string;
  /** Whether the dispatcher threw or rejected. */
  failed: boolean;
  /** The time the dispatch took, in milliseconds. */
  ms: number;
  /** The size of the frame, in bytes. */
  bytes: number;
}

/**
 * Options for {@linkcode DispatchStream}.
 *
 * @typeParam C The type of the `context` value.
 *
 * @example Time out a slow dispatcher
 * ```ts
 * import { DispatchStream, type DispatchStreamOptions } from "@x/mllp/dispatcher";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * let aborted = false;
 * const slow = (_message: unknown, ctx: { signal: AbortSignal }) =>
 *   new Promise<undefined>(() => {
 *     ctx.signal.addEventListener("abort", () => aborted = true); // never answers
 *   });
 * const options: DispatchStreamOptions = { dispatchTimeout: 10 };
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([
 *     new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r"),
 *   ])
 *     .pipeThrough(new DispatchStream(slow, options)),
 * );
 * assertEquals([Ack.parse(reply).code, aborted], ["AE", true]);
 * ```
 */
export interface DispatchStreamOptions<C = unknown> {
  /** The sender's address, passed to the dispatcher. */
  peer?: Address;
  /** The receiver's address, passed to the dispatcher. */
  local?: Address;
  /** The peer certificate's subject CN, when there is one. */
  certificateName?: string;
  /** The application value passed to the dispatcher as `ctx.context`. */
  context?: C;
  /** Called after each frame with what happened. */
  onDispatched?: (outcome: DispatchOutcome) => void;
  /**
   * How long a dispatcher may take to answer, in milliseconds; past it,
   * the sender gets `AE` (a NAK for non-HL7) and `ctx.signal` is aborted.
   * `0` waits for ever.
   *
   * @default {0}
   */
  dispatchTimeout?: number;
  /**
   * When aborted, nothing more is dispatched: frames not yet dispatched
   * are dropped, and a dispatch in progress has its `ctx.signal` aborted
   * and is no longer waited for (its reply, if it comes, is dropped).
   */
  signal?: AbortSignal;
  /**
   * How HL7 payloads' charsets are picked and applied (a default, an
   * override, strict decoding, UTF-16/UTF-32); a message refused for its
   * charset gets `AR` naming it (see `CharsetOptions` in
   * `@x/mllp/charset`). Not checked here: see `checkCharsetOptions`.
   *
   * @default {{}}
   */
  charset?: CharsetOptions;
  /**
   * The MLLP release spoken. With `2`, one-byte commit frames (`0x06`,
   * `0x15`) from the peer are consumed, never dispatched, and every other
   * frame is first answered with the commit frame `0x06` as soon as it is
   * read (before the dispatcher runs), then with its reply as usual.
   *
   * @default {1}
   */
  mllpRelease?: 1 | 2;
}

const UNKNOWN_ADDRESS: Address = { hostname: "unknown", port: 0 };

/**
 * The block size of a dispatch stream's reply payloads: replies encode
 * into shared blocks (see `_pool.ts`), which the encoder copies into its
 * frames at once.
 */
const REPLY_BLOCK_BYTES = 8 * 1024;

/**
 * A transform stream from frame payloads to reply payloads: it reads each
 * frame as a message, runs the dispatcher, and turns its return value into
 * the reply bytes (not yet framed). One frame at a time, so replies keep
 * the order of the messages.
 *
 * A dispatcher that throws or rejects never ends the stream: HL7 gets an
 * `AE` ACK, a batch a response batch with `AE` for each of its messages,
 * an unreadable MSH gets `AR` (without calling the dispatcher), and an
 * unknown payload gets the one-byte NAK (`0x15`) of MLLP release 2.
 * A reply that cannot be framed (it holds a VT or FS byte) or is of the
 * wrong type counts as such a failure, so the sender always hears back.
 *
 * Replies the stream encodes (from an `Ack` or text) of up to 2 KiB are
 * views of 8 KiB blocks that it allocates as it goes, one allocation per
 * block rather than per reply; use `reply.slice()` to own the bytes alone.
 *
 * @typeParam C The type of the `context` value.
 *
 * @example An unreadable header gets AR
 * ```ts
 * import { DispatchStream, EchoDispatcher } from "@x/mllp";
 * import { assertStringIncludes } from "@std/assert";
 *
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("MSH|")])
 *     .pipeThrough(new DispatchStream(EchoDispatcher)),
 * );
 * assertStringIncludes(new TextDecoder().decode(reply), "MSA|AR|");
 * ```
 */
export class DispatchStream<C = unknown>
  extends TransformStream<Uint8Array, Uint8Array> {
  #busy = false;

  /** Whether a dispatch is running. */
  get busy(): boolean {
    return this.#busy;
  }

  /**
   * Constructs a dispatch stream.
   *
   * @param dispatcher The dispatcher to run for each frame.
   * @param options Addresses, context and a callback per frame.
   */
  constructor(
    dispatcher: Dispatcher<C>,
    options: DispatchStreamOptions<C> = {},
  ) {
    const dispatch: DispatchFunction<C> = typeof dispatcher === "function"
      ? dispatcher
      : (message, ctx) => dispatcher.dispatch(message, ctx);
    const peer = options.peer ?? UNKNOWN_ADDRESS;
    const site: DispatchSite<C> = {
      dispatch,
      peer,
      local: options.local ?? UNKNOWN_ADDRESS,
      certificateName: options.certificateName,
      context: options.context as C,
      label: formatAddress(peer),
      timeout: options.dispatchTimeout ?? 0,
      stop: options.signal,
      pool: new BytePool(REPLY_BLOCK_BYTES),
      read: { charset: options.charset },
      release: options.mllpRelease ?? 1,
      commitsItself: commitsItself(dispatcher),
      failureReply: failureReply(dispatcher),
    };
    const stop = options.signal;
    const onDispatched = options.onDispatched;
    // Writes a payload ahead of the reply (the controller is the same for
    // every frame): made once, on the first frame.
    let sendFirst: ((payload: Uint8Array) => void) | undefined;
    super(
      {
        transform: (frame, controller) => {
          if (stop?.aborted) return;
          // Release 2: the peer's commit of a reply is not a message.
          if (site.release === 2 && isCommitFrame(frame)) return;
          const started = performance.now();
          const finish = (outcome: HandledFrame) => {
            this.#busy = false;
            if (outcome.reply !== undefined && !stop?.aborted) {
              controller.enqueue(outcome.reply);
            }
            onDispatched?.({
              kind: outcome.kind,
              controlId: outcome.controlId,
              ackCode: outcome.ackCode,
              failed: outcome.failed,
              ms: performance.now() - started,
              bytes: frame.length,
            });
          };
          this.#busy = true;
          let handled: HandledFrame | Promise<HandledFrame>;
          try {
            handled = handleFrame(
              frame,
              site,
              sendFirst ??= (payload) => {
                if (!stop?.aborted) controller.enqueue(payload);
              },
            );
          } catch (error) {
            this.#busy = false;
            throw error;
          }
          // A dispatcher that answered at once is finished in this turn, with
          // no promise to wait for.
          if (!(handled instanceof Promise)) return finish(handled);
          return handled.then(finish, (error) => {
            this.#busy = false;
            throw error;
          });
        },
        // One frame may wait while another is dispatched, and one reply
        // while the encoder is busy: fewer backpressure round trips per
        // message than with the defaults (1 and 0).
      },
      { highWaterMark: 2 },
      { highWaterMark: 1 },
    );
  }
}

/** What every dispatch of one {@linkcode DispatchStream} shares. */
interface DispatchSite<C> {
  dispatch: DispatchFunction<C>;
  peer: Address;
  local: Address;
  certificateName: string | undefined;
  context: C;
  /** The peer as text, for log lines. */
  label: string;
  /** The dispatch timeout in milliseconds (0: none). */
  timeout: number;
  stop: AbortSignal | undefined;
  /** Where reply payloads are encoded into. */
  pool: BytePool;
  /** How frames are read (their charset options). */
  read: ReadMessageOptions;
  /** The MLLP release (2: commit frames). */
  release: 1 | 2;
  /** Whether the dispatcher sends its own release 2 commit frame. */
  commitsItself: boolean;
  /** The dispatcher's failure route (enhanced mode), if any. */
  failureReply: FailureReply | undefined;
}

/** The release 2 commit frame's payload. */
interface HandledFrame {
  kind: DispatchOutcome["kind"];
  controlId?: string;
  ackCode?: string;
  failed: boolean;
  reply?: Uint8Array;
}

/** A dispatcher that did not answer within the dispatch timeout. */
class DispatchTimeoutError extends Error {
  constructor(ms: number) {
    super(`Dispatcher did not answer within ${ms} ms`);
    this.name = "DispatchTimeoutError";
  }
}

/** A dispatch given up on because the stream's `signal` was aborted. */
class DispatchStoppedError extends Error {
  constructor(options?: ErrorOptions) {
    super(
      "Dispatch given up on: the connection or the receiver stopped",
      options,
    );
    this.name = "DispatchStoppedError";
  }
}

/**
 * Waits for a dispatcher that answered with a promise, bounded by
 * `timeout` (0: unbounded) and by `stop`; `controller` (the dispatcher's
 * `ctx.signal`) is aborted when the time runs out or `stop` fires. A
 * dispatcher that ignores its signal is not waited for past either.
 */
async function awaitDispatch(
  returned: PromiseLike<DispatchReply>,
  controller: AbortController,
  timeout: number,
  stop: AbortSignal | undefined,
): Promise<DispatchReply> {
  const running = Promise.resolve(returned);
  if (!(timeout > 0) && !stop) return await running;
  running.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onStop: (() => void) | undefined;
  try {
    const limits: Promise<never>[] = [];
    if (timeout > 0) {
      limits.push(
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const error = new DispatchTimeoutError(timeout);
            // Reject before aborting: a dispatcher that answers from its
            // abort listener must not win the race.
            reject(error);
            controller.abort(error);
          }, timeout);
        }),
      );
    }
    if (stop) {
      limits.push(
        new Promise<never>((_, reject) => {
          onStop = () => {
            reject(new DispatchStoppedError({ cause: stop.reason }));
            controller.abort(stop.reason);
          };
          if (stop.aborted) onStop();
          else stop.addEventListener("abort", onStop, { once: true });
        }),
      );
    }
    return await Promise.race([running, ...limits]);
  } finally {
    clearTimeout(timer);
    if (onStop) stop?.removeEventListener("abort", onStop);
  }
}

/**
 * Reads a frame, runs the dispatcher and turns its answer into the reply.
 * The result comes at once when the dispatcher answered at once (no timer,
 * no race: nothing is left to bound), and as a promise otherwise.
 */
function handleFrame<C>(
  frame: Uint8Array,
  site: DispatchSite<C>,
  send: (payload: Uint8Array) => void,
): HandledFrame | Promise<HandledFrame> {
  const label = site.label;
  if (logger.isEnabledFor("debug")) {
    logger.debug("Receiver received data: {size} bytes from {peer}", {
      size: frame.length,
      peer: label,
    });
  }
  let message: Message;
  try {
    message = readMessage(frame, site.read);
  } catch (error) {
    if (!(error instanceof HeaderError)) throw error;
    if (error instanceof CharsetError) {
      logger.warn("Refused HL7 message from {peer}: {reason}; replying AR", {
        peer: label,
        reason: error.message,
      });
      const ack = charsetRefusal(frame, error);
      return {
        kind: "unreadable",
        controlId: error.header?.controlId,
        ackCode: ack.code,
        failed: false,
        reply: refusalBytes(ack, error),
      };
    }
    logger.warn("Cannot read HL7 header from {peer}: {reason}; replying AR", {
      peer: label,
      reason: error.message,
    });
    const ack = Ack.forMessage(frame, "AR");
    if (site.release === 2) send(COMMIT_FRAME);
    return {
      kind: "unreadable",
      ackCode: ack.code,
      failed: false,
      reply: ack.toBytes(),
    };
  }
  const controlId = message.header?.controlId;
  const span = startDispatchSpan(label, controlId, message.header?.messageType);
  const controller = new AbortController();
  if (site.release === 2 && !site.commitsItself) send(COMMIT_FRAME);
  let returned: DispatchReply | PromiseLike<DispatchReply>;
  const ctx: DispatchContext<C> & WithSendFirst = {
    peer: site.peer,
    local: site.local,
    certificateName: site.certificateName,
    context: site.context,
    receivedAt: new Date(),
    signal: controller.signal,
  };
  ctx[SEND_FIRST] = send;
  const failed = (error: unknown) =>
    failedDispatch(error, message, span, label, site, ctx);
  try {
    returned = site.dispatch(message, ctx);
  } catch (error) {
    return failed(error);
  }
  const settle = (reply: DispatchReply): HandledFrame => {
    const outcome = answered(reply, message, span, site.pool);
    // A reply that cannot be sent fails like a dispatcher that threw.
    return outcome instanceof Error ? failed(outcome) : outcome;
  };
  if (!isThenable(returned)) return settle(returned);
  return awaitDispatch(returned, controller, site.timeout, site.stop).then(
    settle,
    failed,
  );
}

/**
 * The outcome of a dispatcher's answer, or the error that makes it
 * unsendable (a reply that would break the framing, or of the wrong type).
 */
function answered(
  reply: DispatchReply,
  message: Message,
  span: Span,
  pool: BytePool,
): HandledFrame | Error {
  let converted: { reply?: Uint8Array; ackCode?: string };
  try {
    converted = toReply(reply, message, pool);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
  endSpan(span, converted.ackCode);
  return {
    kind: message.kind,
    controlId: message.header?.controlId,
    failed: false,
    reply: converted.reply,
    ackCode: converted.ackCode,
  };
}

/** The outcome of a dispatch that threw, rejected, timed out or stopped. */
function failedDispatch<C>(
  error: unknown,
  message: Message,
  span: Span,
  label: string,
  site?: DispatchSite<C>,
  ctx?: DispatchContext<C>,
): HandledFrame {
  const controlId = message.header?.controlId;
  if (error instanceof DispatchStoppedError) {
    // No reply can be sent any more; the sender will resend.
    endSpan(span, undefined, error);
    logger.warn(
      "Gave up on {kind} message {controlId} from {peer}: the connection or the receiver stopped before the dispatcher answered",
      { kind: message.kind, controlId: controlId ?? "", peer: label },
    );
    return { kind: message.kind, controlId, failed: true };
  }
  endSpan(span, message.kind === "hl7" ? "AE" : undefined, error);
  logger.error(
    "Dispatcher failed on {kind} message {controlId} from {peer}: {error}",
    { kind: message.kind, controlId: controlId ?? "", peer: label, error },
  );
  if (message.kind === "unknown") {
    return {
      kind: message.kind,
      failed: true,
      reply: NAK_FRAME,
    };
  }
  const reason = error instanceof Error ? error.message : String(error);
  const text = withoutControls(`Dispatcher failed: ${reason}`.slice(0, 200));
  if (message.kind === "batch") {
    // Every message of the batch gets AE, in a response batch.
    return {
      kind: message.kind,
      failed: true,
      reply: buildBatchResponse(message, "AE", { text }).raw,
    };
  }
  const ack = Ack.forMessage(message, "AE", { text });
  if (site?.failureReply && ctx) {
    // Enhanced mode: the commit ACK may have gone out already, and MSH-16
    // and the receiver's applicationAcks say where an AE goes, if at all.
    const routed = site.failureReply(
      message,
      ack,
      ctx as DispatchContext<unknown>,
    );
    const converted = routed === undefined || routed === null
      ? {}
      : toReply(routed, message, site.pool);
    return {
      kind: message.kind,
      controlId,
      ackCode: converted.ackCode,
      failed: true,
      reply: converted.reply,
    };
  }
  return {
    kind: message.kind,
    controlId,
    ackCode: ack.code,
    failed: true,
    reply: encodeText(ack.toString(), replyEncoding(ack.encoding, message)),
  };
}

function toReply(
  reply: DispatchReply,
  message: Message,
  pool: BytePool,
): { reply?: Uint8Array; ackCode?: string } {
  if (reply === undefined || reply === null) return {};
  if (reply instanceof Ack) {
    return {
      reply: framable(
        encodeReply(
          reply.toString(),
          replyEncoding(reply.encoding, message),
          pool,
        ),
      ),
      ackCode: reply.code,
    };
  }
  if (reply instanceof Uint8Array) {
    return { reply: framable(isWrapped(reply) ? unwrap(reply) : reply) };
  }
  if (typeof reply === "string") {
    const text = isWrapped(reply) ? unwrap(reply) : reply;
    let encoding = message.encoding;
    if (isHl7(text)) {
      try {
        const named = charsetEncoding(readHeader(text).characterSet);
        if (named !== undefined) encoding = replyEncoding(named, message);
      } catch {
        // Not a readable header: keep the message's charset.
      }
    }
    return { reply: framable(encodeReply(text, encoding, pool)) };
  }
  throw new TypeError(
    `Cannot send reply: a dispatcher must return an Ack, string, Uint8Array or nothing, got ${typeof reply}`,
  );
}

/** Encodes a reply's text, into the pool when it is UTF-8. */
function encodeReply(
  text: string,
  encoding: string,
  pool: BytePool,
): Uint8Array {
  return encoding === "utf-8"
    ? pool.encodeUtf8(text)
    : encodeText(text, encoding);
}

/** Returns a reply payload, or throws if it would break the MLLP framing. */
function framable(reply: Uint8Array): Uint8Array {
  const problem = framingProblem(reply);
  if (problem) {
    throw new TypeError(
      `Cannot send reply: it contains ${problem}, which would break the MLLP framing`,
    );
  }
  return reply;
}

/**
 * Replaces control characters (VT and FS above all, which would break the
 * framing) with spaces; tabs stay.
 */
function withoutControls(text: string): string {
  let out = "";
  for (const char of text) {
    const code = char.charCodeAt(0);
    out += (code < 0x20 && code !== 0x09) || code === 0x7f ? " " : char;
  }
  return out;
}
