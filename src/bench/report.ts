/**
 * What a comparison reports: {@linkcode BenchReport} and its parts, the
 * machine ({@linkcode machineInfo}), and how runs become medians and
 * ratios. {@linkcode compare} and {@linkcode compareClients} (in
 * `compare.ts`) make reports, {@linkcode formatReport} (in `format.ts`)
 * prints them. Re-exported by `bench.ts`.
 *
 * @module
 */

import type { IdleResult, LatencySummary } from "./load.ts";
import type { BenchResult } from "./load.ts";
import type { ResponderMode } from "./responder.ts";

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
   * servers in a child process or with a known pid, on Linux. In a
   * comparison of clients, the server is the responder.
   */
  serverCpuMicros?: number;
  /**
   * Median CPU time per message of the process measured: the server in a
   * comparison of receivers, the client in one of clients (a child
   * process, on Linux), in microseconds.
   */
  cpuMicros?: number;
  /**
   * In a comparison of receivers, the median CPU time per message of the
   * load generator (this process; not known when the server runs in it
   * too), in microseconds: what the load itself costs.
   */
  loadCpuMicros?: number;
  /**
   * The RSS of the process measured before the load, in bytes: the
   * server just started, or the client loaded and not yet connected.
   */
  rssBefore?: number;
  /** The highest RSS of the process measured, sampled under load, in bytes. */
  rssPeak?: number;
  /** `rssPeak - rssBefore`: what the load added, in bytes. */
  rssGrowth?: number;
}

/**
 * One target's part of a {@linkcode BenchReport}: a receiver, or in a
 * comparison of clients, a client.
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
 * assertEquals(self.ratio, self.ratioToRaw);
 * ```
 */
export interface TargetReport {
  /** The target's name. */
  name: string;
  /** The address measured, `host:port` (for clients, the responder's). */
  address: string;
  /** Every run, in order. */
  runs: BenchResult[];
  /** The server's CPU time per message in each run, in µs, when known. */
  serverCpuMicros?: number[];
  /** The measured process's CPU time per message in each run, in µs. */
  cpuMicros?: number[];
  /** The load generator's CPU time per message in each run, in µs. */
  loadCpuMicros?: number[];
  /** The measured process's RSS before and at its peak, in each run. */
  memory?: { before?: number; peak?: number }[];
  /** The medians (all zeros in idle mode). */
  summary: BenchSummary;
  /**
   * Median messages per second divided by the raw responder's, when
   * `"raw"` was measured in the same run.
   */
  ratioToRaw?: number;
  /**
   * Median messages per second divided by the reference's (see
   * {@linkcode BenchReport.reference}), when it was measured in the same
   * run.
   */
  ratio?: number;
  /** Median CPU time per message divided by the reference's, when known. */
  cpuRatio?: number;
  /** The idle-connection readings, in idle mode (median growth). */
  idle?: IdleResult;
}

/**
 * What {@linkcode compare} or {@linkcode compareClients} measured.
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
 * assertEquals([saved.kind, saved.load, saved.reference], ["receivers", "lean", "raw"]);
 * assertEquals(saved.targets.map((target) => target.name), ["raw"]);
 * assertStringIncludes(formatReport(saved), "raw");
 * ```
 */
export interface BenchReport {
  /** The machine. */
  machine: MachineInfo;
  /**
   * `"receivers"`: servers measured with one load generator; `"clients"`:
   * clients measured against one minimal responder.
   */
  kind: "receivers" | "clients";
  /**
   * The load that measured receivers: `"lean"` ({@linkcode runLean}) or
   * `"client"` (this library's client, {@linkcode runBench}).
   */
  load?: "lean" | "client";
  /** What the responder answered, in a comparison of clients. */
  mode?: ResponderMode;
  /** Whether the connections used TLS. */
  tls: boolean;
  /**
   * The target the ratios are to: `"raw"` for receivers, `"lean"` for
   * clients; absent when it was not measured.
   */
  reference?: string;
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

/** A target's runs and readings, before they become a report. */
export interface Measured {
  name: string;
  address: string;
  runs: BenchResult[];
  serverCpu: number[];
  cpu: number[];
  loadCpu: number[];
  memory: { before?: number; peak?: number }[];
}

/** The median of some numbers (0 for none). */
export function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The medians of a target's runs, its failures summed. */
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

/**
 * A target's report: the medians of its runs; the RSS before is the first
 * run's, the peak the highest of all.
 */
export function targetReport(measured: Measured): TargetReport {
  const report: TargetReport = {
    name: measured.name,
    address: measured.address,
    runs: measured.runs,
    summary: summarize(measured.runs),
  };
  if (measured.serverCpu.length > 0) {
    report.serverCpuMicros = measured.serverCpu;
    report.summary.serverCpuMicros = median(measured.serverCpu);
  }
  if (measured.cpu.length > 0) {
    report.cpuMicros = measured.cpu;
    report.summary.cpuMicros = median(measured.cpu);
  }
  if (measured.loadCpu.length > 0) {
    report.loadCpuMicros = measured.loadCpu;
    report.summary.loadCpuMicros = median(measured.loadCpu);
  }
  if (measured.memory.length > 0) {
    report.memory = measured.memory;
    const before = measured.memory[0].before;
    const peaks = measured.memory.flatMap((m) =>
      m.peak === undefined ? [] : [m.peak]
    );
    if (before !== undefined) report.summary.rssBefore = before;
    if (peaks.length > 0) report.summary.rssPeak = Math.max(...peaks);
    if (before !== undefined && peaks.length > 0) {
      report.summary.rssGrowth = Math.max(...peaks) - before;
    }
  }
  return report;
}

/**
 * Sets each report's ratios to the reference's (by name), if it was
 * measured and got messages through.
 *
 * @returns The reference's name, if it was measured.
 */
export function setRatios(
  reports: TargetReport[],
  reference: string,
): string | undefined {
  const ref = reports.find((report) => report.name === reference);
  if (!ref) return undefined;
  for (const report of reports) {
    if (ref.summary.messagesPerSecond > 0) {
      report.ratio = report.summary.messagesPerSecond /
        ref.summary.messagesPerSecond;
    }
    const cpu = report.summary.cpuMicros;
    const refCpu = ref.summary.cpuMicros;
    if (cpu !== undefined && refCpu !== undefined && refCpu > 0) {
      report.cpuRatio = cpu / refCpu;
    }
  }
  return reference;
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
