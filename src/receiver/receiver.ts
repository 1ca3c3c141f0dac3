/**
 * The MLLP receiver: a TCP or TLS listener whose connections each run
 * the connection's bytes → {@linkcode MllpDecoderStream} → the receiver's
 * path of stages and its dispatcher → {@linkcode MllpEncoderStream} → the
 * connection.
 *
 * - `options.ts`: the options, their defaults and the checks at start;
 * - `limits.ts`: connection counts and the idle and frame timeouts;
 * - `path.ts`: the stages every message goes through;
 * - `connection.ts`: one connection's pipeline;
 * - `events.ts`: the events it emits.
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
import type { StoreConsumer } from "../dispatch/message_store.ts";
import type { Path } from "../dispatch/stage.ts";
import { withApplicationAcks } from "../dispatch/stages/enhanced.ts";
import { startStoredDispatch } from "../dispatch/stored_dispatch.ts";
import { type Address, formatAddress } from "../net/address.ts";
import { AllowList } from "../net/allow.ts";
import { requirePermissions } from "../net/permission.ts";
import { describeTlsError, isTlsRecord } from "../net/tls.ts";
import {
  type ListenHooks,
  listenTcp,
  listenTls,
  type TransportConn,
  type TransportListener,
} from "../net/transport.ts";
import { TypedEventTarget } from "../observe/events.ts";
import { recordDispatch } from "../observe/telemetry.ts";
import { WarningLimiter } from "../observe/ratelimit.ts";
import { FrameSizeError } from "../wire/errors.ts";
import { ServedConnection } from "./connection.ts";
import {
  type ClientRejectDetail,
  type ConnectionDetail,
  type ReceiverEventMap,
  recordEvent,
} from "./events.ts";
import {
  ConnectionCounts,
  expired,
  sweepInterval,
  type Timeouts,
} from "./limits.ts";
import {
  checkReceiverOptions,
  DEFAULT_DISPATCH_TIMEOUT,
  DEFAULT_FRAME_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
  DEFAULT_STOP_DEADLINE,
  defaultHostname,
  type ReceiverOptions,
  type StopOptions,
  tlsMaterial,
} from "./options.ts";
import { receiverPath } from "./path.ts";

const logger = getLogger(["mllp", "receiver"]);

export {
  DEFAULT_DISPATCH_TIMEOUT,
  DEFAULT_FRAME_TIMEOUT,
  DEFAULT_HANDSHAKE_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
  DEFAULT_STOP_DEADLINE,
  type ReceiverOptions,
  type ReceiverTlsOptions,
  type StopOptions,
} from "./options.ts";
export type {
  ClientRejectDetail,
  ConnectionCloseDetail,
  ConnectionDetail,
  DispatchDetail,
  FramingErrorDetail,
  HandshakeErrorDetail,
  ReceiverEventMap,
} from "./events.ts";
export type {
  MessageStore,
  StoreConsumer,
  StoredDispatchContext,
  StoredMessage,
  StoredMessageHandler,
  StoredOutcome,
  StoreEntry,
  StorePutResult,
} from "../dispatch/message_store.ts";

interface Connection {
  served: ServedConnection<unknown>;
  done: Promise<void>;
  /** Why the receiver closed it, when it did. */
  closedBecause?: string;
}

/**
 * An MLLP receiver listening on TCP or TLS. Start one with
 * {@linkcode Receiver.start}; stop it with {@linkcode Receiver.stop},
 * `await using`, the `signal` option, or by port with
 * `Receiver.stop(port)`.
 *
 * Each connection gets one reply per message, in order, even when a sender
 * pipelines several messages in one write. A dispatcher error becomes an
 * `AE` reply and never ends the connection or the listener.
 *
 * The receiver is an `EventTarget`: see {@linkcode ReceiverEventMap}.
 *
 * @example Stop by port
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * assertEquals(await Receiver.stop(receiver.port), true);
 * ```
 */
export class Receiver extends TypedEventTarget<ReceiverEventMap>
  implements AsyncDisposable {
  static #byPort = new Map<number, Receiver>();

  #listener: TransportListener;
  #allow: AllowList | undefined;
  #connections = new Set<Connection>();
  #accepting: Promise<void>;
  #stopping: Promise<void> | undefined;
  #options: ReceiverOptions<unknown>;
  #signal: AbortSignal | undefined;
  #onAbort = () => void this.stop();
  /** Aborted at the stop deadline: nothing is dispatched after it. */
  #hardStop = new AbortController();
  #finished: Promise<void>;
  #resolveFinished!: () => void;
  /** Open connections, counted from admission (before a handshake). */
  #counts: ConnectionCounts;
  #timeouts: Timeouts;
  #dispatchTimeout: number;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #warnings = new WarningLimiter(logger, { limit: 5, windowMs: 60_000 });
  /** The stages and the dispatcher every connection runs. */
  #path: Path<unknown>;
  /** With a store: the loop running the dispatcher over stored messages. */
  #consumer: StoreConsumer | undefined;

  private constructor(
    listener: TransportListener,
    allow: AllowList | undefined,
    options: ReceiverOptions<unknown>,
  ) {
    super();
    this.#listener = listener;
    this.#allow = allow;
    this.#options = options;
    this.#counts = new ConnectionCounts(
      options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      options.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    );
    this.#timeouts = {
      idle: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
      frame: options.frameTimeout ?? DEFAULT_FRAME_TIMEOUT,
    };
    this.#dispatchTimeout = options.dispatchTimeout ??
      DEFAULT_DISPATCH_TIMEOUT;
    this.#finished = new Promise((resolve) => this.#resolveFinished = resolve);
    // One sweep for all connections' idle and frame timeouts.
    const every = sweepInterval(this.#timeouts);
    if (every !== undefined) {
      this.#sweeper = setInterval(() => this.#sweep(), every);
    }
    const applicationAcks = options.applicationAcks ?? "connection";
    const enhancedMode = options.enhancedMode ?? true;
    this.#path = receiverPath({
      dispatcher: options.dispatcher,
      store: options.store,
      mllpRelease: options.mllpRelease ?? 1,
      enhancedMode,
      applicationAcks,
      batches: options.batches ?? "each",
      batchAcks: options.batchAcks ?? "errors",
    });
    if (options.store) {
      // Stored messages reach the dispatcher from the store's consumer.
      this.#consumer = startStoredDispatch(
        options.store,
        enhancedMode
          ? withApplicationAcks(options.dispatcher, applicationAcks)
          : options.dispatcher,
        {
          context: options.context,
          dispatchTimeout: this.#dispatchTimeout,
          charset: options.charset,
        },
      );
    }
    this.#accepting = this.#accept();
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Starts a receiver.
   *
   * Without `hostname`, a plain TCP receiver listens on `127.0.0.1` only
   * (name an address, such as `"0.0.0.0"`, to accept other hosts); with
   * `tls`, on every interface.
   *
   * It never starts weaker than asked: a security setting that cannot be
   * enforced (`verifyPeer` without a CA, an allow-list of which no entry
   * can be used, unreadable certificates) makes it fail.
   *
   * @typeParam C The type of the `context` value.
   * @param options Port, dispatcher, TLS, allowed clients and limits.
   * @returns The running receiver.
   * @throws {Deno.errors.AddrInUse} If the port is taken.
   * @throws {Deno.errors.NotCapable} If Deno has no net permission for
   *   the address: one line naming `--allow-net`.
   * @throws {RangeError} If `maxFrameBytes` is not a positive number, or
   *   `mllpRelease` is not 1 or 2.
   * @throws {TypeError} If a TLS setting cannot be enforced, or a
   *   `charset` option names a charset that is not in HL7 table 0211 or
   *   not supported by this runtime.
   * @throws {Error} If the `signal` option is already aborted, a
   *   certificate cannot be read, or `allowedClients` has no usable entry.
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
  static async start<C = unknown>(
    options: ReceiverOptions<C>,
  ): Promise<Receiver> {
    checkReceiverOptions(options);
    const verifyPeer = options.tls?.verifyPeer ?? false;
    const hostname = options.hostname ?? defaultHostname(!!options.tls);
    // Checked before anything is read or opened: a TLS listener without
    // it would fail later, uncaught.
    const listenAddress = formatAddress({ hostname, port: options.port });
    requirePermissions(
      [{ name: "net", host: listenAddress }],
      `Cannot listen on ${listenAddress}`,
    );
    const material = options.tls && await tlsMaterial(options.tls);
    let allow: AllowList | undefined;
    if (options.allowedClients && options.allowedClients.length > 0) {
      allow = await AllowList.create(options.allowedClients, {
        mode: verifyPeer ? "certificate" : "address",
        refreshInterval: options.allowedClientsRefresh,
      });
    }
    let listener: TransportListener;
    let receiver: Receiver | undefined = undefined;
    const hooks: ListenHooks = {
      // Address restrictions and connection limits apply before anything
      // is read, and before a TLS handshake.
      screen: (peer) => receiver !== undefined && receiver.#admit(peer),
      onHandshakeError: (peer, error) => {
        if (!receiver) return;
        receiver.#release(peer);
        receiver.#handshakeFailed(peer, error);
      },
    };
    try {
      listener = material
        ? await listenTls(hostname, options.port, material, hooks)
        : listenTcp(hostname, options.port, hooks);
    } catch (error) {
      allow?.close();
      throw error;
    }
    receiver = new Receiver(
      listener,
      allow,
      options as ReceiverOptions<unknown>,
    );
    Receiver.#byPort.set(receiver.port, receiver);
    const address = formatAddress(receiver.address);
    if (!material && options.hostname === undefined) {
      logger.warn(
        'Receiver listening on {address} without TLS: data will pass unencrypted; only this machine can connect (hostname "0.0.0.0" accepts other hosts)',
        { address },
      );
    } else if (!material) {
      logger.warn(
        "Receiver listening on {address} without TLS: data will pass unencrypted",
        { address },
      );
    } else if (verifyPeer) {
      logger.info(
        "Receiver listening on {address} with TLS, client certificates required",
        { address },
      );
    } else {
      logger.info("Receiver listening on {address} with TLS", { address });
    }
    if (allow) {
      logger.info("Receiver on {address} allows only: {entries}", {
        address,
        entries: allow.entries.join(", "),
      });
    }
    return receiver;
  }

  /**
   * Stops a running receiver.
   *
   * With a port, stops the receiver started on that port in this process
   * and tells whether there was one.
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
    return { ...this.#listener.addr };
  }

  /** The port the receiver listens on (the real one when started with `0`). */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Whether the receiver speaks TLS. */
  get secure(): boolean {
    return this.#options.tls !== undefined;
  }

  /** The number of open connections. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Whether {@linkcode Receiver.stop} has been called. */
  get stopped(): boolean {
    return this.#stopping !== undefined;
  }

  #emit<K extends keyof ReceiverEventMap>(
    type: K,
    detail: ReceiverEventMap[K]["detail"],
  ) {
    recordEvent(type, detail);
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /**
   * Stops the receiver gracefully: stops accepting connections and reading
   * from the open ones, lets the messages already received be dispatched
   * and answered, and closes each connection once it has; at the deadline,
   * closes what is still open (nothing is dispatched after it). Calling it
   * again returns the same promise.
   *
   * @param options The deadline.
   * @returns A promise that resolves when every connection is closed.
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
   * await receiver.stop({ deadline: 1000 });
   * assert(receiver.stopped);
   * ```
   */
  stop(options: StopOptions = {}): Promise<void> {
    return this.#stopping ??= this.#stop(
      options.deadline ?? DEFAULT_STOP_DEADLINE,
    );
  }

  /** Resolves when the receiver has stopped and every connection is closed. */
  get finished(): Promise<void> {
    return this.#finished;
  }

  async #stop(deadline: number): Promise<void> {
    const port = this.port;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (Receiver.#byPort.get(port) === this) Receiver.#byPort.delete(port);
    this.#allow?.close();
    clearInterval(this.#sweeper);
    await this.#listener.close();
    await this.#accepting;
    for (const connection of this.#connections) connection.served.drain();
    const all = Promise.all([...this.#connections].map((c) => c.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), Math.max(0, deadline));
      }),
    ]);
    clearTimeout(timer);
    if (late) {
      logger.warn(
        "Receiver on port {port}: connections still busy at the stop deadline ({deadline} ms): {count}; closing them",
        { port, count: this.#connections.size, deadline },
      );
      this.#hardStop.abort(new Error("The receiver stopped"));
      for (const connection of this.#connections) {
        connection.closedBecause = "receiver stopped at its deadline";
        connection.served.close();
      }
      await all;
    }
    // With a store: the dispatch in hand gets the same deadline.
    await this.#consumer?.stop(deadline);
    logger.info("Receiver on port {port} stopped", { port });
    this.#resolveFinished();
  }

  /** Stops the receiver; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#stopping) {
          this.#release(conn.peer);
          conn.close();
          continue;
        }
        void this.#serve(conn);
      }
    } catch (error) {
      if (!this.#stopping) {
        logger.error("Receiver stopped accepting connections: {error}", {
          error,
        });
      }
    }
  }

  /** Decides whether a new connection may be served, and counts it. */
  #admit(peer: Address): boolean {
    if (this.#stopping) return false;
    const allow = this.#allow;
    if (allow?.mode === "address" && !allow.allowsAddress(peer.hostname)) {
      this.#reject(peer, "client_ip_not_allowed");
      return false;
    }
    const reached = this.#counts.take(peer);
    if (reached) {
      this.#warnings.warn(
        peer.hostname,
        "Refusing connection from {peer}: {open} connections open {scope} (limit {limit})",
        { peer: formatAddress(peer), ...reached },
      );
      this.#emit("clientreject", { peer, reason: "too_many_connections" });
      return false;
    }
    return true;
  }

  /** Uncounts a connection admitted by {@linkcode Receiver.#admit}. */
  #release(peer: Address) {
    this.#counts.release(peer);
  }

  /** Closes connections past their idle or frame timeout. */
  #sweep() {
    const now = performance.now();
    for (const connection of this.#connections) {
      const served = connection.served;
      // While a message is dispatched the receiver, not the peer, is
      // busy (and reads nothing more from it): neither timeout runs.
      if (connection.closedBecause || served.draining || served.busy) continue;
      const passed = expired(served, now, this.#timeouts);
      if (!passed) continue;
      connection.closedBecause = passed.reason;
      if (passed.kind === "frame") {
        this.#emit("framingerror", {
          peer: served.conn.peer,
          kind: "frame_timeout",
          bytes: 0,
        });
      }
      this.#warnings.warn(
        served.conn.peer.hostname,
        "Closing connection from {peer}: {reason}",
        { peer: formatAddress(served.conn.peer), reason: passed.reason },
      );
      served.close();
    }
  }

  #handshakeFailed(peer: Address, error: unknown) {
    const info = describeTlsError(error, "server", {
      verifiesPeer: this.#options.tls?.verifyPeer,
    });
    this.#warnings.warn(
      peer.hostname,
      "TLS handshake with {peer} failed: {detail}",
      { peer: formatAddress(peer), detail: info.detail },
    );
    this.#emit("handshakeerror", {
      peer,
      failure: info.failure,
      detail: info.detail,
      error,
    });
  }

  #reject(
    peer: Address,
    reason: ClientRejectDetail["reason"],
    certificateNames?: string[],
  ) {
    // Worded as elixir-mllp logs it, so log alerts written for that
    // library keep matching.
    this.#warnings.warn(
      peer.hostname,
      "Failed to verify client {client}, error: {reason}",
      { client: `{${peer.hostname}, ${peer.port}}`, reason },
    );
    this.#emit("clientreject", { peer, reason, certificateNames });
  }

  async #serve(conn: TransportConn): Promise<void> {
    const peer = conn.peer;
    const label = formatAddress(peer);
    const allow = this.#allow;
    const names = conn.certificate
      ? [
        ...(conn.certificate.commonName ? [conn.certificate.commonName] : []),
        ...conn.certificate.dnsNames,
      ]
      : [];
    if (allow?.mode === "certificate" && !allow.allowsCertificate(names)) {
      this.#reject(peer, "fail_to_verify_client_cert", names);
      conn.close();
      this.#release(peer);
      return;
    }
    const info: ConnectionDetail = {
      peer,
      local: conn.local,
      secure: conn.secure,
      certificateName: conn.certificate?.commonName,
    };
    const options = this.#options;
    const connection: Connection = {
      done: Promise.resolve(),
      served: new ServedConnection<unknown>(conn, {
        path: this.#path,
        context: options.context,
        maxFrameBytes: options.maxFrameBytes,
        dispatchTimeout: this.#dispatchTimeout,
        charset: options.charset,
        mllpRelease: options.mllpRelease,
        stop: this.#hardStop.signal,
        label,
        onJunk: (bytes, data) => {
          this.#emit("framingerror", { peer, kind: "junk", bytes });
          if (!conn.secure && served.messages === 0 && isTlsRecord(data)) {
            // A TLS client on a plain port: tell it at once by closing,
            // rather than leave it waiting for a handshake reply.
            connection.closedBecause = "client speaks TLS";
            this.#warnings.warn(
              peer.hostname,
              "Client {peer} started a TLS handshake, but this receiver speaks plain TCP; closing the connection",
              { peer: label },
            );
            // Through the connection, so that nothing in the rest of the
            // record (bytes that happen to look like a frame) is dispatched.
            connection.served.close();
          } else {
            this.#warnings.warn(
              peer.hostname,
              "Skipped {bytes} bytes outside a frame from {peer}",
              { bytes, peer: label },
            );
          }
        },
        onResync: (bytes) => {
          this.#emit("framingerror", { peer, kind: "resync", bytes });
          this.#warnings.warn(
            peer.hostname,
            "Start block inside an unfinished frame from {peer}; dropped {bytes} bytes and started a new frame",
            { peer: label, bytes },
          );
        },
        onDispatched: (outcome) => {
          options.onDispatched?.(outcome, peer);
          recordDispatch(
            outcome.kind,
            outcome.ackCode,
            outcome.failed,
            outcome.ms,
            outcome.bytes,
          );
          // One event per message: built only when someone listens.
          if (this.listenedTo("dispatch")) {
            this.dispatchEvent(
              new CustomEvent("dispatch", { detail: { ...outcome, peer } }),
            );
          }
        },
      }),
    };
    const served = connection.served;
    this.#connections.add(connection);
    const opened = performance.now();
    if (info.certificateName) {
      logger.info("Accepted connection from {peer} ({name})", {
        peer: label,
        name: info.certificateName,
      });
    } else {
      logger.info("Accepted connection from {peer}", { peer: label });
    }
    this.#emit("connectionopen", info);
    let finished!: () => void;
    connection.done = new Promise((resolve) => finished = resolve);
    let reason = "peer closed the connection";
    try {
      await served.run();
      // The receiver may have ended it (a timeout, the stop deadline).
      reason = connection.closedBecause ??
        (served.draining ? "receiver stopped" : reason);
    } catch (error) {
      reason = this.#closeReason(error, connection);
    } finally {
      conn.close();
      this.#connections.delete(connection);
      this.#release(peer);
    }
    const durationMs = performance.now() - opened;
    const messages = served.messages;
    logger.info(
      "Closed connection from {peer} after {ms} ms, messages: {messages} ({reason})",
      { peer: label, ms: Math.round(durationMs), messages, reason },
    );
    this.#emit("connectionclose", { ...info, durationMs, messages, reason });
    finished();
  }

  /** Names why a connection's pipeline failed, and logs it. */
  #closeReason(error: unknown, connection: Connection): string {
    const conn = connection.served.conn;
    const label = formatAddress(conn.peer);
    if (connection.closedBecause) return connection.closedBecause;
    if (error instanceof FrameSizeError) {
      this.#warnings.warn(
        conn.peer.hostname,
        "Closing connection from {peer}: {message}",
        { peer: label, message: error.message },
      );
      this.#emit("framingerror", {
        peer: conn.peer,
        kind: "frame_too_large",
        bytes: error.limit,
      });
      return "frame too large";
    }
    if (this.#stopping) return "receiver stopped";
    if (error instanceof Error && error.name === "AbortError") {
      // node:tls streams end this way when the client closes.
      return "peer closed the connection";
    }
    const reason = error instanceof Error ? error.message : String(error);
    const tlsError = conn.secure && error instanceof Error &&
      /tls|ssl|alert|certificate|InvalidData|close_notify|decrypt/i.test(
        `${error.name} ${
          (error as { code?: string }).code ?? ""
        } ${error.message}`,
      );
    if (tlsError) {
      this.#warnings.warn(
        conn.peer.hostname,
        "Connection from {peer} ended: {reason}",
        { peer: label, reason },
      );
    } else {
      logger.info("Connection from {peer} ended: {reason}", {
        peer: label,
        reason,
      });
    }
    return reason;
  }
}
