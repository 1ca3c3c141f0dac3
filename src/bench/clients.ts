/**
 * The clients the bench measures: {@linkcode runClient} runs the lean
 * generator, this library's client, or any client command that speaks the
 * client protocol, in a child process of its own (or, for the first two,
 * in this one), and reads its CPU time and memory while it runs. The
 * child side is `child.ts`. Re-exported by `bench.ts`.
 *
 * A client command is started with `--hostname H --port P --connections
 * N --messages M --warmup W --timeout MS --payload BASE64` (and
 * `--release 2`, `--ca PEM-OR-FILE`, `--servername NAME` when they
 * apply); once loaded it prints `{"ready": true}` as one line and waits
 * for a `go` line on its stdin; then it opens its connections, sends
 * `W` messages on each (not counted) and `M` more stop-and-wait, prints
 * `{"result": {...}}` (a {@linkcode BenchResult}) or `{"error": "..."}`,
 * and exits when its stdin ends.
 *
 * @module
 */

import { LineReader, stopChild } from "./_children.ts";
import { procCpuTime, procRss, sampleRss } from "./_proc.ts";
import { runLean } from "./lean.ts";
import {
  type BenchOptions,
  type BenchResult,
  DEFAULT_CONNECTIONS,
  DEFAULT_MESSAGES,
  DEFAULT_WARMUP,
  runBench,
} from "./load.ts";
import { makeAdtMessage } from "./raw.ts";
import { base64, BENCH_MODULE } from "./targets.ts";

const encoder = new TextEncoder();

/**
 * A client to measure: `"lean"` (the lean load generator,
 * {@linkcode runLean}), `"client"` (this library's `Client`, one per
 * connection, {@linkcode runBench}), or a command that speaks the client
 * protocol (see the module doc).
 *
 * @example Name the clients of a comparison
 * ```ts
 * import type { ClientSpec } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const clients: ClientSpec[] = [
 *   "lean",
 *   "client",
 *   { name: "node-client", command: ["node", "my_client.mjs"] },
 * ];
 * const names = clients.map((c) => typeof c === "string" ? c : c.name);
 * assertEquals(names, ["lean", "client", "node-client"]);
 * ```
 */
export type ClientSpec = "lean" | "client" | ClientCommand;

/**
 * A client started as a child process that speaks the client protocol:
 * it is started with `--hostname H --port P --connections N --messages M
 * --warmup W --timeout MS --payload BASE64` added to its command (and
 * `--release 2`, `--ca PEM-OR-FILE`, `--servername NAME` when they apply);
 * once loaded it prints `{"ready": true}` as one line and waits for a `go`
 * line on its stdin; then it opens its connections, sends `W` messages on
 * each (not counted) and `M` more, stop-and-wait, prints
 * `{"result": {...}}` (a {@linkcode BenchResult}) or `{"error": "..."}`,
 * and exits when its stdin ends.
 *
 * @example This library's client as a command
 * ```ts
 * import { type ClientCommand, runClient, startAckResponder } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * await using responder = startAckResponder();
 * const command: ClientCommand = {
 *   name: "deno-client",
 *   command: [Deno.execPath(), "run", "-A", "src/bench/bench.ts", "client", "client"],
 * };
 * const run = await runClient(command, { port: responder.port, messages: 10, warmup: 1 });
 * assertEquals([run.name, run.result.ok], ["deno-client", 10]);
 * ```
 */
export interface ClientCommand {
  /** The name reported. */
  name: string;
  /** The program and its arguments; the bench adds the load's flags. */
  command: string[];
  /** The working directory. */
  cwd?: string | URL;
}

/**
 * Options for {@linkcode runClient}.
 *
 * @example The lean generator in this process
 * ```ts
 * import { type ClientRunOptions, runClient, startAckResponder } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * await using responder = startAckResponder();
 * const options: ClientRunOptions = {
 *   port: responder.port,
 *   connections: 2,
 *   messages: 10,
 *   warmup: 1,
 *   inProcess: true,
 * };
 * const run = await runClient("lean", options);
 * assertEquals([run.result.sent, run.cpuMicros], [20, undefined]);
 * ```
 */
export interface ClientRunOptions extends Omit<BenchOptions, "signal"> {
  /**
   * Run `"lean"` and `"client"` in this process rather than in a child:
   * no CPU time is then known, and the RSS is this whole process's.
   *
   * @default {false}
   */
  inProcess?: boolean;
  /**
   * How long a child may take to load, and then to finish its run, each
   * in milliseconds.
   *
   * @default {600000}
   */
  runTimeout?: number;
}

/**
 * What {@linkcode runClient} measured.
 *
 * @example Read a client's cost
 * ```ts
 * import type { ClientRun } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * function cost(run: ClientRun): string {
 *   const kib = ((run.rssPeak ?? 0) - (run.rssBefore ?? 0)) / 1024;
 *   return `${run.name}: ${run.cpuMicros?.toFixed(1) ?? "?"} µs/msg, +${kib} KiB`;
 * }
 * const run: ClientRun = {
 *   name: "lean",
 *   result: {
 *     connections: 1, messagesPerConnection: 1, warmup: 0, payloadBytes: 1024,
 *     sent: 1, ok: 1, errors: 0, failures: {}, seconds: 0.001,
 *     messagesPerSecond: 1000,
 *     latency: { p50: 1, p90: 1, p99: 1, max: 1, mean: 1 },
 *   },
 *   cpuMicros: 12.5,
 *   rssBefore: 40 * 1024 * 1024,
 *   rssPeak: 41 * 1024 * 1024,
 * };
 * assertEquals(cost(run), "lean: 12.5 µs/msg, +1024 KiB");
 * ```
 */
export interface ClientRun {
  /** The client's name. */
  name: string;
  /** The rate, round trips and failures. */
  result: BenchResult;
  /**
   * The CPU time the client's process used per message (user and system,
   * all threads, warm-up included), in µs: children on Linux only.
   */
  cpuMicros?: number;
  /** The client process's RSS once loaded, before it connected, in bytes. */
  rssBefore?: number;
  /** The highest RSS sampled while it ran, in bytes. */
  rssPeak?: number;
}

/**
 * Runs one client against a server: the lean generator, this library's
 * client, or a client command, in a child process unless `inProcess`
 * (commands always are), sampling the child's RSS every 100 ms and
 * reading its CPU time before and after.
 *
 * @param spec The client.
 * @param options Where to connect, the load, the payload, MLLP release
 *   and TLS (passed to a child as flags).
 * @returns The result, with the client process's CPU time and memory.
 * @throws {Error} If the client cannot start, or reports an error.
 *
 * @example This library's client and the lean generator, one each
 * ```ts
 * import { runClient, startAckResponder } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * await using responder = startAckResponder();
 * const lean = await runClient("lean", { port: responder.port, messages: 20, warmup: 2 });
 * const client = await runClient("client", { port: responder.port, messages: 20, warmup: 2 });
 * assertEquals([lean.result.ok, client.result.ok], [20, 20]);
 * assert((lean.rssPeak ?? 1) > 0);
 * ```
 */
export async function runClient(
  spec: ClientSpec,
  options: ClientRunOptions,
): Promise<ClientRun> {
  const name = typeof spec === "string" ? spec : spec.name;
  if (typeof spec === "string" && options.inProcess) {
    const rss = () => Promise.resolve(Deno.memoryUsage().rss);
    const rssBefore = await rss();
    const sampler = sampleRss(rss);
    let result: BenchResult;
    let rssPeak: number | undefined;
    try {
      result = spec === "lean"
        ? await runLean(options)
        : await runBench(options);
    } finally {
      rssPeak = await sampler.stop();
    }
    return { name, result, rssBefore, rssPeak };
  }
  const [program, ...args] = typeof spec === "string"
    ? [Deno.execPath(), "run", "-A", BENCH_MODULE, "client", spec]
    : spec.command;
  args.push(...clientFlags(options));
  const child = new Deno.Command(program, {
    args,
    cwd: typeof spec === "string" ? undefined : spec.cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = new LineReader(child.stdout);
  const timeout = options.runTimeout ?? 600_000;
  const label = `${name} (${program})`;
  try {
    await lines.first(
      (line) => JSON.parse(line)?.ready === true ? true : undefined,
      timeout,
      label,
    );
    const pid = child.pid;
    const cpuBefore = await procCpuTime(pid);
    const rssBefore = await procRss(pid);
    const sampler = sampleRss(() => procRss(pid));
    let answer: { result?: BenchResult; error?: string };
    let rssPeak: number | undefined;
    try {
      await writer.write(encoder.encode("go\n"));
      answer = await lines.first(
        (line) => {
          const value = JSON.parse(line);
          return value?.result || value?.error ? value : undefined;
        },
        timeout,
        label,
      );
    } finally {
      rssPeak = await sampler.stop();
    }
    const cpuAfter = await procCpuTime(pid);
    if (!answer.result) {
      throw new Error(`Cannot measure ${name}: ${answer.error}`);
    }
    const result = answer.result;
    const handled = result.connections *
      (result.messagesPerConnection + result.warmup);
    return {
      name,
      result,
      cpuMicros: cpuBefore !== undefined && cpuAfter !== undefined
        ? (cpuAfter - cpuBefore) * 1000 / handled
        : undefined,
      rssBefore,
      rssPeak,
    };
  } finally {
    await writer.close().catch(() => {});
    await stopChild(child, name, undefined);
    await lines.cancel();
  }
}

/** The client protocol's flags for a run. */
function clientFlags(options: ClientRunOptions): string[] {
  const payload = typeof options.payload === "string"
    ? encoder.encode(options.payload)
    : options.payload ?? encoder.encode(makeAdtMessage());
  const flags = [
    "--hostname",
    options.hostname ?? "127.0.0.1",
    "--port",
    String(options.port),
    "--connections",
    String(options.connections ?? DEFAULT_CONNECTIONS),
    "--messages",
    String(options.messages ?? DEFAULT_MESSAGES),
    "--warmup",
    String(options.warmup ?? DEFAULT_WARMUP),
    "--timeout",
    String(options.replyTimeout ?? 60_000),
    "--payload",
    base64(payload),
  ];
  if (options.mllpRelease === 2) flags.push("--release", "2");
  const tls = options.tls;
  if (tls) {
    const cas = typeof tls.caCerts === "string"
      ? [tls.caCerts]
      : tls.caCerts ?? [];
    for (const ca of cas) flags.push("--ca", ca);
    if (tls.serverName) flags.push("--servername", tls.serverName);
    if (tls.cert || tls.key) {
      throw new TypeError(
        "Cannot pass a client certificate to a client child: measure it in this process",
      );
    }
  }
  return flags;
}
