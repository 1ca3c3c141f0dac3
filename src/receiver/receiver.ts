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
import { ServedConnection } from "./connection.ts";
import { withApplicationAcks } from "../dispatch/stages/enhanced.ts";
import type { ApplicationAckRoute } from "../dispatch/ack_modes.ts";
import type { Path } from "../dispatch/stage.ts";
import { startStoredDispatch } from "../dispatch/stored_dispatch.ts";
import { receiverPath } from "./path.ts";
import { WarningLimiter } from "../observe/ratelimit.ts";
import {
  describeTlsError,
  isTlsRecord,
  loadPem,
  loadPems,
  type TlsFailure,
} from "../net/tls.ts";
import {
  type ListenHooks,
  listenTcp,
  listenTls,
  type TransportConn,
  type TransportListener,
} from "../net/transport.ts";
import { AllowList } from "../net/allow.ts";
import type { BatchAcks } from "../hl7/batch.ts";
import { type CharsetOptions, checkCharsetOptions } from "../hl7/charset.ts";
import type { DispatchOutcome } from "../dispatch/stream.ts";
import type { Dispatcher } from "../dispatch/types.ts";
import { type Address, formatAddress } from "../net/address.ts";
import { FrameSizeError } from "../wire/errors.ts";
import type { MessageStore, StoreConsumer } from "../dispatch/message_store.ts";
import { TypedEventTarget } from "../observe/events.ts";
import {
  recordConnection,
  recordDispatch,
  recordFramingError,
  recordRejection,
} from "../observe/telemetry.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/framer.ts";

const logger = getLogger(["mllp", "receiver"]);

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
 * TLS settings for a receiver (the seed's `transport_opts: %{tls: [...]}`).
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
   * is not sent: see the README's "Durable delivery"). Payloads that are
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
 * Detail of the `connectionopen` event.
 *
 * @example Log who connects
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ConnectionDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const opened = new Promise<ConnectionDetail>((resolve) =>
 *   receiver.addEventListener(
 *     "connectionopen",
 *     (event) => resolve(event.detail),
 *     { once: true },
 *   )
 * );
 * await using _client = await Client.connect("127.0.0.1", receiver.port);
 * const detail = await opened;
 * assertEquals(detail.peer.hostname, "127.0.0.1");
 * assertEquals([detail.local.port, detail.secure], [receiver.port, false]);
 * ```
 */
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

/**
 * Detail of the `connectionclose` event.
 *
 * @example Count the messages a connection carried
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ConnectionCloseDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const closed = new Promise<ConnectionCloseDetail>((resolve) =>
 *   receiver.addEventListener(
 *     "connectionclose",
 *     (event) => resolve(event.detail),
 *     { once: true },
 *   )
 * );
 * const client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("PING");
 * await client.close();
 * const detail = await closed;
 * assertEquals([detail.messages, detail.durationMs >= 0], [1, true]);
 * ```
 */
export interface ConnectionCloseDetail extends ConnectionDetail {
  /** How long the connection was open, in milliseconds. */
  durationMs: number;
  /** How many messages it carried. */
  messages: number;
  /** Why it closed, in words. */
  reason: string;
}

/**
 * Detail of the `clientreject` event: a client not in `allowedClients`, or
 * over a connection limit.
 *
 * @example See who was turned away
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ClientRejectDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   allowedClients: ["192.0.2.0/24"],
 * });
 * const rejected = new Promise<ClientRejectDetail>((resolve) =>
 *   receiver.addEventListener("clientreject", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * using _conn = await Deno.connect({
 *   hostname: "127.0.0.1",
 *   port: receiver.port,
 * });
 * const detail = await rejected;
 * assertEquals([detail.peer.hostname, detail.reason], [
 *   "127.0.0.1",
 *   "client_ip_not_allowed",
 * ]);
 * ```
 */
export interface ClientRejectDetail {
  /** The client's address. */
  peer: Address;
  /**
   * The seed's error atom, as a string, or `too_many_connections` past
   * `maxConnections` or `maxConnectionsPerClient`.
   */
  reason:
    | "client_ip_not_allowed"
    | "fail_to_verify_client_cert"
    | "too_many_connections";
  /** The names the client's certificate carries, when it had one. */
  certificateNames?: string[];
}

/**
 * Detail of the `handshakeerror` event.
 *
 * @example Spot a client that does not speak TLS
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { HandshakeErrorDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   tls: {
 *     cert: "tls/server/server_certificate.pem",
 *     key: "tls/server/private_key.pem",
 *   },
 * });
 * const failed = new Promise<HandshakeErrorDetail>((resolve) =>
 *   receiver.addEventListener(
 *     "handshakeerror",
 *     (event) => resolve(event.detail),
 *     { once: true },
 *   )
 * );
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: receiver.port });
 * await conn.write(new TextEncoder().encode("\x0bMSH|^~\\&|plain text\x1c\r"));
 * const detail = await failed;
 * assertEquals([detail.peer.hostname, detail.failure], ["127.0.0.1", "not_tls"]);
 * ```
 */
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

/**
 * Detail of the `framingerror` event.
 *
 * @example Count junk between frames
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { FramingErrorDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const framing = new Promise<FramingErrorDetail>((resolve) =>
 *   receiver.addEventListener("framingerror", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: receiver.port });
 * await conn.write(new TextEncoder().encode("\r\n\x0bPING\x1c\r"));
 * const detail = await framing;
 * assertEquals([detail.kind, detail.bytes], ["junk", 2]);
 * ```
 */
export interface FramingErrorDetail {
  /** The client's address. */
  peer: Address;
  /**
   * What went wrong: a frame over `maxFrameBytes` (the connection is
   * closed), bytes outside a frame (skipped), a start block inside an
   * unfinished frame (the partial frame is dropped), or a frame that did
   * not arrive within `frameTimeout` (the connection is closed).
   */
  kind: "frame_too_large" | "junk" | "resync" | "frame_timeout";
  /** The bytes concerned: skipped or dropped, or the limit exceeded. */
  bytes: number;
}

/**
 * Detail of the `dispatch` event, one per message.
 *
 * @example Log each message with its sender
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { DispatchDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const dispatched: DispatchDetail[] = [];
 * receiver.addEventListener("dispatch", (event) => dispatched.push(event.detail));
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r");
 * const [detail] = dispatched;
 * assertEquals(detail.peer.hostname, "127.0.0.1");
 * assertEquals([detail.kind, detail.controlId, detail.ackCode], [
 *   "hl7",
 *   "7",
 *   "AA",
 * ]);
 * ```
 */
export interface DispatchDetail extends DispatchOutcome {
  /** The client's address. */
  peer: Address;
}

/**
 * The events a {@linkcode Receiver} emits, each a `CustomEvent`.
 *
 * @example Trace a connection's life
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ReceiverEventMap } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const seen: (keyof ReceiverEventMap)[] = [];
 * const closed = new Promise((resolve) =>
 *   receiver.addEventListener("connectionclose", resolve)
 * );
 * for (const type of ["connectionopen", "dispatch", "connectionclose"] as const) {
 *   receiver.addEventListener(type, () => seen.push(type));
 * }
 * const client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("PING");
 * await client.close();
 * await closed;
 * assertEquals(seen, ["connectionopen", "dispatch", "connectionclose"]);
 * ```
 */
export interface ReceiverEventMap {
  /** A client connected (after the handshake and the allow-list). */
  connectionopen: CustomEvent<ConnectionDetail>;
  /** A connection closed. */
  connectionclose: CustomEvent<ConnectionCloseDetail>;
  /** A client was refused by `allowedClients` or a connection limit. */
  clientreject: CustomEvent<ClientRejectDetail>;
  /** A TLS handshake failed. */
  handshakeerror: CustomEvent<HandshakeErrorDetail>;
  /** A connection sent bytes that break the framing. */
  framingerror: CustomEvent<FramingErrorDetail>;
  /** A message was dispatched and answered. */
  dispatch: CustomEvent<DispatchDetail>;
}

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
  /** Aborted at the stop deadline: nothing is dispatched after it. */
  #hardStop = new AbortController();
  #finished: Promise<void>;
  #resolveFinished!: () => void;
  /** Open connections, counted from admission (before a handshake). */
  #open = 0;
  #openByAddress = new Map<string, number>();
  #maxConnections: number;
  #maxPerClient: number;
  #idleTimeout: number;
  #frameTimeout: number;
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
    this.#maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#maxPerClient = options.maxConnectionsPerClient ??
      DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
    this.#idleTimeout = options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT;
    this.#frameTimeout = options.frameTimeout ?? DEFAULT_FRAME_TIMEOUT;
    this.#dispatchTimeout = options.dispatchTimeout ??
      DEFAULT_DISPATCH_TIMEOUT;
    this.#finished = new Promise((resolve) => this.#resolveFinished = resolve);
    const timeouts = [this.#idleTimeout, this.#frameTimeout].filter((t) =>
      t > 0
    );
    if (timeouts.length > 0) {
      // One sweep for all connections, often enough to act within about a
      // quarter of the shorter timeout.
      const every = Math.max(10, Math.min(5_000, Math.min(...timeouts) / 4));
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
   * It never starts weaker than asked: a security setting that cannot be
   * enforced (`verifyPeer` without a CA, an allow-list of which no entry
   * can be used, unreadable certificates) makes it fail.
   *
   * @typeParam C The type of the `context` value.
   * @param options Port, dispatcher, TLS, allowed clients and limits.
   * @returns The running receiver.
   * @throws {Deno.errors.AddrInUse} If the port is taken.
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
    const fromPeer = this.#openByAddress.get(peer.hostname) ?? 0;
    if (this.#open >= this.#maxConnections || fromPeer >= this.#maxPerClient) {
      const total = this.#open >= this.#maxConnections;
      this.#warnings.warn(
        peer.hostname,
        "Refusing connection from {peer}: {open} connections open {scope} (limit {limit})",
        {
          peer: formatAddress(peer),
          open: total ? this.#open : fromPeer,
          scope: total ? "in all" : "from this address",
          limit: total ? this.#maxConnections : this.#maxPerClient,
        },
      );
      this.#emit("clientreject", { peer, reason: "too_many_connections" });
      return false;
    }
    this.#open++;
    this.#openByAddress.set(peer.hostname, fromPeer + 1);
    return true;
  }

  /** Uncounts a connection admitted by {@linkcode Receiver.#admit}. */
  #release(peer: Address) {
    this.#open--;
    const left = (this.#openByAddress.get(peer.hostname) ?? 1) - 1;
    if (left > 0) this.#openByAddress.set(peer.hostname, left);
    else this.#openByAddress.delete(peer.hostname);
  }

  /** Closes connections past their idle or frame timeout. */
  #sweep() {
    const now = performance.now();
    for (const connection of this.#connections) {
      const served = connection.served;
      // While a message is dispatched the receiver, not the peer, is
      // busy (and reads nothing more from it): neither timeout runs.
      if (connection.closedBecause || served.draining || served.busy) continue;
      if (served.inFrame) {
        const started = served.frameStartedAt ?? served.lastActivity;
        if (this.#frameTimeout > 0 && now - started > this.#frameTimeout) {
          connection.closedBecause =
            `frame timeout: a frame was not finished within ${this.#frameTimeout} ms`;
          this.#emit("framingerror", {
            peer: served.conn.peer,
            kind: "frame_timeout",
            bytes: 0,
          });
        }
      } else if (
        this.#idleTimeout > 0 && now - served.lastActivity > this.#idleTimeout
      ) {
        connection.closedBecause =
          `idle timeout: no data for ${this.#idleTimeout} ms`;
      }
      if (connection.closedBecause) {
        this.#warnings.warn(
          served.conn.peer.hostname,
          "Closing connection from {peer}: {reason}",
          {
            peer: formatAddress(served.conn.peer),
            reason: connection.closedBecause,
          },
        );
        served.close();
      }
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
    // The seed's wording, so existing log alerts keep matching.
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
          this.#emit("dispatch", { ...outcome, peer });
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
