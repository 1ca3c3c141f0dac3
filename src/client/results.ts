/**
 * What a send resolves with: the verified ACK outcome of an HL7 message
 * ({@linkcode AckResult}, with the application ACK to come in enhanced
 * mode), the reply to any other payload, or the silence an enhanced-mode
 * message allows.
 *
 * @module
 */

import type { Ack, AckResult } from "../hl7/ack.ts";

/**
 * The reply to a payload that is not HL7.
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
