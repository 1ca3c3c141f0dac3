/**
 * The client floor for `deno task bench`: the lean generator's loop plus
 * the HL7 work a client that checks its replies cannot skip, and nothing
 * else. For each message it reads the header of the text it sends
 * (`readHeader`: MSH-10, the acknowledgment mode), encodes the text into a
 * reused frame buffer, writes it, decodes what comes back with
 * `MllpDecoderStream.decode`, reads the reply as an ACK (`Ack.parse`) and
 * counts it as an error unless it accepts (`AA` or `CA`) that control id.
 * No queue, no reconnects, no timers, no events: lean → floor is the price
 * of checking replies at all, floor → `Client` the price of the client.
 *
 * It speaks the bench's client protocol (see `@x/mllp/unstable-bench`):
 * `deno run -A tests/bench/client_floor.ts --port N [--hostname H]
 * [--connections N] [--messages N] [--warmup N] [--timeout MS] [--payload
 * BASE64]`, prints `{"ready": true}`, waits for `go` on stdin, runs, prints
 * `{"result": ...}` (or `{"error": ...}`) and exits when stdin ends. MLLP
 * release 2 is refused.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import {
  type BenchResult,
  makeAdtMessage,
  summarizeLatency,
} from "../../src/bench/bench.ts";
import { Ack } from "../../src/hl7/ack.ts";
import { readHeader } from "../../src/hl7/header.ts";
import { MllpDecoderStream } from "../../src/wire/framer.ts";

const encoder = new TextEncoder();

function say(value: unknown) {
  const data = encoder.encode(JSON.stringify(value) + "\n");
  for (let n = 0; n < data.length;) {
    n += Deno.stdout.writeSync(data.subarray(n));
  }
}

const flags = parseArgs(Deno.args, {
  string: [
    "port",
    "hostname",
    "connections",
    "messages",
    "warmup",
    "timeout",
    "payload",
    "release",
  ],
});
if (flags.release === "2") {
  say({ error: "client_floor.ts does not speak MLLP release 2" });
  Deno.exit(2);
}
const hostname = flags.hostname ?? "127.0.0.1";
const port = Number(flags.port);
const connections = Number(flags.connections ?? 1);
const messages = Number(flags.messages ?? 1000);
const warmup = Number(flags.warmup ?? 0);
const timeout = Number(flags.timeout ?? 60_000);
const text = flags.payload
  ? new TextDecoder().decode(
    Uint8Array.from(atob(flags.payload), (c) => c.charCodeAt(0)),
  )
  : makeAdtMessage();

const conns = await Promise.all(
  Array.from({ length: connections }, async () => {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return conn;
  }),
);
const stdin = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  .getReader();
say({ ready: true });
let line = "";
while (!line.includes("\n")) {
  const { value, done } = await stdin.read();
  if (done) Deno.exit(1);
  line += value;
}

const times = new Float64Array(connections * messages).fill(NaN);
const failures: Record<string, number> = {};
const fail = (kind: string, n = 1) =>
  failures[kind] = (failures[kind] ?? 0) + n;
// One watchdog for all connections: one that waits too long is closed.
const waitingSince = new Float64Array(connections).fill(NaN);
/** Replies read on each connection in the current run. */
const answered = new Uint32Array(connections);
const watchdog = setInterval(() => {
  const now = performance.now();
  waitingSince.forEach((since, c) => {
    if (now - since > timeout) conns[c].close();
  });
}, Math.min(1000, Math.max(10, timeout / 4)));

/** Sends `n` messages on connection `c`; records them from `offset`. */
async function exchange(c: number, n: number, offset: number | undefined) {
  const conn = conns[c];
  const buffer = new Uint8Array(16 * 1024);
  const frame = new Uint8Array(text.length * 3 + 3);
  const decoder = new MllpDecoderStream({ silent: true });
  const replies: Uint8Array[] = [];
  const sink = { enqueue: (payload: Uint8Array) => replies.push(payload) };
  for (let i = 0; i < n; i++) {
    const sent = performance.now();
    waitingSince[c] = sent;
    const header = readHeader(text);
    const { written } = encoder.encodeInto(text, frame.subarray(1));
    frame[0] = 0x0b;
    frame[written + 1] = 0x1c;
    frame[written + 2] = 0x0d;
    const data = frame.subarray(0, written + 3);
    for (let done = 0; done < data.length;) {
      done += await conn.write(data.subarray(done));
    }
    while (replies.length === 0) {
      const read = await conn.read(buffer);
      if (read === null) throw new Error("ConnectionClosed");
      decoder.decode(buffer.subarray(0, read), sink);
    }
    const ack = Ack.parse(replies.shift()!);
    waitingSince[c] = NaN;
    answered[c]++;
    if (offset === undefined) continue; // Warm-up: not counted.
    if (ack.messageControlId !== header.controlId) fail("mismatch");
    else if (ack.code !== "AA" && ack.code !== "CA") fail(ack.code);
    else times[offset + i] = performance.now() - sent;
  }
}

/** Runs every connection; a connection that fails fails what it had left. */
async function run(n: number, record: boolean) {
  answered.fill(0);
  await Promise.all(conns.map(async (_, c) => {
    try {
      await exchange(c, n, record ? c * messages : undefined);
    } catch (error) {
      if (!record) return; // Its measured messages fail in the next run.
      const kind = error instanceof Error ? error.message : String(error);
      fail(kind, n - answered[c]);
    }
  }));
}

let result: BenchResult;
try {
  await run(warmup, false);
  const started = performance.now();
  await run(messages, true);
  const seconds = (performance.now() - started) / 1000;
  const done = times.filter((t) => !Number.isNaN(t));
  const sent = connections * messages;
  result = {
    connections,
    messagesPerConnection: messages,
    warmup,
    payloadBytes: encoder.encode(text).length,
    sent,
    ok: done.length,
    errors: sent - done.length,
    failures,
    seconds,
    messagesPerSecond: seconds > 0 ? sent / seconds : 0,
    latency: summarizeLatency(done),
  };
} finally {
  clearInterval(watchdog);
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Closed by the watchdog.
    }
  }
}
say({ result });
while (!(await stdin.read()).done) {
  // Wait for stdin to end.
}
