/**
 * Several targets in one run: {@linkcode compare} measures receivers with
 * one load generator, {@linkcode compareClients} measures clients against
 * one minimal responder; both alternate the targets round by round and
 * report medians and ratios to a reference taken in the same run.
 * Re-exported by `bench.ts`.
 *
 * @module
 */

import { procCpuTime, sampleRss } from "./_proc.ts";
import { type ClientSpec, runClient } from "./clients.ts";
import { runLean } from "./lean.ts";
import {
  type BenchOptions,
  type BenchResult,
  count,
  DEFAULT_CONNECTIONS,
  DEFAULT_MESSAGES,
  DEFAULT_WARMUP,
  type IdleResult,
  measureIdle,
  runBench,
} from "./load.ts";
import { DEFAULT_MESSAGE_SIZE, makeAdtMessage } from "./raw.ts";
import {
  type BenchReport,
  machineInfo,
  type Measured,
  setRatios,
  targetReport,
} from "./report.ts";
import { RESPONDER_MODES, type ResponderMode } from "./responder.ts";
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
   * The load: `"lean"`, the lean generator ({@linkcode runLean}), which
   * measures the receiver; or `"client"`, this library's client
   * ({@linkcode runBench}), end to end.
   *
   * @default {"lean"}
   */
  load?: "lean" | "client";
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
 * Measures several receivers in one run: starts them all, reads each
 * one's RSS, then for each round runs the load ({@linkcode runLean} by
 * default, or {@linkcode runBench}; or {@linkcode measureIdle}) on each in
 * turn, sampling the server's RSS and reading its CPU time (and this
 * process's, the load's) before and after; reports the medians and each
 * target's ratios to `"raw"`.
 *
 * @param options The targets, the load, rounds, and idle mode.
 * @returns The report; print it with {@linkcode formatReport}.
 * @throws {Error} If a target cannot be started or connected to.
 *
 * @example Raw and self, two rounds
 * ```ts
 * import { compare } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const report = await compare({
 *   targets: ["raw", "self"],
 *   messages: 20,
 *   warmup: 2,
 *   rounds: 2,
 *   inProcess: true,
 * });
 * assertEquals(report.load, "lean");
 * assert(report.targets[1].ratioToRaw! > 0);
 * ```
 */
export async function compare(options: CompareOptions): Promise<BenchReport> {
  const rounds = count(options.rounds ?? 1, 1, "rounds");
  const load = options.load ?? "lean";
  if (load !== "lean" && load !== "client") {
    throw new RangeError(
      `Invalid load: expected lean or client, got "${load}"`,
    );
  }
  const payload = typeof options.payload === "string"
    ? encoder.encode(options.payload)
    : options.payload ?? encoder.encode(makeAdtMessage());
  const started: RunningTarget[] = [];
  const measured: Measured[] = [];
  const idles: IdleResult[][] = options.targets.map(() => []);
  try {
    for (const spec of options.targets) {
      const target = await startTarget(spec, {
        inProcess: options.inProcess,
        payload,
        tls: options.serverTls,
      });
      started.push(target);
      measured.push({
        name: target.name,
        address: `${target.hostname}:${target.port}`,
        runs: [],
        serverCpu: [],
        cpu: [],
        loadCpu: [],
        memory: [],
      });
    }
    // Each server's RSS before any load, as it started.
    const rssBefore = await Promise.all(started.map((t) => t.rssNow()));
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
        const inThisProcess = target.pid === Deno.pid;
        const cpuBefore = await target.cpuTime();
        const loadBefore = inThisProcess
          ? undefined
          : await procCpuTime(Deno.pid);
        const sampler = sampleRss(() => target.rssNow());
        let result: BenchResult;
        let peak: number | undefined;
        try {
          const run = load === "lean" ? runLean : runBench;
          result = await run({
            ...options,
            hostname: target.hostname,
            port: target.port,
            payload,
          });
        } finally {
          peak = await sampler.stop();
        }
        const cpuAfter = await target.cpuTime();
        const loadAfter = inThisProcess
          ? undefined
          : await procCpuTime(Deno.pid);
        const m = measured[i];
        m.runs.push(result);
        m.memory.push({ before: rssBefore[i], peak });
        const handled = result.connections *
          (result.messagesPerConnection + result.warmup);
        if (cpuBefore !== undefined && cpuAfter !== undefined) {
          const micros = (cpuAfter - cpuBefore) * 1000 / handled;
          m.serverCpu.push(micros);
          m.cpu.push(micros);
        }
        if (loadBefore !== undefined && loadAfter !== undefined) {
          m.loadCpu.push((loadAfter - loadBefore) * 1000 / handled);
        }
        options.onProgress?.(progress(target.name, round, result));
      }
    }
  } finally {
    await Promise.all(started.map((target) => target.close()));
  }
  const reports = measured.map((m, i) => {
    const report = targetReport(m);
    if (options.idle !== undefined) {
      report.idle = medianIdle(idles[i]);
      delete report.memory;
      for (const key of ["rssBefore", "rssPeak", "rssGrowth"] as const) {
        delete report.summary[key];
      }
    }
    return report;
  });
  let reference: string | undefined;
  if (options.idle === undefined) {
    reference = setRatios(reports, "raw");
    for (const report of reports) report.ratioToRaw = report.ratio;
  }
  return {
    machine: await machineInfo(),
    kind: "receivers",
    load,
    tls: options.serverTls !== undefined || options.tls !== undefined,
    ...(reference ? { reference } : {}),
    settings: {
      ...settingsOf(options, payload, rounds),
      ...(options.idle !== undefined ? { idle: options.idle } : {}),
    },
    targets: reports,
  };
}

/**
 * Options for {@linkcode compareClients}.
 *
 * @example This library's client against the lean generator, enhanced mode
 * ```ts
 * import { compareClients, type CompareClientsOptions } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const options: CompareClientsOptions = {
 *   clients: ["lean", "client"],
 *   mode: "enhanced",
 *   connections: 2,
 *   messages: 10,
 *   warmup: 1,
 *   inProcess: true,
 * };
 * const report = await compareClients(options);
 * assertEquals(report.targets.map((t) => t.summary.errors), [0, 0]);
 * ```
 */
export interface CompareClientsOptions
  extends Omit<BenchOptions, "hostname" | "port" | "signal" | "mllpRelease"> {
  /** The clients, measured in this order in each round. */
  clients: ClientSpec[];
  /**
   * What the minimal responder answers, and so what the clients speak:
   * `"original"` (`AA`), `"enhanced"` (`CA`; the default payload then sets
   * MSH-15 `AL` and MSH-16 `NE`), or `"release2"` (MLLP release 2: a
   * commit frame, then `AA`).
   *
   * @default {"original"}
   */
  mode?: ResponderMode;
  /**
   * How many times each client is measured, alternating; the report gives
   * the medians.
   *
   * @default {1}
   */
  rounds?: number;
  /**
   * Run the responder, and `"lean"` and `"client"`, in this process rather
   * than in children (no CPU times are then known).
   *
   * @default {false}
   */
  inProcess?: boolean;
  /** Serve the responder with TLS (see {@linkcode StartTargetOptions}). */
  serverTls?: { cert: string; key: string };
  /** Called with a line of progress after each run. */
  onProgress?: (line: string) => void;
}

/**
 * Measures several clients in one run against the minimal responder
 * ({@linkcode startAckResponder}, started once, in a child process unless
 * `inProcess`): for each round runs each client in turn
 * ({@linkcode runClient}: a fresh child process per run), reading the
 * client's CPU time and RSS and the responder's CPU time; reports the
 * medians and each client's ratios to `"lean"`.
 *
 * @param options The clients, the mode, the load and rounds.
 * @returns The report; print it with {@linkcode formatReport}.
 * @throws {Error} If the responder or a client cannot be started.
 *
 * @example The lean generator and this library's client, release 2
 * ```ts
 * import { compareClients, formatReport } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const report = await compareClients({
 *   clients: ["lean", "client"],
 *   mode: "release2",
 *   messages: 20,
 *   warmup: 2,
 * });
 * assertEquals([report.kind, report.reference], ["clients", "lean"]);
 * assert(report.targets[1].ratio! > 0);
 * console.log(formatReport(report));
 * ```
 */
export async function compareClients(
  options: CompareClientsOptions,
): Promise<BenchReport> {
  const rounds = count(options.rounds ?? 1, 1, "rounds");
  const mode = options.mode ?? "original";
  if (!RESPONDER_MODES.includes(mode)) {
    throw new RangeError(
      `Invalid mode: expected ${RESPONDER_MODES.join(", ")}, got "${mode}"`,
    );
  }
  const payload = typeof options.payload === "string"
    ? encoder.encode(options.payload)
    : options.payload ?? encoder.encode(
      makeAdtMessage(DEFAULT_MESSAGE_SIZE, {
        ackMode: mode === "enhanced" ? "enhanced" : "original",
      }),
    );
  const responder = await startTarget("responder", {
    mode,
    inProcess: options.inProcess,
    tls: options.serverTls,
  });
  const address = `${responder.hostname}:${responder.port}`;
  const measured: Measured[] = options.clients.map((spec) => ({
    name: typeof spec === "string" ? spec : spec.name,
    address,
    runs: [],
    serverCpu: [],
    cpu: [],
    loadCpu: [],
    memory: [],
  }));
  try {
    for (let round = 0; round < rounds; round++) {
      const order = options.clients.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        const cpuBefore = await responder.cpuTime();
        const run = await runClient(options.clients[i], {
          ...options,
          hostname: responder.hostname,
          port: responder.port,
          payload,
          mllpRelease: mode === "release2" ? 2 : 1,
        });
        const cpuAfter = await responder.cpuTime();
        const m = measured[i];
        m.runs.push(run.result);
        m.memory.push({ before: run.rssBefore, peak: run.rssPeak });
        if (run.cpuMicros !== undefined) m.cpu.push(run.cpuMicros);
        if (cpuBefore !== undefined && cpuAfter !== undefined) {
          const { connections, messagesPerConnection, warmup } = run.result;
          m.serverCpu.push(
            (cpuAfter - cpuBefore) * 1000 /
              (connections * (messagesPerConnection + warmup)),
          );
        }
        options.onProgress?.(progress(m.name, round, run.result));
      }
    }
  } finally {
    await responder.close();
  }
  const reports = measured.map(targetReport);
  const reference = setRatios(reports, "lean");
  return {
    machine: await machineInfo(),
    kind: "clients",
    mode,
    tls: options.serverTls !== undefined || options.tls !== undefined,
    ...(reference ? { reference } : {}),
    settings: settingsOf(options, payload, rounds),
    targets: reports,
  };
}

function progress(name: string, round: number, result: BenchResult): string {
  return `${name} round ${round + 1}: ${
    Math.round(result.messagesPerSecond)
  } msg/s, p99 ${result.latency.p99.toFixed(2)} ms, ${result.errors} errors`;
}

function medianIdle(idles: IdleResult[]): IdleResult | undefined {
  if (idles.length === 0) return undefined;
  const sorted = [...idles].sort((a, b) => a.rssGrowth - b.rssGrowth);
  return sorted[(sorted.length - 1) >> 1];
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** A report's settings: the load, as given or by default. */
function settingsOf(
  options: { connections?: number; messages?: number; warmup?: number },
  payload: Uint8Array,
  rounds: number,
) {
  return {
    connections: options.connections ?? DEFAULT_CONNECTIONS,
    messages: options.messages ?? DEFAULT_MESSAGES,
    warmup: options.warmup ?? DEFAULT_WARMUP,
    payloadBytes: payload.length,
    rounds,
  };
}
