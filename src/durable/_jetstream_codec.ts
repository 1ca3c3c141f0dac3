/**
 * How `JetStreamMessageStore` lays a message out in JetStream: the subject
 * it is published to (one per sender and control id, so that the subject
 * itself is the duplicate key), its `Nats-Msg-Id`, and the headers that
 * carry its ACK and where it came from. The bytes of the message are the
 * payload, exactly as received. No NATS import: plain strings.
 *
 * Subjects, under the store's prefix:
 *
 * - `<prefix>.<MSH-3>.<MSH-4>.<MSH-10>`: a message as stored. With a
 *   non-empty MSH-10 it is published with
 *   `Nats-Expected-Last-Subject-Sequence: 0`, so the stream takes it only
 *   while the subject is empty: a resend is refused for as long as the
 *   first copy is kept. An empty MSH-10 is the token `_` (never a
 *   duplicate; no expectation).
 * - `<prefix>.<MSH-3>.<MSH-4>.<MSH-10>.r`: a copy put back by `requeue`.
 * - `<parked prefix>.<id>`: a parked copy, with the reason.
 *
 * Each of MSH-3, MSH-4 and MSH-10 becomes one token: letters, digits and
 * `-` as they are, every other UTF-8 byte as `_` and two hex digits, so
 * that tokens never hold `.`, `*`, `>` or spaces and read back exactly. A
 * token longer than 60 characters (MSH-3, MSH-4) or 120 (MSH-10) is
 * replaced by `_h` and 40 hex digits of the field's SHA-256.
 *
 * @module
 */

import type { Address } from "../net/address.ts";

/** The longest MSH-3 or MSH-4 token before it is hashed. */
const MAX_SENDER_TOKEN = 60;
/** The longest MSH-10 token before it is hashed. */
const MAX_CONTROL_TOKEN = 120;

/** Header names the store sets (NATS headers are case-insensitive). */
export const HEADER = {
  /** The ACK the message got, base64. */
  ack: "Mllp-Ack",
  /** When it was received, ms since the epoch. */
  received: "Mllp-Received",
  /** The sender's address: `hostname port`. */
  peer: "Mllp-Peer",
  /** The receiver's address: `hostname port`. */
  local: "Mllp-Local",
  /** The sender's certificate name, URI-encoded. */
  certificate: "Mllp-Certificate",
  /** `[MSH-3, MSH-4, MSH-10, MSH-9]` as JSON, URI-encoded. */
  msh: "Mllp-Msh",
  /** On a requeued or parked copy: the id of the message (its first seq). */
  id: "Mllp-Id",
  /** On a parked copy: why, URI-encoded. */
  reason: "Mllp-Reason",
  /** On a parked copy: how many deliveries it had. */
  attempts: "Mllp-Attempts",
  /** On a parked copy: when it was parked, ms since the epoch. */
  parkedAt: "Mllp-Parked-At",
  /** On a parked copy: the subject of the copy that was parked. */
  subject: "Mllp-Subject",
  /** On a parked copy: the stream sequence of the copy that was parked. */
  seq: "Mllp-Seq",
} as const;

/** One subject token for a field; see the module documentation. */
export function token(field: string): string {
  if (field === "") return "_";
  let out = "";
  for (const byte of new TextEncoder().encode(field)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9-]/.test(c)
      ? c
      : `_${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** The field a token was made from (see {@linkcode token}). */
export function untoken(text: string): string {
  if (text === "_") return "";
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "_") {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(text.charCodeAt(i));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/**
 * One field's subject token, or `_h` and 40 hex digits of its SHA-256 when
 * the token would be longer than `max` (so that subjects and consumer
 * names stay short).
 */
export async function fieldToken(field: string, max: number): Promise<string> {
  const plain = token(field);
  return plain.length <= max
    ? plain
    : `_h${(await sha256Hex(field)).slice(0, 40)}`;
}

/** The tokens of a sender: `<MSH-3>.<MSH-4>`. */
export async function senderTokens(
  application: string,
  facility: string,
): Promise<[string, string]> {
  return [
    await fieldToken(application, MAX_SENDER_TOKEN),
    await fieldToken(facility, MAX_SENDER_TOKEN),
  ];
}

/**
 * The subject of a stored message: `<prefix>.<MSH-3>.<MSH-4>.<MSH-10>`.
 */
export async function storedSubject(
  prefix: string,
  application: string,
  facility: string,
  controlId: string,
): Promise<string> {
  const [app, fac] = await senderTokens(application, facility);
  return `${prefix}.${app}.${fac}.${await fieldToken(
    controlId,
    MAX_CONTROL_TOKEN,
  )}`;
}

/**
 * The `Nats-Msg-Id` of a message: `MSH-3|MSH-4|MSH-10` when that is
 * printable ASCII of at most 512 characters, else `sha256:<hex>` of the
 * three; `undefined` for an empty MSH-10 (never a duplicate).
 */
export async function messageId(
  application: string,
  facility: string,
  controlId: string,
): Promise<string | undefined> {
  if (controlId === "") return undefined;
  const id = `${application}|${facility}|${controlId}`;
  if (id.length <= 512 && /^[\x20-\x7e]*$/.test(id)) return id;
  return `sha256:${await sha256Hex(
    JSON.stringify([application, facility, controlId]),
  )}`;
}

/** An address as a header value: `hostname port`. */
export function formatPeer(address: Address): string {
  return `${address.hostname} ${address.port}`;
}

/** An address read back from {@linkcode formatPeer}'s text. */
export function parsePeer(text: string | undefined): Address {
  if (!text) return { hostname: "", port: 0 };
  const space = text.lastIndexOf(" ");
  return {
    hostname: text.slice(0, space),
    port: Number(text.slice(space + 1)),
  };
}

/** Bytes as base64. */
export function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** Base64 as bytes. */
export function fromBase64(text: string): Uint8Array {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/**
 * The subject of a requeued copy: the stored subject with a last token
 * `r` (so that it is not the stored subject, which keeps the duplicate
 * key, and still matches the sender's consumer).
 */
export function requeueSubject(stored: string): string {
  return stored.endsWith(".r") ? stored : `${stored}.r`;
}
