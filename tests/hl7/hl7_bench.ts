/**
 * Benchmarks for the per-message HL7 work a receiver and a client do. Run
 * with `deno bench tests/hl7/hl7_bench.ts`.
 *
 * - "header": reading the MSH of a 1 KiB ADT^A01 (the load tool's
 *   message), from bytes as the receiver does and from text as a sender
 *   does, and reading the whole message.
 * - "ack build": the EchoDispatcher's ACK for it, as text and as bytes.
 * - "ack verify": reading an ACK and verifying it against the message, as
 *   the client does for every reply.
 *
 * Each iteration checks what it got, so a broken reader fails the bench
 * instead of timing nothing.
 *
 * @module
 */

import { Ack, verifyAck } from "../../src/hl7/ack.ts";
import { makeAdtMessage } from "../../src/bench/bench.ts";
import { ECHO_TEXT } from "../../src/dispatch/dispatcher.ts";
import {
  type Hl7Message,
  readHeader,
  readMessage,
} from "../../src/hl7/message.ts";

const text = makeAdtMessage(1024);
const bytes = new TextEncoder().encode(text);
const message = readMessage(bytes) as Hl7Message;
const CONTROL_ID = message.header.controlId;
const ackBytes = Ack.forMessage(message, "AA", { text: ECHO_TEXT }).toBytes();
const ackText = new TextDecoder().decode(ackBytes);

function check(actual: string, expected: string) {
  if (actual !== expected) {
    throw new Error(`Expected "${expected}", got "${actual}"`);
  }
}

Deno.bench({
  name: "readHeader, 1 KiB ADT^A01 as bytes",
  group: "header",
  baseline: true,
  fn() {
    check(readHeader(bytes).controlId, CONTROL_ID);
  },
});

Deno.bench({
  name: "readHeader, 1 KiB ADT^A01 as text",
  group: "header",
  fn() {
    check(readHeader(text).controlId, CONTROL_ID);
  },
});

Deno.bench({
  name: "readMessage, 1 KiB ADT^A01 as bytes",
  group: "header",
  fn() {
    check(readMessage(bytes).header!.controlId, CONTROL_ID);
  },
});

Deno.bench({
  name: "Ack.forMessage (the EchoDispatcher's ACK)",
  group: "ack build",
  baseline: true,
  fn() {
    check(
      Ack.forMessage(message, "AA", { text: ECHO_TEXT }).messageControlId,
      CONTROL_ID,
    );
  },
});

Deno.bench({
  name: "Ack.forMessage + toBytes (what the receiver sends)",
  group: "ack build",
  fn() {
    const ack = Ack.forMessage(message, "AA", { text: ECHO_TEXT });
    if (ack.toBytes().length < 100) throw new Error("ACK too short");
  },
});

Deno.bench({
  name: "verifyAck, reply as bytes (what the client does)",
  group: "ack verify",
  baseline: true,
  fn() {
    check(verifyAck(message, ackBytes).outcome, "accept");
  },
});

Deno.bench({
  name: "verifyAck, reply as text",
  group: "ack verify",
  fn() {
    check(verifyAck(message, ackText).outcome, "accept");
  },
});

Deno.bench({
  name: "Ack.parse, reply as bytes",
  group: "ack verify",
  fn() {
    check(Ack.parse(ackBytes).code, "AA");
  },
});
