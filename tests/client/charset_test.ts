/**
 * The client's `charset` option on loopback, against the library's own
 * receiver: text is encoded in the charset it chooses (UTF-16 only with
 * `allowWide`, a default for an empty MSH-18), bytes are checked with it,
 * and replies (first ACKs and enhanced-mode application ACKs) are read
 * with it. The options are checked as a receiver's are.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { CharsetError, type CharsetOptions } from "../../src/hl7/charset.ts";
import type { Message } from "../../src/hl7/message.ts";
import type { DispatchReply } from "../../src/dispatch/dispatcher.ts";
import { Client } from "../../src/client/client.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { bytes } from "../_helpers.ts";

/** Bounds every wait in these tests. */
const TIMEOUT = 5_000;
const CLIENT_OPTIONS = { replyTimeout: TIMEOUT, connectTimeout: TIMEOUT };

/**
 * An ADT^A01 whose MSH-18 is `charset` ("" for none), naming `name`;
 * `modes` is MSH-15 and MSH-16.
 */
function adt(controlId: string, charset: string, name: string, modes = "|") {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01|${controlId}|P|2.5|||${modes}|DEU|${charset}\rPID|1||${controlId}||${name}\r`;
}

/** A receiver that records what it dispatches and answers with `reply`. */
async function recordingReceiver(
  charset: CharsetOptions | undefined,
  reply: (message: Message) => DispatchReply = (m) => Ack.forMessage(m, "AA"),
): Promise<{ receiver: Receiver; seen: Message[] }> {
  const seen: Message[] = [];
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    charset,
    dispatcher: (message) => {
      seen.push(message);
      return reply(message);
    },
  });
  return { receiver, seen };
}

Deno.test("charset: with allowWide, text whose MSH-18 names UTF-16 goes out in UTF-16 and its ACK is read", async () => {
  const { receiver, seen } = await recordingReceiver(
    { allowWide: true },
    (m) => Ack.forMessage(m, "AE", { text: "Unbekannt: 王芳" }),
  );
  await using _receiver = receiver;
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    ...CLIENT_OPTIONS,
    charset: { allowWide: true },
  });
  const text = adt("W-1", "UNICODE UTF-16", "王^芳");
  const result = await client.send(text);
  assertEquals(result.outcome, "error");
  if (result.outcome !== "error") return;
  assertEquals(
    [result.ack.code, result.ack.messageControlId, result.ack.text],
    ["AE", "W-1", "Unbekannt: 王芳"],
  );
  assertEquals(seen.length, 1);
  assertEquals(seen[0].encoding, "utf-16le");
  assertEquals(seen[0].text, text);
  // UTF-16 LE on the wire: "M", 0, "S", 0.
  assertEquals([...seen[0].raw.subarray(0, 4)], [0x4d, 0, 0x53, 0]);
});

Deno.test("charset: without allowWide, text whose MSH-18 names UTF-16 is refused before it is sent, naming the option", async () => {
  const { receiver, seen } = await recordingReceiver({ allowWide: true });
  await using _receiver = receiver;
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  const error = await assertRejects(
    () => client.send(adt("W-2", "UNICODE UTF-16", "王^芳")),
    CharsetError,
  );
  assertEquals([error.problem, error.charset], [
    "wide_refused",
    "UNICODE UTF-16",
  ]);
  assertEquals(error.header?.controlId, "W-2");
  assertStringIncludes(error.message, "Cannot send: ");
  assertStringIncludes(error.message, "charset.allowWide");
  // Nothing was sent, and the connection goes on.
  assertEquals((await client.send(adt("W-3", "", "DOE"))).outcome, "accept");
  assertEquals(seen.map((m) => m.header?.controlId), ["W-3"]);
});

Deno.test("charset: a default encodes text whose MSH-18 is empty, and the reply is read with it", async () => {
  const { receiver, seen } = await recordingReceiver(
    { default: "8859/1" },
    (m) => Ack.forMessage(m, "AE", { text: "Müller unbekannt" }),
  );
  await using _receiver = receiver;
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    ...CLIENT_OPTIONS,
    charset: { default: "8859/1" },
  });
  const result = await client.send(adt("L-1", "", "Müller"));
  assertEquals(result.outcome, "error");
  if (result.outcome !== "error") return;
  assertEquals(result.ack.text, "Müller unbekannt");
  assertEquals(seen[0].encoding, "latin1");
  assertStringIncludes(seen[0].text, "Müller");
  // "ü" is one byte, 0xfc, in ISO 8859-1.
  assert(seen[0].raw.includes(0xfc));
  assert(!seen[0].raw.includes(0xc3));

  // sendBatch reads its messages with the same options.
  const batch = await client.sendBatch([adt("L-2", "", "Müller")]);
  assertEquals(batch.results.map((r) => r.outcome), ["error"]);
  const batched = seen.find((m) => m.header?.controlId === "L-2");
  if (!batched) throw new Error("the batch's message was not dispatched");
  assert(batched.raw.includes(0xfc));
  assert(!batched.raw.includes(0xc3));
});

Deno.test("charset: strict decoding refuses bytes that do not decode, before they are sent", async () => {
  const { receiver, seen } = await recordingReceiver(undefined);
  await using _receiver = receiver;
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    ...CLIENT_OPTIONS,
    charset: { invalid: "strict" },
  });
  const payload = bytes(adt("S-1", "", "M"), [0xff], "\r");
  const error = await assertRejects(() => client.send(payload), CharsetError);
  assertEquals([error.problem, error.header?.controlId], [
    "invalid_bytes",
    "S-1",
  ]);
  assertEquals(seen.length, 0);
});

Deno.test("charset: enhanced mode in UTF-16, the application ACK is read with the client's options", async () => {
  const { receiver, seen } = await recordingReceiver(
    { allowWide: true },
    (m) => Ack.forMessage(m, "AE", { text: "王芳 unbekannt" }),
  );
  await using _receiver = receiver;
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    ...CLIENT_OPTIONS,
    charset: { allowWide: true },
  });
  const closed: unknown[] = [];
  client.addEventListener("closed", (event) => closed.push(event.detail));
  const result = await client.send(
    adt("E-1", "UNICODE UTF-16", "王^芳", "AL|AL"),
  );
  assertEquals(result.outcome === "accept" && result.code, "CA");
  if (result.outcome !== "accept") return;
  const applicationAck = await result.applicationAck;
  assertEquals(
    [applicationAck?.code, applicationAck?.text],
    ["AE", "王芳 unbekannt"],
  );
  assertEquals(seen.map((m) => m.encoding), ["utf-16le"]);
  // The application ACK was not taken for an unsolicited frame.
  assertEquals(closed, []);
  assertEquals(client.isConnected, true);
});

Deno.test("charset: the options are checked as a receiver's are", () => {
  const cases: [CharsetOptions, string][] = [
    [{ default: "LATIN-7" }, `"LATIN-7" is not a charset of HL7 table 0211`],
    [{ override: "CNS 11643-1992" }, "is not supported by this runtime"],
    [{ override: "UNICODE UTF-16" }, "allowWide"],
    [{ default: "UNICODE UTF-32" }, "allowWide"],
    [
      { invalid: "lenient" as "strict" },
      `charset.invalid must be "replace" or "strict"`,
    ],
  ];
  for (const [charset, message] of cases) {
    const error = assertThrows(
      () => new Client("127.0.0.1", 1, { charset }),
      TypeError,
    );
    assertStringIncludes(error.message, "Cannot create client: ");
    assertStringIncludes(error.message, message);
  }
});
