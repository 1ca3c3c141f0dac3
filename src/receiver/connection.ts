/**
 * One receiver connection, in one loop as a bare TCP responder's: read the
 * socket with `conn.read` into a reused buffer, decode the chunk with the
 * connection's {@linkcode MllpDecoderStream} (its `decode`, which skips the
 * stream's queues), run each whole frame through the receiver's path
 * (`path.ts`) with a {@linkcode FrameHandler}, frame each reply (VT +
 * payload + FS CR, the rules of `MllpEncoderStream`) and write it with
 * `conn.write`, then read again. Replies keep the order of the messages;
 * nothing more is read while a message is dispatched or its reply written
 * (the socket's buffers hold what the peer sends meanwhile). A dispatcher
 * that answers at once costs no promise of its own. The decoder is made
 * when the first bytes arrive, so that a connection that sends nothing
 * costs little more than its pending read.
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
  /** Whether the loop waits for the connection's next bytes. */
  #reading = false;
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

  /**
   * Decodes the connection's bytes, starting with `first`, and answers
   * each frame before it reads more: one loop, as a bare TCP responder's.
   */
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
    const closed = this.#closed.signal;
    // The decoder hands each chunk's frames over here, in order.
    const queue: Uint8Array[] = [];
    const sink = { enqueue: (frame: Uint8Array) => queue.push(frame) };
    let chunk: Uint8Array | null = first;
    while (true) {
      if (chunk === null) decoder.end(sink);
      else decoder.decode(chunk, sink);
      // The decoder copied what it keeps: the read buffer is free again.
      for (let k = 0; k < queue.length && !closed.aborted; k++) {
        let reply = frames.handle(queue[k], this.#sendAhead);
        if (reply instanceof Promise) reply = await reply;
        if (reply !== undefined && !closed.aborted) await this.#reply(reply);
      }
      queue.length = 0;
      if (chunk === null || this.#draining || closed.aborted) break;
      this.#reading = true;
      try {
        chunk = await this.#reader.next();
      } catch (error) {
        // Draining closes a connection waiting here: nothing was pending.
        if (this.#draining) break;
        throw error;
      } finally {
        this.#reading = false;
      }
      if (chunk !== null) this.lastActivity = performance.now();
    }
    await this.#ahead;
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
    // Waiting for more bytes means every frame received was answered: the
    // connection can go at once. Otherwise it goes after the frames in hand.
    if (this.#reading) this.#reader.cancel().catch(() => {});
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
