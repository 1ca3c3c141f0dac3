/**
 * The dispatch stream: frame payloads in, reply payloads out. Each frame is
 * read as a message and run through a path of stages (see `stage.ts`) and
 * the dispatcher; the answer becomes the reply. One frame at a time, so
 * replies keep the order of the messages.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Span } from "@opentelemetry/api";
import { Ack } from "../hl7/ack.ts";
import { buildBatchResponse } from "../hl7/batch.ts";
import { CharsetError, type CharsetOptions } from "../hl7/charset.ts";
import { charsetRefusal, refusalBytes } from "../hl7/charset_reply.ts";
import { HeaderError } from "../hl7/errors.ts";
import {
  type Message,
  readMessage,
  type ReadMessageOptions,
} from "../hl7/message.ts";
import { type Address, formatAddress } from "../net/address.ts";
import { endSpan, startDispatchSpan } from "../observe/telemetry.ts";
import { BytePool, ScratchBytes } from "../wire/_pool.ts";
import { WordViews } from "../wire/_scan.ts";
import { COMMIT_FRAME, isCommitFrame, NAK_FRAME } from "../wire/release2.ts";
import { asFunction, plain, reasonOf } from "./_util.ts";
import { type ReplyEncoder, toReply } from "./reply.ts";
import { compose, type Exchange, isThenable, type Path } from "./stage.ts";
import { release2Stage } from "./stages/release2.ts";
import type { DispatchContext, Dispatcher, DispatchReply } from "./types.ts";

const logger = getLogger(["mllp", "dispatcher"]);

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

/** The largest reply a reused reply buffer grows to. */
const SCRATCH_MAX_BYTES = 64 * 1024;

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
  #frames: FrameHandler<C>;

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
    const release = options.mllpRelease === 2
      ? release2Stage<C>({ store: false })
      : undefined;
    const frames = new FrameHandler(
      compose([release], asFunction(dispatcher)),
      options,
    );
    super(transformer(frames), WRITABLE_STRATEGY, READABLE_STRATEGY);
    this.#frames = frames;
  }

  /** Whether a dispatch is running. */
  get busy(): boolean {
    return this.#frames.busy;
  }
}

/**
 * A dispatch stream over a path of stages that someone else composed: the
 * receiver's connections run one over the receiver's path
 * (`src/receiver/path.ts`). The stages answer for release 2 commits; the
 * `mllpRelease` option still makes the stream consume the peer's commit
 * frames and commit frames it cannot read.
 */
export class PathStream<C = unknown>
  extends TransformStream<Uint8Array, Uint8Array> {
  #frames: FrameHandler<C>;

  /**
   * Constructs the stream.
   *
   * @param path The stages and the dispatcher.
   * @param options Addresses, context and a callback per frame.
   */
  constructor(path: Path<C>, options: DispatchStreamOptions<C> = {}) {
    const frames = new FrameHandler(path, options);
    super(transformer(frames), WRITABLE_STRATEGY, READABLE_STRATEGY);
    this.#frames = frames;
  }

  /** Whether a dispatch is running. */
  get busy(): boolean {
    return this.#frames.busy;
  }
}

// One frame may wait while another is dispatched, and one reply while the
// encoder is busy: fewer backpressure round trips per message than with
// the defaults (1 and 0).
const WRITABLE_STRATEGY: QueuingStrategy<Uint8Array> = { highWaterMark: 2 };
const READABLE_STRATEGY: QueuingStrategy<Uint8Array> = { highWaterMark: 1 };

/** A transform stream's transformer over a frame handler. */
function transformer<C>(
  frames: FrameHandler<C>,
): Transformer<Uint8Array, Uint8Array> {
  let out: ((payload: Uint8Array) => void) | undefined;
  return {
    transform(frame, controller) {
      // The controller is the same for every frame.
      out ??= (payload) => controller.enqueue(payload);
      const reply = frames.handle(frame, out);
      if (reply instanceof Promise) {
        return reply.then((payload) => {
          if (payload) controller.enqueue(payload);
        });
      }
      if (reply) controller.enqueue(reply);
    },
  };
}

/** What happened to one frame, and its reply. */
interface HandledFrame {
  kind: DispatchOutcome["kind"];
  controlId?: string;
  ackCode?: string;
  failed: boolean;
  reply?: Uint8Array;
}

/**
 * Runs one frame at a time through a path: reads it as a message, runs the
 * stages and the dispatcher, and returns the reply's payload (not framed).
 * The transformer of every dispatch stream, and what a receiver's
 * connection calls directly for each frame its decoder gives it.
 */
export class FrameHandler<C = unknown> {
  /** Whether a dispatch is running. */
  busy = false;
  #path: Path<C>;
  #peer: Address;
  #local: Address;
  #certificateName: string | undefined;
  #context: C;
  /** The peer as text, for log lines. */
  #label: string;
  /** The dispatch timeout in milliseconds (0: none). */
  #timeout: number;
  #stop: AbortSignal | undefined;
  /** Where reply payloads are encoded into. */
  #pool: ReplyEncoder;
  /** The word view of the pool's block, for checking replies. */
  #words = new WordViews();
  /** How frames are read (their charset options). */
  #read: ReadMessageOptions;
  #release: 1 | 2;
  /**
   * Release 2: the last reply was not committed by the peer (with `0x06`)
   * yet; and whether that was logged already (once per connection).
   */
  #uncommitted = false;
  #warnedRelease = false;
  #onDispatched: ((outcome: DispatchOutcome) => void) | undefined;

  /**
   * Constructs the handler.
   *
   * @param path The stages and the dispatcher.
   * @param options Addresses, context, limits and a callback per frame.
   * @param reuse Whether each reply may be made in the buffer of the one
   * before: for a caller that is done with a reply before it hands over
   * the next frame (it writes it out), never for a stream's readable.
   */
  constructor(
    path: Path<C>,
    options: DispatchStreamOptions<C>,
    reuse = false,
  ) {
    this.#path = path;
    this.#peer = options.peer ?? UNKNOWN_ADDRESS;
    this.#local = options.local ?? UNKNOWN_ADDRESS;
    this.#certificateName = options.certificateName;
    this.#context = options.context as C;
    this.#label = formatAddress(this.#peer);
    this.#timeout = options.dispatchTimeout ?? 0;
    this.#stop = options.signal;
    this.#read = { charset: options.charset };
    this.#release = options.mllpRelease ?? 1;
    this.#onDispatched = options.onDispatched;
    this.#pool = reuse
      ? new ScratchBytes(SCRATCH_MAX_BYTES)
      : new BytePool(REPLY_BLOCK_BYTES);
  }

  /**
   * Handles one frame. A frame that is not a message (a release 2 commit
   * from the peer), and every frame once `signal` is aborted, gets no reply.
   *
   * @param frame The frame's payload.
   * @param out Sends a payload ahead of the reply (commit frames, commit
   * ACKs); not called once `signal` is aborted.
   * @returns The reply's payload, or `undefined` for none: at once when
   * every step answered at once, else as a promise.
   */
  handle(
    frame: Uint8Array,
    out: (payload: Uint8Array) => void,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const stop = this.#stop;
    if (stop?.aborted) return undefined;
    // Release 2: the peer's commit of a reply is not a message.
    if (this.#release === 2 && isCommitFrame(frame)) {
      this.#uncommitted = false;
      return undefined;
    }
    const uncommitted = this.#uncommitted;
    const started = performance.now();
    const finish = (outcome: HandledFrame): Uint8Array | undefined => {
      this.busy = false;
      if (this.#release === 2) this.#noteCommits(uncommitted, outcome);
      this.#onDispatched?.({
        kind: outcome.kind,
        controlId: outcome.controlId,
        ackCode: outcome.ackCode,
        failed: outcome.failed,
        ms: performance.now() - started,
        bytes: frame.length,
      });
      return stop?.aborted ? undefined : outcome.reply;
    };
    this.busy = true;
    let handled: HandledFrame | Promise<HandledFrame>;
    try {
      // `out` is called only while the dispatch has not been given up on:
      // an aborted `signal` aborts the dispatch's `ctx.signal`, which the
      // exchange checks before each send.
      handled = this.#handle(frame, out);
    } catch (error) {
      this.busy = false;
      throw error;
    }
    // A dispatcher that answered at once is finished in this turn, with
    // no promise to wait for.
    if (!(handled instanceof Promise)) return finish(handled);
    return handled.then(finish, (error) => {
      this.busy = false;
      throw error;
    });
  }

  /**
   * Release 2: a message that comes before the peer committed the reply
   * to the one before means the peer may speak release 1 (and take this
   * receiver's commit frame for its reply): logged once per connection.
   */
  #noteCommits(uncommitted: boolean, outcome: HandledFrame) {
    if (uncommitted && !this.#warnedRelease) {
      this.#warnedRelease = true;
      logger.warn(
        "{peer} sent {what} before it committed the reply to the one before with 0x06: it may speak MLLP release 1, and take this receiver's commit frames (0x06) for its replies; if so, set mllpRelease: 2 on the sender (mllp send --mllp-release 2), or run this receiver with release 1 (mllp listen without --mllp-release 2)",
        {
          peer: this.#label,
          what: outcome.controlId === undefined
            ? "a payload"
            : `message ${outcome.controlId}`,
        },
      );
    }
    const reply = outcome.reply;
    this.#uncommitted = reply !== undefined && !isCommitFrame(reply);
  }

  /**
   * Reads a frame, runs the path and turns its answer into the reply. The
   * result comes at once when every step answered at once (no timer, no
   * race: nothing is left to bound), and as a promise otherwise.
   */
  #handle(
    frame: Uint8Array,
    out: (payload: Uint8Array) => void,
  ): HandledFrame | Promise<HandledFrame> {
    const label = this.#label;
    if (logger.isEnabledFor("debug")) {
      logger.debug("Receiver received data: {size} bytes from {peer}", {
        size: frame.length,
        peer: label,
      });
    }
    let message: Message;
    try {
      message = readMessage(frame, this.#read);
    } catch (error) {
      if (!(error instanceof HeaderError)) throw error;
      return this.#unreadable(frame, error, out);
    }
    const span = startDispatchSpan(
      label,
      message.header?.controlId,
      message.header?.messageType,
    );
    const controller = new AbortController();
    const exchange = new FrameExchange<C>(message, {
      peer: this.#peer,
      local: this.#local,
      certificateName: this.#certificateName,
      context: this.#context,
      receivedAt: new Date(),
      signal: controller.signal,
    }, out);
    const failed = (error: unknown) => this.#failed(error, exchange, span);
    let returned: DispatchReply | PromiseLike<DispatchReply>;
    try {
      returned = this.#path.handle(exchange);
    } catch (error) {
      return failed(error);
    }
    const settle = (reply: DispatchReply): HandledFrame => {
      let converted;
      try {
        converted = toReply(reply, message, this.#pool, this.#words);
      } catch (error) {
        // A reply that cannot be sent fails like a dispatcher that threw.
        return failed(error);
      }
      endSpan(span, converted.ackCode);
      return {
        kind: message.kind,
        controlId: message.header?.controlId,
        failed: false,
        reply: converted.reply,
        ackCode: converted.ackCode,
      };
    };
    if (!isThenable(returned)) return settle(returned);
    return awaitDispatch(returned, controller, this.#timeout, this.#stop)
      .then(settle, failed);
  }

  /** The `AR` for a frame whose header (MSH, FHS, BHS) cannot be read. */
  #unreadable(
    frame: Uint8Array,
    error: HeaderError,
    out: (payload: Uint8Array) => void,
  ): HandledFrame {
    const peer = this.#label;
    if (error instanceof CharsetError) {
      logger.warn("Refused HL7 message from {peer}: {reason}; replying AR", {
        peer,
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
      peer,
      reason: error.message,
    });
    const ack = Ack.forMessage(frame, "AR");
    // Release 2: received (and refused in its reply), so committed.
    if (this.#release === 2) out(COMMIT_FRAME);
    return {
      kind: "unreadable",
      ackCode: ack.code,
      failed: false,
      reply: ack.toBytes(),
    };
  }

  /** The outcome of a dispatch that threw, rejected, timed out or stopped. */
  #failed(
    error: unknown,
    exchange: Exchange<C>,
    span: Span | undefined,
  ): HandledFrame {
    const { message } = exchange;
    const controlId = message.header?.controlId;
    const peer = this.#label;
    if (error instanceof DispatchStoppedError) {
      // No reply can be sent any more; the sender will resend.
      endSpan(span, undefined, error);
      logger.warn(
        "Gave up on {kind} message {controlId} from {peer}: the connection or the receiver stopped before the dispatcher answered",
        { kind: message.kind, controlId: controlId ?? "", peer },
      );
      return { kind: message.kind, controlId, failed: true };
    }
    endSpan(span, message.kind === "hl7" ? "AE" : undefined, error);
    logger.error(
      "Dispatcher failed on {kind} message {controlId} from {peer}: {error}",
      { kind: message.kind, controlId: controlId ?? "", peer, error },
    );
    if (message.kind === "unknown") {
      return { kind: message.kind, failed: true, reply: NAK_FRAME };
    }
    const text = plain(`Dispatcher failed: ${reasonOf(error)}`);
    if (message.kind === "batch") {
      // Every message of the batch gets AE, in a response batch.
      return {
        kind: message.kind,
        failed: true,
        reply: buildBatchResponse(message, "AE", { text }).raw,
      };
    }
    // The stages say what an AE becomes (enhanced mode, release 2).
    const answer = this.#path.failed(
      exchange,
      Ack.forMessage(message, "AE", { text }),
    );
    const converted = toReply(answer, message, this.#pool, this.#words);
    return {
      kind: message.kind,
      controlId,
      ackCode: converted.ackCode,
      failed: true,
      reply: converted.reply,
    };
  }
}

/** One frame's message on its way through the path. */
class FrameExchange<C> implements Exchange<C> {
  readonly message: Message;
  readonly ctx: DispatchContext<C>;
  stored?: boolean;
  #out: (payload: Uint8Array) => void;

  constructor(
    message: Message,
    ctx: DispatchContext<C>,
    out: (payload: Uint8Array) => void,
  ) {
    this.message = message;
    this.ctx = ctx;
    this.#out = out;
  }

  send(payload: Uint8Array): void {
    // Given up on (timed out): its answer went out already.
    if (!this.ctx.signal.aborted) this.#out(payload);
  }
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
