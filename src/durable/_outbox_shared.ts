/**
 * What both outboxes (`KvOutbox`, `JetStreamOutbox`) do alike: check a
 * payload before it is queued, start an attempt, send through one client
 * per destination, and turn a send's result into the fields of its
 * record.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  Client,
  type SendErrorDetail,
  type SendResult,
} from "../client/client.ts";
import { type ClientError, ReplyTimeoutError } from "../client/errors.ts";
import { type Message, readMessage } from "../hl7/message.ts";
import { unwrap } from "../wire/envelope.ts";
import { END_BLOCK, START_BLOCK } from "../wire/framer.ts";
import { isNak } from "../wire/release2.ts";
import type { OutboxDestination, OutboxRecord } from "./kv_outbox_types.ts";

const logger = getLogger(["mllp", "outbox"]);

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

/**
 * The record of a message as a send of it starts: in flight, one attempt
 * more. A message found in flight was being sent by a worker that
 * stopped: it is logged and flagged a possible duplicate.
 */
export function startAttempt(
  before: OutboxRecord,
  destination: string,
): OutboxRecord {
  const crashed = before.state === "in_flight";
  if (crashed) {
    logger.warn(
      "Outbox for {destination}: message {seq} ({controlId}) was being sent by a worker that stopped; sending it again with the same control id (possible duplicate)",
      { destination, seq: before.seq, controlId: before.controlId ?? "" },
    );
  }
  return {
    ...before,
    state: "in_flight",
    attempts: before.attempts + 1,
    possibleDuplicate: before.possibleDuplicate || crashed,
    sentAt: Date.now(),
  };
}

/**
 * A worker's client to its destination, opened at the first send (it does
 * not reconnect by itself: the worker decides when to try again), and
 * whether a send that failed was written first.
 */
export class DestinationClient {
  #target: OutboxDestination;
  #client: Client | undefined;
  #lastError: SendErrorDetail | undefined;

  constructor(target: OutboxDestination) {
    this.#target = target;
  }

  /** Sends a payload and waits for its reply. */
  async send(payload: Uint8Array): Promise<SendResult> {
    this.#lastError = undefined;
    return await (this.#client ??= this.#open()).send(payload);
  }

  /**
   * Whether the failed send reached the destination before it failed (a
   * reply timeout, or a connection lost after the write): its outcome is
   * then unknown.
   */
  written(error: ClientError): boolean {
    return error instanceof ReplyTimeoutError ||
      (this.#lastError?.error === error && this.#lastError.written);
  }

  /** Closes the connection, if one is open. */
  async close(): Promise<void> {
    await this.#client?.close();
  }

  #open(): Client {
    const { hostname, port, ...options } = this.#target;
    const client = new Client(hostname, port, { ...options, reconnect: false });
    client.addEventListener("senderror", (event) => {
      this.#lastError = event.detail;
    });
    return client;
  }
}
