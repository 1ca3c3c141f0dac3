/**
 * What both outboxes (`KvOutbox`, `JetStreamOutbox`) do alike: check a
 * payload before it is queued, and turn a send's result into the fields
 * of its record.
 *
 * @module
 */

import type { SendResult } from "../client/client.ts";
import { type Message, readMessage } from "../hl7/message.ts";
import { unwrap } from "../wire/envelope.ts";
import { END_BLOCK, START_BLOCK } from "../wire/framer.ts";
import { isNak } from "../wire/release2.ts";
import type { OutboxRecord } from "./kv_outbox_types.ts";

/**
 * Reads and checks a payload as the client would send it.
 *
 * @throws {TypeError} If it holds a VT or FS byte, which would break the
 *   MLLP framing.
 */
export function prepare(payload: string | Uint8Array): Message {
  const message = readMessage(unwrap(payload));
  for (
    const [byte, name] of [[START_BLOCK, "VT"], [END_BLOCK, "FS"]] as const
  ) {
    const at = message.raw.indexOf(byte);
    if (at !== -1) {
      throw new TypeError(
        `Cannot queue message: it contains a ${name} byte at offset ${at}, which would break the MLLP framing`,
      );
    }
  }
  return message;
}

/** The fields of a record that a result fills in. */
export function describe(result: SendResult): Partial<OutboxRecord> {
  switch (result.outcome) {
    case "accept":
    case "error":
    case "reject":
      return {
        outcome: result.outcome,
        ackCode: result.code,
        ackText: result.ack.text,
        reply: result.ack.toString(),
        reason: result.ok ? undefined : `${result.code}: ${result.ack.text}`,
      };
    case "mismatch":
      return {
        outcome: result.outcome,
        ackCode: result.code,
        reply: result.ack.toString(),
        reason:
          `Outcome unknown: the ACK names control id "${result.ack.messageControlId}"`,
      };
    case "not_ack":
      return {
        outcome: result.outcome,
        reply: new TextDecoder().decode(result.reply),
        reason: `Reply is not an ACK: ${result.reason}`,
      };
    case "reply":
      return {
        outcome: result.outcome,
        reply: result.text,
        reason: isNak(result.reply) ? "NAK" : undefined,
      };
    case "silent":
      return {
        outcome: result.outcome,
        reason: result.ok
          ? undefined
          : `No acknowledgment within ${result.waitedMs} ms, which MSH-15/MSH-16 send only after a failure`,
      };
  }
}
