/**
 * One receiver connection: `conn.readable` → a source that notes activity
 * and can be drained → {@linkcode MllpDecoderStream} →
 * {@linkcode DispatchStream} → {@linkcode MllpEncoderStream} →
 * `conn.writable`. Backpressure is the streams' own: while the dispatcher
 * works on one message, at most one chunk more is read from the socket.
 *
 * Once the receiver closes a connection (or its stop deadline passes),
 * nothing more from it is dispatched, and a dispatch in progress has its
 * `ctx.signal` aborted and its reply dropped.
 *
 * @module
 */

import type { TransportConn } from "./_transport.ts";
import {
  type Dispatcher,
  type DispatchOutcome,
  DispatchStream,
} from "./dispatcher.ts";
import { FrameSizeError } from "./errors.ts";
import { MllpDecoderStream, MllpEncoderStream } from "./framer.ts";

/** What a connection needs from its receiver. */
export interface ConnectionSettings<C> {
  dispatcher: Dispatcher<C>;
  context: C | undefined;
  maxFrameBytes: number | undefined;
  dispatchTimeout: number;
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
  #decoder: MllpDecoderStream;
  #dispatch: DispatchStream<C>;
  #source: ReadableStream<Uint8Array>;
  #sourceController!: ReadableStreamDefaultController<Uint8Array>;
  #draining = false;
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
    this.#stop = settings.stop;
    if (this.#stop.aborted) this.#onStop();
    else this.#stop.addEventListener("abort", this.#onStop, { once: true });
    this.#decoder = new MllpDecoderStream({
      maxFrameBytes: settings.maxFrameBytes,
      label: settings.label,
      silent: true,
      onJunk: settings.onJunk,
      onResync: settings.onResync,
      onFrameStart: () => this.frameStartedAt = performance.now(),
    });
    this.#dispatch = new DispatchStream(settings.dispatcher, {
      peer: conn.peer,
      local: conn.local,
      certificateName: conn.certificate?.commonName,
      context: settings.context,
      dispatchTimeout: settings.dispatchTimeout,
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
    const read = socketReader(conn.readable);
    const reader = read.reader;
    this.#source = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#sourceController = controller;
      },
      pull: async (controller) => {
        let chunk: Uint8Array | null;
        try {
          chunk = await read.next();
        } catch (error) {
          if (!this.#draining) controller.error(error);
          return;
        }
        if (this.#draining) return;
        if (chunk === null) {
          controller.close();
          return;
        }
        this.lastActivity = performance.now();
        controller.enqueue(chunk);
      },
      cancel: (reason) => {
        // The pipeline cancels its source with the first error downstream:
        // keep a frame size error, which other errors (a write to the
        // socket that this cancel closes) could otherwise hide.
        if (reason instanceof FrameSizeError) this.#frameError ??= reason;
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }

  /** Whether a frame has started and not ended. */
  get inFrame(): boolean {
    return this.#decoder.inFrame;
  }

  /** Whether the dispatcher is working on a message. */
  get busy(): boolean {
    return this.#dispatch.busy;
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
      await this.#source
        .pipeThrough(this.#decoder)
        .pipeThrough(this.#dispatch)
        .pipeThrough(new MllpEncoderStream())
        .pipeTo(this.conn.writable);
    } catch (error) {
      throw this.#frameError ?? error;
    } finally {
      this.#stop.removeEventListener("abort", this.#onStop);
    }
  }

  /**
   * Stops reading: what was received is still dispatched and answered,
   * then the connection closes (a partial frame is dropped).
   */
  drain() {
    if (this.#draining) return;
    this.#draining = true;
    try {
      this.#sourceController.close();
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

/** The size of a connection's read buffer. */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Reads a socket's byte stream into one buffer per connection, reused for
 * every read, and hands out right-sized copies. (A default reader gets a
 * fresh 64 KiB buffer per read, which a short message then keeps alive
 * until the next garbage collection: under load from many connections,
 * hundreds of MiB.) Streams that are not byte streams (`node:tls` sockets)
 * are read as they come.
 */
function socketReader(readable: ReadableStream<Uint8Array>): {
  reader: ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;
  next(): Promise<Uint8Array | null>;
} {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = readable.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream.
  }
  if (!byob) {
    const reader = readable.getReader();
    return {
      reader,
      next: async () => {
        const result = await reader.read();
        return result.done ? null : result.value;
      },
    };
  }
  const reader = byob;
  let buffer: ArrayBuffer = new ArrayBuffer(READ_BUFFER_BYTES);
  return {
    reader,
    next: async () => {
      for (;;) {
        const result = await reader.read(new Uint8Array(buffer));
        if (result.done) return null;
        const view = result.value;
        buffer = view.buffer as ArrayBuffer;
        if (view.byteLength > 0) return view.slice();
      }
    },
  };
}
