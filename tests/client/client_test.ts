/**
 * Real-socket tests for the client on loopback: ordering of concurrent
 * sends, reply timeouts (a late ACK is never credited), transport errors,
 * unsolicited data, frame limits and closing.
 *
 * Some peers are raw TCP servers written here, so the client is tested
 * against behaviour the library's own receiver never shows.
 *
 * @module
 */

import { FrameReader } from "../_raw_frames.ts";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
} from "@std/assert";
import { delay as untypedDelay } from "@std/async/delay";
import { Ack, type AckMismatch } from "../../src/hl7/ack.ts";
import {
  Client,
  type ClosedDetail,
  type ReconnectingDetail,
} from "../../src/client/client.ts";
import {
  EchoDispatcher,
  UNKNOWN_REPLY,
} from "../../src/dispatch/dispatcher.ts";
import { wrap } from "../../src/wire/envelope.ts";
import {
  ClientError,
  ConnectionClosedError,
  ConnectionRefusedError,
  FrameSizeError,
  HeaderError,
  InvalidReplyError,
  ReplyTimeoutError,
} from "../../src/errors.ts";
import type { Message } from "../../src/hl7/message.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { accepted, bytes, fixtureText, replied, text } from "../_helpers.ts";

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

/** Bounds every wait in these tests that is not a timeout under test. */
const TIMEOUT = 5_000;
/** Options for clients whose sends should never time out in a test. */
const CLIENT_OPTIONS = { replyTimeout: TIMEOUT, connectTimeout: TIMEOUT };

/** Frames a payload: VT, payload, FS, CR. */
function frame(payload: string | Uint8Array): Uint8Array {
  return bytes([VT], payload, [FS, CR]);
}

/** A small HL7 v2.5 ADT^A01 with the given control id. */
function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** An ACK written by hand (not by the library) acknowledging `controlId`. */
function handAck(controlId: string, code = "AA"): string {
  return `MSH|^~\\&|RCV|RFAC|SND|SFAC|20240101120001||ACK^A01^ACK|ACK-${controlId}|P|2.5\rMSA|${code}|${controlId}\r`;
}

/** MSH-10 of an HL7 payload read by hand; `""` for anything else. */
function controlIdOfPayload(payload: Uint8Array): string {
  const msh = text(payload).split("\r")[0];
  return msh.startsWith("MSH|") ? msh.split("|")[9] ?? "" : "";
}

/** The MSH-10 of a message. */
function controlIdOf(message: Message): string {
  return message.kind === "hl7" ? message.header.controlId : "";
}

/** A promise that resolves after `ms` milliseconds. */
const delay: (ms: number) => Promise<void> = untypedDelay;

function sleep(ms: number): Promise<void> {
  return delay(ms);
}

/** Closes a connection that may already be closed. */
function closeQuietly(conn: Deno.Conn) {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** A free loopback port that nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/**
 * Reads MLLP frames from a raw connection, independently of the library's
 * decoder.
 */

/**
 * What a raw test server does with one accepted connection. `index` counts
 * connections from 0.
 */
type Handler = (
  conn: Deno.TcpConn,
  reader: FrameReader,
  index: number,
) => Promise<void>;

/**
 * A raw TCP server on 127.0.0.1:0 that runs `handler` for each connection.
 * Disposing it closes the listener and every connection and waits for the
 * handlers to finish.
 */
class RawServer implements AsyncDisposable {
  readonly listener: Deno.TcpListener;
  readonly conns: Deno.TcpConn[] = [];
  #handlers: Promise<void>[] = [];
  #accepting: Promise<void>;
  #sleepers = new Map<ReturnType<typeof setTimeout>, () => void>();

  constructor(handler: Handler) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.listener = listener;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) {
          const index = this.conns.length;
          this.conns.push(conn);
          this.#handlers.push(
            handler(
              conn,
              new FrameReader(conn, { timeout: 0, errorsEnd: true }),
              index,
            )
              .catch(() => {}) // the client may be gone; that is fine here
              .finally(() => closeQuietly(conn)),
          );
        }
      } catch {
        // Listener closed.
      }
    })();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  /** Sleeps in a way that disposal cuts short. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const id = setTimeout(() => {
        this.#sleepers.delete(id);
        resolve();
      }, ms);
      this.#sleepers.set(id, resolve);
    });
  }

  async [Symbol.asyncDispose]() {
    try {
      this.listener.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
    for (const [id, wake] of this.#sleepers) {
      clearTimeout(id);
      wake();
    }
    this.#sleepers.clear();
    for (const conn of this.conns) closeQuietly(conn);
    await Promise.all(this.#handlers);
  }
}

/** Writes bytes, ignoring a peer that has gone away. */
async function writeQuietly(conn: Deno.Conn, data: Uint8Array) {
  try {
    let written = 0;
    while (written < data.length) {
      written += await conn.write(data.subarray(written));
    }
  } catch {
    // The client closed the connection.
  }
}

// --- Ordering --------------------------------------------------------------

Deno.test("ordering: 100 concurrent sends resolve in order, each with its own ACK", async () => {
  const received: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      received.push(controlIdOf(message));
      // Random small delays so that any reordering would show.
      await sleep(Math.floor(Math.random() * 4));
      return Ack.forMessage(message, "AA");
    },
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  const ids = Array.from({ length: 100 }, (_, i) => `CONC-${i + 1}`);
  const sends = ids.map((id) => client.send(hl7(id)));
  const results = await Promise.all(sends);
  assertEquals(results.length, 100);
  assertEquals(
    results.map((r) => accepted(r).ack.messageControlId),
    ids,
  );
  assertEquals(received, ids, "messages go out in call order");
});

Deno.test("ordering: concurrent sends settle in call order", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      await sleep(Math.floor(Math.random() * 4));
      return message.text.toUpperCase();
    },
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  const settled: number[] = [];
  const sends = Array.from(
    { length: 40 },
    (_, i) =>
      client.send(`blob ${i}`).then((result) => {
        settled.push(i);
        return replied(result).text;
      }),
  );
  const texts = await Promise.all(sends);
  assertEquals(texts, Array.from({ length: 40 }, (_, i) => `BLOB ${i}`));
  assertEquals(settled, Array.from({ length: 40 }, (_, i) => i));
});

// --- Reply timeout -----------------------------------------------------------

Deno.test("reply timeout: a late ACK from the receiver is never credited to the next message", async () => {
  const late = Promise.withResolvers<void>();
  const peers: number[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message, ctx) => {
      peers.push(ctx.peer.port);
      if (controlIdOf(message) === "LATE-1") {
        try {
          await sleep(300); // far beyond the 50 ms the client waits
        } finally {
          late.resolve();
        }
      }
      return Ack.forMessage(message, "AA");
    },
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  const error: ReplyTimeoutError = await assertRejects(
    () => client.send(hl7("LATE-1"), { timeout: 50 }),
    ReplyTimeoutError,
  );
  assertEquals(error.timeout, 50);
  assertEquals(error.reason, "timeout");
  assertEquals(error.context, "receiving");
  assertEquals(client.connected, false, "the connection was closed");

  const next = accepted(await client.send(hl7("NEXT-2")));
  assertEquals(next.ack.messageControlId, "NEXT-2");
  assertEquals(client.connected, true);
  // Wait for the late answer to be produced (and go nowhere), then check
  // the client still gets its own ACKs.
  await late.promise;
  const third = accepted(await client.send(hl7("NEXT-3")));
  assertEquals(third.ack.messageControlId, "NEXT-3");
  assertEquals(peers.length, 3);
  assert(peers[0] !== peers[1], "NEXT-2 went over a new connection");
  assertEquals(peers[1], peers[2]);
});

Deno.test("reply timeout: the client-wide replyTimeout option applies too", async () => {
  const late = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.text === "slow") {
        await sleep(300);
        late.resolve();
      }
      return message.text;
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: 50,
  });
  await assertRejects(() => client.send("slow"), ReplyTimeoutError);
  // A per-send timeout overrides the client's.
  assertEquals(
    replied(await client.send("fast", { timeout: TIMEOUT })).text,
    "fast",
  );
  await late.promise;
});

Deno.test("reply timeout: a short timeout after sends with a long one still fires on time", async () => {
  // The link keeps one reply timer across sends: one set for a long
  // timeout must not delay a shorter one that follows.
  const late = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.text === "slow") {
        await sleep(300);
        late.resolve();
      }
      return message.text;
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: 60_000,
  });
  for (let i = 0; i < 3; i++) {
    assertEquals(replied(await client.send("fast")).text, "fast");
  }
  // The reply comes after 300 ms: were the timer still set for 60 s, the
  // send would get it instead of timing out.
  const error: ReplyTimeoutError = await assertRejects(
    () => client.send("slow", { timeout: 50 }),
    ReplyTimeoutError,
  );
  assertEquals(error.timeout, 50);
  await late.promise;
  // The next send, on a new connection, gets its reply.
  assertEquals(replied(await client.send("fast")).text, "fast");
});

Deno.test("reply timeout: a raw server's late ACK on the same socket is never returned", async () => {
  const lateWritten = Promise.withResolvers<void>();
  const seen: string[][] = [];
  await using server = new RawServer(async (conn, reader, index) => {
    seen[index] = [];
    while (true) {
      const payload = await reader.next();
      if (payload === null) return;
      const id = controlIdOfPayload(payload);
      seen[index].push(id);
      if (id === "LATE-1") {
        // Answer late, on the same socket, then keep answering.
        await server.sleep(300);
        await writeQuietly(conn, frame(handAck(id)));
        lateWritten.resolve();
        continue;
      }
      await writeQuietly(conn, frame(handAck(id)));
    }
  });
  await using client = await Client.connect(
    "127.0.0.1",
    server.port,
    CLIENT_OPTIONS,
  );
  await assertRejects(
    () => client.send(hl7("LATE-1"), { timeout: 50 }),
    ReplyTimeoutError,
  );
  assertEquals(client.connected, false);

  const second = accepted(await client.send(hl7("NEXT-2")));
  assertEquals(second.ack.messageControlId, "NEXT-2");
  await lateWritten.promise; // the stale ACK is out on the old socket now
  for (const id of ["NEXT-3", "NEXT-4"]) {
    const result = accepted(await client.send(hl7(id)));
    assertEquals(result.ack.messageControlId, id);
  }
  assertEquals(server.conns.length, 2, "the client reconnected once");
  assertEquals(seen, [["LATE-1"], ["NEXT-2", "NEXT-3", "NEXT-4"]]);
});

Deno.test("reply timeout: an ACK for another message is a mismatch, never an accept", async () => {
  // A broken peer that answers every message with the ACK of the previous
  // one (as a late ACK credited to the next message would look), and the
  // seed's substring trap: MSA-2 "A-10" contains "A-1".
  await using server = new RawServer(async (conn, reader) => {
    let previous = "A-10";
    while (true) {
      const payload = await reader.next();
      if (payload === null) return;
      await writeQuietly(conn, frame(handAck(previous)));
      previous = controlIdOfPayload(payload);
    }
  });
  await using client = await Client.connect(
    "127.0.0.1",
    server.port,
    CLIENT_OPTIONS,
  );
  const result = await client.send(hl7("A-1"));
  assertEquals(result.ok, false);
  assertEquals(result.outcome, "mismatch");
  const mismatch = result as AckMismatch;
  assertEquals(mismatch.expected, "A-1");
  assertEquals(mismatch.ack.messageControlId, "A-10");
  assertEquals(client.connected, false, "an untrusted stream is closed");
  // The next send starts over on a new connection.
  const next = await client.send(hl7("A-2"));
  assertEquals(next.outcome, "mismatch");
  assertEquals(server.conns.length, 2);
});

// --- Transport errors ----------------------------------------------------------

Deno.test("errors: ConnectionRefusedError for a closed port", async () => {
  const port = closedPort();
  const error: ConnectionRefusedError = await assertRejects(
    () => Client.connect("127.0.0.1", port, CLIENT_OPTIONS),
    ConnectionRefusedError,
  );
  assertInstanceOf(error, ClientError);
  assertEquals(error.reason, "refused");
  assertEquals(error.context, "connecting");
  assertEquals(error.address, `127.0.0.1:${port}`);
});

Deno.test("errors: a send reconnects, and reports a refused connection", async () => {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  assertEquals(replied(await client.send("one")).text, UNKNOWN_REPLY);
  await receiver.stop();
  // The stop closed the connection; the next send finds nobody listening.
  await assertRejects(() => client.send("two"), ClientError);
  await assertRejects(() => client.send("three"), ConnectionRefusedError);
  assertEquals(client.connected, false);
});

Deno.test("errors: ConnectionClosedError when the server closes mid-request", async () => {
  await using server = new RawServer(async (_conn, reader) => {
    await reader.next(); // read the request, then hang up without a reply
  });
  await using client = await Client.connect(
    "127.0.0.1",
    server.port,
    CLIENT_OPTIONS,
  );
  const error: ConnectionClosedError = await assertRejects(
    () => client.send(hl7("HANGUP-1")),
    ConnectionClosedError,
  );
  assertEquals(error.reason, "closed");
  assertEquals(error.context, "receiving");
  assertEquals(client.connected, false);
});

Deno.test("errors: InvalidReplyError when the reply exceeds maxFrameBytes", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => message.text === "big" ? "x".repeat(1000) : "ok",
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    ...CLIENT_OPTIONS,
    maxFrameBytes: 100,
  });
  const error: InvalidReplyError = await assertRejects(
    () => client.send("big"),
    InvalidReplyError,
  );
  assertEquals(error.reason, "invalid_reply");
  assertInstanceOf(error.cause, FrameSizeError);
  assertEquals(client.connected, false);
  // A reply within the limit works on a new connection.
  assertEquals(replied(await client.send("small")).text, "ok");
});

Deno.test("errors: an unsolicited frame closes the connection; the next send reconnects", async () => {
  await using server = new RawServer(async (conn, reader, index) => {
    if (index === 0) {
      // Talk first, before anyone asked.
      await writeQuietly(conn, frame(handAck("NOBODY-ASKED")));
    }
    while (true) {
      const payload = await reader.next();
      if (payload === null) return;
      await writeQuietly(conn, frame(handAck(controlIdOfPayload(payload))));
    }
  });
  // Listen before connecting: the receiver talks as soon as it accepts.
  await using client = new Client("127.0.0.1", server.port, CLIENT_OPTIONS);
  const closed = await new Promise<ClosedDetail>((resolve) =>
    client.addEventListener("closed", (event) => resolve(event.detail), {
      once: true,
    })
  );
  assertEquals(closed.byClient, true);
  assertEquals(
    (closed.error as InvalidReplyError | undefined)?.problem,
    "unsolicited",
  );
  const result = accepted(await client.send(hl7("AFTER-1")));
  assertEquals(result.ack.messageControlId, "AFTER-1");
  assertEquals(client.connected, true);
  assertEquals(server.conns.length, 2);
});

Deno.test("errors: HeaderError for an unreadable MSH, and nothing is sent", async () => {
  const frames: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    // Counts every frame, including unreadable ones the dispatcher never sees.
    onDispatched: (outcome) => frames.push(outcome.kind),
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  await assertRejects(() => client.send("MSH|"), HeaderError);
  await assertRejects(() => client.send(wrap("MSH|")), HeaderError);
  assertEquals(client.connected, true);
  accepted(await client.send(hl7("GOOD-1")));
  assertEquals(frames, ["hl7"], "only the good message reached the receiver");
});

Deno.test("errors: a payload holding VT or FS is a TypeError; nothing is sent and the connection stays", async () => {
  const frames: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    onDispatched: (outcome) => frames.push(outcome.kind),
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  await assertRejects(() => client.send("a\x0bb"), TypeError, "VT");
  await assertRejects(
    () => client.send(new Uint8Array([0x41, FS, 0x42])),
    TypeError,
    "FS",
  );
  await assertRejects(() => client.send(`${hl7("X")}\x1c`), TypeError, "FS");
  assertEquals(client.connected, true);
  assertEquals(replied(await client.send("fine")).text, UNKNOWN_REPLY);
  assertEquals(frames, ["unknown"]);
});

Deno.test("errors: invalid timeouts are RangeErrors", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  await assertRejects(
    () => Client.connect("127.0.0.1", receiver.port, { replyTimeout: 0 }),
    RangeError,
  );
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  await assertRejects(() => client.send("x", { timeout: -1 }), RangeError);
  assertEquals(replied(await client.send("x")).text, UNKNOWN_REPLY);
});

// --- Reconnections ---------------------------------------------------------------

/** The lifecycle events of a client, in order, from now on. */
function lifecycle(client: Client): [string, unknown][] {
  const seen: [string, unknown][] = [];
  for (
    const type of [
      "closed",
      "reconnecting",
      "connected",
      "connectfailed",
    ] as const
  ) {
    client.addEventListener(type, (event) => seen.push([type, event.detail]));
  }
  return seen;
}

/** Resolves on the `count`-th `connected` event from now on. */
function connections(client: Client, count: number): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  let seen = 0;
  const timer = setTimeout(
    () => reject(new Error(`No ${count} connections within ${TIMEOUT} ms`)),
    TIMEOUT,
  );
  client.addEventListener("connected", () => {
    if (++seen !== count) return;
    clearTimeout(timer);
    resolve();
  });
  return promise;
}

Deno.test("reconnections: each one is announced and counted once, at once (delay 0) or after a backoff wait", async () => {
  await using server = new RawServer(async (conn, reader, index) => {
    while (true) {
      const payload = await reader.next();
      if (payload === null) return;
      // The first connection never answers: the send times out.
      if (index === 0) continue;
      await writeQuietly(conn, frame(handAck(controlIdOfPayload(payload))));
      // The third is dropped by the receiver after one reply.
      if (index === 2) return;
    }
  });
  await using client = await Client.connect("127.0.0.1", server.port, {
    ...CLIENT_OPTIONS,
    reconnect: { interval: 20 },
  });
  const seen = lifecycle(client);
  const three = connections(client, 3);
  // A reply timeout: the client closes the connection, reconnects at once.
  await assertRejects(
    () => client.send(hl7("RC-1"), { timeout: 50 }),
    ReplyTimeoutError,
  );
  accepted(await client.send(hl7("RC-2")));
  // reconnect(): the same.
  await client.reconnect();
  // The receiver drops the connection: the client waits 20 ms first.
  accepted(await client.send(hl7("RC-3")));
  await three;

  assertEquals(seen.map(([type]) => type), [
    ...["closed", "reconnecting", "connected"],
    ...["closed", "reconnecting", "connected"],
    ...["closed", "reconnecting", "connected"],
  ]);
  const waits = seen.filter(([type]) => type === "reconnecting").map((
    [, detail],
  ) => {
    const { attempt, delayMs } = detail as ReconnectingDetail;
    return [attempt, delayMs];
  });
  assertEquals(waits, [[1, 0], [1, 0], [1, 20]]);
  const closedBy = seen.filter(([type]) => type === "closed").map((
    [, detail],
  ) => (detail as ClosedDetail).byClient);
  assertEquals(closedBy, [true, true, false]);
  assertEquals(server.conns.length, 4);
});

Deno.test("reconnections: with reconnect false, the one a send asks for after a drop is announced too", async () => {
  await using server = new RawServer(async (conn, reader, index) => {
    while (true) {
      const payload = await reader.next();
      if (payload === null) return;
      await writeQuietly(conn, frame(handAck(controlIdOfPayload(payload))));
      if (index === 0) return; // dropped after one reply
    }
  });
  await using client = await Client.connect("127.0.0.1", server.port, {
    ...CLIENT_OPTIONS,
    reconnect: false,
  });
  const seen = lifecycle(client);
  const dropped = new Promise<void>((resolve) =>
    client.addEventListener("closed", () => resolve(), { once: true })
  );
  accepted(await client.send(hl7("LZ-1")));
  await dropped;
  assertEquals(seen.map(([type]) => type), ["closed"]);
  accepted(await client.send(hl7("LZ-2")));
  assertEquals(seen.map(([type]) => type), [
    "closed",
    "reconnecting",
    "connected",
  ]);
  const { attempt, delayMs } = seen[1][1] as ReconnectingDetail;
  assertEquals([attempt, delayMs], [1, 0]);
});

// --- Payload forms -------------------------------------------------------------

Deno.test("payloads: text, bytes and pre-wrapped payloads are each sent as one frame", async () => {
  const sample = await fixtureText("adt_a01_wikipedia.hl7");
  const payloads: string[] = [];
  await using server = new RawServer(async (conn, reader) => {
    while (true) {
      const payload = await reader.next();
      if (payload === null) return;
      payloads.push(text(payload));
      await writeQuietly(conn, frame(handAck(controlIdOfPayload(payload))));
    }
  });
  await using client = await Client.connect(
    "127.0.0.1",
    server.port,
    CLIENT_OPTIONS,
  );
  const encoded = new TextEncoder().encode(sample);
  for (const payload of [sample, encoded, wrap(sample), wrap(encoded)]) {
    const result = accepted(await client.send(payload));
    assertEquals(result.ack.messageControlId, "01052901");
  }
  assertEquals(payloads, [sample, sample, sample, sample]);
});

// --- Closing -------------------------------------------------------------------

Deno.test("close: idempotent, and a send after close is refused", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  const client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  replied(await client.send("hello"));
  const first = client.close();
  const second = client.close();
  assertStrictEquals(first, second);
  await first;
  await client.close();
  await client[Symbol.asyncDispose]();
  assertEquals(client.connected, false);
  const error: ConnectionClosedError = await assertRejects(
    () => client.send("again"),
    ConnectionClosedError,
  );
  assertEquals(error.context, "sending");
});

Deno.test("close: a send in flight (and one queued) fails with ConnectionClosedError", async () => {
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      arrived.resolve();
      await release.promise;
      return message.text;
    },
  });
  const client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  try {
    const inFlight = client.send("in flight");
    const queued = client.send("queued");
    await arrived.promise; // the first message is written and being handled
    const closing = client.close();
    await assertRejects(() => inFlight, ConnectionClosedError);
    await assertRejects(() => queued, ConnectionClosedError);
    await closing;
    assertEquals(client.connected, false);
  } finally {
    release.resolve();
    await client.close();
  }
});

Deno.test("close: aborting a send after it was written closes the connection", async () => {
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.text === "hold") {
        arrived.resolve();
        await release.promise;
      }
      return message.text;
    },
  });
  await using client = await Client.connect(
    "127.0.0.1",
    receiver.port,
    CLIENT_OPTIONS,
  );
  const controller = new AbortController();
  try {
    const held = client.send("hold", { signal: controller.signal });
    await arrived.promise;
    controller.abort();
    await assertRejects(() => held, ConnectionClosedError);
    assertEquals(client.connected, false);
  } finally {
    release.resolve();
  }
  assertEquals(replied(await client.send("next")).text, "next");
});
