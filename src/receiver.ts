/**
 * The MLLP receiver: a TCP or TLS listener whose connections each run
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

import { createPrivateKey, X509Certificate } from "node:crypto";
import { getLogger } from "@logtape/logtape";
import { isTlsRecord } from "./_link.ts";
import { describeTlsError, loadPem, loadPems } from "./_tls.ts";
import {
  type ListenHooks,
  listenTcp,
  listenTls,
  type TransportConn,
  type TransportListener,
} from "./_transport.ts";
import { AllowList } from "./allow.ts";
import {
  type Address,
  type Dispatcher,
  type DispatchOutcome,
  DispatchStream,
  formatAddress,
} from "./dispatcher.ts";
import { FrameSizeError, type TlsFailure } from "./errors.ts";
import { TypedEventTarget } from "./events.ts";
import {
  recordConnection,
  recordDispatch,
  recordFramingError,
  recordRejection,
} from "./_telemetry.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  MllpDecoderStream,
  MllpEncoderStream,
} from "./framer.ts";

const logger = getLogger(["mllp", "receiver"]);

/** Records a receiver event's numbers with OpenTelemetry. */
function record<K extends keyof ReceiverEventMap>(
  type: K,
  detail: ReceiverEventMap[K]["detail"],
) {
  switch (type) {
    case "connectionopen":
      return recordConnection(1);
    case "connectionclose":
      return recordConnection(-1);
    case "clientreject":
      return recordRejection((detail as ClientRejectDetail).reason);
    case "handshakeerror":
      return recordRejection(
        `tls_${(detail as HandshakeErrorDetail).failure}`,
      );
    case "framingerror":
      return recordFramingError((detail as FramingErrorDetail).kind);
    case "dispatch": {
      const d = detail as DispatchDetail;
      return recordDispatch(d.kind, d.ackCode, d.failed, d.ms, d.bytes);
    }
  }
}

/** The default time a TLS handshake may take: 10 seconds. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

/** TLS settings for a receiver (the seed's `transport_opts: %{tls: [...]}`). */
export interface ReceiverTlsOptions {
  /** The server certificate chain: PEM text, or the path of a PEM file. */
  cert: string;
  /** The server's private key: PEM text, or the path of a PEM file. */
  key: string;
  /**
   * The CA certificates that client certificates must chain to: PEM text
   * or paths. Needed with `verifyPeer`.
   */
  ca?: string | readonly string[];
  /**
   * Demand a client certificate signed by `ca` (the seed's
   * `verify: :verify_peer`). Connections without one, or with an
   * untrusted, expired or wrong-usage one, are refused in the handshake.
   *
   * @default {false}
   */
  verifyPeer?: boolean;
  /**
   * How long a handshake may take, in milliseconds.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
}

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
   * Serve MLLP over TLS. Without it the receiver speaks plain TCP and logs
   * a warning that data passes unencrypted.
   */
  tls?: ReceiverTlsOptions;
  /**
   * Only these clients may connect. Without `tls.verifyPeer`: IP
   * addresses, CIDR ranges or host names (resolved at start and again
   * every `allowedClientsRefresh` ms). With `tls.verifyPeer`: certificate
   * names, matched case-insensitively against the subject CN and SAN DNS
   * names. Other clients are closed before any byte reaches the
   * dispatcher. If no entry of a non-empty list can be used (every name
   * fails to resolve), {@linkcode Receiver.start} fails rather than let
   * everyone in.
   */
  allowedClients?: readonly string[];
  /**
   * How often host names in `allowedClients` are resolved again, in
   * milliseconds.
   *
   * @default {60000}
   */
  allowedClientsRefresh?: number;
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

/** Detail of the `connectionopen` event. */
export interface ConnectionDetail {
  /** The client's address. */
  peer: Address;
  /** The receiver's address the client connected to. */
  local: Address;
  /** Whether the connection is TLS. */
  secure: boolean;
  /** The client certificate's subject CN, with `verifyPeer`. */
  certificateName?: string;
}

/** Detail of the `connectionclose` event. */
export interface ConnectionCloseDetail extends ConnectionDetail {
  /** How long the connection was open, in milliseconds. */
  durationMs: number;
  /** How many messages it carried. */
  messages: number;
  /** Why it closed, in words. */
  reason: string;
}

/** Detail of the `clientreject` event: a client not in `allowedClients`. */
export interface ClientRejectDetail {
  /** The client's address. */
  peer: Address;
  /** The seed's error atom, as a string. */
  reason: "client_ip_not_allowed" | "fail_to_verify_client_cert";
  /** The names the client's certificate carries, when it had one. */
  certificateNames?: string[];
}

/** Detail of the `handshakeerror` event. */
export interface HandshakeErrorDetail {
  /** The client's address. */
  peer: Address;
  /** Why the handshake failed. */
  failure: TlsFailure;
  /** A sentence saying why. */
  detail: string;
  /** The error TLS reported. */
  error: unknown;
}

/** Detail of the `framingerror` event. */
export interface FramingErrorDetail {
  /** The client's address. */
  peer: Address;
  /**
   * What went wrong: a frame over `maxFrameBytes` (the connection is
   * closed), bytes outside a frame (skipped), or a start block inside an
   * unfinished frame (the partial frame is dropped).
   */
  kind: "frame_too_large" | "junk" | "resync";
  /** The bytes concerned: skipped or dropped, or the limit exceeded. */
  bytes: number;
}

/** Detail of the `dispatch` event, one per message. */
export interface DispatchDetail extends DispatchOutcome {
  /** The client's address. */
  peer: Address;
}

/** The events a {@linkcode Receiver} emits, each a `CustomEvent`. */
export interface ReceiverEventMap {
  /** A client connected (after the handshake and the allow-list). */
  connectionopen: CustomEvent<ConnectionDetail>;
  /** A connection closed. */
  connectionclose: CustomEvent<ConnectionCloseDetail>;
  /** A client was refused by `allowedClients`. */
  clientreject: CustomEvent<ClientRejectDetail>;
  /** A TLS handshake failed. */
  handshakeerror: CustomEvent<HandshakeErrorDetail>;
  /** A connection sent bytes that break the framing. */
  framingerror: CustomEvent<FramingErrorDetail>;
  /** A message was dispatched and answered. */
  dispatch: CustomEvent<DispatchDetail>;
}

interface Connection {
  conn: TransportConn;
  done: Promise<void>;
}

/**
 * An MLLP receiver listening on TCP or TLS. Start one with
 * {@linkcode Receiver.start}; stop it with {@linkcode Receiver.stop},
 * `await using`, the `signal` option, or by port with
 * `Receiver.stop(port)` as the seed does.
 *
 * Each connection gets one reply per message, in order, even when a sender
 * pipelines several messages in one write. A dispatcher error becomes an
 * `AE` reply and never ends the connection or the listener.
 *
 * The receiver is an `EventTarget`: see {@linkcode ReceiverEventMap}.
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

  private constructor(
    listener: TransportListener,
    allow: AllowList | undefined,
    options: ReceiverOptions<unknown>,
  ) {
    super();
    this.#listener = listener;
    this.#allow = allow;
    this.#options = options;
    this.#accepting = this.#accept();
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Starts a receiver.
   *
   * It never starts weaker than asked: a security setting that cannot be
   * enforced (`verifyPeer` without a CA, an allow-list of which no entry
   * can be used, unreadable certificates) makes it fail.
   *
   * @typeParam C The type of the `context` value.
   * @param options Port, dispatcher, TLS, allowed clients and limits.
   * @returns The running receiver.
   * @throws {Deno.errors.AddrInUse} If the port is taken.
   * @throws {RangeError} If `maxFrameBytes` is not a positive number.
   * @throws {TypeError} If a TLS setting cannot be enforced.
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
    const tls = options.tls;
    const verifyPeer = tls?.verifyPeer ?? false;
    const hostname = options.hostname ?? "0.0.0.0";
    let material;
    if (tls) {
      const timeout = tls.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
      if (!(timeout > 0) || !Number.isFinite(timeout)) {
        throw new RangeError(
          `Cannot start receiver: tls.handshakeTimeout must be a positive number, got "${timeout}"`,
        );
      }
      material = {
        cert: await loadPem(tls.cert, "the TLS certificate (tls.cert)"),
        key: await loadPem(tls.key, "the TLS key (tls.key)"),
        ca: await loadPems(tls.ca, "the CA certificates (tls.ca)"),
        verifyPeer,
        handshakeTimeout: timeout,
      };
      checkKeyPair(material.cert, material.key);
      if (verifyPeer && material.ca.length === 0) {
        throw new TypeError(
          "Cannot start receiver: tls.verifyPeer needs tls.ca, the CA certificates that client certificates must chain to",
        );
      }
    }
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
      // Address restrictions apply before anything is read, and before a
      // TLS handshake.
      screen: allow?.mode === "address"
        ? (peer) => {
          if (allow.allowsAddress(peer.hostname)) return true;
          if (receiver) receiver.#reject(peer, "client_ip_not_allowed");
          return false;
        }
        : undefined,
      onHandshakeError: (peer, error) =>
        receiver && receiver.#handshakeFailed(peer, error),
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
    if (!material) {
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
    record(type, detail);
    this.dispatchEvent(new CustomEvent(type, { detail }));
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
    this.#allow?.close();
    await this.#listener.close();
    await this.#accepting;
    for (const connection of this.#connections) connection.conn.close();
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
          conn.close();
          continue;
        }
        const connection: Connection = { conn, done: Promise.resolve() };
        this.#connections.add(connection);
        connection.done = this.#serve(conn).finally(() => {
          this.#connections.delete(connection);
        });
      }
    } catch (error) {
      if (!this.#stopping) {
        logger.error("Receiver stopped accepting connections: {error}", {
          error,
        });
      }
    }
  }

  #handshakeFailed(peer: Address, error: unknown) {
    const info = describeTlsError(error, "server", {
      verifiesPeer: this.#options.tls?.verifyPeer,
    });
    logger.warn("TLS handshake with {peer} failed: {detail}", {
      peer: formatAddress(peer),
      detail: info.detail,
    });
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
    // The seed's wording, so existing log alerts keep matching.
    logger.warn("Failed to verify client {client}, error: {reason}", {
      client: `{${peer.hostname}, ${peer.port}}`,
      reason,
    });
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
      return;
    }
    const info: ConnectionDetail = {
      peer,
      local: conn.local,
      secure: conn.secure,
      certificateName: conn.certificate?.commonName,
    };
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
    const options = this.#options;
    const decoder = new MllpDecoderStream({
      maxFrameBytes: options.maxFrameBytes,
      label,
      onJunk: (bytes, data) => {
        this.#emit("framingerror", { peer, kind: "junk", bytes });
        if (!conn.secure && decoder.frames === 0 && isTlsRecord(data)) {
          // A TLS client on a plain port: tell it at once by closing,
          // rather than leave it waiting for a handshake reply.
          logger.warn(
            "Client {peer} started a TLS handshake, but this receiver speaks plain TCP; closing the connection",
            { peer: label },
          );
          conn.close();
        }
      },
      onResync: (bytes) =>
        this.#emit("framingerror", { peer, kind: "resync", bytes }),
    });
    let messages = 0;
    let reason = "peer closed the connection";
    try {
      await conn.readable
        .pipeThrough(decoder)
        .pipeThrough(
          new DispatchStream(options.dispatcher, {
            peer,
            local: conn.local,
            certificateName: info.certificateName,
            context: options.context,
            onDispatched: (outcome) => {
              messages++;
              options.onDispatched?.(outcome, peer);
              this.#emit("dispatch", { ...outcome, peer });
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
        this.#emit("framingerror", {
          peer,
          kind: "frame_too_large",
          bytes: error.limit,
        });
      } else if (this.#stopping) {
        reason = "receiver stopped";
      } else if (error instanceof Error && error.name === "AbortError") {
        // node:tls streams end this way when the client closes.
        reason = "peer closed the connection";
      } else {
        reason = error instanceof Error ? error.message : String(error);
        const tlsError = conn.secure && error instanceof Error &&
          /tls|ssl|alert|certificate|InvalidData|close_notify|decrypt/i.test(
            `${error.name} ${
              (error as { code?: string }).code ?? ""
            } ${error.message}`,
          );
        if (tlsError) {
          logger.warn("Connection from {peer} ended: {reason}", {
            peer: label,
            reason,
          });
        } else {
          logger.info("Connection from {peer} ended: {reason}", {
            peer: label,
            reason,
          });
        }
      }
    } finally {
      conn.close();
    }
    const durationMs = performance.now() - opened;
    logger.info(
      "Closed connection from {peer} after {ms} ms, messages: {messages} ({reason})",
      { peer: label, ms: Math.round(durationMs), messages, reason },
    );
    this.#emit("connectionclose", { ...info, durationMs, messages, reason });
  }
}

/** Fails when a certificate and a key do not belong together. */
function checkKeyPair(cert: string, key: string) {
  let matches: boolean;
  try {
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new TypeError(
      `Cannot start receiver: cannot read the TLS certificate or key: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
  if (!matches) {
    throw new TypeError(
      "Cannot start receiver: the TLS key (tls.key) does not belong to the certificate (tls.cert)",
    );
  }
}
