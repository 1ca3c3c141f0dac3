/**
 * Tests of `deno task bench`'s verdict (`_goals.ts`): issue 14's targets
 * read from a run's results, met or missed at their bars, and "not
 * measured" where the run did not measure them.
 *
 * @module
 */

import { assertEquals } from "@std/assert";
import type { BenchReport, TargetReport } from "../../src/bench/bench.ts";
import { checkGoals, type Goal } from "./_goals.ts";
import type { Results } from "./_results.ts";

const MIB = 2 ** 20;

function targetOf(
  name: string,
  rate: number,
  extra: Partial<TargetReport> & { growth?: number } = {},
): TargetReport {
  return {
    name,
    address: "127.0.0.1:1",
    runs: [],
    ratio: extra.ratio,
    cpuRatio: extra.cpuRatio,
    summary: {
      messagesPerSecond: rate,
      latency: { p50: 1, p90: 1, p99: 1, max: 1, mean: 1 },
      sent: 1,
      errors: 0,
      failures: {},
      rssGrowth: extra.growth,
    },
  };
}

function reportOf(
  kind: "receivers" | "clients",
  targets: TargetReport[],
): BenchReport {
  return {
    machine: { os: "linux", arch: "x86_64", cpus: 2, deno: "2.9.6" },
    kind,
    tls: false,
    settings: {
      connections: 1,
      messages: 1,
      warmup: 0,
      payloadBytes: 1024,
      rounds: 1,
    },
    targets,
  };
}

function results(selfRatio: number, listenRate: number): Results {
  const receivers = (c: number) =>
    reportOf("receivers", [
      targetOf("raw", 1000, { ratio: 1, cpuRatio: 1, growth: 10 * MIB }),
      targetOf("self", 1000 * selfRatio, {
        ratio: selfRatio,
        cpuRatio: c === 1 ? 1.4 : 1.6,
        growth: 15 * MIB,
      }),
      targetOf("listen", listenRate, { growth: 25 * MIB }),
    ]);
  const clients = (ratio: number) =>
    reportOf("clients", [
      targetOf("lean", 1000, { ratio: 1 }),
      targetOf("client", 1000 * ratio, { ratio }),
    ]);
  return {
    machine: { os: "linux", arch: "x86_64", cpus: 2, deno: "2.9.6" },
    receivers: { "1": receivers(1), "64": receivers(64) },
    growing: {},
    clients: {
      original: { "1": clients(0.9), "64": clients(0.7) },
      enhanced: { "1": clients(0.5) },
    },
    tls: { receivers: {}, clients: {} },
    idle: {
      connections: 1000,
      targets: [{
        name: "self",
        median: {
          connections: 1000,
          rssBefore: 0,
          rssAfter: 20 * MIB,
          rssGrowth: 20 * MIB,
          bytesPerConnection: 20 * MIB / 1000,
        },
        rounds: [],
      }],
    },
    framer: { smallFramesMBps: 1500, bigFrameSeconds: 0.25 },
  };
}

const status = (goals: Goal[], start: string) =>
  goals.filter((g) => g.text.startsWith(start)).map((g) => g.status);

Deno.test("checkGoals: each target met or missed at its bar", () => {
  const goals = checkGoals(results(0.8, 700));
  // 0.8x raw: under 0.85 on one connection, over 0.75 on 64.
  assertEquals(status(goals, "receiver >= 0.85x raw, 1 "), ["MISSED"]);
  assertEquals(status(goals, "receiver >= 0.75x raw, 64 "), ["met"]);
  assertEquals(status(goals, "receiver server CPU per message <= 1.5x"), [
    "met",
    "MISSED",
  ]);
  // listen at 700 against self at 800: 0.875x, under 0.9.
  assertEquals(status(goals, "listen (default logging) >= 0.9x"), [
    "MISSED",
    "MISSED",
  ]);
  // Growth: self 1.5x raw's (met), listen 2.5x (missed).
  assertEquals(status(goals, "self RSS growth"), ["met"]);
  assertEquals(status(goals, "listen RSS growth"), ["MISSED"]);
  assertEquals(status(goals, "Client >= 0.85x lean, 1 "), ["met"]);
  assertEquals(status(goals, "Client >= 0.75x lean, 64 "), ["MISSED"]);
  assertEquals(status(goals, "Client / lean, enhanced"), ["report"]);
  assertEquals(status(goals, "framer >= 1 GB/s"), ["met"]);
  assertEquals(status(goals, "framer: one 64 MiB frame"), ["MISSED"]);
  assertEquals(status(goals, "1000 idle connections"), ["met"]);
});

Deno.test("checkGoals: what the run did not measure is said so", () => {
  const run = results(0.9, 900);
  run.receivers["64"].targets = run.receivers["64"].targets.filter((t) =>
    t.name !== "listen"
  );
  delete run.framer;
  delete run.idle;
  const goals = checkGoals(run);
  assertEquals(status(goals, "listen (default logging) >= 0.9x"), [
    "met",
    "not measured",
  ]);
  assertEquals(status(goals, "framer"), ["not measured", "not measured"]);
  assertEquals(status(goals, "1000 idle connections"), ["not measured"]);
});

Deno.test("checkGoals: TLS ratios against a baseline", () => {
  const withTls = (ratio: number) => {
    const run = results(0.9, 900);
    run.tls.receivers["1"] = reportOf("receivers", [
      targetOf("raw", 1000, { ratio: 1 }),
      targetOf("self", 1000 * ratio, { ratio }),
    ]);
    run.tls.clients["1"] = reportOf("clients", [
      targetOf("lean", 1000, { ratio: 1 }),
      targetOf("client", 1000 * ratio, { ratio }),
    ]);
    return run;
  };
  assertEquals(status(checkGoals(withTls(0.5)), "receiver / raw over TLS"), [
    "report",
  ]);
  const before = withTls(0.5);
  assertEquals(
    status(checkGoals(withTls(0.46), before), "receiver / raw over TLS"),
    ["met"],
  );
  assertEquals(
    status(checkGoals(withTls(0.44), before), "Client / lean over TLS"),
    ["MISSED"],
  );
});

Deno.test("checkGoals: the floors are reported next to the targets", () => {
  const run = results(0.6, 600);
  for (const c of ["1", "64"]) {
    run.receivers[c].targets.splice(
      1,
      0,
      targetOf("floor", 800, { ratio: 0.8, cpuRatio: 1.25 }),
    );
    run.clients.original[c].targets.splice(
      1,
      0,
      targetOf("client floor", 950, { ratio: 0.95 }),
    );
  }
  run.framer = {
    smallFramesMBps: 1500,
    bigFrameSeconds: 0.25,
    bigFrameFloorSeconds: 0.2,
  };
  const texts = checkGoals(run).map((g) => `${g.status}: ${g.text}`);
  const has = (text: string) =>
    assertEquals(texts.filter((t) => t === text).length, 1, text);
  // self at 600 msg/s against the floor's 800.
  has(
    "report: floor / raw, 1 connection(s): 0.80x (CPU 1.25x); receiver / floor: 0.75x",
  );
  has(
    "report: floor / raw, 64 connection(s): 0.80x (CPU 1.25x); receiver / floor: 0.75x",
  );
  // The Client at 900 msg/s (1 connection), 700 (64), against the floor's 950.
  has(
    "report: client floor / lean, 1 connection(s): 0.95x; Client / client floor: 0.95x",
  );
  has(
    "report: client floor / lean, 64 connection(s): 0.95x; Client / client floor: 0.74x",
  );
  has(
    "MISSED: framer: one 64 MiB frame < 0.2 s: 0.250 s (1.25x the 0.200 s that copying and joining its chunks takes here)",
  );
});
