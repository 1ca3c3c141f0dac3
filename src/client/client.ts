/**
 * The MLLP client: a long-lived connection to one receiver, on TCP
 * (`Deno.connect`) or TLS, through the same framer as the receiver. It
 * reconnects after a drop with backoff, queues sends in order, and verifies
 * each reply against the message it answers.
 *
 * @example Send a message and read the typed ACK
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

import { formatAddress } from "../net/address.ts";
import {
  type BatchMessage,
  type BatchResult,
  batchResults,
  buildBatch,
} from "../hl7/batch.ts";
import { ackModeOf } from "../hl7/ack_conditions.ts";
import { CharsetError } from "../hl7/charset.ts";
import { readHl7 } from "../hl7/hl7_message.ts";
import { isHl7, type Message, readMessage } from "../hl7/message.ts";
import { TypedEventTarget } from "../observe/events.ts";
import { unwrap } from "../wire/envelope.ts";
import { BytePool } from "../wire/_pool.ts";
import { framingProblem, WordViews } from "../wire/_scan.ts";
import { Connector } from "./connector.ts";
import {
  type ClientError,
  ConnectionClosedError,
  QueueFullError,
} from "./errors.ts";
import type { ClientEventMap, ClientState } from "./events.ts";
import { Exchange } from "./exchange.ts";
import {
  type ClientOptions,
  type ClientSettings,
  clientSettings,
  positive,
  type SendBatchOptions,
  type SendOptions,
} from "./options.ts";
import { SendQueue } from "./queue.ts";
import type { SendResult } from "./results.ts";

/** The block size the text given to `send` is encoded in (see `_pool.ts`). */
const MESSAGE_BLOCK_BYTES = 16 * 1024;

export {
  type BackoffOptions,
  type FixedIntervalOptions,
  reconnectDelay,
} from "../net/backoff.ts";
export {
  type ClientOptions,
  type ClientTlsOptions,
  DEFAULT_COMMIT_RETRIES,
  DEFAULT_COMMIT_TIMEOUT,
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_MAX_QUEUED,
  DEFAULT_REPLY_TIMEOUT,
  type SendBatchOptions,
  type SendOptions,
} from "./options.ts";
export type {
  ApplicationAckField,
  ReplyResult,
  SendResult,
  SilentResult,
} from "./results.ts";
export type {
  ClientEventMap,
  ClientState,
  ClosedDetail,
  ConnectedDetail,
  ConnectFailedDetail,
  InvalidReplyDetail,
  ReconnectingDetail,
  ReplyDetail,
  ReplyTimeoutDetail,
  SendErrorDetail,
} from "./events.ts";

/**
 * An MLLP client for one receiver, by IP address or host name.
 *
 * `new Client(host, port)` starts connecting at once and keeps a
 * connection open: after a drop it reconnects with exponential backoff
 * (1 s doubling to 180 s, with jitter; or a fixed interval);
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
  #settings: ClientSettings;
  /** Keeps the connection: opens it, reconnects, hands out links. */
  #connector: Connector;
  /** The sends, queued in call order; an `Exchange` runs each on a link. */
  #queue: SendQueue;
  #closing: Promise<void> | undefined;
  /** Where the text given to `send` is encoded. */
  #pool = new BytePool(MESSAGE_BLOCK_BYTES);
  /** The word view kept for checking payloads for the framing bytes. */
  #words = new WordViews();

  /**
   * Creates a client and starts connecting in the background. Sends made
   * before the connection is up wait for it (see `whenDisconnected`).
   *
   * @param hostname An IP address or a host name such as `"localhost"`.
   * @param port The receiver's port.
   * @param options Timeouts, TLS, reconnection, queue limits and charsets.
   * @throws {RangeError} If an option is out of range.
   * @throws {TypeError} If `tls.cert` is given without `tls.key` or the
   *   other way round, or the charset options cannot be honoured.
   */
  constructor(hostname: string, port: number, options: ClientOptions = {}) {
    super();
    this.hostname = hostname;
    this.port = port;
    const settings = this.#settings = clientSettings(options);
    const emit = this.#emit.bind(this);
    this.#connector = new Connector(
      hostname,
      port,
      formatAddress({ hostname, port }),
      settings,
      {
        emit,
        connected: () => this.#queue.connected(),
        disconnected: () => this.#queue.disconnected(),
      },
    );
    this.#queue = new SendQueue(
      settings.maxQueued,
      new Exchange(
        settings,
        this.#connector,
        emit,
        (type) => this.listenedTo(type),
      ),
    );
    this.#connector.start();
  }

  /**
   * Connects to a receiver and waits for the first connection.
   *
   * @param hostname An IP address or a host name such as `"localhost"`.
   * @param port The receiver's port.
   * @param options Timeouts, TLS, reconnection, queue limits and charsets.
   * @returns The connected client.
   * @throws {ConnectionRefusedError} If the receiver cannot be reached.
   * @throws {ConnectTimeoutError} If connecting takes too long.
   * @throws {TlsHandshakeError} If the TLS handshake fails; it says which
   *   side refused and why.
   * @throws {RangeError} If an option is out of range.
   * @throws {TypeError} If `tls.cert` is given without `tls.key` or the
   *   other way round, or the charset options cannot be honoured.
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
    try {
      // The caller hears of a failed first attempt; no backoff behind it.
      await client.#connector.firstConnection();
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** The receiver's address, as `host:port`. */
  get address(): string {
    return this.#connector.address;
  }

  /** Whether the client has an open connection. */
  get isConnected(): boolean {
    return this.#connector.isConnected;
  }

  /** The same as {@linkcode Client.isConnected}. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** The state of the connection. */
  get state(): ClientState {
    return this.#connector.state;
  }

  /** How many sends wait in the queue (not counting the one in flight). */
  get queued(): number {
    return this.#queue.length;
  }

  /** The error of the last failed connection attempt, if the last failed. */
  get lastError(): ClientError | undefined {
    return this.#connector.lastError;
  }

  #emit<K extends keyof ClientEventMap>(
    type: K,
    detail: ClientEventMap[K]["detail"],
  ) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /**
   * Sends one payload and waits for its reply.
   *
   * Text is encoded in the charset its MSH-18 names (UTF-8 by default;
   * the client's `charset` option can set a default, an override, and
   * allow UTF-16/UTF-32); bytes are sent as they are. A payload that is
   * already wrapped in an MLLP frame is unwrapped first.
   *
   * @param payload An HL7 message, or any other payload.
   * @param options The reply timeout for this send, and an abort signal.
   * @returns For HL7, the verified ACK outcome (for an enhanced-mode
   *   message, that of its first ACK, the commit ACK, with the application
   *   ACK to come in `applicationAck`); otherwise the reply.
   * @throws {HeaderError} If the payload starts with `MSH` but its header
   *   cannot be read (nothing is sent).
   * @throws {CharsetError} (a `HeaderError`) If its charset cannot be used
   *   (UTF-16 or UTF-32 without the client's `charset.allowWide`, one this
   *   runtime does not support) or, with `charset.invalid: "strict"`, its
   *   bytes do not decode (nothing is sent).
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
   *
   * @example Send text in UTF-16
   * ```ts
   * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
   * import { assertEquals } from "@std/assert";
   *
   * await using receiver = await Receiver.start({
   *   port: 0,
   *   dispatcher: EchoDispatcher,
   *   charset: { allowWide: true },
   * });
   * await using client = await Client.connect("127.0.0.1", receiver.port, {
   *   charset: { allowWide: true },
   * });
   * const result = await client.send(
   *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5|||||CHN|UNICODE UTF-16\rPID|1||7||王^芳\r",
   * );
   * assertEquals(result.outcome === "accept" && result.ack.code, "AA");
   * ```
   */
  send(
    payload: string | Uint8Array | Message,
    options: SendOptions = {},
  ): Promise<SendResult> {
    return this.#enqueue(payload, options, false) as Promise<SendResult>;
  }

  /**
   * Sends one payload without waiting for its reply: resolves once the
   * message is written. The reply is
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
    const batch = "kind" in messages ? messages : buildBatch(
      // Read with the client's charset options, not buildBatch's defaults.
      this.#settings.charset === undefined
        ? messages
        : messages.map((m) =>
          typeof m === "string" || m instanceof Uint8Array ? this.#read(m) : m
        ),
      options,
    );
    const result = await this.send(batch, options);
    // A batch's reply always comes back as a plain reply (see exchange.ts).
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
      message = this.#prepare(payload);
      timeout = positive(
        options.timeout ?? this.#settings.replyTimeout,
        "timeout",
      );
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
    if (this.#queue.full) {
      const limit = this.#settings.maxQueued;
      return Promise.reject(
        new QueueFullError(
          `Cannot send to ${this.address}: ${limit} sends are queued already`,
          { address: this.address, limit },
        ),
      );
    }
    return this.#queue.add(
      message,
      timeout,
      // A refused connection fails the send within the connect timeout.
      Math.min(timeout, this.#settings.connectTimeout),
      options.signal,
      detached,
      this.isConnected,
    );
  }

  /** Reads a payload to send, and checks that it can be framed. */
  #prepare(payload: string | Uint8Array | Message): Message {
    const message = typeof payload === "string" || payload instanceof Uint8Array
      ? this.#read(unwrap(payload))
      : payload;
    const problem = framingProblem(message.raw, this.#words);
    if (problem) {
      throw new TypeError(
        `Cannot send: payload contains ${problem}, which would break the MLLP framing`,
      );
    }
    return message;
  }

  /**
   * Reads text or bytes to send with the client's charset options; a wide
   * charset refused for want of `allowWide` says which option to set.
   */
  #read(payload: string | Uint8Array): Message {
    try {
      // HL7 text is encoded into the client's pool: no allocation per send.
      return typeof payload === "string" && isHl7(payload)
        ? readHl7(payload, this.#settings.read.charset ?? {}, this.#pool)
        : readMessage(payload, this.#settings.read);
    } catch (error) {
      if (
        !(error instanceof CharsetError) || error.problem !== "wide_refused"
      ) {
        throw error;
      }
      throw new CharsetError(
        `Cannot send: charset "${error.charset}" is UTF-16 or UTF-32, whose bytes can contain the MLLP framing bytes; set the client's charset.allowWide to send it`,
        {
          charset: error.charset,
          problem: error.problem,
          header: error.header,
        },
        { cause: error },
      );
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
  reconnect(): Promise<void> {
    return this.#connector.reconnect();
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
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#queue.close(() =>
      new ConnectionClosedError(
        "Cannot send: the client was closed before the message was written",
        { context: "sending", address: this.address },
      )
    );
    await this.#connector.close();
    await this.#queue.idle;
    await this.#connector.done();
  }

  /** Closes the client; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
