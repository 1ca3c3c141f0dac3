/**
 * Real-socket tests for the receiver on loopback: the seed's walkthrough,
 * pipelining, dispatcher failures, replies of every shape, the dispatch
 * context, frame limits and the ways to stop a receiver.
 *
 * Raw `Deno.connect` sockets and a small frame reader written here (not the
 * library's framer) check what goes over the wire.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "@std/assert";
import { delay as untypedDelay } from "@std/async/delay";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import {
  type DispatchContext,
  type DispatcherObject,
  type DispatchOutcome,
  ECHO_TEXT,
  EchoDispatcher,
  UNKNOWN_REPLY,
} from "../../src/dispatch/dispatcher.ts";
import { wrap } from "../../src/wire/envelope.ts";
import { ConnectionRefusedError } from "../../src/errors.ts";
import type { Message } from "../../src/hl7/message.ts";
import { Receiver } from "../../src/receiver/receiver.ts";

const delay: (ms: number) => Promise<void> = untypedDelay;
import { accepted, bytes, fixtureText, replied, text } from "../_helpers.ts";
import { FrameReader } from "../_raw_frames.ts";

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;
const NAK = 0x15;

/** Reply timeout for clients: bounds every send in these tests. */
const REPLY_TIMEOUT = 5_000;

/** Frames a payload: VT, payload, FS, CR. */
function frame(payload: string | Uint8Array): Uint8Array {
  return bytes([VT], payload, [FS, CR]);
}

/** A small HL7 v2.5 ADT^A01 with the given control id. */
function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** The fields of the MSA segment of an ACK payload (index 1 is MSA-1). */
function msa(payload: Uint8Array | string): string[] {
  const hl7Text = typeof payload === "string" ? payload : text(payload);
  const segment = hl7Text.split("\r").find((s) => s.startsWith("MSA|"));
  if (segment === undefined) {
    throw new Error(`No MSA segment in reply: ${JSON.stringify(hl7Text)}`);
  }
  return segment.split("|");
}

/** The MSH-10 of a message. */
function controlIdOf(message: Message): string {
  return message.kind === "hl7" ? message.header.controlId : "";
}

/** Closes a connection that may already be closed. */
function closeQuietly(conn: Deno.Conn) {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Opens a raw loopback connection to a receiver. */
async function rawConnect(port: number): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port });
}

/** A dispatcher that accepts every HL7 message (the seed's DemoDispatcher). */
const DemoDispatcher: DispatcherObject = {
  dispatch(message) {
    if (message.kind === "hl7") return Ack.forMessage(message, "AA");
  },
};

/**
 * The seed's DemoDispatcher as written there: it wraps the ACK in an MLLP
 * envelope itself, as `MLLP.Envelope.wrap_message` does.
 */
const WrappingDemoDispatcher: DispatcherObject = {
  dispatch(message) {
    if (message.kind === "hl7") {
      return wrap(Ack.forMessage(message, "AA").toString());
    }
  },
};

/** The seed's ExpandedDemoDispatcher: ACKs HL7, "Got the BLOB" otherwise. */
const ExpandedDemoDispatcher: DispatcherObject = {
  dispatch(message) {
    if (message.kind === "hl7") {
      return wrap(Ack.forMessage(message, "AA").toString());
    }
    return "Got the BLOB";
  },
};

// --- The seed's walkthrough -------------------------------------------------

Deno.test("seed: EchoDispatcher answers the wikipedia sample with AA, client by IP", async () => {
  const sample = await fixtureText("adt_a01_wikipedia.hl7");
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  assert(receiver.port > 0, "port 0 is replaced by the real port");
  assertEquals(receiver.address, {
    hostname: "127.0.0.1",
    port: receiver.port,
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  const result = accepted(await client.send(sample));
  assertEquals(result.ok, true);
  assertEquals(result.code, "AA");
  assertEquals(result.ack.code, "AA");
  assertEquals(result.ack.text, ECHO_TEXT);
  assertEquals(
    result.ack.text,
    "A real MLLP message dispatcher was not provided",
  );
  assertEquals(result.ack.messageControlId, "01052901");
  // The ACK is built from the message: sender and receiver swapped.
  assertEquals(result.ack.header.sendingApplication, "SuperOE");
  assertEquals(result.ack.header.receivingApplication, "MegaReg");
  assertEquals(result.ack.header.messageType, "ACK^A01^ACK");
});

Deno.test('seed: client by DNS name "localhost"', async () => {
  const sample = await fixtureText("adt_a01_wikipedia.hl7");
  // Listening on "localhost" too keeps both sides on whichever loopback
  // address the name resolves to first.
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "localhost",
    dispatcher: EchoDispatcher,
  });
  await using client = await Client.connect("localhost", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  assertEquals(client.connected, true);
  const result = accepted(await client.send(sample));
  assertEquals(result.ack.code, "AA");
  assertEquals(result.ack.text, ECHO_TEXT);
  assertEquals(result.ack.messageControlId, "01052901");
});

Deno.test("seed: EchoDispatcher answers a non-HL7 payload with mllp_unknown", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  const result = replied(await client.send("Hip hip hurray"));
  assertEquals(result.ok, true);
  assertEquals(result.text, UNKNOWN_REPLY);
  assertEquals(result.text, "mllp_unknown");
});

Deno.test("seed: DemoDispatcher returning an Ack accepts with empty text", async () => {
  const sample = await fixtureText("adt_a01_wikipedia.hl7");
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: DemoDispatcher,
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  const result = accepted(await client.send(sample));
  assertEquals(result.ack.code, "AA");
  assertEquals(result.ack.text, "");
  assertEquals(result.ack.messageControlId, "01052901");
});

Deno.test("seed: DemoDispatcher returning a pre-wrapped ACK is framed exactly once", async () => {
  const sample = await fixtureText("adt_a01_wikipedia.hl7");
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: WrappingDemoDispatcher,
  });

  // On the wire: exactly one VT at the start, exactly one FS CR at the end.
  const conn = await rawConnect(receiver.port);
  try {
    await conn.write(frame(sample));
    const reader = new FrameReader(conn);
    const payload = await reader.frame();
    assertEquals(payload.indexOf(VT), -1, "no second start block inside");
    assertEquals(payload.indexOf(FS), -1, "no second end block inside");
    assertEquals(text(payload.subarray(0, 4)), "MSH|");
    assertEquals(msa(payload).slice(1, 3), ["AA", "01052901"]);
    assertEquals(reader.buffered.length, 0, "nothing after the one frame");
  } finally {
    closeQuietly(conn);
  }

  // And the client reads it as the seed does.
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  const result = accepted(await client.send(sample));
  assertEquals(result.ack.messageControlId, "01052901");
});

Deno.test("seed: a pre-wrapped Uint8Array reply is framed exactly once", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: () => wrap(new TextEncoder().encode("Got the BLOB")),
  });
  const conn = await rawConnect(receiver.port);
  try {
    await conn.write(frame("Hip hip hurray"));
    const reader = new FrameReader(conn);
    const payload = await reader.frame();
    assertEquals(text(payload), "Got the BLOB");
    assertEquals(reader.buffered.length, 0);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test('seed: ExpandedDemoDispatcher answers non-HL7 with "Got the BLOB"', async () => {
  const sample = await fixtureText("adt_a01_wikipedia.hl7");
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "localhost",
    dispatcher: ExpandedDemoDispatcher,
  });
  await using client = await Client.connect("localhost", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  const blob = replied(await client.send("Hip hip hurray"));
  assertEquals(blob.ok, true);
  assertEquals(blob.text, "Got the BLOB");
  assertEquals(blob.reply, new TextEncoder().encode("Got the BLOB"));
  // The same connection still carries HL7.
  const result = accepted(await client.send(sample));
  assertEquals(result.ack.messageControlId, "01052901");
});

// --- Stopping ------------------------------------------------------------

/** Asserts that nothing accepts connections on a loopback port. */
async function assertRefused(port: number) {
  await assertRejects(
    () => Client.connect("127.0.0.1", port, { connectTimeout: REPLY_TIMEOUT }),
    ConnectionRefusedError,
  );
}

Deno.test("stop: Receiver.stop(port) returns true, then false", async () => {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  const port = receiver.port;
  assertEquals(receiver.stopped, false);
  assertEquals(await Receiver.stop(port), true);
  assertEquals(receiver.stopped, true);
  assertEquals(await Receiver.stop(port), false);
  await assertRefused(port);
  // Stopping the instance again is harmless.
  await receiver.stop();
});

Deno.test("stop: Receiver.stop on a port nobody listens on returns false", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  assertEquals(await Receiver.stop(port), false);
});

Deno.test("stop: `await using` stops the receiver at the end of the block", async () => {
  let port: number;
  {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: EchoDispatcher,
    });
    port = receiver.port;
    await using client = await Client.connect("127.0.0.1", port, {
      replyTimeout: REPLY_TIMEOUT,
    });
    replied(await client.send("ping"));
  }
  assertEquals(await Receiver.stop(port), false);
  await assertRefused(port);
});

Deno.test("stop: aborting the signal option stops the receiver", async () => {
  const controller = new AbortController();
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    signal: controller.signal,
  });
  const port = receiver.port;
  {
    await using client = await Client.connect("127.0.0.1", port, {
      replyTimeout: REPLY_TIMEOUT,
    });
    replied(await client.send("ping"));
  }
  controller.abort();
  assertEquals(receiver.stopped, true);
  await receiver.stop(); // the same stop the abort began
  assertEquals(await Receiver.stop(port), false);
  await assertRefused(port);
});

Deno.test("stop: an already aborted signal refuses to start", async () => {
  await assertRejects(
    () =>
      Receiver.start({
        port: 0,
        hostname: "127.0.0.1",
        dispatcher: EchoDispatcher,
        signal: AbortSignal.abort(),
      }),
    Error,
    "already aborted",
  );
});

Deno.test("stop: open connections are closed and the sender sees the end", async () => {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);
    // One round trip so the receiver has surely accepted the connection.
    await conn.write(frame("ping"));
    assertEquals(text(await reader.frame()), UNKNOWN_REPLY);
    assertEquals(receiver.connections, 1);
    await receiver.stop();
    assertEquals(receiver.connections, 0);
    assertEquals(await reader.closed(), "eof");
  } finally {
    closeQuietly(conn);
  }
});

// --- Pipelining ------------------------------------------------------------

/** Sends `messages` framed in one write and reads one frame per message. */
async function pipeline(
  port: number,
  messages: string[],
  separator: string | Uint8Array = "",
): Promise<Uint8Array[]> {
  const parts: (string | Uint8Array)[] = [];
  for (const message of messages) parts.push(frame(message), separator);
  const conn = await rawConnect(port);
  try {
    await conn.write(bytes(...parts));
    const reader = new FrameReader(conn);
    const replies: Uint8Array[] = [];
    for (let i = 0; i < messages.length; i++) {
      replies.push(await reader.frame());
    }
    assertEquals(reader.buffered.length, 0, "no extra bytes after the replies");
    return replies;
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("pipelining: 50 messages in one write get 50 ACKs, in order", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: DemoDispatcher,
  });
  const ids = Array.from({ length: 50 }, (_, i) => `PIPE-${i + 1}`);
  const replies = await pipeline(receiver.port, ids.map(hl7));
  assertEquals(replies.length, 50);
  assertEquals(replies.map((r) => msa(r)[1]), ids.map(() => "AA"));
  assertEquals(replies.map((r) => msa(r)[2]), ids);
});

Deno.test("pipelining: junk (\\r\\n) between frames in one write is skipped", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: DemoDispatcher,
  });
  const ids = Array.from({ length: 50 }, (_, i) => `JUNK-${i + 1}`);
  const replies = await pipeline(receiver.port, ids.map(hl7), "\r\n");
  assertEquals(replies.map((r) => msa(r)[2]), ids);
});

Deno.test("pipelining: order holds when the dispatcher takes random time", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      await delay(Math.random() * 5);
      return Ack.forMessage(message, "AA");
    },
  });
  const ids = Array.from({ length: 30 }, (_, i) => `SLOW-${i + 1}`);
  const replies = await pipeline(receiver.port, ids.map(hl7), "\0\n");
  assertEquals(replies.map((r) => msa(r)[2]), ids);
});

// --- Dispatcher failures -----------------------------------------------------

/**
 * Throws for control ids starting with THROW, rejects for REJECT, and
 * accepts the rest.
 */
const FlakyDispatcher: DispatcherObject = {
  dispatch(message) {
    const id = controlIdOf(message);
    if (id.startsWith("THROW")) throw new Error("boom");
    if (id.startsWith("REJECT")) {
      return Promise.reject(new Error("async boom"));
    }
    return Ack.forMessage(message, "AA");
  },
};

Deno.test("dispatcher errors: throw and reject give AE; the connection and the listener go on", async () => {
  const outcomes: DispatchOutcome[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: FlakyDispatcher,
    onDispatched: (outcome) => outcomes.push(outcome),
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);

    await conn.write(frame(hl7("THROW-1")));
    const thrown = msa(await reader.frame());
    assertEquals(thrown.slice(1, 3), ["AE", "THROW-1"]);
    assertStringIncludes(thrown[3], "boom");

    await conn.write(frame(hl7("REJECT-2")));
    const rejected = msa(await reader.frame());
    assertEquals(rejected.slice(1, 3), ["AE", "REJECT-2"]);
    assertStringIncludes(rejected[3], "async boom");

    // The same connection still works.
    await conn.write(frame(hl7("OK-3")));
    assertEquals(msa(await reader.frame()).slice(1, 3), ["AA", "OK-3"]);
  } finally {
    closeQuietly(conn);
  }

  // The listener still accepts new connections.
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  const result = accepted(await client.send(hl7("OK-4")));
  assertEquals(result.ack.messageControlId, "OK-4");
  const failedThrough = await client.send(hl7("THROW-5"));
  assertEquals(failedThrough.outcome, "error");
  assertEquals(failedThrough.ok, false);

  assertEquals(
    outcomes.map((o) => [o.kind, o.controlId, o.ackCode, o.failed]),
    [
      ["hl7", "THROW-1", "AE", true],
      ["hl7", "REJECT-2", "AE", true],
      ["hl7", "OK-3", "AA", false],
      ["hl7", "OK-4", "AA", false],
      ["hl7", "THROW-5", "AE", true],
    ],
  );
});

Deno.test("dispatcher errors: an unknown payload whose dispatcher throws gets a one-byte NAK", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      if (message.kind === "unknown") throw new Error("no idea");
      return Ack.forMessage(message, "AA");
    },
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);
    await conn.write(frame("Hip hip hurray"));
    assertEquals(await reader.frame(), new Uint8Array([NAK]));
    await conn.write(frame(hl7("AFTER-NAK")));
    assertEquals(msa(await reader.frame()).slice(1, 3), ["AA", "AFTER-NAK"]);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("dispatcher errors: unreadable HL7 gets AR and the dispatcher is not called", async () => {
  const seen: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      seen.push(controlIdOf(message));
      return Ack.forMessage(message, "AA");
    },
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);
    await conn.write(frame("MSH|"));
    assertEquals(msa(await reader.frame())[1], "AR");
    assertEquals(seen, []);
    // A bad separator declaration is unreadable too.
    await conn.write(frame("MSHA^~\\&|X"));
    assertEquals(msa(await reader.frame())[1], "AR");
    assertEquals(seen, []);
    await conn.write(frame(hl7("READABLE")));
    assertEquals(msa(await reader.frame()).slice(1, 3), ["AA", "READABLE"]);
    assertEquals(seen, ["READABLE"]);
  } finally {
    closeQuietly(conn);
  }
});

// --- Reply shapes ------------------------------------------------------------

Deno.test("replies: a dispatcher returning undefined sends nothing for that message", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      if (controlIdOf(message).startsWith("SILENT")) return undefined;
      if (message.kind === "unknown") return null;
      return Ack.forMessage(message, "AA");
    },
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);
    // Silent, silent (null for a non-HL7 payload), then one that answers:
    // the first frame back is the third message's reply.
    await conn.write(bytes(
      frame(hl7("SILENT-1")),
      frame("no reply for me"),
      frame(hl7("LOUD-2")),
    ));
    assertEquals(msa(await reader.frame()).slice(1, 3), ["AA", "LOUD-2"]);
    await conn.write(frame(hl7("SILENT-3")));
    await conn.write(frame(hl7("LOUD-4")));
    assertEquals(msa(await reader.frame()).slice(1, 3), ["AA", "LOUD-4"]);
    assertEquals(reader.buffered.length, 0);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("replies: bytes and strings are sent as the reply payload", async () => {
  const binary = new Uint8Array([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]);
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      switch (message.text) {
        case "bytes":
          return binary;
        case "string":
          return "Grüße";
        default:
          // An HL7 ACK built by hand, returned as a string.
          return `MSH|^~\\&|RCV|RFAC|SND|SFAC|20240101120000||ACK^A01^ACK|R1|P|2.5\rMSA|AA|${
            controlIdOf(message)
          }|by hand\r`;
      }
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: REPLY_TIMEOUT,
  });
  assertEquals(replied(await client.send("bytes")).reply, binary);
  const greeting = replied(await client.send("string"));
  assertEquals(greeting.text, "Grüße");
  assertEquals(greeting.reply, new TextEncoder().encode("Grüße"));
  const result = accepted(await client.send(hl7("STRING-ACK")));
  assertEquals(result.ack.messageControlId, "STRING-ACK");
  assertEquals(result.ack.text, "by hand");
});

Deno.test("replies: a reply that would break the framing gets AE or NAK, never a silent close", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      const id = controlIdOf(message);
      if (id === "FS-IN-ACK") return `${Ack.forMessage(message, "AA")}\x1c`;
      if (id === "VT-IN-BYTES") return new Uint8Array([0x41, VT, 0x42]);
      if (id === "FS-IN-ERROR") throw new Error("bad \x1c\r\x0b input");
      if (id === "NUMBER") return 42 as unknown as string;
      if (message.kind === "unknown") return "bad\x0breply";
      return Ack.forMessage(message, "AA");
    },
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);
    for (const id of ["FS-IN-ACK", "VT-IN-BYTES", "FS-IN-ERROR", "NUMBER"]) {
      await conn.write(frame(hl7(id)));
      const fields = msa(await reader.frame());
      assertEquals(fields.slice(1, 3), ["AE", id]);
      assertStringIncludes(fields[3], "Dispatcher failed");
    }
    await conn.write(frame("blob"));
    assertEquals(await reader.frame(), new Uint8Array([NAK]));
    // And the connection still serves.
    await conn.write(frame(hl7("FINE")));
    assertEquals(msa(await reader.frame()).slice(1, 3), ["AA", "FINE"]);
    assertEquals(reader.buffered.length, 0);
  } finally {
    closeQuietly(conn);
  }
});

// --- Context -----------------------------------------------------------------

Deno.test("context: peer and local addresses and the context option reach the dispatcher", async () => {
  const context = { tenant: "north", answer: 42 };
  const seen: DispatchContext<typeof context>[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    context,
    dispatcher: (message, ctx: DispatchContext<typeof context>) => {
      seen.push(ctx);
      return Ack.forMessage(message, "AA");
    },
  });
  const conn = await rawConnect(receiver.port);
  try {
    const reader = new FrameReader(conn);
    const before = Date.now();
    await conn.write(frame(hl7("CTX-1")));
    assertEquals(msa(await reader.frame())[2], "CTX-1");
    assertEquals(seen.length, 1);
    const [ctx] = seen;
    assertEquals(ctx.peer, {
      hostname: "127.0.0.1",
      port: conn.localAddr.port,
    });
    assertEquals(ctx.local, { hostname: "127.0.0.1", port: receiver.port });
    assertStrictEquals(ctx.context, context);
    assertEquals(ctx.certificateName, undefined);
    assertInstanceOf(ctx.receivedAt, Date);
    assert(ctx.receivedAt.getTime() >= before - 1000);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("context: each connection sees its own peer", async () => {
  const peers: number[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (_message, ctx) => {
      peers.push(ctx.peer.port);
      return "ok";
    },
  });
  const a = await rawConnect(receiver.port);
  const b = await rawConnect(receiver.port);
  try {
    const readerA = new FrameReader(a);
    const readerB = new FrameReader(b);
    await a.write(frame("from a"));
    assertEquals(text(await readerA.frame()), "ok");
    await b.write(frame("from b"));
    assertEquals(text(await readerB.frame()), "ok");
    assertEquals(peers, [a.localAddr.port, b.localAddr.port]);
  } finally {
    closeQuietly(a);
    closeQuietly(b);
  }
});

// --- Frame size limit ----------------------------------------------------------

Deno.test("maxFrameBytes: an oversized frame closes that connection only", async () => {
  const limit = 1024;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    maxFrameBytes: limit,
  });
  const good = await rawConnect(receiver.port);
  const bad = await rawConnect(receiver.port);
  try {
    const goodReader = new FrameReader(good);
    const badReader = new FrameReader(bad);
    await good.write(frame("before"));
    assertEquals(text(await goodReader.frame()), UNKNOWN_REPLY);

    // A frame of exactly the limit is fine.
    await bad.write(frame("x".repeat(limit)));
    assertEquals(text(await badReader.frame()), UNKNOWN_REPLY);
    // One that grows past it (no end block needed) ends the connection.
    await bad.write(bytes([VT], "y".repeat(limit * 4)));
    const how = await badReader.closed();
    assert(how === "eof" || how === "reset", `closed (${how})`);

    // The other connection keeps working, and new ones are accepted.
    await good.write(frame(hl7("STILL-HERE")));
    assertEquals(msa(await goodReader.frame()).slice(1, 3), [
      "AA",
      "STILL-HERE",
    ]);
    await using client = await Client.connect("127.0.0.1", receiver.port, {
      replyTimeout: REPLY_TIMEOUT,
    });
    assertEquals(replied(await client.send("after")).text, UNKNOWN_REPLY);
  } finally {
    closeQuietly(good);
    closeQuietly(bad);
  }
});

Deno.test("maxFrameBytes: invalid limits are refused", async () => {
  for (const maxFrameBytes of [0, -1, Number.NaN, Infinity]) {
    await assertRejects(
      () =>
        Receiver.start({
          port: 0,
          hostname: "127.0.0.1",
          dispatcher: EchoDispatcher,
          maxFrameBytes,
        }),
      RangeError,
    );
  }
});
