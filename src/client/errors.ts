/**
 * The client's errors: transport failures (refused, timed out, closed, TLS
 * handshake), replies that never came or cannot be credited, a full queue,
 * a release 2 commit that did not come, and a receiver that speaks the
 * other MLLP release. Each is a
 * {@linkcode ClientError} with `name` set and `cause` passed through.
 *
 * @module
 */

import type { TlsFailure, TlsSide } from "../net/tls.ts";

/**
 * Where a client error happened: connecting, sending or receiving.
 *
 * @example Say what was going on
 * ```ts
 * import { ClientError, type ClientErrorContext } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * function phase(error: ClientError): string {
 *   const context: ClientErrorContext | undefined = error.context;
 *   return context === "connecting" ? "before sending" : "after sending began";
 * }
 * assertEquals(
 *   phase(new ClientError("Down", { context: "connecting" })),
 *   "before sending",
 * );
 * assertEquals(
 *   phase(new ClientError("Reset", { context: "receiving" })),
 *   "after sending began",
 * );
 * ```
 */
export type ClientErrorContext = "connecting" | "sending" | "receiving";

/**
 * Options for {@linkcode ClientError} and its subclasses.
 *
 * @example Construct an error with its address and cause
 * ```ts
 * import { type ClientErrorOptions, ConnectionClosedError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const cause = new Error("ECONNRESET");
 * const options: ClientErrorOptions = {
 *   context: "receiving",
 *   address: "127.0.0.1:2575",
 *   cause,
 * };
 * const error = new ConnectionClosedError("Connection reset", options);
 * assertEquals([error.context, error.address, error.cause], [
 *   "receiving",
 *   "127.0.0.1:2575",
 *   cause,
 * ]);
 * ```
 */
export interface ClientErrorOptions extends ErrorOptions {
  /** Where the error happened. */
  context?: ClientErrorContext;
  /** The receiver's address, as `host:port`. */
  address?: string;
}

/**
 * The base class of every transport failure a {@linkcode Client} throws.
 * Catch it to handle all of them; catch a subclass for one reason.
 *
 * @example Catch every transport failure
 * ```ts
 * import { ClientError, ConnectionClosedError } from "@x/mllp/errors";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const error = new ConnectionClosedError("Closed", { context: "receiving" });
 * assert(error instanceof ClientError);
 * assertEquals(error.reason, "closed");
 * ```
 */
export class ClientError extends Error {
  /** Where the error happened. */
  readonly context: ClientErrorContext | undefined;
  /** The receiver's address, as `host:port`, when known. */
  readonly address: string | undefined;
  /** A short, stable reason code (`refused`, `timeout`, `closed`, ...). */
  get reason(): string {
    return "error";
  }

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options Context, address and cause.
   */
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, options);
    this.name = "ClientError";
    this.context = options.context;
    this.address = options.address;
  }
}

/**
 * The receiver refused the connection (`ECONNREFUSED`), or could not be
 * reached (a host name that does not resolve, say), or the process may not
 * connect to it (no net permission): the message says which, and what to
 * check or which flag to give.
 *
 * @example Reason code
 * ```ts
 * import { ConnectionRefusedError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(new ConnectionRefusedError("Refused").reason, "refused");
 * ```
 */
export class ConnectionRefusedError extends ClientError {
  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options Context, address and cause.
   */
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, { context: "connecting", ...options });
    this.name = "ConnectionRefusedError";
  }

  /** Always `"refused"`. */
  override get reason(): string {
    return "refused";
  }
}

/**
 * Options for {@linkcode ConnectTimeoutError}.
 *
 * @example Construct the error
 * ```ts
 * import {
 *   ConnectTimeoutError,
 *   type ConnectTimeoutErrorOptions,
 * } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: ConnectTimeoutErrorOptions = {
 *   timeout: 10_000,
 *   address: "192.0.2.1:2575",
 * };
 * const error = new ConnectTimeoutError("No connection in 10 s", options);
 * assertEquals([error.timeout, error.address, error.context], [
 *   10_000,
 *   "192.0.2.1:2575",
 *   "connecting",
 * ]);
 * ```
 */
export interface ConnectTimeoutErrorOptions extends ClientErrorOptions {
  /** The connect timeout that passed, in milliseconds. */
  timeout: number;
}

/**
 * Connecting to the receiver took longer than the connect timeout.
 *
 * @example Reason code
 * ```ts
 * import { ConnectTimeoutError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new ConnectTimeoutError("Too slow", { timeout: 10000 });
 * assertEquals([error.reason, error.context], ["connect_timeout", "connecting"]);
 * ```
 */
export class ConnectTimeoutError extends ClientError {
  /** The connect timeout that passed, in milliseconds. */
  readonly timeout: number;

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The timeout, address and cause.
   */
  constructor(message: string, options: ConnectTimeoutErrorOptions) {
    super(message, { context: "connecting", ...options });
    this.name = "ConnectTimeoutError";
    this.timeout = options.timeout;
  }

  /** Always `"connect_timeout"`. */
  override get reason(): string {
    return "connect_timeout";
  }
}

/**
 * The connection closed before the reply arrived, or the client was closed.
 *
 * @example Reason code
 * ```ts
 * import { ConnectionClosedError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(new ConnectionClosedError("Closed").reason, "closed");
 * ```
 */
export class ConnectionClosedError extends ClientError {
  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options Context, address and cause.
   */
  constructor(message: string, options: ClientErrorOptions = {}) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }

  /** Always `"closed"`. */
  override get reason(): string {
    return "closed";
  }
}

/**
 * Options for {@linkcode ReplyTimeoutError}.
 *
 * @example Construct the error
 * ```ts
 * import {
 *   ReplyTimeoutError,
 *   type ReplyTimeoutErrorOptions,
 * } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: ReplyTimeoutErrorOptions = {
 *   timeout: 30_000,
 *   address: "127.0.0.1:2575",
 * };
 * const error = new ReplyTimeoutError("No reply in 30 s", options);
 * assertEquals([error.timeout, error.context], [30_000, "receiving"]);
 * ```
 */
export interface ReplyTimeoutErrorOptions extends ClientErrorOptions {
  /** The timeout that passed, in milliseconds. */
  timeout: number;
}

/**
 * No reply arrived within the reply timeout. The message was written, so
 * whether the receiver processed it is unknown; the client closed the
 * connection so a late reply can never be credited to another message.
 *
 * @example Reason code
 * ```ts
 * import { ReplyTimeoutError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new ReplyTimeoutError("No reply", { timeout: 5000 });
 * assertEquals([error.reason, error.timeout], ["timeout", 5000]);
 * ```
 */
export class ReplyTimeoutError extends ClientError {
  /** The timeout that passed, in milliseconds. */
  readonly timeout: number;

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The timeout, context, address and cause.
   */
  constructor(message: string, options: ReplyTimeoutErrorOptions) {
    super(message, { context: "receiving", ...options });
    this.name = "ReplyTimeoutError";
    this.timeout = options.timeout;
  }

  /** Always `"timeout"`. */
  override get reason(): string {
    return "timeout";
  }
}

/**
 * What was wrong with a reply, for {@linkcode InvalidReplyError}:
 * `no_start_block` (bytes that do not start a frame where a reply was
 * due), `data_after_trailer` (bytes after a reply's end block),
 * `frame_too_large` (a reply over the client's `maxFrameBytes`),
 * `unsolicited` (a frame with no send in flight), or `control_id_mismatch`
 * (an ACK for another message, which means the connection is out of step).
 *
 * @example Decide whether a retry can help
 * ```ts
 * import { InvalidReplyError, type ReplyProblem } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const peerBug: ReplyProblem[] = [
 *   "no_start_block",
 *   "data_after_trailer",
 *   "unsolicited",
 * ];
 * const error = new InvalidReplyError("Bad reply", {
 *   problem: "frame_too_large",
 * });
 * assertEquals(peerBug.includes(error.problem), false);
 * ```
 */
export type ReplyProblem =
  | "no_start_block"
  | "data_after_trailer"
  | "frame_too_large"
  | "unsolicited"
  | "control_id_mismatch";

/**
 * Options for {@linkcode InvalidReplyError}.
 *
 * @example Construct the error
 * ```ts
 * import {
 *   InvalidReplyError,
 *   type InvalidReplyErrorOptions,
 * } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: InvalidReplyErrorOptions = {
 *   problem: "unsolicited",
 *   address: "127.0.0.1:2575",
 * };
 * const error = new InvalidReplyError("Reply with no send in flight", options);
 * assertEquals([error.problem, error.context], ["unsolicited", "receiving"]);
 * ```
 */
export interface InvalidReplyErrorOptions extends ClientErrorOptions {
  /** What was wrong. */
  problem: ReplyProblem;
}

/**
 * The reply could not be read as an MLLP frame, or arrived where none was
 * due. The client closes the connection, since it no longer knows which
 * reply belongs to which message.
 *
 * @example Reason code and problem
 * ```ts
 * import { InvalidReplyError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new InvalidReplyError("Bad reply", { problem: "no_start_block" });
 * assertEquals([error.reason, error.problem], ["invalid_reply", "no_start_block"]);
 * ```
 */
export class InvalidReplyError extends ClientError {
  /** What was wrong. */
  readonly problem: ReplyProblem;

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The problem, context, address and cause.
   */
  constructor(message: string, options: InvalidReplyErrorOptions) {
    super(message, { context: "receiving", ...options });
    this.name = "InvalidReplyError";
    this.problem = options.problem;
  }

  /** Always `"invalid_reply"`. */
  override get reason(): string {
    return "invalid_reply";
  }
}

/**
 * The client's send queue is full (see the client's `maxQueued` option):
 * the payload was not queued and nothing was sent.
 *
 * @example Reason code
 * ```ts
 * import { QueueFullError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new QueueFullError("Full", { limit: 10 });
 * assertEquals([error.reason, error.limit], ["queue_full", 10]);
 * ```
 */
export class QueueFullError extends ClientError {
  /** The queue's limit. */
  readonly limit: number;

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The limit, address and cause.
   */
  constructor(
    message: string,
    options: ClientErrorOptions & { limit: number },
  ) {
    super(message, { context: "sending", ...options });
    this.name = "QueueFullError";
    this.limit = options.limit;
  }

  /** Always `"queue_full"`. */
  override get reason(): string {
    return "queue_full";
  }
}

/**
 * Options for {@linkcode TlsHandshakeError}.
 *
 * @example Construct the error
 * ```ts
 * import {
 *   TlsHandshakeError,
 *   type TlsHandshakeErrorOptions,
 * } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: TlsHandshakeErrorOptions = {
 *   refusedBy: "server",
 *   failure: "certificate_required",
 *   address: "127.0.0.1:2575",
 * };
 * const error = new TlsHandshakeError(
 *   "The receiver wants a client certificate",
 *   options,
 * );
 * assertEquals([error.refusedBy, error.failure, error.context], [
 *   "server",
 *   "certificate_required",
 *   "connecting",
 * ]);
 * ```
 */
export interface TlsHandshakeErrorOptions extends ClientErrorOptions {
  /** The side that refused the handshake. */
  refusedBy: TlsSide;
  /** Why. */
  failure: TlsFailure;
}

/**
 * The TLS handshake with the receiver failed. `refusedBy` says which side
 * refused (`"client"`: this client did not accept the receiver's
 * certificate; `"server"`: the receiver did not accept this client) and
 * `failure` says why.
 *
 * @example Inspect a handshake failure
 * ```ts
 * import { TlsHandshakeError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new TlsHandshakeError("Refused", {
 *   refusedBy: "server",
 *   failure: "certificate_required",
 * });
 * assertEquals([error.reason, error.refusedBy, error.failure], [
 *   "tls_handshake",
 *   "server",
 *   "certificate_required",
 * ]);
 * ```
 */
export class TlsHandshakeError extends ClientError {
  /** The side that refused the handshake. */
  readonly refusedBy: TlsSide;
  /** Why the handshake failed. */
  readonly failure: TlsFailure;

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options Who refused, why, and the cause.
   */
  constructor(message: string, options: TlsHandshakeErrorOptions) {
    super(message, { context: "connecting", ...options });
    this.name = "TlsHandshakeError";
    this.refusedBy = options.refusedBy;
    this.failure = options.failure;
  }

  /** Always `"tls_handshake"`. */
  override get reason(): string {
    return "tls_handshake";
  }
}

/**
 * Options for {@linkcode CommitError}.
 *
 * @example The error after four writes without a commit frame
 * ```ts
 * import { CommitError } from "@x/mllp/errors";
 * import type { CommitErrorOptions } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: CommitErrorOptions = {
 *   address: "127.0.0.1:2575",
 *   attempts: 4,
 *   last: "timeout",
 * };
 * const error = new CommitError("No commit for message 7", options);
 * assertEquals([error.context, error.address], ["receiving", "127.0.0.1:2575"]);
 * assertEquals([error.attempts, error.last], [4, "timeout"]);
 * ```
 */
export interface CommitErrorOptions extends ClientErrorOptions {
  /** How many times the frame was written (the first time and resends). */
  attempts: number;
  /** What came last: no commit frame in time, or a NAK (`0x15`). */
  last: "timeout" | "nak";
}

/**
 * MLLP release 2: the receiver did not commit the frame (no `0x06` within
 * the commit timeout, or a NAK `0x15`), however often it was resent. The
 * client closed the connection; whether the receiver processed one of the
 * copies is unknown.
 *
 * @example Reason code
 * ```ts
 * import { CommitError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new CommitError("No commit", { attempts: 4, last: "nak" });
 * assertEquals([error.reason, error.attempts, error.last], ["no_commit", 4, "nak"]);
 * ```
 */
export class CommitError extends ClientError {
  /** How many times the frame was written. */
  readonly attempts: number;
  /** What came last: no commit frame in time, or a NAK. */
  readonly last: "timeout" | "nak";

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The attempts, the last answer, context, address and cause.
   */
  constructor(message: string, options: CommitErrorOptions) {
    super(message, { context: "receiving", ...options });
    this.name = "CommitError";
    this.attempts = options.attempts;
    this.last = options.last;
  }

  /** Always `"no_commit"`. */
  override get reason(): string {
    return "no_commit";
  }
}

/**
 * Options for {@linkcode ReleaseMismatchError}.
 *
 * @example The error for a release 2 receiver
 * ```ts
 * import {
 *   ReleaseMismatchError,
 *   type ReleaseMismatchErrorOptions,
 * } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: ReleaseMismatchErrorOptions = {
 *   address: "127.0.0.1:2575",
 *   peerRelease: 2,
 *   reply: new Uint8Array([0x06]),
 * };
 * const error = new ReleaseMismatchError("The receiver speaks release 2", options);
 * assertEquals([error.peerRelease, error.reply], [2, new Uint8Array([0x06])]);
 * ```
 */
export interface ReleaseMismatchErrorOptions extends ClientErrorOptions {
  /** The MLLP release the receiver speaks: the other one. */
  peerRelease: 1 | 2;
  /** The frame that gave it away (its payload). */
  reply: Uint8Array;
}

/**
 * The receiver speaks the other MLLP release: a release 1 client got a
 * lone commit frame (`0x06`) or NAK (`0x15`) where an ACK was due, or a
 * release 2 client got a reply with no commit frame before it. The send
 * fails with a message that names the option to change (`mllpRelease`,
 * and the `mllp send` flag `--mllp-release`), and the client closes the
 * connection, since the frames that follow cannot be credited. The message
 * was written; `reply` holds what came back (with `peerRelease: 1`, the
 * receiver's ACK, which says what became of it).
 *
 * @example A release 1 client meets a release 2 receiver
 * ```ts
 * import { Client, EchoDispatcher, Receiver, ReleaseMismatchError } from "@x/mllp";
 * import { assertEquals, assertRejects } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 *   mllpRelease: 2,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const error = await assertRejects(
 *   () => client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r"),
 *   ReleaseMismatchError,
 * );
 * assertEquals([error.reason, error.peerRelease], ["release_mismatch", 2]);
 * ```
 */
export class ReleaseMismatchError extends ClientError {
  /** The MLLP release the receiver speaks. */
  readonly peerRelease: 1 | 2;
  /** The frame that gave it away (its payload). */
  readonly reply: Uint8Array;

  /**
   * Constructs a new error.
   *
   * @param message What happened, and the option to change.
   * @param options The receiver's release, the reply, address and cause.
   */
  constructor(message: string, options: ReleaseMismatchErrorOptions) {
    super(message, { context: "receiving", ...options });
    this.name = "ReleaseMismatchError";
    this.peerRelease = options.peerRelease;
    this.reply = options.reply;
  }

  /** Always `"release_mismatch"`. */
  override get reason(): string {
    return "release_mismatch";
  }
}
