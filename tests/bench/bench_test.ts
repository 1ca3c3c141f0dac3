/**
 * Functional tests of the load tool (`src/bench/bench.ts`) and `mllp bench`:
 * small counts, loopback only, so that they run in a few seconds. They
 * check that the numbers add up, not how fast anything is.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertGreater,
  assertLessOrEqual,
  assertStringIncludes,
} from "@std/assert";
import { Ack, Receiver } from "../../mod.ts";
import {
  type BenchReport,
  makeAdtMessage,
  runBench,
  startRawResponder,
  summarizeLatency,
} from "../../src/bench/bench.ts";
import { main } from "../../src/cli.ts";
import { encodeFrame } from "../../src/wire/framer.ts";
import { readMessage } from "../../src/hl7/message.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `mllp ...args` in this process and captures its output. */
async function cli(args: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const decoder = new TextDecoder();
  const code = await main(args, {
    configureLogging: false,
    stdout: {
      writeSync(data) {
        stdout += decoder.decode(data);
        return data.length;
      },
    },
    stderr: {
      writeSync(data) {
        stderr += decoder.decode(data);
        return data.length;
      },
    },
  });
  return { code, stdout, stderr };
}

/** Checks that one target's figures are sane and add up. */
function checkTarget(
  report: BenchReport,
  index: number,
  name: string,
  sent: number,
) {
  const target = report.targets[index];
  assertEquals(target.name, name);
  assertEquals(target.summary.errors, 0, JSON.stringify(target.summary));
  assertEquals(target.summary.sent, sent);
  for (const run of target.runs) {
    assertEquals(run.ok + run.errors, run.sent);
    assertEquals(run.sent, run.connections * run.messagesPerConnection);
    assertGreater(run.messagesPerSecond, 0);
    assertGreater(run.seconds, 0);
    const { p50, p90, p99, max, mean } = run.latency;
    assertGreater(p50, 0);
    assertLessOrEqual(p50, p90);
    assertLessOrEqual(p90, p99);
    assertLessOrEqual(p99, max);
    assertLessOrEqual(mean, max);
  }
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

Deno.test("bench: --target raw,self in child processes, JSON adds up", async () => {
  const run = await cli([
    "bench",
    "--target",
    "raw,self",
    "--connections",
    "3",
    "--messages",
    "20",
    "--warmup",
    "2",
    "--rounds",
    "2",
    "--json",
  ]);
  assertEquals(run.code, 0, run.stderr);
  const report: BenchReport = JSON.parse(run.stdout);
  assertEquals(report.settings, {
    connections: 3,
    messages: 20,
    warmup: 2,
    payloadBytes: 1024,
    rounds: 2,
  });
  assertEquals(report.targets.length, 2);
  checkTarget(report, 0, "raw", 2 * 3 * 20);
  checkTarget(report, 1, "self", 2 * 3 * 20);
  assertEquals(report.targets[0].runs.length, 2);
  assertEquals(report.targets[0].ratioToRaw, 1);
  assertGreater(report.targets[1].ratioToRaw!, 0);
  assertGreater(report.machine.cpus, 0);
  // One progress line per run, on stderr.
  assertEquals(run.stderr.trim().split("\n").length, 4);
});

Deno.test("bench: raw and self serve TLS with --server-cert", async () => {
  const tls = (path: string) =>
    new URL(`../../tls/${path}`, import.meta.url).pathname;
  const run = await cli([
    "bench",
    "--target",
    "raw",
    "--target",
    "self",
    "--server-cert",
    tls("server/server_certificate.pem"),
    "--server-key",
    tls("server/private_key.pem"),
    "--ca",
    tls("root-ca/ca_certificate.pem"),
    "--servername",
    "localhost",
    "--connections",
    "2",
    "--messages",
    "10",
    "--warmup",
    "1",
    "--json",
  ]);
  assertEquals(run.code, 0, run.stderr);
  const report: BenchReport = JSON.parse(run.stdout);
  checkTarget(report, 0, "raw", 20);
  checkTarget(report, 1, "self", 20);
});

Deno.test("bench: text report for an in-process target", async () => {
  const run = await cli([
    "bench",
    "--target",
    "self",
    "--in-process",
    "--messages",
    "10",
    "--warmup",
    "0",
    "--size",
    "2000",
  ]);
  assertEquals(run.code, 0, run.stderr);
  assertStringIncludes(run.stdout, "1 connection x 10 messages");
  assertStringIncludes(run.stdout, "2000-byte payload");
  const line = run.stdout.split("\n").find((l) => l.startsWith("self ")) ??
    "";
  // No raw baseline in this run: no ratio.
  assert(line.endsWith(" -"), run.stdout);
});

Deno.test("bench: --port measures a running receiver, --file sets the payload", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AA"),
  });
  const run = await cli([
    "bench",
    "--port",
    String(receiver.port),
    "--connections",
    "2",
    "--messages",
    "5",
    "--warmup",
    "1",
    "--file",
    "tests/fixtures/adt_a01_wikipedia.hl7",
    "--json",
  ]);
  assertEquals(run.code, 0, run.stderr);
  const report: BenchReport = JSON.parse(run.stdout);
  checkTarget(report, 0, `127.0.0.1:${receiver.port}`, 10);
  assertEquals(report.targets[0].ratioToRaw, undefined);
  // The fixture's 713 bytes, its last segment ended by CR as "send" does.
  assertEquals(report.settings.payloadBytes, 714);
});

Deno.test("bench: replies that are not accepted count as errors, exit 1", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AE"),
    // The bench message asks for enhanced mode (MSH-15 AL, MSH-16 NE),
    // which would answer CA and keep the AE back.
    enhancedMode: false,
  });
  const run = await cli([
    "bench",
    "--port",
    String(receiver.port),
    "--connections",
    "2",
    "--messages",
    "4",
    "--warmup",
    "1",
    "--json",
  ]);
  assertEquals(run.code, 1, run.stderr);
  const report: BenchReport = JSON.parse(run.stdout);
  const [result] = report.targets[0].runs;
  assertEquals([result.sent, result.ok, result.errors], [8, 0, 8]);
  assertEquals(result.failures, { error: 8 });
});

Deno.test("bench: --idle reports the RSS of a child receiver", async () => {
  const run = await cli([
    "bench",
    "--target",
    "self",
    "--idle",
    "20",
    "--json",
  ]);
  assertEquals(run.code, 0, run.stderr);
  const report: BenchReport = JSON.parse(run.stdout);
  assertEquals(report.settings.idle, 20);
  const idle = report.targets[0].idle!;
  assertEquals(idle.connections, 20);
  assertGreater(idle.rssBefore, 0);
  assertGreater(idle.rssAfter, 0);
  assertEquals(idle.rssGrowth, idle.rssAfter - idle.rssBefore);
});

Deno.test("bench: a receiver that cannot be reached is exit 2", async () => {
  const run = await cli(["bench", "--port", String(closedPort())]);
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, "error: Cannot connect to 127.0.0.1:");
  assertEquals(run.stdout, "");
});

Deno.test("bench: --help, and bench in the command list", async () => {
  const help = await cli(["bench", "--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.stdout, "Usage: mllp bench");
  assertStringIncludes(help.stdout, "--target LIST");
  const top = await cli(["--help"]);
  assertStringIncludes(top.stdout, "mllp bench [options]");
});

Deno.test("bench: bad flags are exit 2 with a reason", async () => {
  const cases: [string[], string][] = [
    [[], "Missing --target or --port"],
    [["--target", "nginx"], 'Invalid --target "nginx": expected raw or self'],
    [["--target", "raw", "--connections", "0"], 'Invalid --connections "0"'],
    [["--target", "raw", "--messages", "x"], 'Invalid --messages "x"'],
    [["--target", "raw", "--nope"], 'Unknown flag "--nope"'],
    [["--target", "raw", "extra"], 'Unexpected argument "extra"'],
    [["--host", "10.0.0.1"], "--host needs --port"],
    [["--port", "99999"], 'Invalid --port "99999"'],
    [["--port", "2575", "--idle", "10"], "--idle needs --pid"],
    [
      ["--target", "raw", "--size", "9", "--file", "a"],
      "Give --size or --file",
    ],
    [
      ["--target", "raw", "--server-cert", "c.pem"],
      "--server-cert needs --server-key",
    ],
    [
      ["--target", "raw", "--server-cert", "c.pem", "--server-key", "k.pem"],
      "--server-cert needs --ca",
    ],
    [["--target", "raw", "--timeout", "0"], 'Invalid --timeout "0"'],
  ];
  for (const [args, message] of cases) {
    const run = await cli(["bench", ...args]);
    assertEquals(run.code, 2, args.join(" "));
    assertStringIncludes(run.stderr, message);
    assertStringIncludes(run.stderr, 'Run "mllp bench --help" for usage.');
  }
  const missing = await cli([
    "bench",
    "--target",
    "raw",
    "--file",
    "no/such.hl7",
  ]);
  assertEquals(missing.code, 2);
  assertStringIncludes(missing.stderr, "no/such.hl7: Cannot read file");
});

Deno.test("runBench: counts against the raw responder add up", async () => {
  await using raw = startRawResponder();
  const result = await runBench({
    port: raw.port,
    connections: 4,
    messages: 25,
    warmup: 5,
  });
  assertEquals([result.sent, result.ok, result.errors], [100, 100, 0]);
  assertEquals(result.failures, {});
  assertEquals(result.payloadBytes, 1024);
});

Deno.test("startRawResponder: one reply per FS CR, however the bytes arrive", async () => {
  await using raw = startRawResponder({ reply: "R" });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: raw.port });
  try {
    const frame = encodeFrame(new TextEncoder().encode("hello"));
    const reply = encodeFrame(new TextEncoder().encode("R"));
    const read = async (bytes: number) => {
      const got: number[] = [];
      const buffer = new Uint8Array(64);
      while (got.length < bytes) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error("Connection closed");
        got.push(...buffer.subarray(0, n));
      }
      return got;
    };
    // Two frames in one write: two replies.
    await conn.write(new Uint8Array([...frame, ...frame]));
    assertEquals(await read(2 * reply.length), [...reply, ...reply]);
    // The end block split between writes: one reply.
    await conn.write(frame.subarray(0, frame.length - 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await conn.write(frame.subarray(frame.length - 1));
    assertEquals(await read(reply.length), [...reply]);
  } finally {
    conn.close();
  }
});

Deno.test("makeAdtMessage: a readable ADT^A01 of the size asked", () => {
  for (const size of [1024, 4096]) {
    const text = makeAdtMessage(size);
    assertEquals(text.length, size);
    const { header } = readMessage(text);
    assertEquals(header?.triggerEvent, "A01");
    assert(text.endsWith("\r"));
  }
  // Smaller than the message without padding: the message as it is.
  assertEquals(makeAdtMessage(10), makeAdtMessage(0));
});

Deno.test("summarizeLatency: nearest-rank percentiles", () => {
  assertEquals(summarizeLatency(new Float64Array()), {
    p50: 0,
    p90: 0,
    p99: 0,
    max: 0,
    mean: 0,
  });
  const one = summarizeLatency(Float64Array.of(3));
  assertEquals([one.p50, one.p99, one.max, one.mean], [3, 3, 3, 3]);
  const times = Float64Array.from({ length: 1000 }, (_, i) => 1000 - i);
  const { p50, p90, p99, max } = summarizeLatency(times);
  assertEquals([p50, p90, p99, max], [500, 900, 990, 1000]);
});
