/**
 * The default dispatcher: it logs and acknowledges.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import type { Message } from "../hl7/message.ts";
import { formatAddress } from "../net/address.ts";
import type {
  DispatchContext,
  DispatcherObject,
  DispatchReply,
} from "./types.ts";

const logger = getLogger(["mllp", "dispatcher"]);

/**
 * The MSA-3 text the {@linkcode EchoDispatcher} answers with.
 *
 * @example The EchoDispatcher's ACK text
 * ```ts
 * import { DispatchStream, ECHO_TEXT, EchoDispatcher } from "@x/mllp/dispatcher";
 * import { Ack } from "@x/mllp/ack";
 * import { assertEquals } from "@std/assert";
 *
 * const message = "MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r";
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode(message)])
 *     .pipeThrough(new DispatchStream(EchoDispatcher)),
 * );
 * assertEquals(Ack.parse(reply).text, ECHO_TEXT);
 * ```
 */
export const ECHO_TEXT = "A real MLLP message dispatcher was not provided";

/**
 * The reply the {@linkcode EchoDispatcher} gives to non-HL7 payloads.
 *
 * @example The EchoDispatcher's reply to non-HL7
 * ```ts
 * import {
 *   DispatchStream,
 *   EchoDispatcher,
 *   UNKNOWN_REPLY,
 * } from "@x/mllp/dispatcher";
 * import { assertEquals } from "@std/assert";
 *
 * const [reply] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("PING")])
 *     .pipeThrough(new DispatchStream(EchoDispatcher)),
 * );
 * assertEquals(new TextDecoder().decode(reply), UNKNOWN_REPLY);
 * ```
 */
export const UNKNOWN_REPLY = "mllp_unknown";

/**
 * The default dispatcher: it logs each message's type and control
 * id at info (the body only at debug) and answers HL7 with `AA` and the
 * text {@linkcode ECHO_TEXT}, and anything else with `mllp_unknown`.
 *
 * @example Use it in a receiver
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 *
 * await using receiver = await Receiver.start({ port: 0, dispatcher: EchoDispatcher });
 * ```
 */
export const EchoDispatcher: DispatcherObject = {
  dispatch(message: Message, ctx: DispatchContext): DispatchReply {
    if (!logger.isEnabledFor("info")) {
      // Nothing to log: skip building the log lines' properties.
      return message.kind === "hl7"
        ? Ack.forMessage(message, "AA", { text: ECHO_TEXT })
        : UNKNOWN_REPLY;
    }
    const peer = formatAddress(ctx.peer);
    if (message.kind === "hl7") {
      logger.info(
        "The EchoDispatcher simply logs and discards messages. Message type: mllp_hl7 {messageType} control id {controlId} ({size} bytes) from {peer}",
        {
          messageType: message.header.messageType,
          controlId: message.header.controlId,
          size: message.size,
          peer,
        },
      );
      logger.debug("EchoDispatcher message body: {body}", () => ({
        body: message.text,
      }));
      return Ack.forMessage(message, "AA", { text: ECHO_TEXT });
    }
    logger.info(
      "The EchoDispatcher simply logs and discards messages. Message type: mllp_unknown ({size} bytes) from {peer}",
      { size: message.size, peer },
    );
    logger.debug("EchoDispatcher message body: {body}", () => ({
      body: message.text,
    }));
    return UNKNOWN_REPLY;
  },
};
