/**
 * The performance comparison behind docs/performance.md:
 * `deno task bench` runs it.
 *
 * It measures, with the same load tool (`src/bench/bench.ts`, this library's
 * client) in one run: the raw TCP baseline, this library's receiver, and
 * two MLLP servers from npm run under Node (`@medplum/hl7` and `nodehl7`,
 * pinned in `tests/bench/peers/package.json` and installed into
 * `tests/bench/peers/node_modules` on first use). Each server runs in its own
 * child process. Then it checks the framer with `tests/wire/framer_bench.ts`,
 * prints Markdown tables and says which targets were met.
 *
 * Flags: `--quick` (fewer messages and rounds, for a smoke run),
 * `--no-peers` (skip the npm servers), `--no-framer`, `--json FILE` (write
 * every report to FILE).
 *
 * @module
 */

import {
  type BenchReport,
  compare,
  formatReport,
  type IdleResult,
  machineInfo,
  type TargetSpec,
} from "../../src/bench/bench.ts";

const PEERS = new URL("./peers/", import.meta.url);
const ROOT = new URL("../..", import.meta.url);
const args = new Set(Deno.args);
const quick = args.has("--quick");
const withPeers = !args.has("--no-peers");
const withFramer = !args.has("--no-framer");
const jsonIndex = Deno.args.indexOf("--json");
const jsonFile = jsonIndex === -1 ? undefined : Deno.args[jsonIndex + 1];

const encoder = new TextEncoder();
function say(line = "") {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

async function run(
  program: string,
  args: string[],
  cwd?: URL,
): Promise<string> {
  const output = await new Deno.Command(program, {
    args,
    cwd,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!output.success) {
    throw new Error(`${program} ${args.join(" ")} failed (${output.code})`);
  }
  return new TextDecoder().decode(output.stdout);
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

async function peerVersion(name: string): Promise<string> {
  const file = new URL(`node_modules/${name}/package.json`, PEERS);
  return JSON.parse(await Deno.readTextFile(file)).version;
}

/** Installs the peers (pinned by tests/bench/peers/package-lock.json) if needed. */
async function peerTargets(): Promise<
  { targets: TargetSpec[]; node?: string }
> {
  if (!withPeers) return { targets: [] };
  let node: string;
  try {
    node = (await run("node", ["--version"])).trim();
  } catch {
    say("node not found: skipping the npm peers");
    return { targets: [] };
  }
  const installed = await exists(
    new URL("node_modules/@medplum/hl7/package.json", PEERS),
  ) && await exists(new URL("node_modules/nodehl7/package.json", PEERS));
  if (!installed) {
    say("Installing the peers into tests/bench/peers/node_modules (npm ci)");
    await run("npm", [
      "ci",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
    ], PEERS);
  }
  const server = (file: string) => [
    "node",
    "--expose-gc",
    new URL(file, PEERS).pathname,
  ];
  return {
    node,
    targets: [
      {
        name: `@medplum/hl7 ${await peerVersion("@medplum/hl7")}`,
        command: server("medplum_server.mjs"),
        cwd: PEERS,
      },
      {
        name: `nodehl7 ${await peerVersion("nodehl7")}`,
        command: server("nodehl7_server.mjs"),
        cwd: PEERS,
      },
    ],
  };
}

interface FramerResult {
  smallFramesMBps: number;
  bigFrameSeconds: number;
}

/** Runs tests/wire/framer_bench.ts and reads the two decode figures. */
async function framer(): Promise<FramerResult | undefined> {
  if (!withFramer) return undefined;
  say("Running deno bench tests/wire/framer_bench.ts");
  const report = JSON.parse(
    await run(Deno.execPath(), [
      "bench",
      "--json",
      "tests/wire/framer_bench.ts",
    ], ROOT),
  );
  const find = (prefix: string) => {
    const bench = report.benches.find((b: { name: string }) =>
      b.name.startsWith(prefix)
    );
    return { name: bench.name as string, avg: bench.results[0].ok.avg };
  };
  const small = find("decode 65536 x 1 KiB frames");
  const big = find("decode 1 x 64 MiB frame");
  const smallBytes = Number(/\((\d+) bytes\)/.exec(small.name)?.[1]);
  return {
    smallFramesMBps: smallBytes / (small.avg / 1e9) / 1e6,
    bigFrameSeconds: big.avg / 1e9,
  };
}

const LOADS = quick
  ? [
    { connections: 1, messages: 1000, warmup: 100, rounds: 1 },
    { connections: 64, messages: 50, warmup: 5, rounds: 1 },
  ]
  : [
    { connections: 1, messages: 20000, warmup: 2000, rounds: 5 },
    { connections: 64, messages: 500, warmup: 50, rounds: 3 },
  ];
const IDLE = 1000;
const IDLE_ROUNDS = quick ? 1 : 3;

const peers = await peerTargets();
const targets: TargetSpec[] = ["raw", "self", ...peers.targets];
const machine = await machineInfo();
const reports: BenchReport[] = [];
for (const load of LOADS) {
  say(`\n${load.connections} connection(s), ${load.rounds} round(s):`);
  const report = await compare({
    ...load,
    targets,
    onProgress: (line) => say("  " + line),
  });
  say(formatReport(report));
  reports.push(report);
}

// A fresh server for each idle round: memory a server has freed is not
// always given back, so a second round on it would read low.
say(`\n${IDLE} idle connections, ${IDLE_ROUNDS} round(s):`);
const idles: IdleResult[][] = targets.map(() => []);
for (let round = 0; round < IDLE_ROUNDS; round++) {
  const report = await compare({
    targets,
    idle: IDLE,
    onProgress: (line) => say("  " + line),
  });
  report.targets.forEach((target, i) => idles[i].push(target.idle!));
}
const idle = idles.map((rounds) =>
  rounds.sort((a, b) => a.rssGrowth - b.rssGrowth)[(rounds.length - 1) >> 1]
);

const framerResult = await framer();

// ---- the tables ----

const names = reports[0].targets.map((t) => t.name);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const lines: string[] = [];
lines.push(
  `Machine: ${machine.cpus} CPUs (${machine.cpuModel ?? "unknown model"}), ${
    machine.memoryBytes ? Math.round(machine.memoryBytes / 2 ** 30) : "?"
  } GiB, ${machine.os}; Deno ${machine.deno}${
    peers.node ? `, Node ${peers.node}` : ""
  }; loopback, ${reports[0].settings.payloadBytes}-byte ADT^A01, medians of ${
    LOADS.map((l) => `${l.rounds}`).join(" / ")
  } rounds.`,
  "",
);
const header = ["Server"];
for (const report of reports) {
  const c = report.settings.connections;
  header.push(
    `${c} conn msg/s`,
    `p99 ms`,
    `vs raw`,
    `server CPU µs/msg`,
  );
}
header.push(`${IDLE} idle conns, RSS`);
lines.push(`| ${header.join(" | ")} |`);
lines.push(`| ${header.map((_, i) => i === 0 ? "---" : "---:").join(" | ")} |`);
names.forEach((name, i) => {
  const row = [name === "self" ? "**@x/mllp** (self)" : name];
  for (const report of reports) {
    const target = report.targets[i];
    const errors = target.summary.errors
      ? ` (${target.summary.errors} errors)`
      : "";
    row.push(
      `${Math.round(target.summary.messagesPerSecond)}${errors}`,
      target.summary.latency.p99.toFixed(2),
      (target.ratioToRaw ?? 0).toFixed(2),
      target.summary.serverCpuMicros?.toFixed(1) ?? "-",
    );
  }
  row.push(`+${mib(idle[i].rssGrowth)} MiB`);
  lines.push(`| ${row.join(" | ")} |`);
});
if (framerResult) {
  lines.push(
    "",
    `Framer (tests/wire/framer_bench.ts, mean of 20): 1 KiB frames in 64 KiB chunks ${
      Math.round(framerResult.smallFramesMBps)
    } MB/s; one 64 MiB frame in 64 KiB chunks ${
      framerResult.bigFrameSeconds.toFixed(3)
    } s.`,
  );
}

// ---- the targets ----

const selfIndex = names.indexOf("self");
const checks: [string, boolean][] = [];
for (const report of reports) {
  const self = report.targets[selfIndex];
  const c = report.settings.connections;
  checks.push([
    `${c} connection(s): self >= 0.8 x raw (${
      (self.ratioToRaw ?? 0).toFixed(2)
    })`,
    (self.ratioToRaw ?? 0) >= 0.8,
  ]);
  for (const peer of report.targets.slice(2)) {
    const times = self.summary.messagesPerSecond /
      peer.summary.messagesPerSecond;
    checks.push([
      `${c} connection(s): self >= 2 x ${peer.name} (${times.toFixed(2)} x)`,
      times >= 2,
    ]);
  }
}
checks.push([
  `${IDLE} idle connections cost self < 64 MiB (${
    mib(idle[selfIndex].rssGrowth)
  } MiB)`,
  idle[selfIndex].rssGrowth < 64 * 2 ** 20,
]);
if (framerResult) {
  checks.push([
    `framer: 64 MiB frame in < 0.5 s (${
      framerResult.bigFrameSeconds.toFixed(3)
    } s)`,
    framerResult.bigFrameSeconds < 0.5,
  ]);
  checks.push([
    `framer: 1 KiB frames at >= 500 MB/s (${
      Math.round(framerResult.smallFramesMBps)
    } MB/s)`,
    framerResult.smallFramesMBps >= 500,
  ]);
}
lines.push("", "Targets:");
for (const [text, met] of checks) {
  lines.push(`- ${met ? "met" : "MISSED"}: ${text}`);
}

console.log(lines.join("\n"));
if (jsonFile) {
  await Deno.writeTextFile(
    jsonFile,
    JSON.stringify(
      {
        machine,
        node: peers.node,
        reports,
        idle: { connections: IDLE, targets: names, results: idles },
        framer: framerResult,
      },
      null,
      2,
    ) + "\n",
  );
  say(`Wrote ${jsonFile}`);
}
