/**
 * What a dispatcher is: a function (or an object with `dispatch`) of a
 * message and its {@linkcode DispatchContext}, returning the reply.
 *
 * @module
 */

import type { Ack } from "../hl7/ack.ts";
import type { Message } from "../hl7/message.ts";
import type { Address } from "../net/address.ts";

/**
 * What a dispatcher knows about where a message came from.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Read the context in a dispatcher
 * ```ts
 * import { type DispatchContext, DispatchStream } from "@x/mllp/dispatcher";
 * import type { Message } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function dispatch(
 *   _message: Message,
 *   ctx: DispatchContext<{ site: string }>,
 * ): string {
 *   return `${ctx.context.site} via ${ctx.local.port}, aborted: ${ctx.signal.aborted}`;
 * }
 * const stream = new DispatchStream(dispatch, {
 *   context: { site: "lab" },
 *   local: { hostname: "127.0.0.1", port: 2575 },
 * });
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")]).pipeThrough(stream),
 * );
 * assertEquals(new TextDecoder().decode(reply), "lab via 2575, aborted: false");
 * ```
 */
export interface DispatchContext<C = unknown> {
  /** The sender's address. */
  peer: Address;
  /** The receiver's address the sender connected to. */
  local: Address;
  /** The subject CN of the peer's TLS certificate, when it sent one. */
  certificateName?: string;
  /**
   * Aborted when the dispatch is given up on: its time ran out (the sender
   * got an `AE`), the receiver closed the connection, or the receiver's
   * stop deadline passed. A dispatcher doing slow work can pass it on (to
   * `fetch`, say).
   */
  signal: AbortSignal;
  /** The value of the receiver's `context` option. */
  context: C;
  /** When the frame was received. */
  receivedAt: Date;
  /**
   * With a receiver's `store`: the store's id of the message, stable
   * across attempts and restarts (an idempotency key downstream).
   * `undefined` for a message dispatched straight from the connection.
   */
  messageId?: string;
  /**
   * With a receiver's `store`: which attempt at dispatching the message
   * this is, from 1. `undefined` for a message dispatched straight from
   * the connection.
   */
  attempt?: number;
}

/**
 * A dispatcher's reply: an {@linkcode Ack}, text (encoded in the message's
 * charset), bytes, or `undefined`/`null` for no reply. A reply that is
 * already wrapped in an MLLP frame is unwrapped first, so it is never
 * framed twice. A reply that still holds a VT (`0x0b`) or FS (`0x1c`)
 * byte would break the framing: it is treated as a dispatcher failure.
 *
 * @example Reply with an ACK, text or nothing
 * ```ts
 * import { Ack, type DispatchReply, DispatchStream } from "@x/mllp";
 * import type { Message } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function reply(message: Message): DispatchReply {
 *   if (message.kind === "hl7") return Ack.forMessage(message, "AA");
 *   return message.text === "PING" ? "PONG" : undefined; // no reply
 * }
 * const replies = await Array.fromAsync(
 *   ReadableStream.from(
 *     ["PING", "NOISE"].map((text) => new TextEncoder().encode(text)),
 *   )
 *     .pipeThrough(new DispatchStream(reply)),
 * );
 * assertEquals(replies.map((bytes) => new TextDecoder().decode(bytes)), ["PONG"]);
 * ```
 */
export type DispatchReply = Ack | string | Uint8Array | null | undefined | void;

/**
 * A dispatcher as a function of the message and its context.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example A function dispatcher
 * ```ts
 * import { type DispatchFunction, DispatchStream } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const upper: DispatchFunction = (message) => message.text.toUpperCase();
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("hello")])
 *     .pipeThrough(new DispatchStream(upper)),
 * );
 * assertEquals(new TextDecoder().decode(reply), "HELLO");
 * ```
 */
export type DispatchFunction<C = unknown> = (
  message: Message,
  ctx: DispatchContext<C>,
) => DispatchReply | Promise<DispatchReply>;

/**
 * A dispatcher as an object with a `dispatch` method (one that keeps
 * state, say).
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example An object dispatcher with state
 * ```ts
 * import { type DispatcherObject, DispatchStream } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * class Counter implements DispatcherObject {
 *   count = 0;
 *   dispatch(): string {
 *     return `message ${++this.count}`;
 *   }
 * }
 * const counter = new Counter();
 * const replies = await Array.fromAsync(
 *   ReadableStream.from([new Uint8Array([0x41]), new Uint8Array([0x42])])
 *     .pipeThrough(new DispatchStream(counter)),
 * );
 * assertEquals(counter.count, 2);
 * assertEquals(new TextDecoder().decode(replies[1]), "message 2");
 * ```
 */
export interface DispatcherObject<C = unknown> {
  /**
   * Handles one message.
   *
   * @param message The message: HL7 or unknown.
   * @param ctx Where it came from.
   * @returns The reply, or nothing for no reply.
   */
  dispatch(
    message: Message,
    ctx: DispatchContext<C>,
  ): DispatchReply | Promise<DispatchReply>;
}

/**
 * A dispatcher: a function or an object with `dispatch`.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Accept either form
 * ```ts
 * import { Ack, type Dispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const asFunction: Dispatcher = (message) => Ack.forMessage(message, "AA");
 * const asObject: Dispatcher = {
 *   dispatch: (message) => Ack.forMessage(message, "AA"),
 * };
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: asFunction,
 * });
 * assertEquals(
 *   typeof asObject === "object" && typeof asObject.dispatch,
 *   "function",
 * );
 * assertEquals(receiver.port > 0, true);
 * ```
 */
export type Dispatcher<C = unknown> = DispatchFunction<C> | DispatcherObject<C>;
