/**
 * The performance comparison behind docs/performance.md: `deno task bench`
 * runs it, in one run, on this machine:
 *
 * - receivers, measured with the lean load generator (no library code in
 *   its loop) on 1 and on 64 connections: the raw responder (the
 *   reference), the floor (a bare loop answering each message's AA with
 *   this library's parts: the least the HL7 work costs), this library's
 *   receiver with the EchoDispatcher ("self"),
 *   `mllp listen` with its default logging (stderr to a file), and the
 *   npm servers simple-hl7, @medplum/hl7, nodehl7 and node-hl7-server
 *   under Node;
 * - clients, each in a process of its own against the minimal responder
 *   (MSA-2 = MSH-10, no library code), on 1 and 64 connections: the lean
 *   generator (the reference), the client floor (`client_floor.ts`: the
 *   lean loop plus reading the header, encoding the text, decoding and
 *   checking the ACK), this library's Client in original mode,
 *   enhanced mode and MLLP release 2, and the npm clients node-hl7-client,
 *   simple-hl7's and @medplum/hl7's (original mode);
 * - TLS both sides: self against raw, Client against lean;
 * - 1,000 idle connections; the framer (`tests/wire/framer_bench.ts`);
 *
 * alternating the targets round by round, medians of the rounds, ratios
 * only within one run. Then it prints Markdown tables and, target by
 * target, whether issue 14's targets were met. The npm peers are pinned in
 * `tests/bench/peers/package.json` and installed with `npm ci` on first
 * use. Progress goes to stderr, the tables to stdout.
 *
 * Flags: `--rounds N` (3), `--messages N` (per connection on 1 connection,
 * 2000), `--many N` (the other row's connections, 64), `--many-messages N`
 * (per connection there, 100), `--quick` (1 round, few messages),
 * `--no-peers`, `--no-tls`, `--no-idle`, `--no-framer`, `--json FILE`
 * (write everything), `--baseline FILE` (an earlier `--json`, for the TLS
 * no-regression check).
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import {
  type BenchReport,
  type ClientCommand,
  type ClientSpec,
  type CommandTarget,
  compare,
  compareClients,
  type IdleResult,
  machineInfo,
  type TargetSpec,
} from "../../src/bench/bench.ts";
import { checkGoals } from "./_goals.ts";
import { peers } from "./_peers.ts";
import {
  caption,
  type FramerResult,
  markdown,
  type Results,
} from "./_results.ts";

const ROOT = new URL("../..", import.meta.url);
const TLS = new URL("../../tls/", import.meta.url);

const flags = parseArgs(Deno.args, {
  boolean: ["quick", "peers", "tls", "idle", "framer"],
  string: ["rounds", "messages", "many", "many-messages", "json", "baseline"],
  default: { peers: true, tls: true, idle: true, framer: true },
  negatable: ["peers", "tls", "idle", "framer"],
});
const quick = flags.quick === true;
const whole = (name: string, fallback: number) => {
  const value = flags[name as "rounds"];
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`Invalid --${name} "${value}": expected a whole number >= 1`);
    Deno.exit(2);
  }
  return n;
};
const ROUNDS = whole("rounds", quick ? 1 : 3);
const MANY = whole("many", 64);
// Warm-ups long enough for the JIT to settle in a fresh process (each
// client runs in a process of its own, every round): what is measured is
// the steady state a long-running receiver or sender is in.
const LOADS = [
  {
    connections: 1,
    messages: whole("messages", quick ? 300 : 4000),
    warmup: quick ? 30 : 2000,
  },
  {
    connections: MANY,
    messages: whole("many-messages", quick ? 20 : 150),
    warmup: quick ? 2 : 40,
  },
];
/** node-hl7-server's messages per connection (see _peers.ts). */
const GROWING_MESSAGES = 50;
const IDLE = 1000;
const IDLE_ROUNDS = quick ? 1 : ROUNDS;
const TLS_FILES = {
  cert: new URL("server/server_certificate.pem", TLS).pathname,
  key: new URL("server/private_key.pem", TLS).pathname,
  ca: new URL("root-ca/ca_certificate.pem", TLS).pathname,
};

const encoder = new TextEncoder();
function say(line = "") {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}
const progress = (line: string) => say("  " + line);

async function gitCommit(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("git", {
      args: ["rev-parse", "--short", "HEAD"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "null",
    }).output();
    return output.success
      ? new TextDecoder().decode(output.stdout).trim()
      : undefined;
  } catch {
    return undefined;
  }
}

/** Runs tests/wire/framer_bench.ts and reads the two decode figures. */
async function framer(): Promise<FramerResult> {
  say("\nframer: deno bench tests/wire/framer_bench.ts");
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "--json", "tests/wire/framer_bench.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error("deno bench failed");
  const report = JSON.parse(new TextDecoder().decode(output.stdout));
  const find = (prefix: string) => {
    const bench = report.benches.find((b: { name: string }) =>
      b.name.startsWith(prefix)
    );
    return { name: bench.name as string, avg: bench.results[0].ok.avg };
  };
  const small = find("decode 65536 x 1 KiB frames");
  const big = find("decode 1 x 64 MiB frame");
  const floor = find("reference: copy and join 64 MiB");
  const smallBytes = Number(/\((\d+) bytes\)/.exec(small.name)?.[1]);
  return {
    smallFramesMBps: smallBytes / (small.avg / 1e9) / 1e6,
    bigFrameSeconds: big.avg / 1e9,
    bigFrameFloorSeconds: floor.avg / 1e9,
  };
}

const machine = await machineInfo();
const npm = await peers(flags.peers, say);
const listenLog = await Deno.makeTempFile({ prefix: "mllp-bench-listen-" });
const listen: CommandTarget = {
  name: "listen",
  command: [
    Deno.execPath(),
    "run",
    "-A",
    new URL("src/cli.ts", ROOT).pathname,
    "listen",
    "--port",
    "{port}",
    "--hostname",
    "127.0.0.1",
  ],
  cwd: ROOT,
  ready: "listen",
  stderr: listenLog,
};
/** The lean loop plus the HL7 work of a client that checks its replies. */
const CLIENT_FLOOR: ClientCommand = {
  name: "client floor",
  command: [
    Deno.execPath(),
    "run",
    "-A",
    new URL("./client_floor.ts", import.meta.url).pathname,
  ],
  cwd: ROOT,
};
const results: Results = {
  machine,
  node: npm.node,
  commit: await gitCommit(),
  receivers: {},
  growing: {},
  clients: {},
  tls: { receivers: {}, clients: {} },
};

try {
  // ---- receivers ----
  for (const load of LOADS) {
    const c = String(load.connections);
    say(`\nreceivers, ${c} connection(s), ${ROUNDS} round(s):`);
    // listen takes at most 64 connections from one address.
    if (load.connections > 64) say("  (not listen: more than 64 connections)");
    results.receivers[c] = await compare({
      ...load,
      rounds: ROUNDS,
      targets: [
        "raw",
        "floor",
        "self",
        ...(load.connections > 64 ? [] : [listen]),
        ...npm.servers,
      ],
      onProgress: progress,
    });
    if (npm.growingServers.length > 0) {
      say(`  node-hl7-server: ${GROWING_MESSAGES} messages per connection`);
      results.growing[c] = await compare({
        ...load,
        messages: Math.min(load.messages, GROWING_MESSAGES),
        warmup: Math.min(load.warmup, 5),
        rounds: ROUNDS,
        targets: ["raw", ...npm.growingServers],
        onProgress: progress,
      });
    }
  }

  // ---- clients ----
  const modes = [
    ["original", ["lean", CLIENT_FLOOR, "client", ...npm.clients]],
    ["enhanced", ["lean", CLIENT_FLOOR, "client"]],
    ["release2", ["lean", "client"]],
  ] as const satisfies readonly (readonly [string, readonly ClientSpec[]])[];
  for (const [mode, clients] of modes) {
    results.clients[mode] = {};
    for (const load of LOADS) {
      const c = String(load.connections);
      say(`\nclients, ${mode}, ${c} connection(s), ${ROUNDS} round(s):`);
      results.clients[mode][c] = await compareClients({
        ...load,
        rounds: ROUNDS,
        mode,
        clients: [...clients],
        onProgress: progress,
      });
    }
  }

  // ---- TLS ----
  if (flags.tls) {
    const tls = { caCerts: [TLS_FILES.ca], serverName: "localhost" };
    const serverTls = { cert: TLS_FILES.cert, key: TLS_FILES.key };
    for (const load of LOADS) {
      const c = String(load.connections);
      say(`\nTLS, ${c} connection(s), ${ROUNDS} round(s):`);
      results.tls.receivers[c] = await compare({
        ...load,
        rounds: ROUNDS,
        targets: ["raw", "self"],
        tls,
        serverTls,
        onProgress: progress,
      });
      results.tls.clients[c] = await compareClients({
        ...load,
        rounds: ROUNDS,
        clients: ["lean", "client"],
        tls,
        serverTls,
        onProgress: progress,
      });
    }
  }

  // ---- idle connections ----
  if (flags.idle) {
    // Not listen: it takes at most 64 connections from one address. A
    // fresh server for each round: memory a server has freed is not
    // always given back, so a second round on it would read low.
    const targets: TargetSpec[] = [
      "raw",
      "self",
      ...npm.servers,
      ...npm.growingServers,
    ];
    say(`\n${IDLE} idle connections, ${IDLE_ROUNDS} round(s):`);
    const rounds: IdleResult[][] = targets.map(() => []);
    let names: string[] = [];
    for (let round = 0; round < IDLE_ROUNDS; round++) {
      const report = await compare({
        targets,
        idle: IDLE,
        onProgress: progress,
      });
      names = report.targets.map((t) => t.name);
      report.targets.forEach((t, i) => rounds[i].push(t.idle!));
    }
    results.idle = {
      connections: IDLE,
      targets: names.map((name, i) => ({
        name,
        median: [...rounds[i]].sort((a, b) => a.rssGrowth - b.rssGrowth)[
          (rounds[i].length - 1) >> 1
        ],
        rounds: rounds[i],
      })),
    };
  }

  if (flags.framer) results.framer = await framer();
} finally {
  await Deno.remove(listenLog).catch(() => {});
}

// ---- the tables ----

const lines: string[] = [];
const table = (
  report: BenchReport | undefined,
  title: string,
  extra?: BenchReport,
) => {
  if (!report) return;
  lines.push("", caption(report, title), "");
  lines.push(
    ...markdown(report, extra?.targets.filter((t) => t.name !== "raw")),
  );
};
lines.push(
  `Machine: ${machine.cpus} CPUs (${machine.cpuModel ?? "unknown model"}), ${
    machine.memoryBytes ? Math.round(machine.memoryBytes / 2 ** 30) : "?"
  } GiB, ${machine.os}; Deno ${machine.deno}${
    npm.node ? `, Node ${npm.node}` : ""
  }; loopback; a ${
    results.receivers["1"].settings.payloadBytes
  }-byte ADT^A01 (original mode unless said); commit ${results.commit ?? "?"}.`,
  "CPU: user + system time of the process measured (the server, or the client), all threads, per message, warm-up included; RSS: that process, before the load and its peak under load (sampled every 100 ms).",
);
for (const [c, report] of Object.entries(results.receivers)) {
  table(report, "Receivers", results.growing[c]);
  const growing = results.growing[c];
  if (growing) {
    const raw = growing.targets.find((t) => t.name === "raw");
    lines.push(
      "",
      `\\* measured with ${growing.settings.messages} messages per connection, its ratios to a raw run of the same size (raw: ${
        Math.round(raw?.summary.messagesPerSecond ?? 0)
      } msg/s): node-hl7-server keeps every earlier message of a connection in its buffer and parses them all again for each new one (and answers with the first one's MSH-10), so its cost per message grows with the messages a connection has sent.`,
    );
  }
}
for (const [mode, byConnections] of Object.entries(results.clients)) {
  for (const report of Object.values(byConnections)) {
    table(report, `Clients, ${mode} mode`);
  }
}
for (const c of Object.keys(results.tls.receivers)) {
  table(results.tls.receivers[c], "Receivers over TLS");
  table(results.tls.clients[c], "Clients over TLS");
}
if (results.idle) {
  lines.push(
    "",
    `${results.idle.connections} idle connections (RSS of the server, after a garbage collection; median of ${IDLE_ROUNDS} round(s), a fresh server each):`,
    "",
    "| Server | RSS before MiB | with the connections MiB | growth MiB | per connection KiB |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const { name, median } of results.idle.targets) {
    lines.push(
      `| ${name} | ${(median.rssBefore / 2 ** 20).toFixed(1)} | ${
        (median.rssAfter / 2 ** 20).toFixed(1)
      } | ${(median.rssGrowth / 2 ** 20).toFixed(1)} | ${
        (median.bytesPerConnection / 1024).toFixed(1)
      } |`,
    );
  }
}
if (results.framer) {
  lines.push(
    "",
    `Framer (tests/wire/framer_bench.ts, mean of 20): 1 KiB frames in 64 KiB chunks ${
      Math.round(results.framer.smallFramesMBps)
    } MB/s; one 64 MiB frame in 64 KiB chunks ${
      results.framer.bigFrameSeconds.toFixed(3)
    } s, where copying its chunks and joining the copies (the least a decoder must do) takes ${
      results.framer.bigFrameFloorSeconds?.toFixed(3)
    } s.`,
  );
}

const baseline: Results | undefined = flags.baseline
  ? JSON.parse(await Deno.readTextFile(flags.baseline))
  : undefined;
lines.push("", "Targets (issue 14):", "");
for (const goal of checkGoals(results, baseline)) {
  lines.push(`- ${goal.status}: ${goal.text}`);
}
console.log(lines.join("\n"));
if (flags.json) {
  await Deno.writeTextFile(flags.json, JSON.stringify(results, null, 2) + "\n");
  say(`Wrote ${flags.json}`);
}
