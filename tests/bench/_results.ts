/**
 * What one `deno task bench` run measured, as it is kept (`--json FILE`)
 * and read back (`--baseline FILE`), and the Markdown tables made of it.
 *
 * @module
 */

import type {
  BenchReport,
  IdleResult,
  MachineInfo,
  TargetReport,
} from "../../src/bench/bench.ts";

/** The framer's two decode figures, from tests/wire/framer_bench.ts. */
export interface FramerResult {
  /** 1 KiB frames in 64 KiB chunks, MB/s (10^6 bytes). */
  smallFramesMBps: number;
  /** One 64 MiB frame in 64 KiB chunks, seconds. */
  bigFrameSeconds: number;
  /**
   * The floor for it: copying the same chunks and joining the copies,
   * seconds (missing in runs from before it was measured).
   */
  bigFrameFloorSeconds?: number;
}

/** Reports by number of connections (`"1"`, `"64"`). */
export type ByConnections = Record<string, BenchReport>;

/** Everything one run measured. */
export interface Results {
  machine: MachineInfo;
  /** `node --version`, when the npm peers ran. */
  node?: string;
  /** The git commit measured, when known. */
  commit?: string;
  /** Receivers, lean load: raw, self, listen and the npm servers. */
  receivers: ByConnections;
  /** node-hl7-server, in runs of its own with raw, with few messages. */
  growing: ByConnections;
  /** Clients against the minimal responder, by mode. */
  clients: Record<string, ByConnections>;
  /** Over TLS: raw and self; lean and Client. */
  tls: { receivers: ByConnections; clients: ByConnections };
  /** Idle connections: the median reading per target. */
  idle?: { connections: number; targets: TargetIdle[] };
  /** The framer. */
  framer?: FramerResult;
}

/** One target's idle-connection reading. */
export interface TargetIdle {
  name: string;
  /** The median of the rounds (by growth), and every round. */
  median: IdleResult;
  rounds: IdleResult[];
}

/** A report's target by name. */
export function target(
  report: BenchReport | undefined,
  name: string,
): TargetReport | undefined {
  return report?.targets.find((t) => t.name === name);
}

const LABELS: Record<string, string> = {
  raw: "raw responder (Deno TCP, the reference)",
  self: "**@x/mllp** Receiver + EchoDispatcher, no logging",
  listen: "`mllp listen`, default logging to a file",
  lean: "lean generator (the reference)",
  client: "**@x/mllp** Client",
};

const mib = (bytes: number | undefined) =>
  bytes === undefined ? "-" : (bytes / 2 ** 20).toFixed(1);
const fixed = (value: number | undefined, digits: number) =>
  value === undefined ? "-" : value.toFixed(digits);

/** The caption of a report's table: what was measured, and how. */
export function caption(report: BenchReport, title: string): string {
  const s = report.settings;
  const load = report.kind === "clients"
    ? "each client in a process of its own against the minimal responder"
    : report.load === "client"
    ? "load: this library's Client"
    : "load: the lean generator";
  return `${title}: ${s.connections} connection${
    s.connections === 1 ? "" : "s"
  } × ${s.messages} messages (+${s.warmup} warm-up each), ${load}${
    report.tls ? ", TLS" : ""
  }, medians of ${s.rounds} round${s.rounds === 1 ? "" : "s"}`;
}

/**
 * A report as a Markdown table: rate and its ratio, round trips, CPU per
 * message and its ratio, the other side's CPU, RSS before, peak and
 * growth, errors. `extra` rows (from other runs) are marked with `*`.
 */
export function markdown(
  report: BenchReport,
  extra: TargetReport[] = [],
): string[] {
  const clients = report.kind === "clients";
  const ref = report.reference ?? (clients ? "lean" : "raw");
  const header = [
    clients ? "Client" : "Server",
    "msg/s",
    `vs ${ref}`,
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "CPU µs/msg",
    `CPU vs ${ref}`,
    clients ? "responder CPU µs/msg" : "load CPU µs/msg",
    "RSS MiB",
    "peak MiB",
    "growth MiB",
    "errors",
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => i === 0 ? "---" : "---:").join(" | ")} |`,
  ];
  const row = (t: TargetReport, mark: string) => {
    const s = t.summary;
    return `| ${
      [
        (LABELS[t.name] ?? t.name) + mark,
        Math.round(s.messagesPerSecond).toString(),
        fixed(t.ratio, 2),
        s.latency.p50.toFixed(2),
        s.latency.p90.toFixed(2),
        s.latency.p99.toFixed(2),
        s.latency.max.toFixed(2),
        fixed(s.cpuMicros, 1),
        fixed(t.cpuRatio, 2),
        fixed(clients ? s.serverCpuMicros : s.loadCpuMicros, 1),
        mib(s.rssBefore),
        mib(s.rssPeak),
        mib(s.rssGrowth),
        s.errors.toString(),
      ].join(" | ")
    } |`;
  };
  for (const t of report.targets) lines.push(row(t, ""));
  for (const t of extra) lines.push(row(t, " *"));
  return lines;
}
