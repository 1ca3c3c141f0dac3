/**
 * A dispatcher's answer as the bytes of a reply: an `Ack` or text encoded
 * in the message's charset (into the stream's byte pool when it is UTF-8),
 * bytes as they are, an answer already wrapped in an MLLP frame unwrapped,
 * and anything that would break the framing refused.
 *
 * @module
 */

import { Ack } from "../hl7/ack.ts";
import { replyEncoding } from "../hl7/charset_reply.ts";
import {
  charsetEncoding,
  encodeText,
  isHl7,
  type Message,
  readHeader,
} from "../hl7/message.ts";
import { framingProblem, type WordViews } from "../wire/_scan.ts";
import { isWrapped, unwrap } from "../wire/envelope.ts";
import type { DispatchReply } from "./types.ts";

/** Where UTF-8 replies are encoded: a pool, or a reused buffer. */
export interface ReplyEncoder {
  /** `text` encoded as UTF-8. */
  encodeUtf8(text: string): Uint8Array;
}

/** A reply's bytes, and the code of the ACK it is, if it is one. */
export interface ReplyBytes {
  /** The payload to frame; `undefined` for no reply. */
  reply?: Uint8Array;
  /** The ACK code, when the answer was an `Ack`. */
  ackCode?: string;
}

/**
 * Turns a dispatcher's answer into the reply payload.
 *
 * @param reply What the dispatcher (or a stage) answered.
 * @param message The message it answers: its charset is the reply's.
 * @param pool Where UTF-8 replies are encoded.
 * @param views The word views kept for checking replies' bytes.
 * @returns The payload and ACK code.
 * @throws {TypeError} If the answer is of the wrong type, or its bytes hold
 * a VT or FS byte.
 */
export function toReply(
  reply: DispatchReply,
  message: Message,
  pool: ReplyEncoder,
  views?: WordViews,
): ReplyBytes {
  if (reply === undefined || reply === null) return {};
  if (reply instanceof Ack) {
    return {
      reply: framable(
        views,
        encodeReply(
          reply.toString(),
          replyEncoding(reply.encoding, message),
          pool,
        ),
      ),
      ackCode: reply.code,
    };
  }
  if (reply instanceof Uint8Array) {
    return { reply: framable(views, isWrapped(reply) ? unwrap(reply) : reply) };
  }
  if (typeof reply === "string") {
    const text = isWrapped(reply) ? unwrap(reply) : reply;
    let encoding = message.encoding;
    if (isHl7(text)) {
      try {
        const named = charsetEncoding(readHeader(text).characterSet);
        if (named !== undefined) encoding = replyEncoding(named, message);
      } catch {
        // Not a readable header: keep the message's charset.
      }
    }
    return { reply: framable(views, encodeReply(text, encoding, pool)) };
  }
  throw new TypeError(
    `Cannot send reply: a dispatcher must return an Ack, string, Uint8Array or nothing, got ${typeof reply}`,
  );
}

/** Encodes a reply's text, into the pool when it is UTF-8. */
function encodeReply(
  text: string,
  encoding: string,
  pool: ReplyEncoder,
): Uint8Array {
  return encoding === "utf-8"
    ? pool.encodeUtf8(text)
    : encodeText(text, encoding);
}

/** Returns a reply payload, or throws if it would break the MLLP framing. */
function framable(
  views: WordViews | undefined,
  reply: Uint8Array,
): Uint8Array {
  const problem = framingProblem(reply, views);
  if (problem) {
    throw new TypeError(
      `Cannot send reply: it contains ${problem}, which would break the MLLP framing`,
    );
  }
  return reply;
}
