/**
 * The MLLP client: one TCP connection on `Deno.connect`, the same framer
 * as the receiver, and replies verified against the messages they answer.
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
import { describeTlsError, loadPem, loadPems } from "./_tls.ts";
import {
  type ClientTlsMaterial,
  connect,
  type TransportConn,
} from "./_transport.ts";
import { type AckResult, verifyAck } from "./ack.ts";
import { formatAddress } from "./dispatcher.ts";
import { unwrap } from "./envelope.ts";
import {
  ClientError,
  ConnectionClosedError,
  ConnectionRefusedError,
  ConnectTimeoutError,
  FrameSizeError,
  InvalidReplyError,
  ReplyTimeoutError,
  TlsHandshakeError,
} from "./errors.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  END_BLOCK,
  MllpDecoderStream,
  MllpEncoderStream,
  START_BLOCK,
} from "./framer.ts";
import { decodeText, type Message, readMessage } from "./hl7.ts";

const logger = getLogger(["mllp", "client"]);

/** The default reply timeout: 60 seconds, as the seed's. */
export const DEFAULT_REPLY_TIMEOUT = 60_000;
/** The default connect timeout: 10 seconds. */
export const DEFAULT_CONNECT_TIMEOUT = 10_000;

/** Options for {@linkcode Client.connect}. */
export interface ClientOptions {
  /**
   * How long {@linkcode Client.send} waits for a reply, in milliseconds.
   * When it passes, the connection is closed, so a late reply can never be
   * credited to another message.
   *
   * @default {60000}
   */
  replyTimeout?: number;
  /**
   * How long connecting may take, in milliseconds.
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
}

/** TLS settings for a {@linkcode Client}. */
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

/** Options for one {@linkcode Client.send}. */
export interface SendOptions {
  /**
   * The reply timeout for this send, in milliseconds.
   *
   * @default {the client's replyTimeout}
   */
  timeout?: number;
  /**
   * Aborts the send. Before the message is written it is dropped; after,
   * the connection is closed as for a timeout.
   */
  signal?: AbortSignal;
}

/** The reply to a payload that is not HL7 (the seed's `{:ok, reply}`). */
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
 * The result of {@linkcode Client.send}: the verified ACK outcome for an
 * HL7 message, the reply for any other payload.
 */
export type SendResult = AckResult | ReplyResult;

interface Pending {
  resolve(frame: Uint8Array): void;
  reject(error: Error): void;
}

/** One connection and the framer on both of its directions. */
class Link {
  readonly done: Promise<void>;
  #conn: TransportConn;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #pending: Pending | undefined;
  #closed = false;
  #label: string;
  #reading: Promise<void>;
  #sentCertificate: boolean;
  #replies = 0;

  constructor(
    conn: TransportConn,
    maxFrameBytes: number,
    label: string,
    sentCertificate: boolean,
  ) {
    this.#conn = conn;
    this.#label = label;
    this.#sentCertificate = sentCertificate;
    const encoder = new MllpEncoderStream();
    const writing = encoder.readable.pipeTo(conn.writable).catch(() => {});
    this.#writer = encoder.writable.getWriter();
    const frames = conn.readable.pipeThrough(
      new MllpDecoderStream({ maxFrameBytes, label }),
    );
    this.#reading = this.#read(frames);
    this.done = Promise.all([writing, this.#reading]).then(() => {});
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #read(frames: ReadableStream<Uint8Array>) {
    let cause: unknown;
    try {
      for await (const frame of frames) {
        const pending = this.#pending;
        if (!pending) {
          logger.warn(
            "Unsolicited {bytes} byte frame from {address} with no send in flight; closing the connection",
            { bytes: frame.length, address: this.#label },
          );
          cause = new InvalidReplyError(
            "Unsolicited data with no send in flight",
          );
          break;
        }
        this.#pending = undefined;
        this.#replies++;
        pending.resolve(frame);
      }
    } catch (error) {
      cause = error;
    }
    this.shutdown(cause);
  }

  /** Closes the connection; a send in flight fails with `cause`. */
  shutdown(cause?: unknown): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // Already closed.
      }
      this.#writer.abort(cause).catch(() => {});
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.reject(this.#explain(cause));
    }
    return this.done;
  }

  /** Turns what ended the connection into the error a send reports. */
  #explain(cause: unknown): Error {
    if (cause instanceof ClientError) return cause;
    if (cause instanceof FrameSizeError) {
      return new InvalidReplyError(
        `Cannot read reply from ${this.#label}: ${cause.message}`,
        { cause, address: this.#label },
      );
    }
    if (this.#conn.secure && cause !== undefined && this.#replies === 0) {
      // With TLS 1.3 the receiver judges the client certificate after the
      // client has finished its handshake, so a refusal shows up here.
      const text = cause instanceof Error ? cause.message : String(cause);
      const refusal = /alert/i.test(text) ||
        (this.#sentCertificate &&
          /UnexpectedEof|close_notify|reset/i.test(text));
      if (refusal) {
        return tlsError(cause, this.#label, this.#sentCertificate);
      }
    }
    return new ConnectionClosedError(
      `Connection to ${this.#label} closed before the reply arrived`,
      { cause, context: "receiving", address: this.#label },
    );
  }

  async request(
    frame: Uint8Array,
    timeout: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    if (this.#closed) {
      throw new ConnectionClosedError(
        `Connection to ${this.#label} is closed`,
        {
          context: "sending",
          address: this.#label,
        },
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    promise.catch(() => {});
    this.#pending = { resolve, reject };
    const fail = (error: Error) => {
      if (this.#pending?.reject !== reject) return;
      this.#pending = undefined;
      reject(error);
      void this.shutdown(error);
    };
    const timer = setTimeout(() =>
      fail(
        new ReplyTimeoutError(
          `No reply from ${this.#label} within ${timeout} ms; the message was sent and its outcome is unknown`,
          { timeout, address: this.#label },
        ),
      ), timeout);
    const onAbort = () =>
      fail(
        new ConnectionClosedError(
          `Send to ${this.#label} aborted after the message was written; its outcome is unknown`,
          { cause: signal?.reason, context: "receiving", address: this.#label },
        ),
      );
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      try {
        await this.#writer.write(frame);
      } catch (error) {
        // The read side usually knows why (a TLS alert, say): let it end
        // first. The reply timer bounds the wait.
        await this.#reading;
        fail(
          new ConnectionClosedError(
            `Cannot send to ${this.#label}: the connection is closed`,
            { cause: error, context: "sending", address: this.#label },
          ),
        );
      }
      return await promise;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/**
 * An MLLP client on one TCP connection. Create one with
 * {@linkcode Client.connect}, by IP address or host name.
 *
 * Sends are queued and go out one at a time, in call order; each waits for
 * its reply (stop-and-wait, as MLLP expects). HL7 replies are verified
 * against the message: MSA-2 must equal MSH-10 exactly. When a reply times
 * out, the connection is closed so a late reply cannot be credited to the
 * next message; the next send reconnects.
 *
 * Transport failures throw subclasses of {@linkcode ClientError}:
 * {@linkcode ConnectionRefusedError}, {@linkcode ConnectTimeoutError},
 * {@linkcode ConnectionClosedError}, {@linkcode ReplyTimeoutError} and
 * {@linkcode InvalidReplyError}.
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
export class Client implements AsyncDisposable {
  /** The receiver's host name or IP address. */
  readonly hostname: string;
  /** The receiver's port. */
  readonly port: number;
  #replyTimeout: number;
  #connectTimeout: number;
  #maxFrameBytes: number;
  #tls: ClientTlsOptions | undefined;
  #tlsMaterial: Promise<ClientTlsMaterial> | undefined;
  #link: Link | undefined;
  /** Links not yet fully wound down, old ones included (after a timeout). */
  #links = new Set<Link>();
  #connecting: Promise<Link> | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(hostname: string, port: number, options: ClientOptions) {
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
    const tls = options.tls;
    if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
      throw new TypeError(
        "Invalid tls: a client certificate (tls.cert) needs its key (tls.key), and a key needs its certificate",
      );
    }
    this.#tls = tls;
  }

  /**
   * Connects to a receiver.
   *
   * @param hostname An IP address or a host name such as `"localhost"`.
   * @param port The receiver's port.
   * @param options Timeouts and limits.
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
    await client.#ensureLink();
    return client;
  }

  /** The receiver's address, as `host:port`. */
  get address(): string {
    return formatAddress({ hostname: this.hostname, port: this.port });
  }

  /** Whether the client has an open connection. */
  get connected(): boolean {
    return this.#link !== undefined && !this.#link.closed;
  }

  /**
   * Sends one payload and waits for its reply.
   *
   * Text is encoded in the charset its MSH-18 names (UTF-8 by default);
   * bytes are sent as they are. A payload that is already wrapped in an
   * MLLP frame is unwrapped first.
   *
   * @param payload An HL7 message, or any other payload.
   * @param options The reply timeout for this send, and an abort signal.
   * @returns For HL7, the verified ACK outcome; otherwise the reply.
   * @throws {HeaderError} If the payload starts with `MSH` but its header
   *   cannot be read (nothing is sent).
   * @throws {TypeError} If the payload holds a VT (`0x0b`) or FS (`0x1c`)
   *   byte, which would break the framing (nothing is sent).
   * @throws {RangeError} If the timeout is not a positive number.
   * @throws {ClientError} A subclass for each transport failure.
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
    } catch (error) {
      return Promise.reject(error);
    }
    const turn = this.#tail.then(() =>
      this.#exchange(message, timeout, options.signal)
    );
    this.#tail = turn.catch(() => {});
    return turn;
  }

  async #exchange(
    message: Message,
    timeout: number,
    signal?: AbortSignal,
  ): Promise<SendResult> {
    signal?.throwIfAborted();
    if (this.#closing) {
      throw new ConnectionClosedError("Cannot send: the client is closed", {
        context: "sending",
        address: this.address,
      });
    }
    const link = await this.#ensureLink();
    signal?.throwIfAborted();
    const controlId = message.header?.controlId;
    logger.debug(
      "Sending {kind} message {controlId} ({size} bytes) to {address}",
      {
        kind: message.kind,
        controlId: controlId ?? "",
        size: message.size,
        address: this.address,
      },
    );
    const started = performance.now();
    const frame = await link.request(message.raw, timeout, signal);
    const ms = performance.now() - started;
    if (message.kind === "unknown") {
      logger.debug("Received {bytes} byte reply from {address} in {ms} ms", {
        bytes: frame.length,
        address: this.address,
        ms: Math.round(ms),
      });
      return {
        ok: true,
        outcome: "reply",
        reply: frame,
        text: decodeText(frame),
      };
    }
    const result = verifyAck(message, frame);
    logger.debug(
      "Reply to {controlId} from {address} in {ms} ms: {outcome}",
      {
        controlId: controlId ?? "",
        address: this.address,
        ms: Math.round(ms),
        outcome: result.outcome,
      },
    );
    if (result.outcome === "mismatch") {
      logger.warn(
        "ACK from {address} names control id {received}, expected {expected}; closing the connection",
        {
          address: this.address,
          received: result.ack.messageControlId,
          expected: result.expected,
        },
      );
      await link.shutdown(
        new InvalidReplyError("ACK for another message received", {
          address: this.address,
        }),
      );
    }
    return result;
  }

  #ensureLink(): Promise<Link> {
    if (this.#link && !this.#link.closed) return Promise.resolve(this.#link);
    return this.#connecting ??= this.#open().finally(() => {
      this.#connecting = undefined;
    });
  }

  async #open(): Promise<Link> {
    const tls = this.#tls === undefined
      ? undefined
      : await (this.#tlsMaterial ??= loadClientTls(this.#tls));
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#connectTimeout);
    let conn: TransportConn;
    try {
      conn = await connect(this.hostname, this.port, tls, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) {
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
        throw tlsError(error, this.address, tls.cert !== undefined);
      }
      const reason = error instanceof Error ? error.message : String(error);
      throw new ConnectionRefusedError(
        `Cannot connect to ${this.address}: ${reason}`,
        { cause: error, address: this.address },
      );
    } finally {
      clearTimeout(timer);
    }
    logger.debug("Connected to {address}{tls}", {
      address: this.address,
      tls: tls ? " with TLS" : "",
    });
    const link = new Link(
      conn,
      this.#maxFrameBytes,
      this.address,
      tls?.cert !== undefined,
    );
    this.#link = link;
    this.#links.add(link);
    void link.done.finally(() => this.#links.delete(link));
    return link;
  }

  /**
   * Closes the connection. A send in flight fails with
   * {@linkcode ConnectionClosedError}; later sends are refused. Calling it
   * again returns the same promise.
   *
   * @returns A promise that resolves when the connection is closed,
   *   and any connection dropped earlier (after a reply timeout, say) has
   *   wound down too.
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
      await this.#connecting?.catch(() => {});
      const cause = new ConnectionClosedError("The client was closed", {
        address: this.address,
      });
      await Promise.all([...this.#links].map((link) => link.shutdown(cause)));
      await this.#tail;
    })();
  }

  /** Closes the client; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function prepare(payload: string | Uint8Array | Message): Message {
  const message = typeof payload === "string" || payload instanceof Uint8Array
    ? readMessage(unwrap(payload))
    : payload;
  for (
    const [byte, name] of [[START_BLOCK, "VT"], [END_BLOCK, "FS"]] as const
  ) {
    const at = message.raw.indexOf(byte);
    if (at !== -1) {
      throw new TypeError(
        `Cannot send: payload contains a ${name} byte at offset ${at}, which would break the MLLP framing`,
      );
    }
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

function isTlsError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const text = `${error.name} ${
    (error as { code?: string }).code ?? ""
  } ${error.message}`;
  return /InvalidData|certificate|alert|tls|ssl|handshake|UnexpectedEof|close_notify/i
    .test(text);
}

function tlsError(
  error: unknown,
  address: string,
  sentCertificate = false,
): TlsHandshakeError {
  const info = describeTlsError(error, "client", { sentCertificate });
  return new TlsHandshakeError(
    `TLS handshake with ${address} failed: ${info.detail}`,
    {
      cause: error,
      address,
      refusedBy: info.by === "local" ? "client" : "server",
      failure: info.failure,
    },
  );
}
