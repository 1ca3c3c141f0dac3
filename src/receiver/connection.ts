/**
 * One receiver connection: the connection's bytes → a source stream that
 * notes activity and can be drained → {@linkcode MllpDecoderStream} →
 * a dispatch stream over the receiver's path (`path.ts`) →
 * {@linkcode MllpEncoderStream} →
 * `conn.writable`. Backpressure is the streams' own: while the dispatcher
 * works on one message, at most three chunks more are read from the socket
 * (two of them decoded, waiting in the decoder and the dispatch stream).
 * The pipeline is built when the first bytes arrive, so that a connection
 * that sends nothing costs little more than its pending read.
 *
 * Once the receiver closes a connection (or its stop deadline passes),
 * nothing more from it is dispatched, and a dispatch in progress has its
 * `ctx.signal` aborted and its reply dropped.
 *
 * @module
 */

import type { ChunkReader, TransportConn } from "../net/transport.ts";
import type { Path } from "../dispatch/stage.ts";
import { type DispatchOutcome, PathStream } from "../dispatch/stream.ts";
import { FrameSizeError } from "../wire/errors.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import { MllpDecoderStream, MllpEncoderStream } from "../wire/framer.ts";

/** What a connection needs from its receiver. */
export interface ConnectionSettings<C> {
  /** The stages and the dispatcher (see `path.ts`). */
  path: Path<C>;
  context: C | undefined;
  maxFrameBytes: number | undefined;
  dispatchTimeout: number;
  /** The receiver's charset options. */
  charset?: CharsetOptions;
  /** The MLLP release (2: commit frames); 1 when absent. */
  mllpRelease?: 1 | 2;
  /** Aborted at the stop deadline: nothing is dispatched after it. */
  stop: AbortSignal;
  label: string;
  onJunk(bytes: number, data: Uint8Array): void;
  onResync(bytes: number): void;
  onDispatched(outcome: DispatchOutcome): void;
}

/** A connection being served. */
export class ServedConnection<C> {
  readonly conn: TransportConn;
  /** When the last bytes arrived (`performance.now()`). */
  lastActivity: number = performance.now();
  /** When the frame being received started, if one is. */
  frameStartedAt: number | undefined;
  /** How many messages were dispatched. */
  messages = 0;
  #settings: ConnectionSettings<C>;
  #reader: ChunkReader;
  /** The pipeline's parts, once the first bytes have arrived. */
  #decoder: MllpDecoderStream | undefined;
  #dispatch: PathStream<C> | undefined;
  #sourceController: ReadableStreamDefaultController<Uint8Array> | undefined;
  #draining = false;
  /** Resolves when draining starts before the first bytes arrived. */
  #drained = Promise.withResolvers<null>();
  /**
   * Aborted when the receiver closes the connection or its stop deadline
   * passes: nothing more is dispatched, and a dispatch in progress is
   * given up on.
   */
  #closed = new AbortController();
  #stop: AbortSignal;
  #onStop = () => this.#closed.abort(this.#stop.reason);
  /** The decoder's size error, when a frame was too large. */
  #frameError: FrameSizeError | undefined;

  constructor(conn: TransportConn, settings: ConnectionSettings<C>) {
    this.conn = conn;
    this.#settings = settings;
    this.#stop = settings.stop;
    if (this.#stop.aborted) this.#onStop();
    else this.#stop.addEventListener("abort", this.#onStop, { once: true });
    this.#reader = conn.reader();
  }

  /** Whether a frame has started and not ended. */
  get inFrame(): boolean {
    return this.#decoder?.inFrame ?? false;
  }

  /** Whether the dispatcher is working on a message. */
  get busy(): boolean {
    return this.#dispatch?.busy ?? false;
  }

  /** Whether the connection is draining (no more reading). */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Serves until the peer or the receiver ends the connection.
   *
   * @throws {FrameSizeError} If the peer sent a frame over the limit.
   * @throws {Error} The stream error that ended the connection otherwise.
   */
  async run(): Promise<void> {
    try {
      // The pipeline is built when the first bytes arrive: until then an
      // idle connection costs its pending read, and none of the streams.
      const reading = this.#reader.next();
      // A read given up on (by draining) fails when the connection closes.
      reading.catch(() => {});
      const first = await Promise.race([reading, this.#drained.promise]);
      if (first === null || this.#draining) return;
      this.lastActivity = performance.now();
      await this.#pipeline(first).pipeTo(this.conn.writable);
    } catch (error) {
      throw this.#frameError ?? error;
    } finally {
      this.#stop.removeEventListener("abort", this.#onStop);
    }
  }

  /**
   * The connection's bytes, starting with `first` → decoder → dispatch →
   * encoder: the stream of framed replies.
   */
  #pipeline(first: Uint8Array): ReadableStream<Uint8Array> {
    const settings = this.#settings;
    const conn = this.conn;
    const reader = this.#reader;
    const decoder = this.#decoder = new MllpDecoderStream({
      maxFrameBytes: settings.maxFrameBytes,
      label: settings.label,
      silent: true,
      onJunk: settings.onJunk,
      onResync: settings.onResync,
      // The frame's first bytes came with the chunk being decoded.
      onFrameStart: () => this.frameStartedAt = this.lastActivity,
    });
    const dispatch = this.#dispatch = new PathStream(settings.path, {
      peer: conn.peer,
      local: conn.local,
      certificateName: conn.certificate?.commonName,
      context: settings.context,
      dispatchTimeout: settings.dispatchTimeout,
      charset: settings.charset,
      mllpRelease: settings.mllpRelease,
      signal: this.#closed.signal,
      onDispatched: (outcome) => {
        this.messages++;
        // The receiver was busy, not the peer: idle and frame time count
        // from now, not from before the dispatch (a pipelined frame that
        // waited for it is no slowloris).
        const now = performance.now();
        this.lastActivity = now;
        if (this.inFrame) this.frameStartedAt = now;
        settings.onDispatched(outcome);
      },
    });
    let held: Uint8Array | undefined = first;
    const source = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#sourceController = controller;
      },
      pull: (controller) => {
        if (held) {
          controller.enqueue(held);
          held = undefined;
          return;
        }
        return reader.next().then((chunk) => {
          if (this.#draining) return;
          if (chunk === null) {
            controller.close();
            return;
          }
          this.lastActivity = performance.now();
          // A view of the connection's read buffer, which the next read
          // reuses: no copy is needed, because this stream reads only when
          // the pipe asks (its high-water mark is 0), and the pipe asks
          // only once the decoder's writable has room again, that is, once
          // the decoder has finished with this chunk (it copies what it
          // keeps).
          controller.enqueue(chunk);
        }, (error) => {
          if (!this.#draining) controller.error(error);
        });
      },
      cancel: (reason) => {
        // The pipeline cancels its source with the first error downstream:
        // keep a frame size error, which other errors (a write to the
        // socket that this cancel closes) could otherwise hide.
        if (reason instanceof FrameSizeError) this.#frameError ??= reason;
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return source
      .pipeThrough(decoder)
      .pipeThrough(dispatch)
      .pipeThrough(new MllpEncoderStream({ validate: false }));
  }

  /**
   * Stops reading: what was received is still dispatched and answered,
   * then the connection closes (a partial frame is dropped).
   */
  drain() {
    if (this.#draining) return;
    this.#draining = true;
    this.#drained.resolve(null);
    try {
      this.#sourceController?.close();
    } catch {
      // Already closed or errored.
    }
  }

  /**
   * Closes the connection now. Nothing more from it is dispatched; a
   * dispatch in progress has its `ctx.signal` aborted and its reply
   * dropped.
   */
  close() {
    this.#closed.abort(new Error("The receiver closed the connection"));
    this.conn.close();
  }
}
