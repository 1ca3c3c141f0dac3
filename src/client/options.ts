/**
 * The client's options: {@linkcode ClientOptions} (timeouts, TLS,
 * reconnection, the queue, MLLP release 2, charsets), the options of one
 * send, their defaults, and the checks that turn them into the settings a
 * client runs with.
 *
 * @module
 */

import type { BuildBatchOptions } from "../hl7/batch.ts";
import { type CharsetOptions, checkCharsetOptions } from "../hl7/charset.ts";
import type { ReadMessageOptions } from "../hl7/message.ts";
import type { BackoffOptions, FixedIntervalOptions } from "../net/backoff.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/framer.ts";

/**
 * The default reply timeout: 60 seconds.
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
   * How long one connection attempt may take, in milliseconds; also the
   * longest a send waits for a connection while there is none (its own
   * timeout if that is shorter), so that a receiver that cannot be reached
   * fails the send within it, with the last attempt's error.
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
   * exponential backoff (1 s doubling to 180 s, with jitter), a
   * fixed interval, or `false` to connect only when a send needs it.
   *
   * @default {{ initialDelay: 1000, maxDelay: 180000, factor: 2, jitter: 0.1 }}
   */
  reconnect?: BackoffOptions | FixedIntervalOptions | false;
  /**
   * What a send does while there is no connection: `"wait"` for one, for
   * at most the connect timeout or the send's timeout, whichever is
   * shorter (then it fails with the last connection error), or `"fail"` at
   * once with the last connection error. Either way a send fails at once
   * when the last attempt failed in a way the next will not change (the
   * receiver refused the client's certificate, or no net permission).
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
  /**
   * How the text and bytes given to {@linkcode Client.send} are read, and
   * the ACKs that come back: a default for an empty MSH-18, an override,
   * strict or replace decoding, and whether UTF-16/UTF-32 may be sent
   * (see `CharsetOptions` in `@x/mllp/charset`; checked as a receiver's
   * are). Text is encoded in the charset chosen; bytes are sent as they
   * are. A `Message` given to a send was read already, and goes as it is.
   *
   * @default {{}}
   */
  charset?: CharsetOptions;
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
   * or paths of PEM files.
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
   * wait for a connection when there is none, unless the client's
   * `connectTimeout` is shorter (counted while the send has no
   * connection, in the queue or at its head; time queued behind a send in
   * flight on an open connection does not count).
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

/** A client's options, checked, with their defaults filled in. */
export interface ClientSettings {
  replyTimeout: number;
  connectTimeout: number;
  maxFrameBytes: number;
  maxQueued: number;
  retryUnwritten: number;
  release: 1 | 2;
  commitTimeout: number;
  commitRetries: number;
  applicationAckTimeout: number;
  whenDisconnected: "wait" | "fail";
  reconnect: BackoffOptions | FixedIntervalOptions | false;
  tls: ClientTlsOptions | undefined;
  /** The charset options, when any were given. */
  charset: CharsetOptions | undefined;
  /** What payloads and replies are read with (made once, for every send). */
  read: ReadMessageOptions;
}

/**
 * Checks a client's options and fills in their defaults.
 *
 * @throws {RangeError} If an option is out of range.
 * @throws {TypeError} If `tls.cert` is given without `tls.key` or the
 *   other way round, or the charset options cannot be honoured.
 */
export function clientSettings(options: ClientOptions): ClientSettings {
  const replyTimeout = positive(
    options.replyTimeout ?? DEFAULT_REPLY_TIMEOUT,
    "replyTimeout",
  );
  const connectTimeout = positive(
    options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
    "connectTimeout",
  );
  const maxFrameBytes = positive(
    options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    "maxFrameBytes",
  );
  const maxQueued = atLeast(
    options.maxQueued ?? DEFAULT_MAX_QUEUED,
    0,
    "maxQueued",
  );
  const retryUnwritten = atLeast(
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
  const commitTimeout = positive(
    options.commitTimeout ?? DEFAULT_COMMIT_TIMEOUT,
    "commitTimeout",
  );
  const commitRetries = atLeast(
    options.commitRetries ?? DEFAULT_COMMIT_RETRIES,
    0,
    "commitRetries",
  );
  const applicationAckTimeout = positive(
    options.applicationAckTimeout ?? replyTimeout,
    "applicationAckTimeout",
  );
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
  const tls = options.tls;
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError(
      "Invalid tls: a client certificate (tls.cert) needs its key (tls.key), and a key needs its certificate",
    );
  }
  const charset = options.charset;
  if (charset !== undefined) {
    try {
      checkCharsetOptions(charset);
    } catch (error) {
      throw new TypeError(
        `Cannot create client: ${(error as Error).message}`,
      );
    }
  }
  return {
    replyTimeout,
    connectTimeout,
    maxFrameBytes,
    maxQueued,
    retryUnwritten,
    release,
    commitTimeout,
    commitRetries,
    applicationAckTimeout,
    whenDisconnected: options.whenDisconnected ?? "wait",
    reconnect: policy,
    tls,
    charset,
    read: charset === undefined ? {} : { charset },
  };
}

/**
 * Checks that a number is positive and finite.
 *
 * @throws {RangeError} If it is not.
 */
export function positive(value: number, name: string): number {
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
