/**
 * The store stage: each HL7 message is stored, with the `AA` it gets,
 * before that `AA` is returned; the application's dispatcher runs later,
 * from the store's consumer (`startStoredDispatch`), so a slow or failing
 * downstream never holds up acknowledging. A resend (same MSH-3, MSH-4 and
 * MSH-10) gets the ACK stored the first time and is not stored again; a
 * store that fails gets `AE`, never `AA`. It sets `exchange.stored` either
 * way. Payloads that are not HL7 go on to the dispatcher at once, unstored.
 *
 * It never calls `next` for an HL7 message: put it innermost.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Ack } from "../../hl7/ack.ts";
import { formatAddress } from "../../net/address.ts";
import { plain, reasonOf } from "../_util.ts";
import {
  type MessageStore,
  STORED_TEXT,
  type StorePutResult,
} from "../message_store.ts";
import type { Stage } from "../stage.ts";

const logger = getLogger(["mllp", "store"]);

/**
 * The store stage.
 *
 * @param store Where messages are kept.
 * @returns The stage.
 */
export function storeStage<C>(store: MessageStore): Stage<C> {
  return {
    name: "store",
    async handle(exchange, next) {
      const { message, ctx } = exchange;
      if (message.kind !== "hl7") return await next(exchange);
      const ack = Ack.forMessage(message, "AA", { text: STORED_TEXT });
      let result: StorePutResult;
      try {
        result = await store.put({
          message,
          ack: ack.toBytes(),
          peer: ctx.peer,
          local: ctx.local,
          certificateName: ctx.certificateName,
          receivedAt: ctx.receivedAt,
        });
      } catch (error) {
        exchange.stored = false;
        const reason = reasonOf(error);
        logger.error(
          "Cannot store message {controlId} from {peer}: {reason}; answering with an error, not AA",
          {
            controlId: message.header.controlId,
            peer: formatAddress(ctx.peer),
            reason,
          },
        );
        return Ack.forMessage(message, "AE", {
          text: plain(`Cannot store message: ${reason}`),
        });
      }
      exchange.stored = true;
      if (!result.duplicate) return ack;
      logger.info(
        "Message {controlId} from {peer} is a resend of stored message {id}; replying its ACK again",
        {
          controlId: message.header.controlId,
          peer: formatAddress(ctx.peer),
          id: result.id,
        },
      );
      return sameAck(result.ack);
    },
  };
}

/**
 * The stored ACK as an {@linkcode Ack} when it reads back to the same
 * bytes (so the receiver's events carry its code), else the bytes.
 */
function sameAck(bytes: Uint8Array): Ack | Uint8Array {
  try {
    const ack = Ack.parse(bytes);
    const again = ack.toBytes();
    if (
      again.length === bytes.length && again.every((b, i) => b === bytes[i])
    ) return ack;
  } catch {
    // Not readable as an ACK: send the bytes as they are.
  }
  return bytes;
}
