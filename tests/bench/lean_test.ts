/**
 * Tests of the lean load generator (`runLean`): its counts add up against
 * the raw responder and this library's receiver, a frame end split across
 * reads is one reply, release 2 reads the commit frame and commits the
 * reply, and a silent or closing receiver is counted, not waited for.
 * Small counts, loopback only; no speed is asserted.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertGreater,
  assertLessOrEqual,
  assertRejects,
} from "@std/assert";
import { EchoDispatcher, Receiver } from "../../mod.ts";
import {
  type BenchResult,
  compare,
  runLean,
  startAckResponder,
  startRawResponder,
} from "../../src/bench/bench.ts";

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

function checkCounts(result: BenchResult, connections: number, n: number) {
  assertEquals(result.connections, connections);
  assertEquals(result.sent, connections * n);
  assertEquals([result.ok, result.errors, result.failures], [
    connections * n,
    0,
    {},
  ]);
  assertGreater(result.messagesPerSecond, 0);
  assertGreater(result.latency.p50, 0);
  assertLessOrEqual(result.latency.p50, result.latency.p99);
  assertLessOrEqual(result.latency.p99, result.latency.max);
}

/** A server that handles each connection with `serve`, for odd replies. */
function oddServer(serve: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      tasks.push(serve(conn).catch(() => {}));
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed by its handler.
        }
      }
      await Promise.all(tasks);
    },
  };
}

/** Reads until `frames` frame ends (FS CR) have come; false at the end. */
async function readFrames(conn: Deno.Conn, frames: number, buffer: Uint8Array) {
  let seen = 0;
  let afterFs = false;
  while (seen < frames) {
    const n = await conn.read(buffer);
    if (n === null) return false;
    for (let i = 0; i < n; i++) {
      if ((i === 0 ? afterFs : buffer[i - 1] === FS) && buffer[i] === CR) {
        seen++;
      }
    }
    afterFs = buffer[n - 1] === FS;
  }
  return true;
}

Deno.test("runLean: counts against the raw responder add up", async () => {
  await using raw = startRawResponder();
  const result = await runLean({
    port: raw.port,
    connections: 4,
    messages: 25,
    warmup: 5,
  });
  checkCounts(result, 4, 25);
  assertEquals([result.payloadBytes, result.warmup], [1024, 5]);
});

Deno.test("runLean: counts against this library's receiver add up", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  const result = await runLean({
    port: receiver.port,
    connections: 3,
    messages: 20,
    warmup: 2,
  });
  checkCounts(result, 3, 20);
});

Deno.test("compare: the lean load against raw and self in child processes", async () => {
  const report = await compare({
    targets: ["raw", "self"],
    connections: 2,
    messages: 30,
    warmup: 3,
    rounds: 2,
  });
  assertEquals([report.kind, report.load, report.reference], [
    "receivers",
    "lean",
    "raw",
  ]);
  for (const target of report.targets) {
    assertEquals(target.runs.length, 2);
    for (const run of target.runs) checkCounts(run, 2, 30);
  }
  assertEquals(report.targets[0].ratio, 1);
  assertGreater(report.targets[1].ratio!, 0);
});

Deno.test("runLean: an FS at the end of one read and a CR at the start of the next end one reply", async () => {
  const ack = new TextEncoder().encode("MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5\r");
  let frames = 0;
  await using server = oddServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    while (await readFrames(conn, 1, buffer)) {
      frames++;
      await conn.write(Uint8Array.of(VT, ...ack, FS));
      await new Promise((resolve) => setTimeout(resolve, 5));
      await conn.write(Uint8Array.of(CR));
    }
  });
  const result = await runLean({
    port: server.port,
    messages: 5,
    warmup: 1,
    replyTimeout: 2000,
  });
  checkCounts(result, 1, 5);
  // Every reply waited for its CR: no message was sent early.
  assertEquals(frames, 6);
  assert(result.latency.p50 >= 4, `p50 ${result.latency.p50} ms`);
});

Deno.test("runLean: release 2 reads the commit frame and the reply, and commits the reply", async () => {
  // The minimal responder in release 2 mode ignores the sender's commit
  // frames; this server counts them.
  let commits = 0;
  let messages = 0;
  await using server = oddServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return;
      for (let i = 0; i + 3 < n; i++) {
        if (buffer[i] !== VT) continue;
        if (buffer[i + 1] === 0x06 && buffer[i + 2] === FS) {
          commits++;
        } else {
          messages++;
          await conn.write(
            Uint8Array.of(VT, 0x06, FS, CR, VT, 0x41, FS, CR),
          );
        }
      }
    }
  });
  const result = await runLean({
    port: server.port,
    messages: 10,
    warmup: 2,
    mllpRelease: 2,
    replyTimeout: 2000,
  });
  checkCounts(result, 1, 10);
  assertEquals(messages, 12);
  // The last commit may still be on its way when the run ends.
  for (let i = 0; i < 500 && commits < 12; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assertEquals(commits, 12);
});

Deno.test("runLean: release 2 against the minimal responder", async () => {
  await using responder = startAckResponder({ mode: "release2" });
  const result = await runLean({
    port: responder.port,
    connections: 2,
    messages: 15,
    warmup: 2,
    mllpRelease: 2,
  });
  checkCounts(result, 2, 15);
});

Deno.test("runLean: a silent receiver is a ReplyTimeout, a closing one ConnectionClosed", async () => {
  await using silent = oddServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    while (await conn.read(buffer) !== null) {
      // Never answers.
    }
  });
  const timedOut = await runLean({
    port: silent.port,
    connections: 2,
    messages: 3,
    warmup: 0,
    replyTimeout: 100,
  });
  assertEquals([timedOut.sent, timedOut.ok, timedOut.errors], [6, 0, 6]);
  assertEquals(timedOut.failures, { ReplyTimeout: 6 });

  let answered = 0;
  await using closing = oddServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    // Answers two messages, then closes.
    for (let i = 0; i < 2 && await readFrames(conn, 1, buffer); i++) {
      answered++;
      await conn.write(Uint8Array.of(VT, 0x41, FS, CR));
    }
    conn.close();
  });
  const closed = await runLean({ port: closing.port, messages: 5, warmup: 0 });
  assertEquals(answered, 2);
  assertEquals([closed.sent, closed.ok, closed.errors], [5, 2, 3]);
  assertEquals(closed.failures, { ConnectionClosed: 3 });
});

Deno.test("runLean: a receiver that cannot be reached, and a client certificate, are errors", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assertRejects(
    () => runLean({ port, messages: 1 }),
    Error,
    `Cannot connect to 127.0.0.1:${port}`,
  );
  await assertRejects(
    () => runLean({ port, messages: 1, tls: { cert: "c", key: "k" } }),
    TypeError,
    "Cannot present a client certificate",
  );
});
