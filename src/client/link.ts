/**
 * One client connection and stop-and-wait request/reply on it: at most one
 * request in flight, and a reply is credited only to the request that is in
 * flight. Replies are read with `conn.read` into a reused buffer and
 * decoded by the connection's `MllpDecoderStream` (its `decode`); requests
 * are framed (VT + payload + FS CR) and written with `conn.write`, in order.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { describeTlsError, isTlsRecord } from "../net/tls.ts";
import type { ChunkReader, TransportConn } from "../net/transport.ts";
import {
  ClientError,
  ConnectionClosedError,
  InvalidReplyError,
  type ReplyProblem,
  ReplyTimeoutError,
  TlsHandshakeError,
} from "./errors.ts";
import { FrameSizeError } from "../wire/errors.ts";
import { BytePool, ScratchBytes } from "../wire/_pool.ts";
import {
  CARRIAGE_RETURN,
  END_BLOCK,
  MllpDecoderStream,
  START_BLOCK,
} from "../wire/framer.ts";

/** The block size frames are made in (see `_pool.ts`). */
const FRAME_BLOCK_BYTES = 16 * 1024;

/** The largest frame whose buffer is kept for the next. */
const SCRATCH_MAX_BYTES = 64 * 1024;

const logger = getLogger(["mllp", "client"]);

interface Pending {
  resolve(frame: Uint8Array): void;
  reject(error: Error): void;
  /** No reply within the timeout is an answer, not a failure. */
  silenceAllowed?: boolean;
}

/**
 * What {@linkcode Link.request} rejects with when a request that allows
 * silence got no reply in time: the link stays open.
 */
export class SilenceError extends Error {
  /** The reply timeout that passed, in milliseconds. */
  readonly timeout: number;

  constructor(timeout: number) {
    super(`No reply within ${timeout} ms`);
    this.name = "SilenceError";
    this.timeout = timeout;
  }
}

/** Options for a {@linkcode Link}. */
export interface LinkOptions {
  maxFrameBytes: number;
  /** The receiver's address, for messages. */
  label: string;
  /** Whether the TLS handshake presented a client certificate. */
  sentCertificate: boolean;
  /**
   * Sees each frame first: returns `true` to consume it (an enhanced-mode
   * application ACK for an earlier send, a release 2 commit frame), so it
   * is neither the reply in flight nor unsolicited.
   */
  intercept?: (frame: Uint8Array) => boolean;
}

/** Why a link closed. */
export interface LinkClosed {
  /** The error that closed it, already named; none for a plain close. */
  error?: Error;
  /** Whether this side closed it (timeout, bad reply, close, reconnect). */
  byClient: boolean;
  /** How many replies it carried. */
  replies: number;
}

/** One connection to a receiver. */
export class Link {
  /** Resolves when both directions have wound down. */
  readonly done: Promise<void>;
  /** Resolves with why the link closed, as soon as it does. */
  readonly closed: Promise<LinkClosed>;
  readonly conn: TransportConn;
  /** The last write queued, while it is under way. */
  #writing: Promise<void> | undefined;
  /** Where frames are made while another write is under way. */
  #pool = new BytePool(FRAME_BLOCK_BYTES);
  /** Where a frame is made when no other write is under way. */
  #scratch = new ScratchBytes(SCRATCH_MAX_BYTES);
  #pending: Pending | undefined;
  #isClosed = false;
  #label: string;
  #reading: Promise<void>;
  #sentCertificate: boolean;
  #intercept: ((frame: Uint8Array) => boolean) | undefined;
  #replies = 0;
  #decoder: MllpDecoderStream;
  /** Frames taken from the decoder by the read loop. */
  #delivered = 0;
  /** Data seen after a reply's trailer, before that reply was delivered. */
  #trailing: InvalidReplyError | undefined;
  #closeError: Error | undefined;
  #resolveClosed!: (closed: LinkClosed) => void;
  /**
   * The reply timer: one per link, not one per request. It is left running
   * when a reply arrives; when it fires it checks the request in flight,
   * if any, against its deadline, and sets itself again for what is left.
   */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires (`performance.now()`), while it is set. */
  #timerAt = 0;
  /** When the request in flight times out (`performance.now()`). */
  #deadline = 0;
  /** The reply timeout of the request in flight, in milliseconds. */
  #timeout = 0;

  constructor(conn: TransportConn, options: LinkOptions) {
    this.conn = conn;
    this.#label = options.label;
    this.#sentCertificate = options.sentCertificate;
    this.#intercept = options.intercept;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#decoder = new MllpDecoderStream({
      maxFrameBytes: options.maxFrameBytes,
      label: options.label,
      onJunk: (_bytes, data) => this.#junk(data),
    });
    this.#reading = this.#read(conn.reader());
    this.done = this.#reading;
  }

  /** Sets the reply timer to fire at `at`, unless it fires by then anyway. */
  #arm(at: number, now: number) {
    if (this.#timer !== undefined) {
      if (this.#timerAt <= at) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, at - now));
  }

  #onTimer = () => {
    this.#timer = undefined;
    if (this.#pending === undefined || this.#isClosed) return;
    const now = performance.now();
    if (now < this.#deadline) {
      this.#arm(this.#deadline, now);
      return;
    }
    const timeout = this.#timeout;
    if (this.#pending.silenceAllowed) {
      // Silence is an answer here: the connection goes on.
      const pending = this.#pending;
      this.#pending = undefined;
      pending.reject(new SilenceError(timeout));
      return;
    }
    void this.shutdown(
      new ReplyTimeoutError(
        `No reply from ${this.#label} within ${timeout} ms; the message was sent and its outcome is unknown`,
        { timeout, address: this.#label },
      ),
      true,
    );
  };

  /** Whether the link is closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Whether a request is waiting for its reply. */
  get busy(): boolean {
    return this.#pending !== undefined;
  }

  #problem(problem: ReplyProblem, message: string): InvalidReplyError {
    return new InvalidReplyError(`${message} from ${this.#label}`, {
      problem,
      address: this.#label,
    });
  }

  #junk(data: Uint8Array) {
    // Line ends after a reply are harmless; anything else means the byte
    // stream is not what MLLP promised, so no later reply can be trusted.
    if (data.every((b) => b === 0x0d || b === 0x0a)) return;
    // The decoder reports junk as it scans a chunk, but hands over the
    // chunk's whole frames only after the scan: junk that follows a frame
    // not yet delivered came after that frame's trailer.
    const afterFrame = this.#decoder.frames > this.#delivered;
    const error = isTlsRecord(data)
      ? this.#problem(
        "no_start_block",
        "Reply is a TLS record, not MLLP (the receiver expects TLS)",
      )
      : this.#pending && !afterFrame
      ? this.#problem("no_start_block", "Reply without a start block")
      : this.#problem("data_after_trailer", "Data after a reply's trailer");
    logger.warn("{message}; closing the connection", {
      message: error.message,
    });
    if (afterFrame && error.problem === "data_after_trailer") {
      // Let the reply before it through (it is whole, and verified against
      // its message), then close: see #read.
      this.#trailing ??= error;
      return;
    }
    void this.shutdown(error, true);
  }

  /**
   * Reads the connection, one chunk at a time, into the decoder (its
   * `decode`, which copies what it keeps, so the read buffer is reused),
   * and hands each frame to the request in flight.
   */
  async #read(reader: ChunkReader) {
    let cause: unknown;
    // The decoder hands each chunk's frames over here, in order.
    const queue: Uint8Array[] = [];
    const sink = { enqueue: (frame: Uint8Array) => queue.push(frame) };
    try {
      reading: while (true) {
        const chunk = await reader.next();
        if (chunk === null) this.#decoder.end(sink);
        else this.#decoder.decode(chunk, sink);
        for (const frame of queue) {
          // Closed by a frame before (a release mismatch): the rest of the
          // chunk answers nothing.
          if (this.#isClosed) break reading;
          this.#delivered++;
          if (this.#intercept?.(frame)) continue;
          const pending = this.#pending;
          if (!pending) {
            logger.warn(
              "Unsolicited {bytes} byte frame from {address} with no send in flight; closing the connection",
              { bytes: frame.length, address: this.#label },
            );
            cause = this.#problem("unsolicited", "Unsolicited frame");
            break reading;
          }
          this.#pending = undefined;
          this.#replies++;
          pending.resolve(frame);
          if (this.#trailing && this.#delivered >= this.#decoder.frames) {
            cause = this.#trailing;
            break reading;
          }
        }
        queue.length = 0;
        if (chunk === null || this.#isClosed) break;
      }
    } catch (error) {
      cause = error;
    }
    void this.shutdown(cause, cause instanceof ClientError);
  }

  /**
   * Closes the connection; a request in flight fails with the cause.
   *
   * @param cause Why.
   * @param byClient Whether this side decided to close.
   */
  shutdown(cause?: unknown, byClient = true): Promise<void> {
    if (!this.#isClosed) {
      this.#isClosed = true;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.conn.close();
      const error = cause === undefined ? undefined : this.#explain(cause);
      this.#closeError = error;
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.reject(
        error ??
          new ConnectionClosedError(
            `Connection to ${this.#label} closed before the reply arrived`,
            { context: "receiving", address: this.#label },
          ),
      );
      this.#resolveClosed({ error, byClient, replies: this.#replies });
    }
    return this.done;
  }

  /** Turns what ended the connection into the error a send reports. */
  #explain(cause: unknown): Error {
    if (cause instanceof ClientError) return cause;
    if (cause instanceof FrameSizeError) {
      return new InvalidReplyError(
        `Cannot read reply from ${this.#label}: ${cause.message}`,
        { cause, address: this.#label, problem: "frame_too_large" },
      );
    }
    if (this.conn.secure && this.#replies === 0) {
      // With TLS 1.3 the receiver judges the client certificate after the
      // client has finished its handshake, so a refusal shows up here.
      const text = cause instanceof Error ? cause.message : String(cause);
      const refusal = /alert/i.test(text) ||
        (this.#sentCertificate &&
          /UnexpectedEof|close_notify|reset/i.test(text));
      if (refusal) return tlsHandshakeError(cause, this.#label, true);
    }
    return new ConnectionClosedError(
      `Connection to ${this.#label} closed before the reply arrived`,
      { cause, context: "receiving", address: this.#label },
    );
  }

  /**
   * Writes one payload without waiting for a reply (a release 2 commit
   * frame, or a resend of the request in flight).
   *
   * @param payload The payload, not yet framed.
   * @returns A promise that resolves once it is written; it fails if the
   *   link is closed.
   */
  async write(payload: Uint8Array): Promise<void> {
    if (this.#isClosed) {
      throw new ConnectionClosedError(
        `Connection to ${this.#label} is closed`,
        {
          context: "sending",
          address: this.#label,
        },
      );
    }
    await this.#write(payload);
  }

  /**
   * Writes a payload in its MLLP frame, after the writes before it. The
   * client checks every payload for VT and FS before it gets here (see
   * Client#prepare in client.ts): no need to scan it twice.
   */
  #write(payload: Uint8Array): Promise<void> {
    const end = payload.length + 1;
    const before = this.#writing;
    // With no write under way, the reused buffer is free: the common case
    // (one send at a time) allocates nothing.
    const frame = (before ? this.#pool : this.#scratch).alloc(end + 2);
    frame[0] = START_BLOCK;
    frame.set(payload, 1);
    frame[end] = END_BLOCK;
    frame[end + 1] = CARRIAGE_RETURN;
    const write = before
      ? before.then(() => this.conn.write(frame))
      : this.conn.write(frame);
    const settled = write.then(
      () => {
        if (this.#writing === settled) this.#writing = undefined;
      },
      () => {},
    );
    this.#writing = settled;
    return write;
  }

  /**
   * Gives the request in flight its whole reply timeout again, from now
   * (release 2: after each resend, and once the commit frame arrived).
   */
  restartDeadline() {
    if (this.#pending === undefined) return;
    const now = performance.now();
    this.#deadline = now + this.#timeout;
    this.#arm(this.#deadline, now);
  }

  /**
   * Writes one payload and waits for its reply.
   *
   * @param payload The payload, not yet framed.
   * @param timeout The reply timeout, in milliseconds.
   * @param signal Aborts the wait (the link is closed: outcome unknown).
   * @param onWritten Called once the frame is handed to the socket.
   * @param silenceAllowed When no reply within `timeout` is an answer (an
   *   enhanced-mode message whose MSH-15 and MSH-16 ask for none in some
   *   outcome): reject with {@linkcode SilenceError} and keep the link
   *   open, rather than close it.
   */
  async request(
    payload: Uint8Array,
    timeout: number,
    signal?: AbortSignal,
    onWritten?: () => void,
    silenceAllowed = false,
  ): Promise<Uint8Array> {
    if (this.#isClosed) {
      // Report why it closed (a TLS refusal, say) when that is known.
      throw this.#closeError ??
        new ConnectionClosedError(`Connection to ${this.#label} is closed`, {
          context: "sending",
          address: this.#label,
        });
    }
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    promise.catch(() => {});
    this.#pending = { resolve, reject, silenceAllowed };
    const fail = (error: Error) => {
      if (this.#pending?.reject !== reject) return;
      void this.shutdown(error, true);
    };
    const now = performance.now();
    this.#timeout = timeout;
    this.#deadline = now + timeout;
    this.#arm(this.#deadline, now);
    const onAbort = () =>
      fail(
        new ConnectionClosedError(
          `Send to ${this.#label} aborted after the message was written; its outcome is unknown`,
          { cause: signal?.reason, context: "receiving", address: this.#label },
        ),
      );
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      try {
        await this.#write(payload);
        onWritten?.();
      } catch (error) {
        // The read side usually knows why (a TLS alert, say): let it end
        // first. The reply timer bounds the wait.
        await this.#reading;
        fail(
          new ConnectionClosedError(
            `Cannot send to ${this.#label}: the connection is closed`,
            { cause: error, context: "sending", address: this.#label },
          ),
        );
      }
      return await promise;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** Names a TLS handshake failure seen by a client. */
export function tlsHandshakeError(
  error: unknown,
  address: string,
  sentCertificate: boolean,
): TlsHandshakeError {
  const info = describeTlsError(error, "client", { sentCertificate });
  return new TlsHandshakeError(
    `TLS handshake with ${address} failed: ${info.detail}`,
    {
      cause: error,
      address,
      refusedBy: info.by === "local" ? "client" : "server",
      failure: info.failure,
    },
  );
}

/** Whether an error from connecting looks like a TLS failure. */
export function isTlsError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const text = `${error.name} ${
    (error as { code?: string }).code ?? ""
  } ${error.message}`;
  return /InvalidData|certificate|alert|tls|ssl|handshake|UnexpectedEof|close_notify/i
    .test(text);
}
