/**
 * The MLLP client: a long-lived connection to one receiver, on TCP
 * (`Deno.connect`) or TLS, through the same framer as the receiver. It
 * reconnects after a drop with backoff, queues sends in order, and verifies
 * each reply against the message it answers.
 *
 * @example Send the seed's message and read the typed ACK
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * await using client = await Client.connect("localhost", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|MegaReg|XYZHospC|SuperOE|XYZImgCtr|20060529090131-0500||ADT^A01^ADT_A01|01052901|P|2.5\r",
 * );
 * assertEquals(result.outcome, "accept");
 * assertEquals(result.outcome === "accept" && result.ack.code, "AA");
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  isTlsError,
  Link,
  type LinkClosed,
  tlsHandshakeError,
} from "./link.ts";
import { loadPem, loadPems } from "../net/tls.ts";
import { type ClientTlsMaterial, connect } from "../net/transport.ts";
import {
  type Ack,
  type AckCode,
  type AckResult,
  verifyAck,
} from "../hl7/ack.ts";
import {
  type BatchMessage,
  type BatchResult,
  batchResults,
  buildBatch,
  type BuildBatchOptions,
} from "../hl7/batch.ts";
import { ackModeOf, silenceMeans } from "../hl7/ack_conditions.ts";
import { type CommitAnswer, ReplyRouter } from "./reply_router.ts";
import { SilenceError } from "./link.ts";
import { formatAddress } from "../net/address.ts";
import { unwrap } from "../wire/envelope.ts";
import {
  ClientError,
  CommitError,
  ConnectionClosedError,
  ConnectionRefusedError,
  ConnectTimeoutError,
  InvalidReplyError,
  QueueFullError,
  type ReplyProblem,
  ReplyTimeoutError,
  TlsHandshakeError,
} from "./errors.ts";
import { TypedEventTarget } from "../observe/events.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/framer.ts";
import { framingProblem } from "../wire/_scan.ts";
import { decodeText, type Message, readMessage } from "../hl7/message.ts";
import {
  endSpan,
  recordClientError,
  recordClientSend,
  recordReconnect,
  startSendSpan,
} from "../observe/telemetry.ts";

export {
  type BackoffOptions,
  type FixedIntervalOptions,
  reconnectDelay,
} from "../net/backoff.ts";
import {
  type BackoffOptions,
  type FixedIntervalOptions,
  reconnectDelay,
} from "../net/backoff.ts";

const logger = getLogger(["mllp", "client"]);

/**
 * The default reply timeout: 60 seconds, as the seed's.
 *
 * @example Wait less than the default for replies
 * ```ts
 * import {
 *   Client,
 *   DEFAULT_REPLY_TIMEOUT,
 *   EchoDispatcher,
 *   Receiver,
 * } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_REPLY_TIMEOUT, 60_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   replyTimeout: DEFAULT_REPLY_TIMEOUT / 4,
 * });
 * assertEquals((await client.send("PING")).outcome, "reply");
 * ```
 */
export const DEFAULT_REPLY_TIMEOUT = 60_000;
/**
 * The default connect timeout: 10 seconds.
 *
 * @example Give up on a connection attempt sooner
 * ```ts
 * import {
 *   Client,
 *   DEFAULT_CONNECT_TIMEOUT,
 *   EchoDispatcher,
 *   Receiver,
 * } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_CONNECT_TIMEOUT, 10_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   connectTimeout: DEFAULT_CONNECT_TIMEOUT / 5,
 * });
 * assertEquals(client.state, "connected");
 * ```
 */
export const DEFAULT_CONNECT_TIMEOUT = 10_000;
/**
 * The default limit of queued sends.
 *
 * @example Allow a longer queue for bursts
 * ```ts
 * import { Client, DEFAULT_MAX_QUEUED, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_MAX_QUEUED, 1000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   maxQueued: 10 * DEFAULT_MAX_QUEUED,
 * });
 * assertEquals(client.queued, 0);
 * ```
 */
export const DEFAULT_MAX_QUEUED = 1000;
/**
 * The default MLLP release 2 commit timeout: 5 seconds.
 *
 * @example Wait less for the commit frame of a local receiver
 * ```ts
 * import {
 *   Client,
 *   DEFAULT_COMMIT_TIMEOUT,
 *   EchoDispatcher,
 *   Receiver,
 * } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_COMMIT_TIMEOUT, 5_000);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   mllpRelease: 2,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   mllpRelease: 2,
 *   commitTimeout: DEFAULT_COMMIT_TIMEOUT / 5,
 * });
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r",
 * );
 * assertEquals(result.outcome, "accept");
 * ```
 */
export const DEFAULT_COMMIT_TIMEOUT = 5_000;
/**
 * The default number of MLLP release 2 resends: 3.
 *
 * @example Resend an uncommitted frame more often over a lossy link
 * ```ts
 * import {
 *   Client,
 *   DEFAULT_COMMIT_RETRIES,
 *   EchoDispatcher,
 *   Receiver,
 * } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_COMMIT_RETRIES, 3);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   mllpRelease: 2,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   mllpRelease: 2,
 *   commitRetries: 2 * DEFAULT_COMMIT_RETRIES,
 * });
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r",
 * );
 * assertEquals(result.outcome, "accept");
 * ```
 */
export const DEFAULT_COMMIT_RETRIES = 3;

/**
 * Options for {@linkcode Client.connect} and `new Client()`.
 *
 * @example Tune a client
 * ```ts
 * import { Client, type ClientOptions, EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const options: ClientOptions = {
 *   replyTimeout: 5_000,
 *   connectTimeout: 2_000,
 *   reconnect: { initialDelay: 500, maxDelay: 30_000 },
 *   whenDisconnected: "fail",
 *   maxQueued: 100,
 * };
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, options);
 * const result = await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r");
 * assertEquals(result.ok, true);
 * ```
 */
export interface ClientOptions {
  /**
   * How long {@linkcode Client.send} waits for a reply, in milliseconds.
   * When it passes, the connection is closed and reopened, so a late reply
   * can never be credited to another message.
   *
   * @default {60000}
   */
  replyTimeout?: number;
  /**
   * How long one connection attempt may take, in milliseconds.
   *
   * @default {10000}
   */
  connectTimeout?: number;
  /**
   * The largest reply accepted, in bytes.
   *
   * @default {10485760}
   */
  maxFrameBytes?: number;
  /**
   * Connect with TLS. The receiver's certificate is always verified: by
   * `caCerts`, or by the system's trusted roots without them.
   */
  tls?: ClientTlsOptions;
  /**
   * How to reconnect after a dropped connection or a failed attempt:
   * exponential backoff (the seed's 1 s doubling to 180 s, with jitter), a
   * fixed interval, or `false` to connect only when a send needs it.
   *
   * @default {{ initialDelay: 1000, maxDelay: 180000, factor: 2, jitter: 0.1 }}
   */
  reconnect?: BackoffOptions | FixedIntervalOptions | false;
  /**
   * What a send does while there is no connection: `"wait"` for one, for
   * at most the send's timeout (then it fails with the last connection
   * error), or `"fail"` at once with the last connection error.
   *
   * @default {"wait"}
   */
  whenDisconnected?: "wait" | "fail";
  /**
   * How many sends may wait in the queue (not counting the one in
   * flight); one more is refused at once with {@linkcode QueueFullError}.
   *
   * @default {1000}
   */
  maxQueued?: number;
  /**
   * How many times a send that was never written (its connection failed
   * before the message reached the socket) is tried again on the next
   * connection. Sends that were written are never resent: their outcome
   * is unknown, and resending could duplicate them.
   *
   * @default {0}
   */
  retryUnwritten?: number;
  /**
   * The MLLP release: with `2`, after writing a frame the client waits
   * for the receiver's one-byte commit frame (`0x06`) for `commitTimeout`
   * ms; on a timeout or a NAK (`0x15`) it writes the same frame again, up
   * to `commitRetries` times, then fails with {@linkcode CommitError}.
   * Once committed, the reply is awaited as usual (within the reply
   * timeout, counted afresh), and the client commits each frame it
   * receives with `0x06`. A receiver that dedupes (one with a store does,
   * by MSH-3, MSH-4 and MSH-10) makes a resend harmless; one that does not
   * may process a message twice when a commit frame was lost.
   *
   * @default {1}
   */
  mllpRelease?: 1 | 2;
  /**
   * Release 2: how long to wait for the commit frame after each write, in
   * milliseconds.
   *
   * @default {5000}
   */
  commitTimeout?: number;
  /**
   * Release 2: how many times a frame that was not committed is written
   * again.
   *
   * @default {3}
   */
  commitRetries?: number;
  /**
   * Enhanced acknowledgment mode: how long after the commit ACK the
   * application ACK may take to arrive on the connection, in
   * milliseconds; past it, `applicationAck` resolves with `undefined`.
   *
   * @default {the replyTimeout}
   */
  applicationAckTimeout?: number;
}

/**
 * TLS settings for a {@linkcode Client}.
 *
 * @example Mutual TLS with the repository's test PKI
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import type { ClientTlsOptions } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: (_message, ctx) => `Hello, ${ctx.certificateName}`,
 *   tls: {
 *     cert: "tls/server/server_certificate.pem",
 *     key: "tls/server/private_key.pem",
 *     ca: "tls/root-ca/ca_certificate.pem",
 *     verifyPeer: true,
 *   },
 * });
 * const tls: ClientTlsOptions = {
 *   caCerts: "tls/root-ca/ca_certificate.pem",
 *   cert: "tls/client/client_certificate.pem",
 *   key: "tls/client/private_key.pem",
 *   serverName: "localhost",
 * };
 * await using client = await Client.connect("127.0.0.1", receiver.port, { tls });
 * const result = await client.send("PING");
 * assertEquals(result.outcome === "reply" && result.text, "Hello, client-1");
 * ```
 */
export interface ClientTlsOptions {
  /**
   * The CA certificates the receiver's certificate must chain to: PEM text
   * or paths of PEM files (the seed's `cacertfile`).
   *
   * @default {the system's trusted roots}
   */
  caCerts?: string | readonly string[];
  /**
   * A client certificate to present (mutual TLS): PEM text or a path.
   * Needs `key`.
   */
  cert?: string;
  /** The client certificate's private key: PEM text or a path. */
  key?: string;
  /**
   * The name the receiver's certificate must carry. Set it when connecting
   * by IP address to a receiver whose certificate names a host, such as
   * `"localhost"`.
   *
   * @default {the hostname connected to}
   */
  serverName?: string;
}

/**
 * Options for one {@linkcode Client.send}.
 *
 * @example A shorter timeout and a way to cancel one send
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { SendOptions } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const cancel = new AbortController();
 * const options: SendOptions = { timeout: 5_000, signal: cancel.signal };
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r",
 *   options,
 * );
 * assertEquals(result.outcome, "accept");
 * ```
 */
export interface SendOptions {
  /**
   * The reply timeout for this send, in milliseconds; also the longest
   * wait for a connection when there is none (counted while the send has
   * no connection, in the queue or at its head; time queued behind a send
   * in flight on an open connection does not count).
   *
   * @default {the client's replyTimeout}
   */
  timeout?: number;
  /**
   * Aborts the send. A queued send is dropped; one already written closes
   * the connection, as a timeout does (its outcome is unknown).
   */
  signal?: AbortSignal;
}

/**
 * Options for {@linkcode Client.sendBatch}: how to build it, and the send's.
 *
 * @example Send a batch file with a known control id
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import { BatchMessage } from "@x/mllp/batch";
 * import type { SendBatchOptions } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const options: SendBatchOptions = {
 *   file: true,
 *   controlId: "B1",
 *   timeout: 5_000,
 * };
 * const result = await client.sendBatch([
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5\r",
 * ], options);
 * assertEquals(result.ok, true);
 * const response = result.response;
 * if (!(response instanceof BatchMessage)) throw new Error("expected a batch");
 * assertEquals(response.file?.segment, "FHS");
 * assertEquals(response.batches[0].header.referenceControlId, "B1");
 * ```
 */
export interface SendBatchOptions extends SendOptions, BuildBatchOptions {}

/**
 * The reply to a payload that is not HL7 (the seed's `{:ok, reply}`).
 *
 * @example Read the reply to a non-HL7 payload
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import type { ReplyResult } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: () => "PONG",
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send("PING");
 * if (result.outcome !== "reply") throw new Error("expected a reply");
 * const reply: ReplyResult = result;
 * assertEquals([reply.text, reply.reply.length], ["PONG", 4]);
 * ```
 */
export interface ReplyResult {
  /** Always `true`. */
  ok: true;
  /** Always `"reply"`. */
  outcome: "reply";
  /** The reply payload, without framing. */
  reply: Uint8Array;
  /** The reply payload decoded as UTF-8. */
  text: string;
}

/**
 * What a send of an enhanced-mode message (MSH-15 or MSH-16 valued) adds
 * to its {@linkcode AckResult}.
 *
 * @example Committed, then refused by the application
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import type { ApplicationAckField } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: (m) => Ack.forMessage(m, "AE", { text: "Unknown patient" }),
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5|||AL|ER\r",
 * );
 * if (result.outcome !== "accept") throw new Error("expected a commit");
 * const { applicationAck }: ApplicationAckField = result;
 * assertEquals(result.code, "CA");
 * assertEquals((await applicationAck)?.text, "Unknown patient");
 * ```
 */
export interface ApplicationAckField {
  /**
   * For an enhanced-mode message: the application ACK (`AA`/`AE`/`AR`)
   * that arrives on the same connection after the commit ACK, matched by
   * MSA-2; `undefined` when none is coming (MSH-16 `NE`, a commit `CE` or
   * `CR`), or none came within `applicationAckTimeout` (as with MSH-16
   * `ER` after a success), or the connection closed first. It never
   * rejects. Absent for original-mode messages.
   */
  applicationAck?: Promise<Ack | undefined>;
}

/**
 * The result of {@linkcode Client.send}: the verified ACK outcome for an
 * HL7 message, the reply for any other payload. For an enhanced-mode
 * message the outcome is that of the first ACK, the commit ACK
 * (`CA`/`CE`/`CR`), and `applicationAck` brings the application ACK.
 *
 * @example Handle every outcome of a send
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { SendResult } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * function summary(result: SendResult): string {
 *   switch (result.outcome) {
 *     case "accept":
 *       return `accepted ${result.ack.messageControlId}`;
 *     case "reply":
 *       return `replied ${result.text}`;
 *     default:
 *       return `failed: ${result.outcome}`;
 *   }
 * }
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * assertEquals(
 *   summary(await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r")),
 *   "accepted 7",
 * );
 * ```
 */
export type SendResult =
  | (AckResult & ApplicationAckField)
  | SilentResult
  | ReplyResult;

/**
 * No acknowledgment came within the reply timeout for an enhanced-mode
 * message whose MSH-15 and MSH-16 let the receiver answer with silence
 * (see `silenceMeans` in `@x/mllp/ack-modes`): with both `ER` or `NE`,
 * silence is success; with MSH-15 `SU`, or MSH-16 `SU` after MSH-15 `ER`
 * or `NE`, it follows a failure. The connection stays open, and an
 * acknowledgment that comes later is dropped (with a warning), never
 * taken for another send's reply.
 *
 * @example Only errors are acknowledged
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import type { SilentResult } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: (message) => Ack.forMessage(message, "AA"),
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port, {
 *   replyTimeout: 200,
 * });
 * // MSH-15 and MSH-16 ER: a success is not acknowledged at all.
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5|||ER|ER\r",
 * );
 * if (result.outcome !== "silent") throw new Error(result.outcome);
 * const silent: SilentResult = result;
 * assertEquals([silent.ok, silent.means], [true, "accepted"]);
 * ```
 */
export interface SilentResult {
  /** Whether silence means the message was accepted. */
  ok: boolean;
  /** Always `"silent"`. */
  outcome: "silent";
  /** What silence means for this message's MSH-15 and MSH-16. */
  means: "accepted" | "not_accepted";
  /** MSH-10 of the message. */
  controlId: string;
  /** How long the client waited, in milliseconds (its reply timeout). */
  waitedMs: number;
}

/**
 * The state of a {@linkcode Client}'s connection.
 *
 * @example Follow the connection state
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ClientState } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const before: ClientState = client.state;
 * await client.close();
 * assertEquals([before, client.state], ["connected", "closed"]);
 * ```
 */
export type ClientState = "connecting" | "connected" | "waiting" | "closed";

/**
 * Detail of the `connected` event.
 *
 * @example Log each connection
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ConnectedDetail } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = new Client("127.0.0.1", receiver.port);
 * const detail = await new Promise<ConnectedDetail>((resolve) =>
 *   client.addEventListener("connected", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * assertEquals([detail.address, detail.secure, detail.attempt], [
 *   `127.0.0.1:${receiver.port}`,
 *   false,
 *   1,
 * ]);
 * ```
 */
export interface ConnectedDetail {
  /** The receiver's address. */
  address: string;
  /** Whether the connection uses TLS. */
  secure: boolean;
  /** The attempt that succeeded (1 for the first try after a drop). */
  attempt: number;
}

/**
 * Detail of the `connectfailed` event.
 *
 * @example See why a connection attempt failed
 * ```ts
 * import { Client, ConnectionRefusedError } from "@x/mllp";
 * import type { ConnectFailedDetail } from "@x/mllp/client";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr;
 * listener.close(); // nothing listens on this port now
 * await using client = new Client("127.0.0.1", port, {
 *   reconnect: { interval: 60_000 },
 * });
 * const detail = await new Promise<ConnectFailedDetail>((resolve) =>
 *   client.addEventListener("connectfailed", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * assertEquals(detail.attempt, 1);
 * assert(detail.error instanceof ConnectionRefusedError);
 * ```
 */
export interface ConnectFailedDetail {
  /** The receiver's address. */
  address: string;
  /** The attempt that failed. */
  attempt: number;
  /** Why. */
  error: ClientError;
}

/**
 * Detail of the `closed` event: a connection ended.
 *
 * @example Count the replies a connection carried
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ClosedDetail } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const closed: ClosedDetail[] = [];
 * client.addEventListener("closed", (event) => closed.push(event.detail));
 * await client.send("PING");
 * await client.close();
 * assertEquals(closed.map((d) => [d.byClient, d.replies]), [[true, 1]]);
 * ```
 */
export interface ClosedDetail {
  /** The receiver's address. */
  address: string;
  /** Whether this client closed it (timeout, bad reply, close, reconnect). */
  byClient: boolean;
  /** How many replies it carried. */
  replies: number;
  /** The error that ended it, if any. */
  error?: Error;
}

/**
 * Detail of the `reconnecting` event.
 *
 * @example See when the next attempt comes
 * ```ts
 * import { Client } from "@x/mllp";
 * import type { ReconnectingDetail } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr;
 * listener.close(); // nothing listens on this port now
 * await using client = new Client("127.0.0.1", port, {
 *   reconnect: { interval: 60_000 },
 * });
 * const detail = await new Promise<ReconnectingDetail>((resolve) =>
 *   client.addEventListener("reconnecting", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * assertEquals([detail.attempt, detail.delayMs], [2, 60_000]);
 * ```
 */
export interface ReconnectingDetail {
  /** The receiver's address. */
  address: string;
  /** The attempt about to be made. */
  attempt: number;
  /** The wait before it, in milliseconds. */
  delayMs: number;
}

/**
 * Detail of the `senderror` event.
 *
 * @example Learn whether a failed message was written
 * ```ts
 * import { Client, Receiver, ReplyTimeoutError } from "@x/mllp";
 * import type { SendErrorDetail } from "@x/mllp/client";
 * import { assertEquals, assertRejects } from "@std/assert";
 *
 * // A receiver whose dispatcher never replies
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: () => undefined,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const errors: SendErrorDetail[] = [];
 * client.addEventListener("senderror", (event) => errors.push(event.detail));
 * const message = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r";
 * await assertRejects(
 *   () => client.send(message, { timeout: 50 }),
 *   ReplyTimeoutError,
 * );
 * assertEquals(errors.map((e) => [e.controlId, e.written]), [["7", true]]);
 * ```
 */
export interface SendErrorDetail {
  /** The receiver's address. */
  address: string;
  /** MSH-10 of the message, when HL7. */
  controlId?: string;
  /** Why the send failed. */
  error: Error;
  /** Whether the message reached the socket (its outcome is then unknown). */
  written: boolean;
}

/**
 * Detail of the `replytimeout` event.
 *
 * @example Count reply timeouts
 * ```ts
 * import { Client, Receiver, ReplyTimeoutError } from "@x/mllp";
 * import type { ReplyTimeoutDetail } from "@x/mllp/client";
 * import { assertEquals, assertRejects } from "@std/assert";
 *
 * // A receiver whose dispatcher never replies
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: () => undefined,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const timeouts: ReplyTimeoutDetail[] = [];
 * client.addEventListener("replytimeout", (event) => timeouts.push(event.detail));
 * const message = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r";
 * await assertRejects(
 *   () => client.send(message, { timeout: 50 }),
 *   ReplyTimeoutError,
 * );
 * assertEquals(timeouts.map((t) => [t.controlId, t.timeoutMs]), [["7", 50]]);
 * ```
 */
export interface ReplyTimeoutDetail {
  /** The receiver's address. */
  address: string;
  /** MSH-10 of the message, when HL7. */
  controlId?: string;
  /** The timeout that passed, in milliseconds. */
  timeoutMs: number;
}

/**
 * Detail of the `invalidreply` event.
 *
 * @example Notice a receiver that does not answer with an ACK
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import type { InvalidReplyDetail } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: () => "OK",
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const problems: InvalidReplyDetail[] = [];
 * client.addEventListener("invalidreply", (event) => problems.push(event.detail));
 * const result = await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r");
 * assertEquals(result.outcome, "not_ack");
 * assertEquals(problems.map((p) => [p.controlId, p.problem]), [["7", "not_ack"]]);
 * ```
 */
export interface InvalidReplyDetail {
  /** The receiver's address. */
  address: string;
  /** MSH-10 of the message, when HL7 and known. */
  controlId?: string;
  /** What was wrong. */
  problem: ReplyProblem | "not_ack";
  /** A sentence saying what was wrong. */
  detail: string;
}

/**
 * Detail of the `reply` event: a reply arrived for a send.
 *
 * @example Measure round trips
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ReplyDetail } from "@x/mllp/client";
 * import { assert, assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const replies: ReplyDetail[] = [];
 * client.addEventListener("reply", (event) => replies.push(event.detail));
 * await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r");
 * assertEquals(replies.map((r) => [r.controlId, r.outcome, r.ackCode]), [[
 *   "7",
 *   "accept",
 *   "AA",
 * ]]);
 * assert(replies[0].roundTripMs >= 0 && replies[0].bytes > 0);
 * ```
 */
export interface ReplyDetail {
  /** The receiver's address. */
  address: string;
  /** MSH-10 of the message, when HL7. */
  controlId?: string;
  /** The outcome, as in {@linkcode SendResult}. */
  outcome: SendResult["outcome"];
  /** The ACK code, when the reply was an ACK. */
  ackCode?: AckCode;
  /** From writing the message to reading the reply, in milliseconds. */
  roundTripMs: number;
  /** The size of the reply payload, in bytes. */
  bytes: number;
}

/**
 * The events a {@linkcode Client} emits, each a `CustomEvent`.
 *
 * @example Trace a client's life
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ClientEventMap } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const client = new Client("127.0.0.1", receiver.port);
 * const seen: (keyof ClientEventMap)[] = [];
 * for (const type of ["connected", "reply", "closed"] as const) {
 *   client.addEventListener(type, () => seen.push(type));
 * }
 * await client.send("PING");
 * await client.close();
 * assertEquals(seen, ["connected", "reply", "closed"]);
 * ```
 */
export interface ClientEventMap {
  /** A connection was opened. */
  connected: CustomEvent<ConnectedDetail>;
  /** A connection attempt failed. */
  connectfailed: CustomEvent<ConnectFailedDetail>;
  /** A connection ended. */
  closed: CustomEvent<ClosedDetail>;
  /** A reconnection attempt is scheduled. */
  reconnecting: CustomEvent<ReconnectingDetail>;
  /** A send failed. */
  senderror: CustomEvent<SendErrorDetail>;
  /** A reply did not arrive in time. */
  replytimeout: CustomEvent<ReplyTimeoutDetail>;
  /** A reply was not what was due. */
  invalidreply: CustomEvent<InvalidReplyDetail>;
  /** A reply arrived. */
  reply: CustomEvent<ReplyDetail>;
}

interface Job {
  message: Message;
  timeout: number;
  signal?: AbortSignal;
  /** `sendAsync`: resolve once written, read and discard the reply. */
  detached: boolean;
  resolve(result: SendResult | undefined): void;
  reject(error: unknown): void;
  tries: number;
  settled: boolean;
  /**
   * Since when (`performance.now()`) the send has been waiting with no
   * connection, while queued; unset while there is one.
   */
  waitingSince?: number;
  /** Fails the send if it is still queued when its wait runs out. */
  timer?: ReturnType<typeof setTimeout>;
}

interface LinkWaiter {
  resolve(link: Link): void;
  reject(error: Error): void;
  /** Reject on the first failed attempt, whatever `whenDisconnected` says. */
  failFast: boolean;
}

/**
 * An MLLP client for one receiver, by IP address or host name.
 *
 * `new Client(host, port)` starts connecting at once and keeps a
 * connection open: after a drop it reconnects with exponential backoff
 * (the seed's 1 s doubling to 180 s, with jitter; or a fixed interval);
 * a successful connection resets the backoff. {@linkcode Client.connect}
 * does the same but waits for the first connection and throws if it fails.
 *
 * Sends queue in call order (at most `maxQueued` waiting) and go out one at
 * a time, each waiting for its reply (stop-and-wait, as MLLP expects). HL7
 * replies are verified: MSA-2 must equal MSH-10 exactly. When a reply times
 * out, the connection is closed and reopened, so a late reply cannot be
 * credited to the next message; nothing is resent on its own (except, with
 * `mllpRelease: 2`, a frame the receiver did not commit: see that option).
 *
 * Transport failures throw subclasses of {@linkcode ClientError}. The
 * client is an `EventTarget`: see {@linkcode ClientEventMap}.
 *
 * @example Send a non-HL7 payload
 * ```ts
 * import { Client, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: () => "Got the BLOB",
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send("Hip hip hurray");
 * assertEquals(result.outcome === "reply" && result.text, "Got the BLOB");
 * ```
 */
export class Client extends TypedEventTarget<ClientEventMap>
  implements AsyncDisposable {
  /** The receiver's host name or IP address. */
  readonly hostname: string;
  /** The receiver's port. */
  readonly port: number;
  #replyTimeout: number;
  #connectTimeout: number;
  #maxFrameBytes: number;
  #maxQueued: number;
  #retryUnwritten: number;
  #release: 1 | 2;
  #commitTimeout: number;
  #commitRetries: number;
  #applicationAckTimeout: number;
  #routers = new WeakMap<Link, ReplyRouter>();
  #whenDisconnected: "wait" | "fail";
  #policy: BackoffOptions | FixedIntervalOptions | false;
  #tls: ClientTlsOptions | undefined;
  #tlsMaterial: Promise<ClientTlsMaterial> | undefined;
  #state: ClientState = "connecting";
  #link: Link | undefined;
  #links = new Set<Link>();
  #lastError: ClientError | undefined;
  #waiters = new Set<LinkWaiter>();
  #queue: Job[] = [];
  #pumping: Promise<void> = Promise.resolve();
  #pumpActive = false;
  #closing: Promise<void> | undefined;
  #running: Promise<void>;
  /** Wakes the connection loop from a backoff wait or an idle wait. */
  #wake: (() => void) | undefined;
  #wakeRequested = false;
  #reconnectNow = false;
  /**
   * Backoff waits in a row since the last good connection (or since a
   * reconnect at once): the next wait is number `#waits + 1`.
   */
  #waits = 0;
  /** A connection is wanted now (always true at creation). */
  #demand = true;
  #connectAbort: AbortController | undefined;
  #firstAttempt: Promise<void>;
  /** Set by `Client.connect`: stop after a failed first attempt. */
  #giveUpOnFirstFailure = false;
  #settleFirst!: (error?: ClientError) => void;

  /**
   * Creates a client and starts connecting in the background. Sends made
   * before the connection is up wait for it (see `whenDisconnected`).
   *
   * @param hostname An IP address or a host name such as `"localhost"`.
   * @param port The receiver's port.
   * @param options Timeouts, TLS, reconnection and queue limits.
   * @throws {RangeError} If an option is out of range.
   * @throws {TypeError} If `tls.cert` is given without `tls.key` or the
   *   other way round.
   */
  constructor(hostname: string, port: number, options: ClientOptions = {}) {
    super();
    this.hostname = hostname;
    this.port = port;
    this.#replyTimeout = positive(
      options.replyTimeout ?? DEFAULT_REPLY_TIMEOUT,
      "replyTimeout",
    );
    this.#connectTimeout = positive(
      options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
      "connectTimeout",
    );
    this.#maxFrameBytes = positive(
      options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      "maxFrameBytes",
    );
    this.#maxQueued = atLeast(
      options.maxQueued ?? DEFAULT_MAX_QUEUED,
      0,
      "maxQueued",
    );
    this.#retryUnwritten = atLeast(
      options.retryUnwritten ?? 0,
      0,
      "retryUnwritten",
    );
    const release = options.mllpRelease ?? 1;
    if (release !== 1 && release !== 2) {
      throw new RangeError(
        `Invalid mllpRelease: expected 1 or 2, got "${release}"`,
      );
    }
    this.#release = release;
    this.#commitTimeout = positive(
      options.commitTimeout ?? DEFAULT_COMMIT_TIMEOUT,
      "commitTimeout",
    );
    this.#commitRetries = atLeast(
      options.commitRetries ?? DEFAULT_COMMIT_RETRIES,
      0,
      "commitRetries",
    );
    this.#applicationAckTimeout = positive(
      options.applicationAckTimeout ?? this.#replyTimeout,
      "applicationAckTimeout",
    );
    this.#whenDisconnected = options.whenDisconnected ?? "wait";
    const policy = options.reconnect ?? {};
    if (policy !== false) {
      if ("interval" in policy) {
        atLeast(policy.interval, 0, "reconnect.interval");
      } else {
        atLeast(policy.initialDelay ?? 1000, 0, "reconnect.initialDelay");
        atLeast(policy.maxDelay ?? 180_000, 0, "reconnect.maxDelay");
        atLeast(policy.factor ?? 2, 1, "reconnect.factor");
        const jitter = policy.jitter ?? 0.1;
        if (!(jitter >= 0 && jitter <= 1)) {
          throw new RangeError(
            `Invalid reconnect.jitter: expected a number from 0 to 1, got "${jitter}"`,
          );
        }
      }
    }
    this.#policy = policy;
    const tls = options.tls;
    if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
      throw new TypeError(
        "Invalid tls: a client certificate (tls.cert) needs its key (tls.key), and a key needs its certificate",
      );
    }
    this.#tls = tls;
    this.#firstAttempt = new Promise((resolve, reject) => {
      this.#settleFirst = (error) => error ? reject(error) : resolve();
    });
    this.#firstAttempt.catch(() => {});
    this.#running = this.#run();
  }

  /**
   * Connects to a receiver and waits for the first connection.
   *
   * @param hostname An IP address or a host name such as `"localhost"`.
   * @param port The receiver's port.
   * @param options Timeouts, TLS, reconnection and queue limits.
   * @returns The connected client.
   * @throws {ConnectionRefusedError} If the receiver cannot be reached.
   * @throws {ConnectTimeoutError} If connecting takes too long.
   * @throws {TlsHandshakeError} If the TLS handshake fails; it says which
   *   side refused and why.
   * @throws {RangeError} If an option is out of range.
   * @throws {TypeError} If `tls.cert` is given without `tls.key` or the
   *   other way round.
   *
   * @example A refused connection
   * ```ts
   * import { Client, ConnectionRefusedError } from "@x/mllp";
   * import { assertRejects } from "@std/assert";
   *
   * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const { port } = listener.addr;
   * listener.close(); // nothing listens on this port now
   * await assertRejects(() => Client.connect("127.0.0.1", port), ConnectionRefusedError);
   * ```
   */
  static async connect(
    hostname: string,
    port: number,
    options: ClientOptions = {},
  ): Promise<Client> {
    const client = new Client(hostname, port, options);
    // The caller hears of a failed first attempt; no backoff behind it.
    client.#giveUpOnFirstFailure = true;
    try {
      await client.#firstAttempt;
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** The receiver's address, as `host:port`. */
  get address(): string {
    return formatAddress({ hostname: this.hostname, port: this.port });
  }

  /** Whether the client has an open connection (the seed's `is_connected?`). */
  get isConnected(): boolean {
    return this.#link !== undefined && !this.#link.isClosed;
  }

  /** The same as {@linkcode Client.isConnected}. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** The state of the connection. */
  get state(): ClientState {
    return this.#state;
  }

  /** How many sends wait in the queue (not counting the one in flight). */
  get queued(): number {
    return this.#queue.length;
  }

  /** The error of the last failed connection attempt, if the last failed. */
  get lastError(): ClientError | undefined {
    return this.#lastError;
  }

  #emit<K extends keyof ClientEventMap>(
    type: K,
    detail: ClientEventMap[K]["detail"],
  ) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---- connection life ----

  async #run(): Promise<void> {
    let attempt = 1;
    while (!this.#closing) {
      if (this.#policy === false && !this.#demand) {
        // Lazy mode: connect only when a send needs it.
        this.#state = "waiting";
        await this.#sleep(Infinity);
        continue;
      }
      this.#demand = false;
      this.#state = "connecting";
      let link: Link;
      try {
        link = await this.#open();
      } catch (error) {
        const named = this.#name(error);
        this.#lastError = named;
        this.#settleFirst(named);
        if (this.#closing) break;
        logger.warn(
          "Cannot connect to {address} (attempt {attempt}): {message}",
          {
            address: this.address,
            attempt,
            message: named.message,
          },
        );
        this.#emit("connectfailed", {
          address: this.address,
          attempt,
          error: named,
        });
        this.#failWaiters(named);
        if (this.#giveUpOnFirstFailure) break;
        attempt = await this.#backoff(attempt + 1);
        continue;
      }
      if (this.#closing) {
        await link.shutdown(undefined, true);
        break;
      }
      this.#lastError = undefined;
      // A reconnect() or a wake-up asked for during the attempt is served
      // by this connection; left set, it would skip a later backoff wait.
      this.#reconnectNow = false;
      this.#wakeRequested = false;
      this.#link = link;
      for (const job of this.#queue) this.#stopWaiting(job);
      this.#links.add(link);
      void link.done.finally(() => this.#links.delete(link));
      this.#state = "connected";
      this.#settleFirst();
      this.#giveUpOnFirstFailure = false;
      logger.info("Connected to {address}{tls}", {
        address: this.address,
        tls: link.conn.secure ? " with TLS" : "",
      });
      this.#emit("connected", {
        address: this.address,
        secure: link.conn.secure,
        attempt,
      });
      for (const waiter of this.#waiters) waiter.resolve(link);
      this.#waiters.clear();
      const closed = await link.closed;
      this.#link = undefined;
      for (const job of this.#queue) this.#startWaiting(job);
      this.#onClosed(closed);
      if (this.#closing) break;
      const refused = closed.error instanceof TlsHandshakeError;
      if (refused) {
        // The receiver refused this client's certificate: waiting for the
        // next attempt would not change that, so sends fail now.
        this.#lastError = closed.error as TlsHandshakeError;
        this.#failWaiters(this.#lastError, true);
      } else if (!closed.byClient) {
        this.#lastError = new ConnectionClosedError(
          `Connection to ${this.address} was closed by the receiver`,
          { cause: closed.error, address: this.address },
        );
      }
      if (this.#reconnectNow || (closed.byClient && !refused)) {
        // This side closed it (a timeout, a bad reply, reconnect()): the
        // receiver is likely up, so reconnect at once.
        this.#reconnectNow = false;
        this.#waits = 0;
        attempt = 1;
        continue;
      }
      if (refused) {
        // A refused handshake is a failed attempt: the waits keep growing.
        attempt = await this.#backoff(attempt + 1);
      } else {
        // A good connection that dropped: the waits start over.
        this.#waits = 0;
        attempt = await this.#backoff(1);
      }
    }
    this.#state = "closed";
  }

  /**
   * Waits before attempt `next` (the next wait in a row, see
   * {@linkcode reconnectDelay}); returns the attempt to make.
   */
  async #backoff(next: number): Promise<number> {
    if (this.#closing) return next;
    if (this.#policy === false) return next;
    if (this.#reconnectNow) {
      this.#reconnectNow = false;
      this.#waits = 0;
      return 1;
    }
    const delayMs = reconnectDelay(this.#policy, ++this.#waits);
    this.#state = "waiting";
    recordReconnect();
    logger.info("Reconnecting to {address} in {delay} ms (attempt {attempt})", {
      address: this.address,
      delay: delayMs,
      attempt: next,
    });
    this.#emit("reconnecting", {
      address: this.address,
      attempt: next,
      delayMs,
    });
    const woken = await this.#sleep(delayMs);
    if (woken && this.#reconnectNow) {
      // reconnect(): try at once, and the backoff starts over.
      this.#reconnectNow = false;
      this.#waits = 0;
      return 1;
    }
    return next;
  }

  /** Sleeps until the delay passes or something wakes the loop. */
  #sleep(ms: number): Promise<boolean> {
    if (this.#wakeRequested) {
      this.#wakeRequested = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms)
        ? setTimeout(() => {
          this.#wake = undefined;
          resolve(false);
        }, ms)
        : undefined;
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve(true);
      };
    });
  }

  #poke() {
    if (this.#wake) this.#wake();
    else this.#wakeRequested = true;
  }

  #onClosed(closed: LinkClosed) {
    const error = closed.error;
    if (error && !(this.#closing && error instanceof ConnectionClosedError)) {
      logger.info("Connection to {address} closed: {message}", {
        address: this.address,
        message: error.message,
      });
    } else {
      logger.info("Connection to {address} closed", { address: this.address });
    }
    this.#emit("closed", {
      address: this.address,
      byClient: closed.byClient,
      replies: closed.replies,
      error,
    });
  }

  #name(error: unknown): ClientError {
    if (error instanceof ClientError) return error;
    const reason = error instanceof Error ? error.message : String(error);
    return new ConnectionRefusedError(
      `Cannot connect to ${this.address}: ${reason}`,
      { cause: error, address: this.address },
    );
  }

  async #open(): Promise<Link> {
    const tls = this.#tls === undefined
      ? undefined
      : await (this.#tlsMaterial ??= loadClientTls(this.#tls));
    const controller = new AbortController();
    this.#connectAbort = controller;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#connectTimeout);
    try {
      const conn = await connect(
        this.hostname,
        this.port,
        tls,
        controller.signal,
      );
      const router: ReplyRouter = new ReplyRouter({
        release: this.#release,
        applicationAckTimeout: this.#applicationAckTimeout,
        // The router writes only once frames arrive, after `link` is set.
        write: (payload) => void link.write(payload).catch(() => {}),
      });
      const link: Link = new Link(conn, {
        maxFrameBytes: this.#maxFrameBytes,
        label: this.address,
        sentCertificate: tls?.cert !== undefined,
        intercept: router.intercept,
      });
      this.#routers.set(link, router);
      void link.closed.then(() => router.close());
      return link;
    } catch (error) {
      if (controller.signal.aborted && !timedOut) {
        throw new ConnectionClosedError("The client was closed", {
          cause: error,
          address: this.address,
        });
      }
      if (timedOut) {
        throw new ConnectTimeoutError(
          `Cannot connect to ${this.address}: no connection within ${this.#connectTimeout} ms`,
          {
            cause: error,
            address: this.address,
            timeout: this.#connectTimeout,
          },
        );
      }
      if (tls && isTlsError(error)) {
        throw tlsHandshakeError(error, this.address, tls.cert !== undefined);
      }
      throw this.#name(error);
    } finally {
      clearTimeout(timer);
      this.#connectAbort = undefined;
    }
  }

  /**
   * Drops the connection, if there is one, and connects again at once
   * (the backoff starts over).
   *
   * @returns A promise that resolves when connected again.
   * @throws {ClientError} The error of the new attempt, if it fails.
   * @throws {ConnectionClosedError} If the client is closed.
   */
  async reconnect(): Promise<void> {
    if (this.#closing) {
      throw new ConnectionClosedError(
        "Cannot reconnect: the client is closed",
        {
          address: this.address,
        },
      );
    }
    this.#reconnectNow = true;
    this.#demand = true;
    const waiting = new Promise<Link>((resolve, reject) => {
      this.#waiters.add({ resolve, reject, failFast: true });
    });
    const link = this.#link;
    if (link && !link.isClosed) {
      await link.shutdown(
        new ConnectionClosedError(
          `Connection to ${this.address} closed to reconnect`,
          { address: this.address },
        ),
        true,
      );
    } else {
      this.#poke();
    }
    await waiting;
  }

  /**
   * Rejects the waiters for a connection that should not wait for the next
   * attempt (all of them when `all`).
   */
  #failWaiters(error: ClientError, all = false) {
    const lazy = this.#policy === false;
    for (const waiter of [...this.#waiters]) {
      if (
        !all && !waiter.failFast && !lazy && this.#whenDisconnected === "wait"
      ) continue;
      this.#waiters.delete(waiter);
      waiter.reject(error);
    }
    if (lazy) this.#demand = false;
  }

  /**
   * Resolves with an open link, waiting for one until `deadline`; `timeout`
   * is the send's timeout, for messages.
   */
  #awaitLink(
    timeout: number,
    deadline: number,
    signal?: AbortSignal,
  ): Promise<Link> {
    const link = this.#link;
    if (link && !link.isClosed) return Promise.resolve(link);
    if (this.#whenDisconnected === "fail" && this.#lastError) {
      return Promise.reject(this.#notConnected(0));
    }
    this.#demand = true;
    if (this.#policy === false) this.#poke();
    return new Promise<Link>((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#waiters.delete(waiter);
      };
      const waiter: LinkWaiter = {
        failFast: false,
        resolve: (l) => {
          finish();
          resolve(l);
        },
        reject: (e) => {
          finish();
          reject(e);
        },
      };
      const timer = setTimeout(
        () => waiter.reject(this.#notConnected(timeout)),
        Math.max(0, deadline - performance.now()),
      );
      const onAbort = () => waiter.reject(abortError(signal));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  #notConnected(waited: number): ClientError {
    const last = this.#lastError;
    const prefix = `Cannot send to ${this.address}: not connected${
      waited ? ` within ${waited} ms` : ""
    }`;
    if (last instanceof TlsHandshakeError) {
      return new TlsHandshakeError(`${prefix}; ${last.message}`, {
        cause: last,
        address: this.address,
        refusedBy: last.refusedBy,
        failure: last.failure,
      });
    }
    if (last) {
      return new ConnectionRefusedError(`${prefix}; ${last.message}`, {
        cause: last,
        address: this.address,
      });
    }
    return new ConnectTimeoutError(`${prefix}`, {
      address: this.address,
      timeout: waited,
    });
  }

  // ---- sending ----

  /**
   * Sends one payload and waits for its reply.
   *
   * Text is encoded in the charset its MSH-18 names (UTF-8 by default);
   * bytes are sent as they are. A payload that is already wrapped in an
   * MLLP frame is unwrapped first.
   *
   * @param payload An HL7 message, or any other payload.
   * @param options The reply timeout for this send, and an abort signal.
   * @returns For HL7, the verified ACK outcome (for an enhanced-mode
   *   message, that of its first ACK, the commit ACK, with the application
   *   ACK to come in `applicationAck`); otherwise the reply.
   * @throws {HeaderError} If the payload starts with `MSH` but its header
   *   cannot be read (nothing is sent).
   * @throws {CommitError} With `mllpRelease: 2`, if the receiver did not
   *   commit the frame however often it was written.
   * @throws {TypeError} If the payload holds a VT (`0x0b`) or FS (`0x1c`)
   *   byte, which would break the framing (nothing is sent).
   * @throws {TypeError} If MSH-15 and MSH-16 are both `NE`: no
   *   acknowledgment would ever come (nothing is sent).
   * @throws {RangeError} If the timeout is not a positive number.
   * @throws {QueueFullError} If `maxQueued` sends are waiting already.
   * @throws {ReplyTimeoutError} If no reply came in time: the message was
   *   written and its outcome is unknown.
   * @throws {ClientError} A subclass for each other transport failure.
   *
   * @example Concurrent sends queue in order
   * ```ts
   * import { Ack, Client, Receiver } from "@x/mllp";
   * import { assertEquals } from "@std/assert";
   *
   * await using receiver = await Receiver.start({
   *   port: 0,
   *   dispatcher: (message) => Ack.forMessage(message, "AA"),
   * });
   * await using client = await Client.connect("127.0.0.1", receiver.port);
   * const ids = ["1", "2", "3"];
   * const results = await Promise.all(ids.map((id) =>
   *   client.send(`MSH|^~\\&|A|B|C|D|20240101||ADT^A01|${id}|P|2.5\r`)
   * ));
   * assertEquals(results.map((r) => r.ok), [true, true, true]);
   * ```
   */
  send(
    payload: string | Uint8Array | Message,
    options: SendOptions = {},
  ): Promise<SendResult> {
    return this.#enqueue(payload, options, false) as Promise<SendResult>;
  }

  /**
   * Sends one payload without waiting for its reply (the seed's
   * `send_async`): resolves once the message is written. The reply is
   * still read (and verified, and reported through events) before the next
   * send goes out, so the connection stays in step.
   *
   * @param payload An HL7 message, or any other payload.
   * @param options The timeout (for the connection and the reply) and an
   *   abort signal.
   * @returns A promise that resolves once the message is written.
   * @throws {HeaderError} If the payload starts with `MSH` but its header
   *   cannot be read.
   * @throws {QueueFullError} If `maxQueued` sends are waiting already.
   * @throws {ClientError} If the message could not be written.
   *
   * @example Fire and forget
   * ```ts
   * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
   *
   * await using receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
   * await using client = await Client.connect("127.0.0.1", receiver.port);
   * await client.sendAsync("Hip hip hurray");
   * ```
   */
  async sendAsync(
    payload: string | Uint8Array | Message,
    options: SendOptions = {},
  ): Promise<void> {
    await this.#enqueue(payload, options, true);
  }

  /**
   * Sends messages as one HL7 batch (BHS, the messages, BTS; with
   * `file: true` also FHS and FTS) in one frame, and reads the reply into
   * one result per message, in order: a response batch names the messages
   * not accepted (those it does not name were accepted), and a single ACK
   * for the batch applies to every message.
   *
   * @param messages The messages, or a batch already built (see
   *   `buildBatch` in `@x/mllp/batch`).
   * @param options How to build the batch, and the send's timeout and
   *   signal.
   * @returns The per-message results and the reply.
   * @throws {HeaderError} If a message's MSH cannot be read (nothing is
   *   sent).
   * @throws {TypeError} If a message is not HL7, or would break the
   *   framing (nothing is sent).
   * @throws {ClientError} As {@linkcode Client.send} does.
   *
   * @example Send a batch of two
   * ```ts
   * import { Ack, Client, Receiver } from "@x/mllp";
   * import { assertEquals } from "@std/assert";
   *
   * await using receiver = await Receiver.start({
   *   port: 0,
   *   dispatcher: (message) =>
   *     message.kind === "hl7" && message.header.controlId === "2"
   *       ? Ack.forMessage(message, "AE", { text: "Unknown patient" })
   *       : Ack.forMessage(message, "AA"),
   * });
   * await using client = await Client.connect("127.0.0.1", receiver.port);
   * const { ok, results } = await client.sendBatch([
   *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r",
   *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|2|P|2.5\r",
   * ]);
   * assertEquals(ok, false);
   * assertEquals(results.map((r) => r.outcome), ["accept", "error"]);
   * assertEquals(results[1].ack?.text, "Unknown patient");
   * ```
   */
  async sendBatch(
    messages: BatchMessage | readonly (string | Uint8Array | Message)[],
    options: SendBatchOptions = {},
  ): Promise<BatchResult> {
    const batch = "kind" in messages ? messages : buildBatch(messages, options);
    const result = await this.send(batch, options);
    // A batch's reply always comes back as a plain reply (see #verify).
    return batchResults(batch, result.outcome === "reply" ? result.reply : "");
  }

  #enqueue(
    payload: string | Uint8Array | Message,
    options: SendOptions,
    detached: boolean,
  ): Promise<SendResult | undefined> {
    if (this.#closing) {
      return Promise.reject(
        new ConnectionClosedError("Cannot send: the client is closed", {
          context: "sending",
          address: this.address,
        }),
      );
    }
    let message: Message;
    let timeout: number;
    try {
      message = prepare(payload);
      timeout = positive(options.timeout ?? this.#replyTimeout, "timeout");
      if (message.kind === "hl7") {
        const mode = ackModeOf(message.header);
        if (
          mode.mode === "enhanced" && mode.accept === "NE" &&
          mode.application === "NE"
        ) {
          throw new TypeError(
            "Cannot send: MSH-15 and MSH-16 are both NE, so the receiver sends no acknowledgment, and a send waits for one",
          );
        }
      }
      options.signal?.throwIfAborted();
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#queue.length >= this.#maxQueued && this.#pumpActive) {
      return Promise.reject(
        new QueueFullError(
          `Cannot send to ${this.address}: ${this.#maxQueued} sends are queued already`,
          { address: this.address, limit: this.#maxQueued },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const job: Job = {
        message,
        timeout,
        signal: options.signal,
        detached,
        resolve,
        reject,
        tries: 0,
        settled: false,
      };
      if (!this.isConnected) this.#startWaiting(job);
      const signal = options.signal;
      if (signal) {
        signal.addEventListener("abort", () => {
          const index = this.#queue.indexOf(job);
          if (index !== -1) {
            this.#queue.splice(index, 1);
            this.#settle(job, undefined, abortError(signal));
          }
        }, { once: true });
      }
      this.#queue.push(job);
      if (!this.#pumpActive) {
        this.#pumpActive = true;
        this.#pumping = this.#pump();
      }
    });
  }

  /**
   * Starts the clock of a queued send waiting for a connection: it fails
   * when its timeout passes with no connection, however many sends are
   * queued ahead of it. Time queued behind a send in flight on an open
   * connection does not count.
   */
  #startWaiting(job: Job) {
    if (job.waitingSince !== undefined) return;
    job.waitingSince = performance.now();
    job.timer = setTimeout(() => {
      job.timer = undefined;
      const index = this.#queue.indexOf(job);
      if (index === -1) return; // started: #awaitLink bounds its wait
      this.#queue.splice(index, 1);
      this.#fail(job, this.#notConnected(job.timeout), false);
    }, job.timeout);
  }

  /** Stops the clock of a queued send: a connection is up. */
  #stopWaiting(job: Job) {
    clearTimeout(job.timer);
    job.timer = undefined;
    job.waitingSince = undefined;
  }

  #settle(job: Job, result: SendResult | undefined, error?: unknown) {
    clearTimeout(job.timer);
    job.timer = undefined;
    if (job.settled) return;
    job.settled = true;
    if (error !== undefined) job.reject(error);
    else job.resolve(result);
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        const job = this.#queue.shift();
        if (!job) return;
        if (job.signal?.aborted) {
          this.#settle(job, undefined, abortError(job.signal));
          continue;
        }
        if (this.#closing) {
          this.#settle(job, undefined, this.#closedError());
          continue;
        }
        await this.#execute(job);
      }
    } finally {
      // In the same turn as the empty queue was seen, so a send queued
      // from here on starts a new pump.
      this.#pumpActive = false;
    }
  }

  #closedError(): ConnectionClosedError {
    return new ConnectionClosedError(
      "Cannot send: the client was closed before the message was written",
      { context: "sending", address: this.address },
    );
  }

  async #execute(job: Job): Promise<void> {
    const { message } = job;
    const controlId = message.header?.controlId;
    const span = startSendSpan(
      this.address,
      controlId,
      message.header?.messageType,
    );
    let written = false;
    let started = 0;
    // Out of the queue: from here #awaitLink bounds the wait, counting the
    // time already waited with no connection.
    const deadline = (job.waitingSince ?? performance.now()) + job.timeout;
    this.#stopWaiting(job);
    try {
      const link = await this.#awaitLink(job.timeout, deadline, job.signal);
      job.tries++;
      if (controlId === undefined) {
        logger.debug("Sending {size} byte non-HL7 payload to {address}", {
          size: message.size,
          address: this.address,
        });
      } else {
        logger.debug(
          "Sending HL7 message {controlId} ({size} bytes) to {address}",
          { controlId, size: message.size, address: this.address },
        );
      }
      const router = this.#routers.get(link)!;
      const mode = message.kind === "hl7"
        ? ackModeOf(message.header)
        : undefined;
      const applicationAck = router.begin(
        controlId,
        mode?.mode === "enhanced" ? mode.application : undefined,
      );
      const commit = this.#release === 2 ? router.expectCommit() : undefined;
      const silence = mode ? silenceMeans(mode) : undefined;
      let frame: Uint8Array;
      try {
        const requesting = link.request(
          message.raw,
          job.timeout,
          job.signal,
          () => {
            written = true;
            started = performance.now();
            if (job.detached) this.#settle(job, undefined);
          },
          silence !== undefined,
        );
        if (commit) {
          void this.#awaitCommit(link, router, message, commit, requesting);
        }
        frame = await requesting;
      } catch (error) {
        if (!(error instanceof SilenceError) || silence === undefined) {
          throw error;
        }
        // Should an acknowledgment come after all, it answers no later
        // send.
        router.silent(controlId);
        const result: SilentResult = {
          ok: silence === "accepted",
          outcome: "silent",
          means: silence,
          controlId: controlId ?? "",
          waitedMs: error.timeout,
        };
        recordClientSend("silent", undefined, error.timeout, message.size, 0);
        endSpan(span, undefined);
        this.#settle(job, result);
        return;
      } finally {
        router.end(controlId);
        if (commit) router.forgetCommit();
      }
      const roundTripMs = performance.now() - started;
      const verified = this.#verify(message, frame, link);
      const result: SendResult = applicationAck && verified.outcome !== "reply"
        ? { ...verified, applicationAck }
        : verified;
      const ackCode = "code" in result ? result.code : undefined;
      recordClientSend(
        result.outcome,
        ackCode,
        roundTripMs,
        message.size,
        frame.length,
      );
      endSpan(span, ackCode);
      this.#emit("reply", {
        address: this.address,
        controlId,
        outcome: result.outcome,
        ackCode,
        roundTripMs,
        bytes: frame.length,
      });
      this.#settle(job, result);
    } catch (error) {
      if (
        !written && !this.#closing && job.tries <= this.#retryUnwritten &&
        job.tries > 0 && error instanceof ClientError &&
        !(job.signal?.aborted)
      ) {
        logger.info(
          "Send of {controlId} to {address} failed before it was written; trying again ({tries})",
          {
            controlId: controlId ?? "",
            address: this.address,
            tries: job.tries,
          },
        );
        endSpan(span, undefined, error);
        this.#queue.unshift(job);
        return;
      }
      const named = error instanceof Error ? error : new Error(String(error));
      endSpan(span, undefined, named);
      if (named instanceof ReplyTimeoutError) {
        this.#emit("replytimeout", {
          address: this.address,
          controlId,
          timeoutMs: named.timeout,
        });
      } else if (named instanceof InvalidReplyError) {
        this.#emit("invalidreply", {
          address: this.address,
          controlId,
          problem: named.problem,
          detail: named.message,
        });
      }
      if (job.detached && written) {
        logger.warn(
          "Reply to {controlId} (sent without waiting) from {address}: {message}",
          {
            controlId: controlId ?? "",
            address: this.address,
            message: named.message,
          },
        );
      }
      this.#fail(job, named, written);
    }
  }

  /**
   * Release 2: waits for the commit frame of the frame just written;
   * resends it on a timeout or a NAK, up to `commitRetries` times, then
   * closes the link with a {@linkcode CommitError}. Ends when the commit
   * or the reply comes, or the link closes.
   */
  async #awaitCommit(
    link: Link,
    router: ReplyRouter,
    message: Message,
    first: Promise<CommitAnswer>,
    requesting: Promise<unknown>,
  ): Promise<void> {
    const replied = requesting.then(
      () => "replied" as const,
      () => "replied" as const,
    );
    const controlId = message.header?.controlId;
    let commit = first;
    let answer: CommitAnswer | "timeout" | "replied" = "timeout";
    for (let attempt = 1;; attempt++) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      answer = await Promise.race([
        commit,
        replied,
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), this.#commitTimeout);
        }),
      ]);
      clearTimeout(timer);
      if (answer === "ack") {
        link.restartDeadline();
        return;
      }
      if (answer === "replied" || link.isClosed) return;
      if (attempt > this.#commitRetries) {
        const error = new CommitError(
          `${this.address} did not commit ${
            controlId === undefined ? "the payload" : `message ${controlId}`
          } after ${attempt} writes (${
            answer === "nak"
              ? "the last answer was a NAK"
              : `no commit frame within ${this.#commitTimeout} ms`
          }); its outcome is unknown`,
          { address: this.address, attempts: attempt, last: answer },
        );
        logger.warn("{message}; closing the connection", {
          message: error.message,
        });
        void link.shutdown(error, true);
        return;
      }
      logger.info(
        "No commit for {controlId} from {address} ({answer}); writing it again ({attempt} of {retries})",
        {
          controlId: controlId ?? "",
          address: this.address,
          answer: answer === "nak" ? "NAK" : "timeout",
          attempt,
          retries: this.#commitRetries,
        },
      );
      // After a lost commit, the first copy's reply may still come.
      if (answer === "timeout") router.resent(controlId);
      commit = router.expectCommit();
      try {
        await link.write(message.raw);
      } catch {
        return; // The link closed: the send fails with its reason.
      }
      link.restartDeadline();
    }
  }

  /** Fails a send: counts it, emits `senderror`, rejects it. */
  #fail(job: Job, error: Error, written: boolean) {
    recordClientError(error.name);
    this.#emit("senderror", {
      address: this.address,
      controlId: job.message.header?.controlId,
      error,
      written,
    });
    this.#settle(job, undefined, error);
  }

  #verify(
    message: Message,
    frame: Uint8Array,
    link: Link,
  ): AckResult | ReplyResult {
    // A batch's reply is a response batch (or one ACK): see sendBatch.
    if (message.kind !== "hl7") {
      return {
        ok: true,
        outcome: "reply",
        reply: frame,
        text: decodeText(frame),
      };
    }
    const result = verifyAck(message, frame);
    const controlId = message.header.controlId;
    if (result.outcome === "mismatch") {
      const detail =
        `ACK from ${this.address} names control id "${result.ack.messageControlId}", expected "${result.expected}"`;
      logger.warn("{detail}; closing the connection", { detail });
      this.#emit("invalidreply", {
        address: this.address,
        controlId,
        problem: "control_id_mismatch",
        detail,
      });
      void link.shutdown(
        new InvalidReplyError(detail, {
          address: this.address,
          problem: "control_id_mismatch",
        }),
        true,
      );
    } else if (result.outcome === "not_ack") {
      this.#emit("invalidreply", {
        address: this.address,
        controlId,
        problem: "not_ack",
        detail: result.reason,
      });
    }
    return result;
  }

  /**
   * Closes the client: stops reconnecting, fails queued sends and the one
   * in flight with {@linkcode ConnectionClosedError}, and closes the
   * connection. Calling it again returns the same promise.
   *
   * @returns A promise that resolves when everything is closed.
   *
   * @example Close once, however often it is called
   * ```ts
   * import { Client, ConnectionClosedError, EchoDispatcher, Receiver } from "@x/mllp";
   * import { assertRejects, assertStrictEquals } from "@std/assert";
   *
   * await using receiver = await Receiver.start({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   dispatcher: EchoDispatcher,
   * });
   * const client = await Client.connect("127.0.0.1", receiver.port);
   * assertStrictEquals(client.close(), client.close());
   * await client.close();
   * await assertRejects(() => client.send("late"), ConnectionClosedError);
   * ```
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#settleFirst(
        new ConnectionClosedError("The client was closed", {
          address: this.address,
        }),
      );
      const closed = new ConnectionClosedError("The client was closed", {
        address: this.address,
      });
      for (const job of this.#queue.splice(0)) {
        this.#settle(job, undefined, this.#closedError());
      }
      this.#failWaiters(closed, true);
      this.#connectAbort?.abort();
      this.#poke();
      await Promise.all([...this.#links].map((link) => link.shutdown(closed)));
      await this.#running;
      await this.#pumping;
      await Promise.all([...this.#links].map((link) => link.done));
    })();
  }

  /** Closes the client; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function abortError(signal?: AbortSignal): Error {
  const reason = signal?.reason;
  return reason instanceof Error
    ? reason
    : new DOMException("The send was aborted", "AbortError");
}

function prepare(payload: string | Uint8Array | Message): Message {
  const message = typeof payload === "string" || payload instanceof Uint8Array
    ? readMessage(unwrap(payload))
    : payload;
  const problem = framingProblem(message.raw);
  if (problem) {
    throw new TypeError(
      `Cannot send: payload contains ${problem}, which would break the MLLP framing`,
    );
  }
  return message;
}

function positive(value: number, name: string): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(
      `Invalid ${name}: expected a positive number, got "${value}"`,
    );
  }
  return value;
}

function atLeast(value: number, min: number, name: string): number {
  if (!(value >= min) || !Number.isFinite(value)) {
    throw new RangeError(
      `Invalid ${name}: expected a number >= ${min}, got "${value}"`,
    );
  }
  return value;
}

async function loadClientTls(
  tls: ClientTlsOptions,
): Promise<ClientTlsMaterial> {
  return {
    caCerts: await loadPems(tls.caCerts, "the CA certificates (tls.caCerts)"),
    cert: tls.cert === undefined
      ? undefined
      : await loadPem(tls.cert, "the client certificate (tls.cert)"),
    key: tls.key === undefined
      ? undefined
      : await loadPem(tls.key, "the client key (tls.key)"),
    serverName: tls.serverName,
  };
}
