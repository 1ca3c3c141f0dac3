/**
 * Just enough HL7 v2 to move messages: read the MSH header with the
 * message's own separators, decode text with the charset MSH-18 names, and
 * tell HL7 payloads from unknown ones. This is not a general HL7 parser.
 *
 * @example Read a message
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const message = readMessage(
 *   "MSH|^~\\&|App|Fac|Rcv|RFac|20240101120000||ADT^A01^ADT_A01|MSG001|P|2.5\r",
 * );
 * assertEquals(message.kind, "hl7");
 * if (message.kind === "hl7") {
 *   assertEquals(message.header.controlId, "MSG001");
 *   assertEquals(message.header.triggerEvent, "A01");
 * }
 * ```
 *
 * @module
 */

import { type BatchMessage, isBatch, readBatch } from "./batch_read.ts";
import type { CharsetOptions } from "./charset.ts";
import { isHl7 } from "./header.ts";
import { type Hl7Message, readHl7 } from "./hl7_message.ts";
import { decodeText } from "./text.ts";

export {
  type Hl7Header,
  type Hl7Separators,
  isHl7,
  readHeader,
} from "./header.ts";
export { charsetEncoding, decodeText, encodeText } from "./text.ts";
export { Hl7Message } from "./hl7_message.ts";

/**
 * The kind of a framed payload: HL7 (starts with `MSH`), an HL7 batch
 * (starts with `FHS` or `BHS`, see `@x/mllp/batch`) or anything else.
 *
 * @example Count payloads by kind
 * ```ts
 * import { type MessageKind, readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const counts: Record<MessageKind, number> = { hl7: 0, batch: 0, unknown: 0 };
 * for (const payload of ["MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r", "PING"]) {
 *   counts[readMessage(payload).kind]++;
 * }
 * assertEquals(counts, { hl7: 1, batch: 0, unknown: 1 });
 * ```
 */
export type MessageKind = "hl7" | "batch" | "unknown";

const utf8Encoder = new TextEncoder();

/**
 * A payload that is not HL7 (it does not start with `MSH`). Its text is
 * decoded as UTF-8.
 *
 * @example Read a non-HL7 payload
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const message = readMessage("Hip hip hurray");
 * assertEquals(message.kind, "unknown");
 * assertEquals(message.text, "Hip hip hurray");
 * ```
 */
export class UnknownMessage {
  /** Always `"unknown"`. */
  readonly kind = "unknown" as const;
  /** Always `undefined`: unknown payloads have no header. */
  readonly header: undefined = undefined;
  /** The payload bytes, exactly as framed. */
  readonly raw: Uint8Array;
  /** The encoding label used to decode {@linkcode UnknownMessage.text}. */
  readonly encoding: string;
  #text: string | undefined;

  /**
   * Constructs an unknown payload.
   *
   * @param raw The payload bytes.
   * @param text The decoded text, when already known.
   */
  constructor(raw: Uint8Array, text?: string) {
    this.raw = raw;
    this.encoding = "utf-8";
    this.#text = text;
  }

  /** The payload decoded as text (decoded on first use). */
  get text(): string {
    return this.#text ??= decodeText(this.raw, this.encoding);
  }

  /** The payload's size in bytes. */
  get size(): number {
    return this.raw.length;
  }
}

/**
 * A framed payload: HL7, a batch, or unknown. Tell them apart by `kind`.
 *
 * @example Narrow a message by kind
 * ```ts
 * import { type Message, readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(message: Message): string {
 *   return message.kind === "hl7"
 *     ? `${message.header.messageType} ${message.header.controlId}`
 *     : `${message.size} bytes of ${message.kind}`;
 * }
 * assertEquals(
 *   describe(readMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r")),
 *   "ADT^A01 7",
 * );
 * assertEquals(describe(readMessage("PING")), "4 bytes of unknown");
 * ```
 */
export type Message = Hl7Message | BatchMessage | UnknownMessage;

/**
 * Options for {@linkcode readMessage}.
 *
 * @example Read a Latin-1 message that leaves MSH-18 empty
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import type { ReadMessageOptions } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new Uint8Array([
 *   ...new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\rPID|1||"),
 *   0xe9, // "é" in ISO 8859-1
 * ]);
 * const options: ReadMessageOptions = { charset: { default: "8859/1" } };
 * assertEquals(readMessage(bytes, options).text.endsWith("é"), true);
 * assertEquals(readMessage(bytes).text.endsWith("\ufffd"), true);
 * ```
 */
export interface ReadMessageOptions {
  /**
   * How to pick and apply the charset: a default for an empty MSH-18, an
   * override, strict or replace decoding, and whether UTF-16/UTF-32 are
   * accepted (see `CharsetOptions` in `@x/mllp/charset`).
   *
   * @default {{}}
   */
  charset?: CharsetOptions;
}

const NO_CHARSET_OPTIONS: CharsetOptions = {};

/**
 * Reads a payload as a message. Text is encoded with the charset its
 * MSH-18 names (UTF-8 by default); bytes are kept exactly, and decoded
 * with that charset when the text is first asked for (at once in strict
 * mode).
 *
 * The charset is `options.charset.override`, else MSH-18, else
 * `options.charset.default`, else UTF-8; an MSH-18 that is not in HL7
 * table 0211 is read as UTF-8 (refused in strict mode). A table entry this
 * runtime cannot decode, and UTF-16/UTF-32 without `allowWide`, are
 * refused: never read as UTF-8.
 *
 * @param payload The payload, without MLLP framing.
 * @param options The charset options.
 * @returns An {@linkcode Hl7Message} when the payload starts with `MSH`,
 *   a `BatchMessage` when it starts with `FHS` or `BHS`, an
 *   {@linkcode UnknownMessage} otherwise.
 * @throws {HeaderError} If the payload starts with `MSH` but its header
 *   cannot be read, or with `FHS`/`BHS` but a batch header cannot be read.
 * @throws {CharsetError} (a `HeaderError`) If its charset cannot
 *   be used, or, in strict mode, its bytes do not decode: `charset`,
 *   `problem`, `offset` and `header` say which, where and what.
 *
 * @example Unknown payloads are not errors
 * ```ts
 * import { readMessage } from "@x/mllp/hl7";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(readMessage(new Uint8Array([1, 2, 3])).kind, "unknown");
 * ```
 *
 * @example Strict decoding
 * ```ts
 * import { CharsetError, readMessage } from "@x/mllp";
 * import { assertEquals, assertThrows } from "@std/assert";
 *
 * const bytes = new Uint8Array([
 *   ...new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\rPID|1||"),
 *   0xff,
 * ]);
 * const replaced = readMessage(bytes);
 * assertEquals(replaced.text.endsWith("\ufffd"), true);
 * const error = assertThrows(
 *   () => readMessage(bytes, { charset: { invalid: "strict" } }),
 *   CharsetError,
 * );
 * assertEquals([error.charset, error.offset], ["UNICODE UTF-8", 43]);
 * ```
 */
export function readMessage(
  payload: Uint8Array | string,
  options: ReadMessageOptions = {},
): Message {
  const charset = options.charset ?? NO_CHARSET_OPTIONS;
  if (isHl7(payload)) return readHl7(payload, charset);
  if (isBatch(payload)) return readBatch(payload);
  return typeof payload === "string"
    ? new UnknownMessage(utf8Encoder.encode(payload), payload)
    : new UnknownMessage(payload);
}
