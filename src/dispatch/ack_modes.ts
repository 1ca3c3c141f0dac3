/**
 * Acknowledgment modes as a receiver and a client use them: HL7's enhanced
 * mode (MSH-15 and MSH-16: an accept, or commit, ACK `CA`/`CE`/`CR`, then
 * an application ACK `AA`/`AE`/`AR`), where a receiver sends application
 * ACKs, and MLLP release 2's commit frames (`0x06` and `0x15`).
 *
 * The HL7 rules live in `src/hl7/ack_conditions.ts` and the release 2
 * bytes in `src/wire/release2.ts`; this module gathers them with the
 * receiver's {@linkcode ApplicationAckRoute}.
 *
 * HL7 gives no default for a blank MSH-15 or MSH-16 in an otherwise
 * enhanced message. This library reads a blank one as `AL` (always): it
 * errs on the side of sending the acknowledgment.
 *
 * @example Read a message's acknowledgment mode
 * ```ts
 * import { ackModeOf, wantsAck } from "@x/mllp/ack-modes";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const header = readHeader(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5|||AL|ER\r",
 * );
 * const mode = ackModeOf(header);
 * assertEquals(mode, { mode: "enhanced", accept: "AL", application: "ER" });
 * if (mode.mode === "enhanced") {
 *   assertEquals(wantsAck(mode.application, "AA"), false);
 *   assertEquals(wantsAck(mode.application, "AE"), true);
 * }
 * ```
 *
 * @module
 */

import type { Ack } from "../hl7/ack.ts";
import type { Hl7Message } from "../hl7/message.ts";
import type { DispatchContext } from "./dispatcher.ts";

export {
  ACK_CONDITIONS,
  type AckCondition,
  type AckMode,
  ackModeOf,
  invalidAckConditions,
  isAckCondition,
  isCommitCode,
  silenceMeans,
  wantsAck,
} from "../hl7/ack_conditions.ts";
export { COMMIT_ACK, COMMIT_NAK, isCommitFrame } from "../wire/release2.ts";

/**
 * Delivers the application ACK of an enhanced-mode message some other way
 * than on the connection it came in on: the receiver's `applicationAcks`
 * option. Typically it sends the ACK with a `Client` to the sender's own
 * receiver. It is called once the dispatcher has answered (and MSH-16 wants
 * the ACK); the receiver does not wait for it, and logs its failure.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Send application ACKs back to the sender's own receiver
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const received = Promise.withResolvers<string>();
 * await using senderSide = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: (m) => {
 *     received.resolve(m.text.split("\r")[1]);
 *     return Ack.forMessage(m, "AA");
 *   },
 * });
 * await using back = await Client.connect("127.0.0.1", senderSide.port);
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: (m) => Ack.forMessage(m, "AA"),
 *   applicationAcks: async (ack) => {
 *     await back.send(ack.toString());
 *   },
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5|||AL|AL\r",
 * );
 * assertEquals(result.outcome === "accept" && result.code, "CA");
 * assertEquals(await received.promise, "MSA|AA|M1");
 * ```
 */
export type ApplicationAckHandler<C = unknown> = (
  ack: Ack,
  message: Hl7Message,
  ctx: DispatchContext<C>,
) => void | Promise<void>;

/**
 * Where a receiver sends the application ACKs of enhanced-mode messages:
 * `"connection"` (on the connection the message came in on) or an
 * {@linkcode ApplicationAckHandler}.
 *
 * @typeParam C The type of the receiver's `context` option.
 *
 * @example Application ACKs on the same connection, after the commit ACK
 * ```ts
 * import { Ack, Client, Receiver } from "@x/mllp";
 * import type { ApplicationAckRoute } from "@x/mllp/ack-modes";
 * import { assertEquals } from "@std/assert";
 *
 * const route: ApplicationAckRoute = "connection"; // the default
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: (m) => Ack.forMessage(m, "AA"),
 *   applicationAcks: route,
 * });
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5|||AL|AL\r",
 * );
 * if (result.outcome !== "accept") throw new Error("expected an accept");
 * assertEquals(result.code, "CA");
 * assertEquals((await result.applicationAck)?.code, "AA");
 * ```
 */
export type ApplicationAckRoute<C = unknown> =
  | "connection"
  | ApplicationAckHandler<C>;
