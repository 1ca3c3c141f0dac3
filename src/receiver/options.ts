/**
 * A receiver's options, their defaults, and the checks `Receiver.start`
 * makes before it listens: it never starts with a setting it cannot honour.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import type { ApplicationAckRoute } from "../dispatch/ack_modes.ts";
import type { MessageStore } from "../dispatch/message_store.ts";
import type { DispatchOutcome } from "../dispatch/stream.ts";
import type { Dispatcher } from "../dispatch/types.ts";
import type { BatchAcks } from "../hl7/batch.ts";
import { type CharsetOptions, checkCharsetOptions } from "../hl7/charset.ts";
import type { Address } from "../net/address.ts";
import { loadPem, loadPems } from "../net/tls.ts";
import type { ServerTlsMaterial } from "../net/transport.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/framer.ts";

/**
 * The default time a TLS handshake may take: 10 seconds.
 *
 * @example Allow less time for TLS handshakes
 * ```ts
 * import { DEFAULT_HANDSHAKE_TIMEOUT, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_HANDSHAKE_TIMEOUT, 10_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   tls: {
 *     cert: "tls/server/server_certificate.pem",
 *     key: "tls/server/private_key.pem",
 *     handshakeTimeout: DEFAULT_HANDSHAKE_TIMEOUT / 2,
 *   },
 * });
 * assertEquals(receiver.secure, true);
 * ```
 */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

/**
 * TLS settings for a receiver.
 *
 * @example Serve MLLP over TLS
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ReceiverTlsOptions } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * const tls: ReceiverTlsOptions = {
 *   cert: "tls/server/server_certificate.pem", // paths or PEM text
 *   key: "tls/server/private_key.pem",
 * };
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   tls,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   tls: { caCerts: "tls/root-ca/ca_certificate.pem" },
 * });
 * assertEquals(
 *   (await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r")).ok,
 *   true,
 * );
 * ```
 */
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
   * Demand a client certificate signed by `ca`. Connections without one,
   * or with an untrusted, expired or wrong-usage one, are refused in the
   * handshake.
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
 *
 * @example A receiver with a context value and tighter limits
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import type { ReceiverOptions } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * const options: ReceiverOptions<{ site: string }> = {
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: (message, ctx) => `${ctx.context.site} got ${message.size} bytes`,
 *   context: { site: "lab" },
 *   maxFrameBytes: 1024 * 1024,
 *   idleTimeout: 5 * 60_000,
 * };
 * await using receiver = await Receiver.start(options);
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send("PING");
 * assertEquals(result.outcome === "reply" && result.text, "lab got 4 bytes");
 * ```
 */
export interface ReceiverOptions<C = unknown> {
  /** The port to listen on; `0` picks a free one (see {@linkcode Receiver.port}). */
  port: number;
  /**
   * The address to listen on. Without it, a plain TCP receiver listens on
   * `127.0.0.1`, so that only this machine can connect (its start-up line
   * says so): name an address, such as `"0.0.0.0"` for every IPv4
   * interface, to accept other hosts. With `tls` it listens on
   * `"0.0.0.0"`.
   *
   * @default {"127.0.0.1"} (`"0.0.0.0"` with `tls`)
   */
  hostname?: string;
  /** The dispatcher that handles each message. */
  dispatcher: Dispatcher<C>;
  /** A value handed to the dispatcher as `ctx.context`. */
  context?: C;
  /**
   * Serve MLLP over TLS. Without it the receiver speaks plain TCP, logs a
   * warning that data passes unencrypted and, unless `hostname` names an
   * address, listens on loopback only.
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
  /**
   * The most connections open at once; one more is closed at once with a
   * warning (nothing is read from it).
   *
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * The most connections open at once from one IP address.
   *
   * @default {64}
   */
  maxConnectionsPerClient?: number;
  /**
   * How long a connection may stay silent between frames, in
   * milliseconds; then it is closed. Time spent dispatching its messages
   * does not count: the clock starts at its last bytes or its last
   * dispatch's end, whichever is later. `0` never closes idle connections.
   *
   * @default {3600000}
   */
  idleTimeout?: number;
  /**
   * How long a frame may take to arrive once its start block has (a
   * defence against slowloris senders), in milliseconds; then the
   * connection is closed. While the connection's earlier messages are
   * dispatched nothing is read from it, so that time does not count: the
   * clock starts anew when a dispatch ends. `0` for no limit.
   *
   * @default {120000}
   */
  frameTimeout?: number;
  /**
   * How long the dispatcher may take to answer one message, in
   * milliseconds; past it, the sender gets `AE` (a NAK for non-HL7), the
   * dispatcher's `ctx.signal` is aborted, and the connection goes on.
   * `0` waits for ever.
   *
   * @default {30000}
   */
  dispatchTimeout?: number;
  /** Stops the receiver when aborted (as `stop()` with its default deadline). */
  signal?: AbortSignal;
  /** Called after each message with what the dispatch did. */
  onDispatched?: (outcome: DispatchOutcome, peer: Address) => void;
  /**
   * Store each HL7 message before acknowledging it (store-and-forward),
   * such as a `KvMessageStore` from `@x/mllp/store`. Each HL7 message is
   * committed to the store with its `AA` (MSA-3 "Stored") before the `AA`
   * is sent; if the commit fails the sender gets `AE` and nothing is
   * stored. A resend (same MSH-3, MSH-4 and MSH-10) gets the ACK stored
   * the first time and is not dispatched again. The `dispatcher` then runs
   * from the store's consumer loop, apart from the connections (its reply
   * is not sent: see docs/durable.md). Payloads that are
   * not HL7 are not stored: they go to the dispatcher at once, as without
   * a store.
   */
  store?: MessageStore;
  /**
   * How a batch (a frame that starts with `FHS` or `BHS`) reaches the
   * dispatcher: `"each"` runs it once per message of the batch, in order
   * (a message it fails on gets `AE`; one whose MSH cannot be read gets
   * `AR` and is not dispatched); `"whole"` hands it the `BatchMessage`
   * once, and sends its reply as it is (nothing: every message accepted).
   * Either way the sender gets one response batch (see `batchAcks`). With
   * a `store`, only `"each"`: each message of a batch is stored as its own
   * message before the response batch goes out.
   *
   * @default {"each"}
   */
  batches?: "each" | "whole";
  /**
   * Which ACKs a response batch carries: `"errors"` only those of messages
   * not accepted (HL7's exception mode: a message without an ACK was
   * accepted), `"all"` one per message.
   *
   * @default {"errors"}
   */
  batchAcks?: BatchAcks;
  /**
   * How HL7 messages' charsets are picked and applied: `default` for an
   * empty MSH-18, `override` whatever MSH-18 says, `invalid: "strict"` to
   * refuse bytes that do not decode, `allowWide` to accept UTF-16 and
   * UTF-32 (see `CharsetOptions` in `@x/mllp/charset`). A message refused
   * for its charset gets `AR` with MSA-3 saying why (the charset, and the
   * byte offset for bytes that do not decode).
   *
   * @default {{}}
   */
  charset?: CharsetOptions;
  /**
   * Where the application ACK (`AA`/`AE`/`AR`) of an enhanced-mode message
   * (MSH-15 or MSH-16 valued) goes: `"connection"` writes it on the
   * connection the message came in on, after the commit ACK (`CA`) the
   * receiver sent itself; a function gets it to deliver on a later
   * connection (say, through a `Client` to the sender's receiver). MSH-16
   * decides whether it is sent at all. With a `store`, the dispatcher runs
   * from the store's consumer: only a function gets application ACKs
   * then (`AA` and `AR`; an `AE` is retried). Original-mode messages are
   * answered as always.
   *
   * @default {"connection"}
   */
  applicationAcks?: ApplicationAckRoute<C>;
  /**
   * Whether messages that ask for enhanced acknowledgment mode (MSH-15 or
   * MSH-16 valued) are answered in it: a commit ACK (`CA`/`CE`/`CR`) as
   * MSH-15 asks, then the application ACK as MSH-16 asks. `false` answers
   * every message in original mode (one ACK, the dispatcher's), for
   * senders that fill MSH-15/16 but expect an `AA`.
   *
   * @default {true}
   */
  enhancedMode?: boolean;
  /**
   * The MLLP release: with `2`, every frame is first answered with the
   * one-byte commit frame `0x06` once it is safely received (once read;
   * with a `store`, once stored), or `0x15` when it cannot be taken (the
   * store failed); the reply follows as its own frame. One-byte `0x06` and
   * `0x15` frames from the sender (its commit of our replies) are
   * consumed, never dispatched.
   *
   * @default {1}
   */
  mllpRelease?: 1 | 2;
}

/**
 * Options for {@linkcode Receiver.stop}.
 *
 * @example Stop with a short deadline
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { StopOptions } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * const receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * const options: StopOptions = { deadline: 1_000 };
 * await receiver.stop(options);
 * assertEquals(receiver.stopped, true);
 * ```
 */
export interface StopOptions {
  /**
   * How long in-flight messages get to be dispatched and answered, in
   * milliseconds; then every connection still open is closed.
   *
   * @default {5000}
   */
  deadline?: number;
}

/**
 * The default limit of open connections.
 *
 * @example Accept fewer connections
 * ```ts
 * import { DEFAULT_MAX_CONNECTIONS, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_MAX_CONNECTIONS, 1024);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   maxConnections: DEFAULT_MAX_CONNECTIONS / 4,
 * });
 * assertEquals(receiver.connections, 0);
 * ```
 */
export const DEFAULT_MAX_CONNECTIONS = 1024;
/**
 * The default limit of open connections from one IP address.
 *
 * @example Allow one busy sender more connections
 * ```ts
 * import {
 *   DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
 *   EchoDispatcher,
 *   Receiver,
 * } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_MAX_CONNECTIONS_PER_CLIENT, 64);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   maxConnectionsPerClient: 2 * DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
 * });
 * assertEquals(receiver.connections, 0);
 * ```
 */
export const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64;
/**
 * The default idle timeout: one hour.
 *
 * @example Close silent connections sooner
 * ```ts
 * import { DEFAULT_IDLE_TIMEOUT, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_IDLE_TIMEOUT, 60 * 60_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   idleTimeout: DEFAULT_IDLE_TIMEOUT / 6, // ten minutes
 * });
 * assertEquals(receiver.stopped, false);
 * ```
 */
export const DEFAULT_IDLE_TIMEOUT = 3_600_000;
/**
 * The default frame timeout: two minutes.
 *
 * @example Expect frames to arrive faster
 * ```ts
 * import { DEFAULT_FRAME_TIMEOUT, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_FRAME_TIMEOUT, 2 * 60_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   frameTimeout: DEFAULT_FRAME_TIMEOUT / 4, // thirty seconds
 * });
 * assertEquals(receiver.stopped, false);
 * ```
 */
export const DEFAULT_FRAME_TIMEOUT = 120_000;
/**
 * The default dispatch timeout: 30 seconds.
 *
 * @example Give a slow dispatcher more time
 * ```ts
 * import { DEFAULT_DISPATCH_TIMEOUT, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_DISPATCH_TIMEOUT, 30_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   dispatchTimeout: 2 * DEFAULT_DISPATCH_TIMEOUT,
 * });
 * assertEquals(receiver.stopped, false);
 * ```
 */
export const DEFAULT_DISPATCH_TIMEOUT = 30_000;
/**
 * The default deadline of a graceful stop: 5 seconds.
 *
 * @example Stop faster than the default
 * ```ts
 * import { DEFAULT_STOP_DEADLINE, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_STOP_DEADLINE, 5_000);
 * const receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * await receiver.stop({ deadline: DEFAULT_STOP_DEADLINE / 5 });
 * assertEquals(receiver.stopped, true);
 * ```
 */
export const DEFAULT_STOP_DEADLINE = 5_000;

/**
 * The address a receiver listens on when its options name none: loopback
 * (`127.0.0.1`, this machine only) for plain TCP, as Postgres and Redis do,
 * so that a first try never exposes unencrypted data on every interface;
 * every IPv4 interface (`0.0.0.0`) with TLS.
 *
 * @param tls Whether the receiver speaks TLS.
 * @returns The address to listen on.
 */
export function defaultHostname(tls: boolean): string {
  return tls ? "0.0.0.0" : "127.0.0.1";
}

/**
 * Fails on options `Receiver.start` cannot honour (TLS material is checked
 * by {@linkcode tlsMaterial}).
 *
 * @param options The receiver's options.
 * @throws {RangeError} On a limit or timeout out of range.
 * @throws {TypeError} On batch or charset options that cannot be used.
 * @throws {Error} If `signal` is already aborted.
 */
export function checkReceiverOptions<C>(options: ReceiverOptions<C>): void {
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
  for (
    const name of ["maxConnections", "maxConnectionsPerClient"] as const
  ) {
    const value = options[name];
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
      throw new RangeError(
        `Cannot start receiver: ${name} must be a positive integer, got "${value}"`,
      );
    }
  }
  for (
    const name of ["idleTimeout", "frameTimeout", "dispatchTimeout"] as const
  ) {
    const value = options[name];
    if (value !== undefined && !(value >= 0 && Number.isFinite(value))) {
      throw new RangeError(
        `Cannot start receiver: ${name} must be a number of milliseconds >= 0, got "${value}"`,
      );
    }
  }
  checkBatchOptions(options);
  if (options.charset !== undefined) {
    try {
      checkCharsetOptions(options.charset);
    } catch (error) {
      throw new TypeError(
        `Cannot start receiver: ${(error as Error).message}`,
      );
    }
  }
  if (
    options.mllpRelease !== undefined && options.mllpRelease !== 1 &&
    options.mllpRelease !== 2
  ) {
    throw new RangeError(
      `Cannot start receiver: mllpRelease must be 1 or 2, got "${options.mllpRelease}"`,
    );
  }
}

/**
 * Reads and checks a receiver's TLS certificate, key and CAs.
 *
 * @param tls The receiver's `tls` option.
 * @returns What the TLS listener needs.
 * @throws {TypeError} If the key does not belong to the certificate, or
 * `verifyPeer` has no CA to verify against.
 */
export async function tlsMaterial(
  tls: ReceiverTlsOptions,
): Promise<ServerTlsMaterial> {
  const verifyPeer = tls.verifyPeer ?? false;
  const timeout = tls.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
  if (!(timeout > 0) || !Number.isFinite(timeout)) {
    throw new RangeError(
      `Cannot start receiver: tls.handshakeTimeout must be a positive number, got "${timeout}"`,
    );
  }
  const material = {
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
  return material;
}

/** Fails on batch options that are unknown or do not go together. */
function checkBatchOptions(
  options: Pick<ReceiverOptions, "batches" | "batchAcks" | "store">,
) {
  const { batches, batchAcks } = options;
  if (batches !== undefined && batches !== "each" && batches !== "whole") {
    throw new TypeError(
      `Cannot start receiver: batches must be "each" or "whole", got "${batches}"`,
    );
  }
  if (
    batchAcks !== undefined && batchAcks !== "errors" && batchAcks !== "all"
  ) {
    throw new TypeError(
      `Cannot start receiver: batchAcks must be "errors" or "all", got "${batchAcks}"`,
    );
  }
  if (options.store && batches === "whole") {
    throw new TypeError(
      'Cannot start receiver: batches "whole" cannot be used with a store, which stores each message of a batch as its own',
    );
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
