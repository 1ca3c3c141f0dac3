/**
 * One receiver connection: the socket's bytes, read with `conn.read` into
 * a reused buffer → {@linkcode MllpDecoderStream} → each frame through the
 * receiver's path (`path.ts`) by a {@linkcode FrameHandler} → the reply
 * framed (VT + payload + FS CR, the rules of `MllpEncoderStream`) and
 * written with `conn.write`. One frame is handled at a time, so replies
 * keep the order of the messages; a chunk is read only once the decoder
 * has taken the one before, and a frame only once the reply before it is
 * written. A dispatcher that answers at once costs no promise of its own.
 * The decoder is made when the first bytes arrive, so that a connection
 * that sends nothing costs little more than its pending read.
 *
 * Once the receiver closes a connection (or its stop deadline passes),
 * nothing more from it is dispatched, and a dispatch in progress has its
 * `ctx.signal` aborted and its reply dropped.
 *
 * @module
 */

import type { Path } from "../dispatch/stage.ts";
import { type DispatchOutcome, FrameHandler } from "../dispatch/stream.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
import type { ChunkReader, TransportConn } from "../net/transport.ts";
import { BytePool, ScratchBytes } from "../wire/_pool.ts";
import {
  CARRIAGE_RETURN,
  END_BLOCK,
  MllpDecoderStream,
  START_BLOCK,
} from "../wire/framer.ts";

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

/** The block size frames sent ahead of a reply are made in. */
const FRAME_BLOCK_BYTES = 4 * 1024;

/** The largest reply frame whose buffer is kept for the next. */
const REPLY_MAX_KEPT_BYTES = 64 * 1024;

/** `payload` in its MLLP frame, in bytes from `bytes`. */
function frame(
  payload: Uint8Array,
  bytes: { alloc(length: number): Uint8Array },
): Uint8Array {
  const end = payload.length + 1;
  const framed = bytes.alloc(end + 2);
  framed[0] = START_BLOCK;
  framed.set(payload, 1);
  framed[end] = END_BLOCK;
  framed[end + 1] = CARRIAGE_RETURN;
  return framed;
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
  /** The decoder and the handler, once the first bytes have arrived. */
  #decoder: MllpDecoderStream | undefined;
  #frames: FrameHandler<C> | undefined;
  /** The decoder's input, while it is open. */
  #input: WritableStreamDefaultWriter<Uint8Array> | undefined;
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
  /** Where frames sent ahead of a reply are made. */
  #pool = new BytePool(FRAME_BLOCK_BYTES);
  /** Where each reply is framed, reused for the next. */
  #replies = new ScratchBytes(REPLY_MAX_KEPT_BYTES);
  /** Frames sent ahead of a reply (commit frames) not yet written. */
  #ahead: Promise<void> | undefined;

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
    return this.#frames?.busy ?? false;
  }

  /** Whether the connection is draining (no more reading). */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Serves until the peer or the receiver ends the connection.
   *
   * @throws {FrameSizeError} If the peer sent a frame over the limit.
   * @throws {Error} The error that ended the connection otherwise.
   */
  async run(): Promise<void> {
    try {
      // The decoder is made when the first bytes arrive: until then an
      // idle connection costs its pending read.
      const reading = this.#reader.next();
      // A read given up on (by draining) fails when the connection closes.
      reading.catch(() => {});
      const first = await Promise.race([reading, this.#drained.promise]);
      if (first === null || this.#draining) return;
      this.lastActivity = performance.now();
      await this.#serve(first);
    } finally {
      this.#stop.removeEventListener("abort", this.#onStop);
    }
  }

  /** Decodes the connection's bytes, starting with `first`, and answers. */
  async #serve(first: Uint8Array): Promise<void> {
    const settings = this.#settings;
    const conn = this.conn;
    const decoder = this.#decoder = new MllpDecoderStream({
      maxFrameBytes: settings.maxFrameBytes,
      label: settings.label,
      silent: true,
      onJunk: settings.onJunk,
      onResync: settings.onResync,
      // The frame's first bytes came with the chunk being decoded.
      onFrameStart: () => this.frameStartedAt = this.lastActivity,
    });
    const frames = this.#frames = new FrameHandler(settings.path, {
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
    }, true); // Each reply is framed and written before the next frame.
    const input = this.#input = decoder.writable.getWriter();
    const output = decoder.readable.getReader();
    // Never rejects; ends with the connection (it may wait on a read that
    // only the connection's closing ends, so it is not awaited).
    void this.#feed(first, input);
    const closed = this.#closed.signal;
    try {
      while (true) {
        const { value: frame, done } = await output.read();
        if (done) break;
        let reply = frames.handle(frame, this.#sendAhead);
        if (reply instanceof Promise) reply = await reply;
        if (reply !== undefined && !closed.aborted) await this.#reply(reply);
      }
      await this.#ahead;
    } catch (error) {
      // Reading stops with the connection, which the receiver closes.
      output.cancel(error).catch(() => {});
      throw error;
    } finally {
      this.#input = undefined;
    }
  }

  /**
   * Reads the connection into the decoder, one chunk at a time: the next
   * read waits until the decoder has taken the chunk before (it copies
   * what it keeps, so the read buffer can be reused). Ends the decoder's
   * input when the peer ends the connection or the receiver drains it;
   * errors it when reading fails.
   */
  async #feed(
    first: Uint8Array,
    input: WritableStreamDefaultWriter<Uint8Array>,
  ): Promise<void> {
    let chunk: Uint8Array | null = first;
    try {
      while (chunk !== null) {
        await input.write(chunk);
        chunk = await this.#reader.next();
        // Draining: what arrived after it is not taken.
        if (this.#draining) return;
        if (chunk !== null) this.lastActivity = performance.now();
      }
      await input.close();
    } catch (error) {
      // The decoder failed (a frame too large: its reader has the error)
      // or reading did: then the decoder's reader gets that error.
      if (!this.#draining) input.abort(error).catch(() => {});
    }
  }

  /** Writes a payload at once, ahead of the reply, in order. */
  #sendAhead = (payload: Uint8Array): void => {
    const frame = this.#frame(payload);
    const before = this.#ahead;
    const write = before
      ? before.then(() => this.conn.write(frame))
      : this.conn.write(frame);
    // A failed write fails the reply's write after it, or the next read.
    write.catch(() => {});
    this.#ahead = write;
  };

  /** Writes a reply, after what was sent ahead of it. */
  async #reply(payload: Uint8Array): Promise<void> {
    const ahead = this.#ahead;
    if (ahead) {
      this.#ahead = undefined;
      await ahead;
    }
    // The write ends before the next frame is handled: one buffer serves
    // every reply.
    await this.conn.write(frame(payload, this.#replies));
  }

  /** A payload sent ahead, in its MLLP frame (its own bytes). */
  #frame(payload: Uint8Array): Uint8Array {
    return frame(payload, this.#pool);
  }

  /**
   * Stops reading: what was received is still dispatched and answered,
   * then the connection closes (a partial frame is dropped).
   */
  drain() {
    if (this.#draining) return;
    this.#draining = true;
    this.#drained.resolve(null);
    this.#input?.close().catch(() => {});
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
