/**
 * Load tools for MLLP receivers and clients, and the bare responders they
 * are measured against. Unstable: exported as `@x/mllp/unstable-bench`,
 * its API may change in any release (`mllp bench` is the stable way to use
 * it).
 *
 * Receivers: {@linkcode runLean} is the lean load generator, `Deno.connect`,
 * `write` and `read` with no library code in its loop: N connections, M
 * messages each, stop-and-wait (one in flight per connection, as MLLP
 * senders do), after a warm-up that is not counted; it reports messages
 * per second and round-trip percentiles. {@linkcode runBench} does the
 * same with this library's {@linkcode Client}, end to end.
 * {@linkcode startRawResponder} is the receivers' yardstick: a TCP server
 * that does the least possible work (no framing library, no HL7),
 * answering a fixed ACK for each `FS CR` it sees.
 *
 * Clients: {@linkcode startAckResponder} is the clients' yardstick, a
 * minimal correct responder that answers each frame with an ACK whose
 * MSA-2 is the frame's MSH-10 (original, enhanced or release 2);
 * {@linkcode runClient} runs the lean generator, this library's client or
 * a client command against it, in a child process whose CPU time and
 * memory it reads.
 *
 * {@linkcode startTarget} starts a responder, this library's receiver, or
 * any server command, in a child process; {@linkcode compare} measures
 * several receivers in one run, {@linkcode compareClients} several
 * clients, in alternating rounds, with ratios to their reference (`raw`,
 * `lean`) from the same run; {@linkcode formatReport} prints the table.
 * `mllp bench` is the command line for all of it.
 *
 * A server started by {@linkcode startTarget} is a child process that
 * prints one JSON line, `{"hostname": ..., "port": ..., "pid": ...}`, once
 * it listens; answers each `rss` line on its stdin with `{"rss": BYTES}`;
 * and stops when its stdin ends (or it is a plain server command that
 * takes a port: see {@linkcode CommandTarget}). A client started by
 * {@linkcode runClient} gets the load as flags, prints `{"ready": true}`,
 * waits for a `go` line, runs, and prints `{"result": ...}` (a
 * {@linkcode BenchResult}); {@linkcode ClientCommand} has the details.
 * This module is both:
 *
 * ```sh
 * deno run -A src/bench/bench.ts serve self --port 2575   # or: raw, responder
 * deno run -A src/bench/bench.ts client lean --port 2575 --messages 100
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

import { CHILD_USAGE, clientChild, serveChild } from "./child.ts";

export {
  type AdtMessageOptions,
  BENCH_CONTROL_ID,
  DEFAULT_MESSAGE_SIZE,
  makeAdtMessage,
  type RawResponder,
  type RawResponderOptions,
  replyFor,
  startRawResponder,
} from "./raw.ts";
export {
  type AckResponderOptions,
  RESPONDER_MODES,
  type ResponderMode,
  startAckResponder,
} from "./responder.ts";
export { type FloorResponderOptions, startFloorResponder } from "./floor.ts";
export { runLean } from "./lean.ts";
export {
  type ClientCommand,
  type ClientRun,
  type ClientRunOptions,
  type ClientSpec,
  runClient,
} from "./clients.ts";
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
  type MachineInfo,
  machineInfo,
  type TargetReport,
} from "./report.ts";
export {
  compare,
  compareClients,
  type CompareClientsOptions,
  type CompareOptions,
} from "./compare.ts";
export { formatReport } from "./format.ts";
export type { ClientTlsOptions } from "../client/client.ts";

if (import.meta.main) {
  // Ends by itself (no Deno.exit), so that --cpu-prof can write its profile.
  const [command, ...rest] = Deno.args;
  if (command === "serve") {
    Deno.exitCode = await serveChild(rest);
  } else if (command === "client") {
    Deno.exitCode = await clientChild(rest);
  } else {
    console.error(CHILD_USAGE);
    Deno.exitCode = 2;
  }
}
