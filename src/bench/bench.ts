/**
 * A load tool for MLLP receivers, and the bare TCP responder it measures
 * them against. Unstable: exported as `@x/mllp/unstable-bench`, its API
 * may change in any release (`mllp bench` is the stable way to use it).
 *
 * {@linkcode runBench} opens N connections with this library's
 * {@linkcode Client} and sends M messages on each, stop-and-wait (one in
 * flight per connection, as MLLP senders do), after a warm-up that is not
 * counted; it reports messages per second and round-trip percentiles.
 * {@linkcode startRawResponder} is the yardstick: a TCP server that does
 * the least possible work (no framing library, no HL7), answering a fixed
 * ACK for each `FS CR` it sees. {@linkcode startTarget} starts either of
 * them, or this library's receiver, or any server command that speaks the
 * child protocol below, in a child process; {@linkcode compare} measures
 * several targets in one run, in alternating rounds, and
 * {@linkcode formatReport} prints the table. `mllp bench` is the command
 * line for all of it.
 *
 * A server started by {@linkcode startTarget} is a child process that
 * prints one JSON line, `{"hostname": ..., "port": ..., "pid": ...}`, once
 * it listens; answers each `rss` line on its stdin with `{"rss": BYTES}`;
 * and stops when its stdin ends. This module is such a server itself:
 *
 * ```sh
 * deno run -A src/bench/bench.ts serve self --port 2575   # or: serve raw
 * ```
 *
 * @example Measure the raw responder and this library's receiver
 * ```ts
 * import { compare, formatReport } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const report = await compare({
 *   targets: ["raw", "self"],
 *   connections: 2,
 *   messages: 20,
 *   warmup: 5,
 *   inProcess: true,
 * });
 * assertEquals(report.targets.map((t) => t.summary.errors), [0, 0]);
 * assertEquals(report.targets[1].summary.sent, 40);
 * console.log(formatReport(report));
 * ```
 *
 * @module
 */

import { serveChild } from "./targets.ts";

export {
  BENCH_CONTROL_ID,
  DEFAULT_MESSAGE_SIZE,
  makeAdtMessage,
  type RawResponder,
  type RawResponderOptions,
  replyFor,
  startRawResponder,
} from "./raw.ts";
export {
  type BenchOptions,
  type BenchResult,
  DEFAULT_CONNECTIONS,
  DEFAULT_MESSAGES,
  DEFAULT_WARMUP,
  type IdleOptions,
  type IdleResult,
  type LatencySummary,
  measureIdle,
  runBench,
  summarizeLatency,
} from "./load.ts";
export {
  type AddressTarget,
  type CommandTarget,
  type RunningTarget,
  startTarget,
  type StartTargetOptions,
  type TargetSpec,
} from "./targets.ts";
export {
  type BenchReport,
  type BenchSummary,
  compare,
  type CompareOptions,
  formatReport,
  type MachineInfo,
  machineInfo,
  type TargetReport,
} from "./report.ts";
export type { ClientTlsOptions } from "../client/client.ts";

if (import.meta.main) {
  // Ends by itself (no Deno.exit), so that --cpu-prof can write its profile.
  const [command, ...rest] = Deno.args;
  if (command === "serve") {
    Deno.exitCode = await serveChild(rest);
  } else {
    console.error("Usage: bench.ts serve raw|self [--port N] [--hostname H]");
    Deno.exitCode = 2;
  }
}
