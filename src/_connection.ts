/**
 * One receiver connection: `conn.readable` → a source that notes activity
 * and can be drained → {@linkcode MllpDecoderStream} →
 * {@linkcode DispatchStream} → {@linkcode MllpEncoderStream} →
 * `conn.writable`. Backpressure is the streams' own: while the dispatcher
 * works on one message, at most one chunk more is read from the socket.
 *
 * @module
 */

import type { TransportConn } from "./_transport.ts";
import {
  type Dispatcher,
  type DispatchOutcome,
  DispatchStream,
} from "./dispatcher.ts";
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

  constructor(conn: TransportConn, settings: ConnectionSettings<C>) {
    this.conn = conn;
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
      signal: settings.stop,
      onDispatched: (outcome) => {
        this.messages++;
        settings.onDispatched(outcome);
      },
    });
    const reader = conn.readable.getReader();
    this.#source = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#sourceController = controller;
      },
      pull: async (controller) => {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          if (!this.#draining) controller.error(error);
          return;
        }
        if (this.#draining) return;
        if (result.done) {
          controller.close();
          return;
        }
        this.lastActivity = performance.now();
        controller.enqueue(result.value);
      },
      cancel: (reason) => reader.cancel(reason),
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

  /** Serves until the peer or the receiver ends the connection. */
  run(): Promise<void> {
    return this.#source
      .pipeThrough(this.#decoder)
      .pipeThrough(this.#dispatch)
      .pipeThrough(new MllpEncoderStream())
      .pipeTo(this.conn.writable);
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

  /** Closes the connection now. */
  close() {
    this.conn.close();
  }
}
