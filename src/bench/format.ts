/**
 * {@linkcode formatReport}: a {@linkcode BenchReport} as a text table.
 * Re-exported by `bench.ts`.
 *
 * @module
 */

import type { BenchReport, TargetReport } from "./report.ts";

/** What the responder answers, in each mode, for the load line. */
const MODE_TEXT = {
  original: "original mode: MSA|AA",
  enhanced: "enhanced mode: MSA|CA",
  release2: "MLLP release 2: commit frame 0x06, then MSA|AA",
} as const;

function mib(bytes: number | undefined): string {
  return bytes === undefined ? "-" : (bytes / 1024 / 1024).toFixed(1);
}

function fixed(value: number | undefined, digits: number): string {
  return value === undefined ? "-" : value.toFixed(digits);
}

/**
 * Formats a report as text: the machine, the load (which generator, or
 * which responder), and one line per target with messages/s, round-trip
 * percentiles, CPU time per message (and its ratio to the reference's),
 * RSS before and at its peak under load, errors, and the ratio to the
 * reference's messages/s; in idle mode, the RSS readings instead.
 *
 * @param report What {@linkcode compare} or {@linkcode compareClients}
 *   returned.
 * @returns Lines of text, ending with a newline.
 *
 * @example Print a report
 * ```ts
 * import { compare, formatReport } from "@x/mllp/unstable-bench";
 * import { assertStringIncludes } from "@std/assert";
 *
 * const report = await compare({ targets: ["raw"], messages: 10, warmup: 0, inProcess: true });
 * const text = formatReport(report);
 * assertStringIncludes(text, "raw");
 * assertStringIncludes(text, "load: lean generator");
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
  const tls = report.tls ? ", TLS" : "";
  if (settings.idle !== undefined) {
    lines.push(`load: ${settings.idle} idle connections${rounds}${tls}`, "");
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
    return lines.concat(table(rows, 2)).join("\n") + "\n";
  }
  const clients = report.kind === "clients";
  const who = clients
    ? `clients against the minimal responder (${
      MODE_TEXT[report.mode ?? "original"]
    })`
    : report.load === "client"
    ? "this library's Client (end to end: its cost is in every round trip)"
    : "lean generator (Deno.connect/write/read, no library code in the loop)";
  const ref = report.reference ?? (clients ? "lean" : "raw");
  lines.push(
    `load: ${who}, ${settings.connections} connection${
      settings.connections === 1 ? "" : "s"
    } x ${settings.messages} messages (+${settings.warmup} warm-up each), ${settings.payloadBytes}-byte payload, stop-and-wait${rounds}${tls}`,
    `ratios: to ${ref}, measured in the same run${
      report.reference ? "" : ` (not measured here: no ratios)`
    }; CPU per message of the ${
      clients ? "client" : "server"
    } process (user + system, warm-up included); RSS of that process, before the load and its peak under load`,
    "",
  );
  const rows = [[
    clients ? "client" : "target",
    "msg/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "cpu us/msg",
    `cpu vs ${ref}`,
    clients ? "server cpu" : "load cpu",
    "RSS MiB",
    "peak MiB",
    "growth",
    "errors",
    `vs ${ref}`,
  ]];
  for (const target of report.targets) rows.push(row(target, clients));
  return lines.concat(table(rows, 1)).join("\n") + "\n";
}

function row(target: TargetReport, clients: boolean): string[] {
  const { summary } = target;
  return [
    target.name,
    Math.round(summary.messagesPerSecond).toString(),
    summary.latency.p50.toFixed(3),
    summary.latency.p90.toFixed(3),
    summary.latency.p99.toFixed(3),
    summary.latency.max.toFixed(3),
    fixed(summary.cpuMicros, 1),
    fixed(target.cpuRatio, 2),
    fixed(clients ? summary.serverCpuMicros : summary.loadCpuMicros, 1),
    mib(summary.rssBefore),
    mib(summary.rssPeak),
    mib(summary.rssGrowth),
    summary.errors === 0
      ? "0"
      : `${summary.errors} (${
        Object.entries(summary.failures).map(([k, n]) => `${k}: ${n}`).join(
          ", ",
        )
      })`,
    fixed(target.ratio, 2),
  ];
}

/** Aligns columns: the first `left` to the left, the rest to the right. */
function table(rows: string[][], left: number): string[] {
  const widths = rows[0].map((_, c) =>
    Math.max(...rows.map((row) => row[c].length))
  );
  return rows.map((row) =>
    row.map((cell, c) =>
      c < left ? cell.padEnd(widths[c]) : cell.padStart(widths[c])
    )
      .join("  ").trimEnd()
  );
}
