/**
 * HL7 batches (FHS / BHS / BTS / FTS): reading, building, the receiver's
 * `batches` and `batchAcks` modes, `client.sendBatch`, the store, and
 * python-hl7 as an independent sender and parser.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import fc from "fast-check";
import { Ack, type AckCode } from "../../src/hl7/ack.ts";
import {
  type BatchMessage,
  batchResults,
  buildBatch,
  buildBatchResponse,
  readBatch,
} from "../../src/hl7/batch.ts";
import { Client } from "../../src/client/client.ts";
import type { Dispatcher } from "../../src/dispatch/dispatcher.ts";
import { HeaderError } from "../../src/errors.ts";
import { readMessage } from "../../src/hl7/message.ts";
import { Receiver, type ReceiverOptions } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { bytes, fixtureBytes, replied } from "../_helpers.ts";

/** A small ADT^A04 with the given control id. */
function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A04^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** Reads a payload that must be a batch. */
function batchOf(payload: Uint8Array | string): BatchMessage {
  const message = readMessage(payload);
  if (message.kind !== "batch") {
    throw new Error(`Expected a batch, got kind "${message.kind}"`);
  }
  return message;
}

/** The ACKs a response batch holds, as [MSA-1, MSA-2]. */
function acksIn(response: BatchMessage): [string, string][] {
  return response.messages.map((m) => {
    const ack = Ack.parse(m);
    return [ack.code, ack.messageControlId];
  });
}

/** A receiver on loopback and a client connected to it. */
async function serve(
  dispatcher: Dispatcher,
  options: Partial<ReceiverOptions> = {},
) {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher,
    ...options,
  });
  const client = await Client.connect("127.0.0.1", receiver.port);
  return {
    receiver,
    client,
    async [Symbol.asyncDispose]() {
      await client.close();
      await receiver.stop();
    },
  };
}

/** A dispatcher that notes control ids and accepts. */
function recording(seen: string[], fail?: string): Dispatcher {
  return (message) => {
    if (message.kind !== "hl7") throw new Error(`got ${message.kind}`);
    seen.push(message.header.controlId);
    if (message.header.controlId === fail) throw new Error("No such patient");
    return Ack.forMessage(message, "AA");
  };
}

// ---- reading ----

Deno.test("batch: the fixture reads as a batch file of one batch of two", async () => {
  const batch = batchOf(await fixtureBytes("batch_fhs_bhs.hl7"));
  assertEquals(batch.file?.controlId, "FILE-0001");
  assertEquals(batch.file?.sendingApplication, "BATCHSYS");
  assertEquals(batch.file?.separators.field, "|");
  assertEquals(batch.batches.length, 1);
  const [group] = batch.batches;
  assertEquals(group.header.segment, "BHS");
  assertEquals(group.header.controlId, "BATCH-0001");
  assertEquals(group.header.receivingFacility, "REGION");
  assertEquals(group.messageCount, 2);
  assertEquals(batch.batchCount, 1);
  assertEquals(batch.controlId, "BATCH-0001");
  assertEquals(batch.messages.map((m) => m.header.controlId), [
    "B-0001",
    "B-0002",
  ]);
  assertEquals(
    batch.messages[1].text.split("\r")[1],
    "PID|1||1002^^^SITE1^MR||TWO^PATIENT",
  );
  assertEquals(batch.problems, []);
});

Deno.test("batch: counts that do not add up and missing trailers are noted, not thrown", () => {
  const bhs = "BHS|^~\\&|S|SF|R|RF|2024||||B1\r";
  assertEquals(readBatch(`${bhs}${hl7("1")}${hl7("2")}BTS|3\r`).problems, [
    'BTS-1 of batch "B1" counts 3 messages, the batch holds 2',
  ]);
  assertEquals(readBatch(`${bhs}${hl7("1")}`).problems, [
    'Batch "B1" has no BTS',
  ]);
  const file = readBatch(`FHS|^~\\&\r${bhs}${hl7("1")}BTS|1\rFTS|2\r`);
  assertEquals(file.problems, ["FTS-1 counts 2 batches, the file holds 1"]);
  assertEquals(file.messages.length, 1);
  assertEquals(
    readBatch(`FHS|^~\\&\r${bhs}${hl7("1")}BTS|1\r`).problems,
    ["The batch file has no FTS"],
  );
  // Messages after an FHS without a BHS still count.
  const loose = readBatch(`FHS|^~\\&|||||||||F9\r${hl7("1")}FTS|1\r`);
  assertEquals(loose.messages.length, 1);
  assertEquals(loose.controlId, "F9");
  assertEquals(loose.problems.length, 2);
});

Deno.test("batch: a file of two batches, LF line ends", () => {
  const text = [
    "FHS|^~\\&|S|SF|R|RF|2024||||F1",
    "BHS|^~\\&|S|SF|R|RF|2024||||B1",
    hl7("1").trimEnd().replace("\r", "\n"),
    "BTS|1",
    "BHS|^~\\&|S|SF|R|RF|2024||||B2",
    hl7("2").trimEnd().replace("\r", "\n"),
    hl7("3").trimEnd().replace("\r", "\n"),
    "BTS|2",
    "FTS|2",
  ].join("\n");
  const batch = readBatch(text);
  assertEquals(batch.problems, []);
  assertEquals(batch.batches.map((b) => b.header.controlId), ["B1", "B2"]);
  assertEquals(
    batch.batches.map((b) => b.entries.map((e) => e.controlId)),
    [["1"], ["2", "3"]],
  );
});

Deno.test("batch: a message whose MSH cannot be read is kept, with its control id guessed", () => {
  const batch = readBatch(
    `BHS|^~\\&|S|SF|R|RF|2024||||B1\r${hl7("1")}` +
      "MSH|^~|SND|SFAC|RCV|RFAC|2024||ADT^A04|BAD-1|P|2.5\rPID|1\r" +
      `${hl7("3")}BTS|3\r`,
  );
  assertEquals(batch.entries.length, 3);
  assertEquals(batch.messages.length, 2);
  const bad = batch.entries[1];
  assertEquals(bad.message, undefined);
  assertInstanceOf(bad.error, HeaderError);
  assertEquals(bad.controlId, "BAD-1");
  assertEquals(batch.problems, []);
});

Deno.test("batch: an unreadable BHS makes the payload unreadable", () => {
  assertThrows(() => readMessage("BHS|^~\r"), HeaderError, "in BHS");
});

Deno.test("batch: each message keeps its own MSH-18 charset", async () => {
  const latin1 = await fixtureBytes("adt_a04_latin1.hl7");
  const utf8 = await fixtureBytes("adt_a04_utf8.hl7");
  const built = buildBatch([latin1, utf8], { controlId: "CS" });
  const batch = batchOf(built.raw);
  const [a, b] = batch.messages;
  assertEquals([a.encoding, b.encoding], ["latin1", "utf-8"]);
  assertEquals(a.raw, latin1.at(-1) === 0x0d ? latin1 : bytes(latin1, "\r"));
  assertStringIncludes(a.text, "MÜLLER^JÜRGEN");
  assertStringIncludes(b.text, "山田^太郎");
});

// ---- building: round trips ----

const field = fc.stringMatching(/^[A-Za-z0-9 .-]{0,12}$/);

Deno.test("batch: build then read gives the same fields and messages (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.stringMatching(/^[A-Z0-9-]{1,10}$/), { maxLength: 6 }),
      fc.boolean(),
      field,
      field,
      fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/),
      (ids, file, name, comment, controlId) => {
        const messages = ids.map(hl7);
        const batch = batchOf(
          buildBatch(messages, { file, name, comment, controlId }).raw,
        );
        assertEquals(batch.problems, []);
        assertEquals(batch.file !== undefined, file);
        const header = batch.batches[0].header;
        assertEquals(
          [header.name, header.comment, header.controlId],
          [name, comment, controlId],
        );
        assertEquals(batch.batches[0].messageCount, ids.length);
        assertEquals(batch.messages.map((m) => m.text), messages);
        if (ids.length > 0) {
          assertEquals(header.sendingApplication, "SND");
          assertEquals(header.receivingFacility, "RFAC");
        }
      },
    ),
  );
});

Deno.test("batch: response codes survive build and read (property)", () => {
  const codes: AckCode[] = ["AA", "AE", "AR", "CA", "CE", "CR"];
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom(...codes), { minLength: 1, maxLength: 6 }),
      fc.constantFrom("errors" as const, "all" as const),
      fc.boolean(),
      (picked, acks, file) => {
        const sent = buildBatch(picked.map((_, i) => hl7(`M${i}`)), { file });
        const response = buildBatchResponse(
          sent,
          sent.messages.map((m, i) => Ack.forMessage(m, picked[i])),
          { acks },
        );
        const expected = picked.filter((c) =>
          acks === "all" || (c !== "AA" && c !== "CA")
        );
        assertEquals(response.batches[0].messageCount, expected.length);
        assertEquals(
          response.batches[0].header.referenceControlId,
          sent.controlId,
        );
        assertEquals(response.file?.referenceControlId, sent.file?.controlId);
        const { results, ok } = batchResults(sent, response.raw);
        const outcome = (c: AckCode) =>
          c[1] === "A" ? "accept" : c[1] === "E" ? "error" : "reject";
        assertEquals(results.map((r) => r.outcome), picked.map(outcome));
        assertEquals(ok, picked.every((c) => c[1] === "A"));
      },
    ),
  );
});

Deno.test("batch: results of a reply that is no batch", () => {
  const sent = buildBatch([hl7("1"), hl7("2")], { controlId: "B1" });
  // One ACK for the whole batch applies to every message.
  const single = Ack.parse(
    "MSH|^~\\&|R|RF|S|SF|2024||ACK|X|P|2.5\rMSA|AR|B1|Batch refused\r",
  );
  const all = batchResults(sent, single.toString());
  assertEquals(all.results.map((r) => r.outcome), ["reject", "reject"]);
  assertEquals(all.results[0].ack?.text, "Batch refused");
  // An ACK for something else, or a reply that is not HL7: unknown.
  const other = batchResults(sent, single.toString().replace("B1", "B2"));
  assertEquals(other.results.map((r) => r.outcome), ["unknown", "unknown"]);
  assertStringIncludes(other.problem ?? "", '"B2"');
  assertEquals(
    batchResults(sent, "mllp_unknown").results.map((r) => r.outcome),
    ["unknown", "unknown"],
  );
  // A response batch for another batch proves nothing either.
  const foreign = buildBatchResponse(
    buildBatch([hl7("1")], { controlId: "B9" }),
    "AE",
  );
  assertEquals(
    batchResults(sent, foreign.raw).results.map((r) => r.outcome),
    ["unknown", "unknown"],
  );
});

// ---- the receiver ----

Deno.test("receiver: the fixture batch, each message dispatched in order, exception mode", async () => {
  const seen: string[] = [];
  const kinds: string[] = [];
  await using s = await serve(recording(seen), {
    onDispatched: (outcome) => kinds.push(outcome.kind),
  });
  const payload = await fixtureBytes("batch_fhs_bhs.hl7");
  const reply = replied(await s.client.send(payload)).reply;
  assertEquals(seen, ["B-0001", "B-0002"]);
  assertEquals(kinds, ["batch"]);
  const response = batchOf(reply);
  assertEquals(response.problems, []);
  // FHS and FTS because the input had them; sender and receiver swapped.
  assertEquals(response.file?.referenceControlId, "FILE-0001");
  assertEquals(response.file?.sendingApplication, "HUB");
  const header = response.batches[0].header;
  assertEquals(header.referenceControlId, "BATCH-0001");
  assertEquals(
    [header.sendingApplication, header.sendingFacility],
    ["HUB", "REGION"],
  );
  assertEquals(
    [header.receivingApplication, header.receivingFacility],
    ["BATCHSYS", "SITE1"],
  );
  assert(header.controlId !== "" && header.controlId !== "BATCH-0001");
  assertEquals(response.batches[0].messageCount, 0);
  assertEquals(response.entries, []);
  assertEquals(response.batchCount, 1);
});

Deno.test("receiver: batchAcks all answers every message with its AA", async () => {
  const seen: string[] = [];
  await using s = await serve(recording(seen), { batchAcks: "all" });
  const reply = replied(
    await s.client.send(await fixtureBytes("batch_fhs_bhs.hl7")),
  ).reply;
  const response = batchOf(reply);
  assertEquals(acksIn(response), [["AA", "B-0001"], ["AA", "B-0002"]]);
  assertEquals(response.batches[0].messageCount, 2);
});

Deno.test("receiver: a dispatcher failure on one message gives that message AE, the others accepted", async () => {
  const seen: string[] = [];
  await using s = await serve(recording(seen, "M2"));
  const result = await s.client.sendBatch([hl7("M1"), hl7("M2"), hl7("M3")]);
  assertEquals(seen, ["M1", "M2", "M3"]);
  assertEquals(result.ok, false);
  assertEquals(result.results.map((r) => [r.controlId, r.outcome]), [
    ["M1", "accept"],
    ["M2", "error"],
    ["M3", "accept"],
  ]);
  assertStringIncludes(result.results[1].ack?.text ?? "", "No such patient");
  const response = result.response as BatchMessage;
  assertEquals(acksIn(response), [["AE", "M2"]]);
  assertEquals(response.batches[0].messageCount, 1);
  assertEquals(response.file, undefined);
});

/** Dispatchers that fail every call, by throwing or by rejecting. */
const FAILING: [string, () => never | Promise<never>][] = [
  ["throws", () => {
    throw new Error("No such patient");
  }],
  ["rejects", () => Promise.reject(new Error("No such patient"))],
];

for (const [how, fail] of FAILING) {
  for (const batches of ["each", "whole"] as const) {
    Deno.test(`receiver: a dispatcher that ${how} gets AE for every message of the batch (batches "${batches}")`, async () => {
      const seen: string[] = [];
      await using s = await serve((message) => {
        seen.push(
          message.kind === "batch"
            ? `batch ${message.controlId}`
            : message.header?.controlId ?? message.kind,
        );
        return fail();
      }, { batches });
      const result = await s.client.sendBatch(
        [hl7("F1"), hl7("F2"), hl7("F3")],
        { controlId: "BF" },
      );
      // "each" calls the dispatcher for every message, whatever the ones
      // before it did; "whole" calls it once, for the batch.
      assertEquals(
        seen,
        batches === "each" ? ["F1", "F2", "F3"] : ["batch BF"],
      );
      assertEquals(result.ok, false);
      assertEquals(result.results.map((r) => [r.controlId, r.outcome]), [
        ["F1", "error"],
        ["F2", "error"],
        ["F3", "error"],
      ]);
      for (const { ack } of result.results) {
        assertStringIncludes(ack?.text ?? "", "No such patient");
      }
      const response = result.response as BatchMessage;
      assertEquals(response.batches[0].header.referenceControlId, "BF");
      assertEquals(acksIn(response), [
        ["AE", "F1"],
        ["AE", "F2"],
        ["AE", "F3"],
      ]);
      assertEquals(response.batches[0].messageCount, 3);
    });
  }
}

Deno.test("receiver: a message with an unreadable MSH gets AR and is not dispatched", async () => {
  const seen: string[] = [];
  await using s = await serve(recording(seen));
  const sent = batchOf(
    `BHS|^~\\&|SND|SFAC|RCV|RFAC|2024||||B1\r${hl7("M1")}` +
      "MSH|^~|SND|SFAC|RCV|RFAC|2024||ADT^A04|BAD-1|P|2.5\rPID|1\r" +
      `${hl7("M3")}BTS|3\r`,
  );
  const result = await s.client.sendBatch(sent);
  assertEquals(seen, ["M1", "M3"]);
  assertEquals(result.results.map((r) => [r.controlId, r.outcome]), [
    ["M1", "accept"],
    ["BAD-1", "reject"],
    ["M3", "accept"],
  ]);
  const response = result.response as BatchMessage;
  assertEquals(acksIn(response), [["AR", "BAD-1"]]);
  assertStringIncludes(
    result.results[1].ack?.text ?? "",
    "invalid encoding characters",
  );
});

Deno.test("receiver: an unreadable BHS gets one AR", async () => {
  await using s = await serve(recording([]));
  // The client refuses to send it, so over a bare socket.
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: s.receiver.port,
  });
  await conn.write(
    bytes([0x0b], "BHS|^~\r", hl7("M1"), "BTS|1\r", [0x1c, 0x0d]),
  );
  let received: Uint8Array = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  while (received.at(-1) !== 0x0d || received.at(-2) !== 0x1c) {
    const n = await conn.read(buffer);
    if (n === null) break;
    received = bytes(received, buffer.subarray(0, n));
  }
  const ack = Ack.parse(received.subarray(1, -2));
  assertEquals(ack.code, "AR");
  assertStringIncludes(ack.text, "Cannot read batch");
});

Deno.test("receiver: whole mode hands the batch over once; no reply means all accepted", async () => {
  const got: BatchMessage[] = [];
  await using s = await serve((message) => {
    if (message.kind === "batch") got.push(message);
  }, { batches: "whole", batchAcks: "all" });
  const result = await s.client.sendBatch([hl7("W1"), hl7("W2")], {
    file: true,
    controlId: "BW",
  });
  assertEquals(got.length, 1);
  assertEquals(got[0].controlId, "BW");
  assertEquals(got[0].messages.map((m) => m.header.controlId), ["W1", "W2"]);
  assertEquals(result.ok, true);
  const response = result.response as BatchMessage;
  assertEquals(acksIn(response), [["AA", "W1"], ["AA", "W2"]]);
  assert(response.file !== undefined);
});

Deno.test("receiver: whole mode sends the dispatcher's reply as it is", async () => {
  await using s = await serve((message) => {
    if (message.kind !== "batch") return;
    // One ACK for the whole batch, naming it by BHS-11.
    const [first] = message.messages;
    return Ack.parse(
      Ack.forMessage(first, "AE", { text: "Batch held" }).toString()
        .replace(
          `MSA|AE|${first.header.controlId}`,
          `MSA|AE|${message.controlId}`,
        ),
    );
  }, { batches: "whole" });
  const result = await s.client.sendBatch([hl7("W1"), hl7("W2")]);
  assertEquals(result.results.map((r) => r.outcome), ["error", "error"]);
  assertEquals(result.results[0].ack?.text, "Batch held");
  assertInstanceOf(result.response, Ack);
});

Deno.test("receiver: a bare BHS batch gets a bare response batch", async () => {
  await using s = await serve(recording([]), { batchAcks: "all" });
  const result = await s.client.sendBatch([hl7("B1")], { controlId: "BARE" });
  const response = result.response as BatchMessage;
  assertEquals(response.file, undefined);
  assertEquals(response.batchCount, undefined);
  assertEquals(response.batches[0].header.referenceControlId, "BARE");
  assertEquals(response.text.startsWith("BHS|"), true);
  assertEquals(response.text.endsWith("BTS|1\r"), true);
});

Deno.test("receiver: a batch that outlasts the dispatch timeout gets AE for every message", async () => {
  const seen: string[] = [];
  await using s = await serve((message, ctx) => {
    if (message.kind !== "hl7") return;
    seen.push(message.header.controlId);
    if (message.header.controlId !== "T2") return Ack.forMessage(message, "AA");
    // Waits until given up on.
    return new Promise<undefined>((resolve) =>
      ctx.signal.addEventListener("abort", () => resolve(undefined))
    );
  }, { dispatchTimeout: 200 });
  const result = await s.client.sendBatch([hl7("T1"), hl7("T2"), hl7("T3")]);
  assertEquals(result.results.map((r) => r.outcome), [
    "error",
    "error",
    "error",
  ]);
  assertStringIncludes(result.results[0].ack?.text ?? "", "200 ms");
  // Nothing after the message it was given up on is dispatched.
  assertEquals(seen, ["T1", "T2"]);
});

Deno.test("receiver: the batch options are checked at start", async () => {
  await assertRejects(
    () =>
      Receiver.start({
        port: 0,
        hostname: "127.0.0.1",
        dispatcher: () => {},
        batches: "some" as "each",
      }),
    TypeError,
    'batches must be "each" or "whole"',
  );
  await using store = await KvMessageStore.open(":memory:");
  await assertRejects(
    () =>
      Receiver.start({
        port: 0,
        hostname: "127.0.0.1",
        dispatcher: () => {},
        store,
        batches: "whole",
      }),
    TypeError,
    "cannot be used with a store",
  );
});

Deno.test("receiver: with a store, each message of a batch is stored before the response goes out", async () => {
  await using store = await KvMessageStore.open(":memory:", {
    pollInterval: 10,
  });
  const dispatched: string[] = [];
  await using s = await serve((message) => {
    if (message.kind === "hl7") dispatched.push(message.header.controlId);
  }, { store, batchAcks: "all" });
  const result = await s.client.sendBatch([hl7("S1"), hl7("S2")]);
  assertEquals(result.ok, true);
  assertEquals(
    result.results.map((r) => [r.controlId, r.ack?.text]),
    [["S1", "Stored"], ["S2", "Stored"]],
  );
  // Stored when the response came.
  assert(await store.lookup("SND", "SFAC", "S1"));
  assert(await store.lookup("SND", "SFAC", "S2"));
  // A resend of the batch is answered from the store, not stored again.
  const again = await s.client.sendBatch([hl7("S1"), hl7("S2")]);
  assertEquals(again.ok, true);
  assertEquals((await store.stats()).stored, 2);
  const end = Date.now() + 5_000;
  while (dispatched.length < 2 && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assertEquals(dispatched, ["S1", "S2"]);
});

// ---- python-hl7 ----

const PYTHON = "/usr/bin/python3";
const MLLP_SEND = "/usr/bin/mllp_send";

/** Why python-hl7 cannot be used here, or `undefined` when it can. */
async function pythonMissing(): Promise<string | undefined> {
  try {
    const { success } = await new Deno.Command(PYTHON, {
      args: ["-c", "import hl7, hl7.client"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!success) return `${PYTHON} cannot import hl7`;
    await Deno.stat(MLLP_SEND);
    return undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "python-hl7 is missing";
    throw error;
  }
}

const missing = await pythonMissing();
const IN_CI = Deno.env.get("CI") === "true";
if (missing && !IN_CI) {
  console.log(`Skipping python-hl7 batch tests: ${missing}`);
}

/** Runs a command with a bound on its time. */
async function run(command: string, args: string[]) {
  const output = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

Deno.test({
  name:
    "interop: mllp_send sends the fixture batch as one frame and gets the response batch",
  ignore: missing !== undefined && !IN_CI,
  async fn() {
    const seen: string[] = [];
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: recording(seen, "B-0002"),
    });
    // mllp_send -f reads MLLP frames from the file: one frame, one batch.
    const path = await Deno.makeTempFile({ prefix: "mllp-batch-" });
    try {
      const payload = await fixtureBytes("batch_fhs_bhs.hl7");
      await Deno.writeFile(path, bytes([0x0b], payload, [0x1c, 0x0d]));
      const { code, stdout, stderr } = await run(MLLP_SEND, [
        "--port",
        String(receiver.port),
        "-f",
        path,
        "127.0.0.1",
      ]);
      assertEquals(code, 0, stderr);
      assertEquals(seen, ["B-0001", "B-0002"]);
      const response = batchOf(
        stdout.slice(stdout.indexOf("FHS"), stdout.lastIndexOf("\x1c")),
      );
      assertEquals(acksIn(response), [["AE", "B-0002"]]);
      assertEquals(response.batches[0].header.referenceControlId, "BATCH-0001");
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name:
    "interop: python-hl7 sends our built batch file and parses our response batch",
  ignore: missing !== undefined && !IN_CI,
  async fn() {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: recording([], "P2"),
      batchAcks: "all",
    });
    const batch = buildBatch([hl7("P1"), hl7("P2")], {
      file: true,
      controlId: "PYB",
    });
    const script = `
import hl7, hl7.client, json, sys
payload = sys.stdin.buffer.read()
# python-hl7 reads our batch file
f = hl7.parse_file(payload.decode())
sent = [str(m.segment("MSH")[10]) for b in f for m in b]
with hl7.client.MLLPClient("127.0.0.1", ${receiver.port}) as client:
    reply = client.send_message(payload)
reply = reply.strip(b"\\x0b\\x1c\\r").decode()
r = hl7.parse_file(reply)
b = r[0]
print(json.dumps({
  "sent": sent,
  "sentBatch": str(f[0].header[11]),
  "reference": str(b.header[12]),
  "count": str(b.trailer[1]),
  "acks": [[str(m.segment("MSA")[1]), str(m.segment("MSA")[2])] for m in b],
  "files": str(r.trailer[1]),
}))
`;
    const child = new Deno.Command(PYTHON, {
      args: ["-c", script],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10_000),
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(batch.raw);
    await writer.close();
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 0, stderr);
    const got = JSON.parse(new TextDecoder().decode(output.stdout));
    assertEquals(got, {
      sent: ["P1", "P2"],
      sentBatch: "PYB",
      reference: "PYB",
      count: "2",
      acks: [["AA", "P1"], ["AE", "P2"]],
      files: "1",
    });
  },
});
