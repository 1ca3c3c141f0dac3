/**
 * Charset-aware replies for the dispatch stream: the `AR` for a message
 * whose charset cannot be used, and the encoding of a reply that copies
 * the message's MSH-18.
 *
 * @module
 */

import { Ack } from "./ack.ts";
import type { CharsetError } from "./charset.ts";
import {
  charsetEncoding,
  encodeText,
  Hl7Message,
  type Message,
} from "./message.ts";

/**
 * The `AR` for a message refused for its charset: MSA-2 its control id
 * (when its header could be read), MSA-3 the reason. For bytes that do not
 * decode it is in the message's charset, like any ACK; when the charset
 * itself is refused (unsupported, unknown, UTF-16/32 not allowed) it is in
 * ASCII with MSH-18 empty, the one charset every peer reads.
 */
export function charsetRefusal(frame: Uint8Array, error: CharsetError): Ack {
  if (!error.header) return Ack.forMessage(frame, "AR");
  const header = error.encoding
    ? error.header
    : { ...error.header, characterSet: "" };
  // The header is already read: the text is not needed.
  const message = new Hl7Message(frame, header, "", error.encoding ?? "ascii");
  return Ack.forMessage(message, "AR", { text: error.message });
}

/** The bytes of a {@linkcode charsetRefusal}. */
export function refusalBytes(ack: Ack, error: CharsetError): Uint8Array {
  return encodeText(
    ack.toString(),
    error.header ? error.encoding ?? "ascii" : ack.encoding,
  );
}

/**
 * The encoding of a reply: the message's own when the reply names the
 * same charset as the message's MSH-18 (it copied it, as
 * `Ack.forMessage` does), so that a default, an override or a UTF-16
 * byte order the receiver applied to the message applies to its reply
 * too; the reply's own otherwise.
 */
export function replyEncoding(encoding: string, message: Message): string {
  if (message.kind !== "hl7" || encoding === message.encoding) return encoding;
  const named = charsetEncoding(message.header.characterSet) ?? "utf-8";
  return encoding === named ? message.encoding : encoding;
}
