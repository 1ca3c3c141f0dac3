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
  BENCH_CONTROL_ID,
  type BenchReport,
  makeAdtMessage,
  runBench,
  runClient,
  startAckResponder,
  startFloorResponder,
  startRawResponder,
  summarizeLatency,
} from "../../src/bench/bench.ts";
import { main } from "../../src/cli.ts";
import { encodeFrame } from "../../src/wire/framer.ts";
import { readMessage } from "../../src/hl7/message.ts";
import { UNKNOWN_REPLY } from "../../src/dispatch/echo.ts";

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

Deno.test("bench: --target raw,floor,self in child processes, JSON adds up", async () => {
  const run = await cli([
    "bench",
    "--target",
    "raw,floor,self",
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
  assertEquals(report.targets.length, 3);
  checkTarget(report, 0, "raw", 2 * 3 * 20);
  checkTarget(report, 1, "floor", 2 * 3 * 20);
  checkTarget(report, 2, "self", 2 * 3 * 20);
  assertEquals(report.targets[0].runs.length, 2);
  assertEquals(report.targets[0].ratioToRaw, 1);
  assertGreater(report.targets[1].ratioToRaw!, 0);
  assertGreater(report.targets[2].ratioToRaw!, 0);
  assertGreater(report.machine.cpus, 0);
  // One progress line per run, on stderr.
  assertEquals(run.stderr.trim().split("\n").length, 6);
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

Deno.test("bench: --load client checks replies: those not accepted count as errors, exit 1", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AE"),
    // Should the message ask for enhanced mode (MSH-15 AL, MSH-16 NE,
    // as with --mode enhanced), it would be answered CA, the AE kept back.
    enhancedMode: false,
  });
  const run = await cli([
    "bench",
    "--port",
    String(receiver.port),
    "--load",
    "client",
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
  assertEquals(report.load, "client");
  const [result] = report.targets[0].runs;
  assertEquals([result.sent, result.ok, result.errors], [8, 0, 8]);
  assertEquals(result.failures, { error: 8 });
});

Deno.test("bench: the report has RSS and CPU columns, and says which load", async () => {
  const run = await cli([
    "bench",
    "--target",
    "raw,self",
    "--messages",
    "50",
    "--warmup",
    "5",
  ]);
  assertEquals(run.code, 0, run.stderr);
  assertStringIncludes(run.stdout, "load: lean generator");
  const lines = run.stdout.split("\n");
  const header = lines.find((l) => l.startsWith("target ")) ?? "";
  for (
    const column of [
      "msg/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "max ms",
      "cpu us/msg",
      "cpu vs raw",
      "load cpu",
      "RSS MiB",
      "peak MiB",
      "growth",
      "vs raw",
    ]
  ) {
    assertStringIncludes(header, column);
  }
  const self = (lines.find((l) => l.startsWith("self ")) ?? "").split(/\s+/);
  assertEquals(self.length, header.split(/\s{2,}/).length, run.stdout);
  // msg/s, the percentiles, CPU per message, the load's CPU and the RSS
  // columns are numbers (children on Linux: CPU and RSS known).
  for (const cell of [...self.slice(1, 7), ...self.slice(8, 12)]) {
    assert(/^[\d.]+$/.test(cell), run.stdout);
  }

  // CPU time comes in 10 ms ticks: enough messages for raw to use some.
  const json = await cli([
    "bench",
    "--target",
    "raw,self",
    "--connections",
    "2",
    "--messages",
    "1500",
    "--warmup",
    "10",
    "--json",
  ]);
  assertEquals(json.code, 0, json.stderr);
  const report: BenchReport = JSON.parse(json.stdout);
  assertEquals(report.load, "lean");
  for (const target of report.targets) {
    const { summary } = target;
    assertGreater(summary.cpuMicros!, 0);
    assertEquals(summary.serverCpuMicros, summary.cpuMicros);
    assert(summary.loadCpuMicros !== undefined);
    assertGreater(summary.rssBefore!, 0);
    assertGreater(summary.rssPeak!, 0);
    assertEquals(summary.rssGrowth, summary.rssPeak! - summary.rssBefore!);
    assertEquals(target.memory?.length, 1);
  }
  assertEquals(report.targets[0].cpuRatio, 1);
  assertGreater(report.targets[1].cpuRatio!, 0);
});

Deno.test("bench: --clients lean,client against the minimal responder, in each mode", async () => {
  for (const mode of ["original", "enhanced", "release2"]) {
    const run = await cli([
      "bench",
      "--clients",
      "lean,client",
      "--mode",
      mode,
      "--connections",
      "2",
      "--messages",
      "15",
      "--warmup",
      "2",
      "--json",
    ]);
    assertEquals(run.code, 0, run.stderr);
    const report: BenchReport = JSON.parse(run.stdout);
    assertEquals([report.kind, report.mode, report.reference], [
      "clients",
      mode,
      "lean",
    ]);
    checkTarget(report, 0, "lean", 30);
    checkTarget(report, 1, "client", 30);
    const [lean, client] = report.targets;
    assertEquals(lean.ratio, 1);
    assertGreater(client.ratio!, 0);
    // Each client ran in a child process: its CPU time and RSS are known,
    // and so is the responder's CPU time (in 10 ms ticks: maybe 0 here).
    for (const target of report.targets) {
      assertLessOrEqual(0, target.summary.cpuMicros!);
      assertLessOrEqual(0, target.summary.serverCpuMicros!);
      assertGreater(target.summary.rssBefore!, 0);
      assertGreater(target.summary.rssPeak!, 0);
    }
  }
  const text = await cli([
    "bench",
    "--clients",
    "lean",
    "--clients",
    "client",
    "--mode",
    "enhanced",
    "--messages",
    "10",
    "--warmup",
    "1",
    "--in-process",
  ]);
  assertEquals(text.code, 0, text.stderr);
  assertStringIncludes(
    text.stdout,
    "clients against the minimal responder (enhanced mode: MSA|CA)",
  );
  assertStringIncludes(text.stdout, "vs lean");
});

Deno.test("bench: --target listen runs mllp listen, its log in --listen-log", async () => {
  const log = await Deno.makeTempFile();
  try {
    const run = await cli([
      "bench",
      "--target",
      "listen",
      "--listen-log",
      log,
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
    checkTarget(report, 0, "listen", 20);
    assertGreater(report.targets[0].summary.rssPeak!, 0);
    // One log line per message at least (2 x 11), and none on our stderr.
    const lines = (await Deno.readTextFile(log)).trim().split("\n");
    assertGreater(lines.length, 22);
    assertEquals(run.stderr.includes("listening on"), false);
  } finally {
    await Deno.remove(log);
  }
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
    [[], "Missing --target, --port or --clients"],
    [
      ["--target", "nginx"],
      'Invalid --target "nginx": expected raw, floor, self or listen',
    ],
    [["--clients", "curl"], 'Invalid --clients "curl": expected lean or'],
    [["--target", "raw", "--clients", "lean"], "Give --clients or receivers"],
    [["--target", "raw", "--load", "x"], 'Invalid --load "x"'],
    [["--clients", "lean", "--load", "client"], "--load is for receivers"],
    [["--target", "raw", "--mode", "x"], 'Invalid --mode "x"'],
    [["--target", "raw", "--mode", "release2"], "--mode release2 is for"],
    [["--target", "raw", "--listen-log", "f"], "--listen-log needs --target"],
    [["--clients", "lean", "--idle", "5"], "--idle measures receivers"],
    [
      ["--target", "raw", "--ca", "c.pem", "--cert", "c", "--key", "k"],
      "--cert needs --load client",
    ],
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

Deno.test("startFloorResponder: the AA of each message, one per frame, however the bytes arrive", async () => {
  await using floor = startFloorResponder();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: floor.port });
  const encoder = new TextEncoder();
  const buffer = new Uint8Array(4096);
  const pending: number[] = [];
  const nextReply = async () => {
    while (true) {
      const end = pending.indexOf(0x1c);
      if (end >= 0 && pending.length > end + 1) {
        const frame = pending.splice(0, end + 2);
        assertEquals([frame[0], frame.at(-1)], [0x0b, 0x0d]);
        return new TextDecoder().decode(new Uint8Array(frame.slice(1, -2)));
      }
      const n = await conn.read(buffer);
      if (n === null) throw new Error("Connection closed");
      pending.push(...buffer.subarray(0, n));
    }
  };
  const message = (id: string) =>
    encodeFrame(
      encoder.encode(makeAdtMessage().replace(BENCH_CONTROL_ID, id)),
    );
  try {
    await conn.write(new Uint8Array([...message("F1"), ...message("F2")]));
    for (const id of ["F1", "F2"]) {
      const ack = Ack.parse(await nextReply());
      assertEquals([ack.code, ack.messageControlId], ["AA", id]);
    }
    const split = message("F3");
    await conn.write(split.subarray(0, split.length - 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await conn.write(split.subarray(split.length - 1));
    assertStringIncludes(await nextReply(), "MSA|AA|F3");
    // Not HL7: the echo dispatcher's answer for it.
    await conn.write(encodeFrame(encoder.encode("hello")));
    assertEquals(await nextReply(), UNKNOWN_REPLY);
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

Deno.test("client_floor.ts: counts what is accepted, in original and enhanced mode, and what is not", async () => {
  const floor = {
    name: "client floor",
    command: [
      Deno.execPath(),
      "run",
      "-A",
      new URL("./client_floor.ts", import.meta.url).pathname,
    ],
  };
  for (const mode of ["original", "enhanced"] as const) {
    await using responder = startAckResponder({ mode });
    const run = await runClient(floor, {
      port: responder.port,
      connections: 2,
      messages: 20,
      warmup: 3,
      payload: makeAdtMessage(1024, { ackMode: mode }),
    });
    assertEquals(
      [run.result.sent, run.result.ok, run.result.errors],
      [40, 40, 0],
      mode,
    );
  }
  // A receiver that answers AE: every message fails, as AE.
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AE"),
  });
  const rejected = await runClient(floor, {
    port: receiver.port,
    connections: 2,
    messages: 5,
    warmup: 1,
  });
  assertEquals(
    [rejected.result.ok, rejected.result.errors, rejected.result.failures],
    [0, 10, { AE: 10 }],
  );
});
