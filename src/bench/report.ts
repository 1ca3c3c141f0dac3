/**
 * Several targets in one run: {@linkcode compare} measures them in
 * alternating rounds, {@linkcode formatReport} prints the table.
 * Re-exported by `bench.ts`.
 *
 * @module
 */

import {
  type BenchOptions,
  type BenchResult,
  count,
  DEFAULT_CONNECTIONS,
  DEFAULT_MESSAGES,
  DEFAULT_WARMUP,
  type IdleResult,
  type LatencySummary,
  measureIdle,
  runBench,
} from "./load.ts";
import { makeAdtMessage } from "./raw.ts";
import { type RunningTarget, startTarget, type TargetSpec } from "./targets.ts";

const encoder = new TextEncoder();

/**
 * Options for {@linkcode compare}.
 *
 * @example Three short rounds against the raw responder
 * ```ts
 * import { compare, type CompareOptions } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const progress: string[] = [];
 * const options: CompareOptions = {
 *   targets: ["raw"],
 *   connections: 1,
 *   messages: 10,
 *   warmup: 1,
 *   rounds: 3,
 *   inProcess: true,
 *   onProgress: (line) => progress.push(line),
 * };
 * const report = await compare(options);
 * assertEquals([report.targets[0].runs.length, progress.length], [3, 3]);
 * ```
 */
export interface CompareOptions
  extends Omit<BenchOptions, "hostname" | "port" | "signal"> {
  /** The targets, measured in this order in each round. */
  targets: TargetSpec[];
  /**
   * How many times each target is measured; rounds alternate between the
   * targets, and the report gives the median of each figure.
   *
   * @default {1}
   */
  rounds?: number;
  /**
   * Measure idle connections instead of load: open this many and report
   * the receiver's RSS growth (see {@linkcode measureIdle}).
   */
  idle?: number;
  /** Start `"raw"` and `"self"` in this process (see {@linkcode StartTargetOptions}). */
  inProcess?: boolean;
  /** Serve `"raw"` and `"self"` with TLS (see {@linkcode StartTargetOptions}). */
  serverTls?: { cert: string; key: string };
  /** Called with a line of progress after each run. */
  onProgress?: (line: string) => void;
}

/**
 * The machine a report was made on.
 *
 * @example Describe this machine
 * ```ts
 * import { type MachineInfo, machineInfo } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const machine: MachineInfo = await machineInfo();
 * assertEquals(machine.deno, Deno.version.deno);
 * assert(machine.cpus > 0 && machine.arch.length > 0);
 * ```
 */
export interface MachineInfo {
  /** The operating system and kernel release. */
  os: string;
  /** The CPU architecture. */
  arch: string;
  /** The number of logical CPUs. */
  cpus: number;
  /** The CPU model, where it can be read. */
  cpuModel?: string;
  /** Total memory, in bytes. */
  memoryBytes?: number;
  /** The Deno version. */
  deno: string;
}

/**
 * The medians of a target's runs.
 *
 * @example Read a target's medians
 * ```ts
 * import { type BenchSummary, compare } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const report = await compare({
 *   targets: ["raw"],
 *   messages: 10,
 *   warmup: 1,
 *   inProcess: true,
 * });
 * const summary: BenchSummary = report.targets[0].summary;
 * assertEquals([summary.sent, summary.errors, summary.failures], [10, 0, {}]);
 * assert(summary.messagesPerSecond > 0);
 * ```
 */
export interface BenchSummary {
  /** Median messages per second. */
  messagesPerSecond: number;
  /** Median of each round-trip figure, in ms. */
  latency: LatencySummary;
  /** Measured messages sent, over all runs. */
  sent: number;
  /** Failed messages, over all runs. */
  errors: number;
  /** Failures by kind, over all runs. */
  failures: Record<string, number>;
  /**
   * Median CPU time the server used per message (warm-up included), in
   * microseconds: steadier than messages/s on a busy machine. Only for
   * servers in a child process or with a known pid, on Linux.
   */
  serverCpuMicros?: number;
}

/**
 * One target's part of a {@linkcode BenchReport}.
 *
 * @example Compare this library's receiver with the raw responder
 * ```ts
 * import { compare, type TargetReport } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const report = await compare({
 *   targets: ["raw", "self"],
 *   messages: 10,
 *   warmup: 1,
 *   inProcess: true,
 * });
 * const self: TargetReport = report.targets[1];
 * assertEquals([self.name, self.runs.length], ["self", 1]);
 * assert(self.address.startsWith("127.0.0.1:"));
 * assert(self.ratioToRaw !== undefined && self.ratioToRaw > 0);
 * ```
 */
export interface TargetReport {
  /** The target's name. */
  name: string;
  /** The address measured, `host:port`. */
  address: string;
  /** Every run, in order. */
  runs: BenchResult[];
  /** The server's CPU time per message in each run, in µs, when known. */
  serverCpuMicros?: number[];
  /** The medians (all zeros in idle mode). */
  summary: BenchSummary;
  /**
   * Median messages per second divided by the raw responder's, when
   * `"raw"` was measured in the same run.
   */
  ratioToRaw?: number;
  /** The idle-connection readings, in idle mode (median growth). */
  idle?: IdleResult;
}

/**
 * What {@linkcode compare} measured.
 *
 * @example Save a report as JSON
 * ```ts
 * import { type BenchReport, compare, formatReport } from "@x/mllp/unstable-bench";
 * import { assertEquals, assertStringIncludes } from "@std/assert";
 *
 * const report: BenchReport = await compare({
 *   targets: ["raw"],
 *   messages: 10,
 *   warmup: 1,
 *   inProcess: true,
 * });
 * const saved: BenchReport = JSON.parse(JSON.stringify(report));
 * assertEquals(saved.settings.messages, 10);
 * assertEquals(saved.targets.map((target) => target.name), ["raw"]);
 * assertStringIncludes(formatReport(saved), "raw");
 * ```
 */
export interface BenchReport {
  /** The machine. */
  machine: MachineInfo;
  /** The load: connections, messages, warm-up, payload size, rounds. */
  settings: {
    connections: number;
    messages: number;
    warmup: number;
    payloadBytes: number;
    rounds: number;
    idle?: number;
  };
  /** One entry per target, in the order given. */
  targets: TargetReport[];
}

/**
 * Measures several targets in one run: starts them all, then for each
 * round runs {@linkcode runBench} (or {@linkcode measureIdle}) on each in
 * turn, and reports the medians and each target's ratio to `"raw"`.
 *
 * @param options The targets, the load, rounds, and idle mode.
 * @returns The report; print it with {@linkcode formatReport}.
 * @throws {Error} If a target cannot be started or connected to.
 *
 * @example Raw and self, two rounds
 * ```ts
 * import { compare } from "@x/mllp/unstable-bench";
 * import { assert } from "@std/assert";
 *
 * const report = await compare({
 *   targets: ["raw", "self"],
 *   messages: 20,
 *   warmup: 2,
 *   rounds: 2,
 *   inProcess: true,
 * });
 * assert(report.targets[1].ratioToRaw! > 0);
 * ```
 */
export async function compare(options: CompareOptions): Promise<BenchReport> {
  const rounds = count(options.rounds ?? 1, 1, "rounds");
  const payload = typeof options.payload === "string"
    ? encoder.encode(options.payload)
    : options.payload ?? encoder.encode(makeAdtMessage());
  const started: RunningTarget[] = [];
  const runs: BenchResult[][] = options.targets.map(() => []);
  const idles: IdleResult[][] = options.targets.map(() => []);
  const cpus: number[][] = options.targets.map(() => []);
  try {
    for (const spec of options.targets) {
      started.push(
        await startTarget(spec, {
          inProcess: options.inProcess,
          payload,
          tls: options.serverTls,
        }),
      );
    }
    for (let round = 0; round < rounds; round++) {
      // Alternate the order, so that no target always runs first.
      const order = started.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        const target = started[i];
        if (options.idle !== undefined) {
          const idle = await measureIdle({
            hostname: target.hostname,
            port: target.port,
            connections: options.idle,
            rss: () => target.rss(),
            tls: options.tls,
          });
          idles[i].push(idle);
          options.onProgress?.(
            `${target.name} round ${
              round + 1
            }: ${options.idle} idle connections, RSS +${
              mib(idle.rssGrowth)
            } MiB`,
          );
          continue;
        }
        const cpuBefore = await target.cpuTime();
        const result = await runBench({
          ...options,
          hostname: target.hostname,
          port: target.port,
          payload,
        });
        const cpuAfter = await target.cpuTime();
        runs[i].push(result);
        if (cpuBefore !== undefined && cpuAfter !== undefined) {
          const handled = result.connections *
            (result.messagesPerConnection + result.warmup);
          cpus[i].push((cpuAfter - cpuBefore) * 1000 / handled);
        }
        options.onProgress?.(
          `${target.name} round ${round + 1}: ${
            Math.round(result.messagesPerSecond)
          } msg/s, p99 ${
            result.latency.p99.toFixed(2)
          } ms, ${result.errors} errors`,
        );
      }
    }
  } finally {
    await Promise.all(started.map((target) => target.close()));
  }
  const reports: TargetReport[] = started.map((target, i) => {
    const report: TargetReport = {
      name: target.name,
      address: `${target.hostname}:${target.port}`,
      runs: runs[i],
      summary: summarize(runs[i]),
    };
    if (cpus[i].length > 0) {
      report.serverCpuMicros = cpus[i];
      report.summary.serverCpuMicros = median(cpus[i]);
    }
    if (options.idle !== undefined) report.idle = medianIdle(idles[i]);
    return report;
  });
  const raw = reports.find((report) => report.name === "raw");
  if (raw && options.idle === undefined && raw.summary.messagesPerSecond > 0) {
    for (const report of reports) {
      report.ratioToRaw = report.summary.messagesPerSecond /
        raw.summary.messagesPerSecond;
    }
  }
  return {
    machine: await machineInfo(),
    settings: {
      connections: options.connections ?? DEFAULT_CONNECTIONS,
      messages: options.messages ?? DEFAULT_MESSAGES,
      warmup: options.warmup ?? DEFAULT_WARMUP,
      payloadBytes: payload.length,
      rounds,
      ...(options.idle !== undefined ? { idle: options.idle } : {}),
    },
    targets: reports,
  };
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

function summarize(runs: BenchResult[]): BenchSummary {
  const failures: Record<string, number> = {};
  for (const run of runs) {
    for (const [kind, n] of Object.entries(run.failures)) {
      failures[kind] = (failures[kind] ?? 0) + n;
    }
  }
  const of = (key: keyof LatencySummary) =>
    median(runs.map((run) => run.latency[key]));
  return {
    messagesPerSecond: median(runs.map((run) => run.messagesPerSecond)),
    latency: {
      p50: of("p50"),
      p90: of("p90"),
      p99: of("p99"),
      max: of("max"),
      mean: of("mean"),
    },
    sent: runs.reduce((sum, run) => sum + run.sent, 0),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    failures,
  };
}

function medianIdle(idles: IdleResult[]): IdleResult | undefined {
  if (idles.length === 0) return undefined;
  const sorted = [...idles].sort((a, b) => a.rssGrowth - b.rssGrowth);
  return sorted[(sorted.length - 1) >> 1];
}

/**
 * Describes the machine: OS, CPUs (and model, on Linux), memory, Deno.
 *
 * @returns The description.
 *
 * @example Where a report was made
 * ```ts
 * import { machineInfo } from "@x/mllp/unstable-bench";
 * import { assert } from "@std/assert";
 *
 * assert((await machineInfo()).cpus > 0);
 * ```
 */
export async function machineInfo(): Promise<MachineInfo> {
  let cpuModel: string | undefined;
  try {
    const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim();
  } catch {
    // Not Linux, or not allowed.
  }
  let memoryBytes: number | undefined;
  try {
    memoryBytes = Deno.systemMemoryInfo().total;
  } catch {
    // Not allowed.
  }
  let release = "";
  try {
    release = " " + Deno.osRelease();
  } catch {
    // Not allowed.
  }
  return {
    os: `${Deno.build.os}${release}`,
    arch: Deno.build.arch,
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    memoryBytes,
    deno: Deno.version.deno,
  };
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/**
 * Formats a report as text: the machine, the load, and one line per
 * target with messages/s, round-trip percentiles, errors and the ratio to
 * the raw responder (or, in idle mode, the RSS readings).
 *
 * @param report What {@linkcode compare} returned.
 * @returns Lines of text, ending with a newline.
 *
 * @example Print a report
 * ```ts
 * import { compare, formatReport } from "@x/mllp/unstable-bench";
 * import { assertStringIncludes } from "@std/assert";
 *
 * const report = await compare({ targets: ["raw"], messages: 10, warmup: 0, inProcess: true });
 * assertStringIncludes(formatReport(report), "raw");
 * ```
 */
export function formatReport(report: BenchReport): string {
  const { machine, settings } = report;
  const lines = [
    `machine: ${machine.os} ${machine.arch}, ${machine.cpus} CPUs${
      machine.cpuModel ? ` (${machine.cpuModel})` : ""
    }${
      machine.memoryBytes
        ? `, ${Math.round(machine.memoryBytes / 2 ** 30)} GiB`
        : ""
    }, Deno ${machine.deno}`,
  ];
  const rounds = settings.rounds > 1
    ? `, ${settings.rounds} rounds (medians)`
    : "";
  if (settings.idle !== undefined) {
    lines.push(`load: ${settings.idle} idle connections${rounds}`, "");
    const rows = [[
      "target",
      "address",
      "RSS before",
      "RSS after",
      "growth",
      "per conn",
    ]];
    for (const target of report.targets) {
      const idle = target.idle;
      rows.push([
        target.name,
        target.address,
        idle ? `${mib(idle.rssBefore)} MiB` : "-",
        idle ? `${mib(idle.rssAfter)} MiB` : "-",
        idle ? `${mib(idle.rssGrowth)} MiB` : "-",
        idle ? `${(idle.bytesPerConnection / 1024).toFixed(1)} KiB` : "-",
      ]);
    }
    return lines.concat(table(rows)).join("\n") + "\n";
  }
  lines.push(
    `load: ${settings.connections} connection${
      settings.connections === 1 ? "" : "s"
    } x ${settings.messages} messages (+${settings.warmup} warm-up each), ${settings.payloadBytes}-byte payload, stop-and-wait${rounds}`,
    "",
  );
  const rows = [[
    "target",
    "address",
    "msg/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "cpu us/msg",
    "errors",
    "vs raw",
  ]];
  for (const target of report.targets) {
    const { summary } = target;
    rows.push([
      target.name,
      target.address,
      Math.round(summary.messagesPerSecond).toString(),
      summary.latency.p50.toFixed(3),
      summary.latency.p90.toFixed(3),
      summary.latency.p99.toFixed(3),
      summary.latency.max.toFixed(3),
      summary.serverCpuMicros === undefined
        ? "-"
        : summary.serverCpuMicros.toFixed(1),
      summary.errors === 0
        ? "0"
        : `${summary.errors} (${
          Object.entries(summary.failures).map(([k, n]) => `${k}: ${n}`).join(
            ", ",
          )
        })`,
      target.ratioToRaw === undefined ? "-" : target.ratioToRaw.toFixed(2),
    ]);
  }
  return lines.concat(table(rows)).join("\n") + "\n";
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) =>
    Math.max(...rows.map((row) => row[c].length))
  );
  return rows.map((row) =>
    row.map((cell, c) =>
      c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])
    )
      .join("  ").trimEnd()
  );
}
