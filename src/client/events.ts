/**
 * What a client tells the world: the state of its connection and the
 * events it emits ({@linkcode ClientEventMap}), each with its detail.
 *
 * @module
 */

import type { AckCode } from "../hl7/ack.ts";
import type { ClientError, ReplyProblem } from "./errors.ts";
import type { SendResult } from "./results.ts";

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
  /**
   * The wait before it, in milliseconds: 0 when it is made at once (after
   * this client closed the connection itself, or on `reconnect()`).
   */
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
  /**
   * A reconnection attempt is scheduled: every attempt after the first,
   * at once or after a backoff wait.
   */
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

/** Emits one of a client's events (for the parts the client is made of). */
export type Emit = <K extends keyof ClientEventMap>(
  type: K,
  detail: ClientEventMap[K]["detail"],
) => void;
