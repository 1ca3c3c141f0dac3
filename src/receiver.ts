/**
 * The MLLP receiver: a TCP listener whose connections each run
 * `conn.readable` → {@linkcode MllpDecoderStream} → dispatcher →
 * {@linkcode MllpEncoderStream} → `conn.writable`.
 *
 * @example Start, use and stop a receiver
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send("Hip hip hurray");
 * assertEquals(result.outcome === "reply" && result.text, "mllp_unknown");
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  type Address,
  type Dispatcher,
  type DispatchOutcome,
  DispatchStream,
  formatAddress,
} from "./dispatcher.ts";
import { FrameSizeError } from "./errors.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  MllpDecoderStream,
  MllpEncoderStream,
} from "./framer.ts";

const logger = getLogger(["mllp", "receiver"]);

/**
 * Options for {@linkcode Receiver.start}.
 *
 * @typeParam C The type of the `context` value handed to the dispatcher.
 */
export interface ReceiverOptions<C = unknown> {
  /** The port to listen on; `0` picks a free one (see {@linkcode Receiver.port}). */
  port: number;
  /**
   * The address to listen on.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /** The dispatcher that handles each message. */
  dispatcher: Dispatcher<C>;
  /** A value handed to the dispatcher as `ctx.context`. */
  context?: C;
  /**
   * The largest frame accepted, in bytes; a connection that sends a larger
   * one is closed with a log line.
   *
   * @default {10485760}
   */
  maxFrameBytes?: number;
  /** Stops the receiver when aborted. */
  signal?: AbortSignal;
  /** Called after each message with what the dispatch did. */
  onDispatched?: (outcome: DispatchOutcome, peer: Address) => void;
}

interface Connection {
  conn: Deno.TcpConn;
  done: Promise<void>;
}

/**
 * An MLLP receiver listening on TCP. Start one with
 * {@linkcode Receiver.start}; stop it with {@linkcode Receiver.stop},
 * `await using`, the `signal` option, or by port with
 * `Receiver.stop(port)` as the seed does.
 *
 * Each connection gets one reply per message, in order, even when a sender
 * pipelines several messages in one write. A dispatcher error becomes an
 * `AE` reply and never ends the connection or the listener.
 *
 * @example Stop by port, as the seed does
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * assertEquals(await Receiver.stop(receiver.port), true);
 * ```
 */
export class Receiver implements AsyncDisposable {
  static #byPort = new Map<number, Receiver>();

  #listener: Deno.TcpListener;
  #connections = new Set<Connection>();
  #accepting: Promise<void>;
  #stopping: Promise<void> | undefined;
  #options: ReceiverOptions<unknown>;
  #signal: AbortSignal | undefined;
  #onAbort = () => void this.stop();

  private constructor(
    listener: Deno.TcpListener,
    options: ReceiverOptions<unknown>,
  ) {
    this.#listener = listener;
    this.#options = options;
    this.#accepting = this.#accept();
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Starts a receiver.
   *
   * @typeParam C The type of the `context` value.
   * @param options Port, dispatcher and limits.
   * @returns The running receiver.
   * @throws {Deno.errors.AddrInUse} If the port is taken.
   * @throws {RangeError} If `maxFrameBytes` is not a positive number.
   * @throws {Error} If the `signal` option is already aborted.
   *
   * @example Start on a free port
   * ```ts
   * import { EchoDispatcher, Receiver } from "@x/mllp";
   * import { assert } from "@std/assert";
   *
   * await using receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
   * assert(receiver.port > 0);
   * ```
   */
  // deno-lint-ignore require-await
  static async start<C = unknown>(
    options: ReceiverOptions<C>,
  ): Promise<Receiver> {
    if (options.signal?.aborted) {
      throw new Error("Cannot start receiver: signal is already aborted", {
        cause: options.signal.reason,
      });
    }
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!(maxFrameBytes > 0) || !Number.isFinite(maxFrameBytes)) {
      throw new RangeError(
        `Cannot start receiver: maxFrameBytes must be a positive number, got "${maxFrameBytes}"`,
      );
    }
    const listener = Deno.listen({
      port: options.port,
      hostname: options.hostname ?? "0.0.0.0",
      transport: "tcp",
    });
    const receiver = new Receiver(
      listener,
      options as ReceiverOptions<unknown>,
    );
    Receiver.#byPort.set(receiver.port, receiver);
    logger.info("Receiver listening on {address} (unencrypted TCP)", {
      address: formatAddress(receiver.address),
    });
    return receiver;
  }

  /**
   * Stops a running receiver.
   *
   * With a port, stops the receiver started on that port in this process
   * (the seed's `MLLP.Receiver.stop(4090)`) and tells whether there was one.
   *
   * @param port The port of the receiver to stop.
   * @returns Whether a receiver was listening on that port.
   *
   * @example Stop by port, twice
   * ```ts
   * import { EchoDispatcher, Receiver } from "@x/mllp";
   * import { assertEquals } from "@std/assert";
   *
   * const { port } = await Receiver.start({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   dispatcher: EchoDispatcher,
   * });
   * assertEquals(await Receiver.stop(port), true);
   * assertEquals(await Receiver.stop(port), false);
   * ```
   */
  static async stop(port: number): Promise<boolean> {
    const receiver = Receiver.#byPort.get(port);
    if (!receiver) return false;
    await receiver.stop();
    return true;
  }

  /** The address the receiver listens on. */
  get address(): Address {
    const addr = this.#listener.addr;
    return { hostname: addr.hostname, port: addr.port };
  }

  /** The port the receiver listens on (the real one when started with `0`). */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** The number of open connections. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Whether {@linkcode Receiver.stop} has been called. */
  get stopped(): boolean {
    return this.#stopping !== undefined;
  }

  /**
   * Stops accepting connections, closes the open ones, and resolves when
   * all is closed. Calling it again returns the same promise.
   *
   * @returns A promise that resolves when the receiver has stopped.
   *
   * @example Stop a receiver
   * ```ts
   * import { EchoDispatcher, Receiver } from "@x/mllp";
   * import { assert } from "@std/assert";
   *
   * const receiver = await Receiver.start({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   dispatcher: EchoDispatcher,
   * });
   * await receiver.stop();
   * assert(receiver.stopped);
   * ```
   */
  stop(): Promise<void> {
    return this.#stopping ??= this.#stop();
  }

  async #stop(): Promise<void> {
    const port = this.port;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (Receiver.#byPort.get(port) === this) Receiver.#byPort.delete(port);
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
    for (const connection of this.#connections) closeQuietly(connection.conn);
    await Promise.all([...this.#connections].map((c) => c.done));
    logger.info("Receiver on port {port} stopped", { port });
  }

  /** Stops the receiver; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#stopping) {
          closeQuietly(conn);
          continue;
        }
        this.#track(conn);
      }
    } catch (error) {
      if (!this.#stopping) {
        logger.error("Receiver stopped accepting connections: {error}", {
          error,
        });
      }
    }
  }

  #track(conn: Deno.TcpConn) {
    const connection: Connection = { conn, done: Promise.resolve() };
    this.#connections.add(connection);
    connection.done = this.#serve(conn).finally(() => {
      this.#connections.delete(connection);
    });
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const peer: Address = {
      hostname: conn.remoteAddr.hostname,
      port: conn.remoteAddr.port,
    };
    const local: Address = {
      hostname: conn.localAddr.hostname,
      port: conn.localAddr.port,
    };
    const label = formatAddress(peer);
    const opened = performance.now();
    logger.info("Accepted connection from {peer}", { peer: label });
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer may already be gone.
    }
    const options = this.#options;
    const decoder = new MllpDecoderStream({
      maxFrameBytes: options.maxFrameBytes,
      label,
    });
    let messages = 0;
    let reason = "peer closed the connection";
    try {
      await conn.readable
        .pipeThrough(decoder)
        .pipeThrough(
          new DispatchStream(options.dispatcher, {
            peer,
            local,
            context: options.context,
            onDispatched: (outcome) => {
              messages++;
              options.onDispatched?.(outcome, peer);
            },
          }),
        )
        .pipeThrough(new MllpEncoderStream())
        .pipeTo(conn.writable);
    } catch (error) {
      if (error instanceof FrameSizeError) {
        reason = "frame too large";
        logger.warn("Closing connection from {peer}: {message}", {
          peer: label,
          message: error.message,
        });
      } else if (this.#stopping) {
        reason = "receiver stopped";
      } else {
        reason = error instanceof Error ? error.message : String(error);
        logger.info("Connection from {peer} ended: {reason}", {
          peer: label,
          reason,
        });
      }
    } finally {
      closeQuietly(conn);
    }
    logger.info(
      "Closed connection from {peer} after {ms} ms, messages: {messages} ({reason})",
      {
        peer: label,
        ms: Math.round(performance.now() - opened),
        messages,
        reason,
      },
    );
  }
}

function closeQuietly(conn: Deno.Conn) {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
