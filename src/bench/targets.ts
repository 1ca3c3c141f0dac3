/**
 * The servers the load tool measures: {@linkcode startTarget} starts the
 * raw responder or this library's receiver (in a child process or in this
 * one), or any server command that speaks the child protocol, or
 * describes a receiver already running. {@linkcode serveChild} is the
 * child side. Re-exported by `bench.ts`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { EchoDispatcher } from "../dispatch/dispatcher.ts";
import { Receiver } from "../receiver/receiver.ts";
import { makeAdtMessage, replyFor, startRawResponder } from "./raw.ts";

const logger = getLogger(["mllp", "bench"]);
const encoder = new TextEncoder();
/** The module a child runs: `bench.ts serve ...`. */
const BENCH_MODULE = new URL("./bench.ts", import.meta.url).href;

/**
 * What to measure: `"raw"` (the raw responder), `"self"` (this library's
 * receiver with the EchoDispatcher), a server command that speaks the
 * child protocol (see the module doc), or a receiver already running.
 *
 * @example Read a target from a command-line argument
 * ```ts
 * import { startTarget, type TargetSpec } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * function parseTarget(arg: string): TargetSpec {
 *   if (arg === "raw" || arg === "self") return arg;
 *   const [hostname, port] = arg.split(":");
 *   return { hostname, port: Number(port) };
 * }
 * assertEquals(parseTarget("127.0.0.1:2575"), {
 *   hostname: "127.0.0.1",
 *   port: 2575,
 * });
 * await using target = await startTarget(parseTarget("self"), {
 *   inProcess: true,
 * });
 * assertEquals(target.name, "self");
 * ```
 */
export type TargetSpec =
  | "raw"
  | "self"
  | CommandTarget
  | AddressTarget;

/**
 * A server started as a child process that speaks the child protocol.
 *
 * @example Start a server command that speaks the child protocol
 * ```ts
 * import { type CommandTarget, startTarget } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * // Any program will do if it prints its address as one JSON line once it listens.
 * const command: CommandTarget = {
 *   name: "deno-raw",
 *   command: [Deno.execPath(), "run", "-A", "src/bench/bench.ts", "serve", "raw"],
 * };
 * await using target = await startTarget(command);
 * assertEquals(target.name, "deno-raw");
 * assert(target.port > 0 && target.pid !== undefined);
 * ```
 */
export interface CommandTarget {
  /** The name reported. */
  name: string;
  /** The program and its arguments, such as `["node", "server.mjs"]`. */
  command: string[];
  /** The working directory. */
  cwd?: string | URL;
}

/**
 * A receiver already running.
 *
 * @example Measure a receiver that is already running
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { type AddressTarget, runBench, startTarget } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 * });
 * const running: AddressTarget = {
 *   name: "mine",
 *   hostname: "127.0.0.1",
 *   port: receiver.port,
 * };
 * await using target = await startTarget(running); // only describes it
 * const result = await runBench({
 *   hostname: target.hostname,
 *   port: target.port,
 *   messages: 10,
 *   warmup: 1,
 * });
 * assertEquals([target.name, result.errors], ["mine", 0]);
 * ```
 */
export interface AddressTarget {
  /**
   * The name reported.
   *
   * @default {"HOST:PORT"}
   */
  name?: string;
  /** Its host name or IP address. */
  hostname: string;
  /** Its port. */
  port: number;
  /** Its process id, to read its RSS from `/proc` (Linux only). */
  pid?: number;
}

/**
 * Options for {@linkcode startTarget}.
 *
 * @example The raw responder in this process, answering a 2 KiB message
 * ```ts
 * import { makeAdtMessage, runBench, startTarget, type StartTargetOptions } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const payload = makeAdtMessage(2048);
 * const options: StartTargetOptions = { inProcess: true, payload };
 * await using target = await startTarget("raw", options);
 * const result = await runBench({ port: target.port, payload, messages: 10, warmup: 1 });
 * assertEquals([result.ok, result.payloadBytes], [10, 2048]);
 * ```
 */
export interface StartTargetOptions {
  /**
   * Start `"raw"` and `"self"` in this process rather than in a child.
   * The load generator then shares a thread with the server, and RSS
   * readings include the load generator.
   *
   * @default {false}
   */
  inProcess?: boolean;
  /**
   * The payload the load tool will send: the raw responder answers the
   * ACK for it (see {@linkcode replyFor}).
   *
   * @default {makeAdtMessage()}
   */
  payload?: Uint8Array | string;
  /** Serve `"raw"` and `"self"` with TLS: certificate and key, PEM files. */
  tls?: { cert: string; key: string };
  /**
   * How long a child may take to start listening, in milliseconds.
   *
   * @default {30000}
   */
  startTimeout?: number;
}

/**
 * A target ready to be measured.
 *
 * @example Read a target's memory
 * ```ts
 * import { type RunningTarget, startTarget } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const target: RunningTarget = await startTarget("self", { inProcess: true });
 * assert((await target.rss() ?? 0) > 0);
 * assertEquals(await target.cpuTime(), undefined); // not known for a server in this process
 * await target.close();
 * ```
 */
export interface RunningTarget extends AsyncDisposable {
  /** The name reported: `raw`, `self`, the command's name, or the address. */
  readonly name: string;
  /** The address to connect to. */
  readonly hostname: string;
  /** The port to connect to. */
  readonly port: number;
  /** The server's process id, when known. */
  readonly pid?: number;
  /**
   * Reads the server's resident set size.
   *
   * @returns The RSS in bytes, or `undefined` when it cannot be known.
   */
  rss(): Promise<number | undefined>;
  /**
   * Reads the CPU time the server process has used (user and system, all
   * threads), from `/proc` on Linux.
   *
   * @returns Milliseconds, or `undefined` when it cannot be known (not
   *   Linux, or a server in this process, whose time includes the load).
   */
  cpuTime(): Promise<number | undefined>;
  /**
   * Stops the server, if this started it.
   *
   * @returns A promise that resolves when it has stopped.
   */
  close(): Promise<void>;
}

/**
 * Starts a target (or, for a running receiver, just describes it).
 * `"raw"` and `"self"` run in a child Deno process by default, so that
 * the server and the load generator each get a thread, as a server under
 * Node does; a command target always does.
 *
 * @param spec What to start.
 * @param options In-process or not, the payload, TLS and a start timeout.
 * @returns The running target; close it when done.
 * @throws {Error} If the child does not start listening in time.
 *
 * @example Start this library's receiver in a child process
 * ```ts
 * import { startTarget } from "@x/mllp/unstable-bench";
 * import { assert } from "@std/assert";
 *
 * await using target = await startTarget("self");
 * assert(target.port > 0);
 * assert((await target.rss() ?? 0) > 0);
 * ```
 */
export async function startTarget(
  spec: TargetSpec,
  options: StartTargetOptions = {},
): Promise<RunningTarget> {
  if (typeof spec === "object" && "hostname" in spec) {
    return {
      name: spec.name ?? `${spec.hostname}:${spec.port}`,
      hostname: spec.hostname,
      port: spec.port,
      pid: spec.pid,
      rss: () => Promise.resolve(spec.pid ? procRss(spec.pid) : undefined),
      cpuTime: () =>
        Promise.resolve(spec.pid ? procCpuTime(spec.pid) : undefined),
      close: () => Promise.resolve(),
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  }
  if (spec === "raw" || spec === "self") {
    const payload = options.payload ?? makeAdtMessage();
    const tls = options.tls && {
      cert: await Deno.readTextFile(options.tls.cert),
      key: await Deno.readTextFile(options.tls.key),
    };
    if (options.inProcess) return await startInProcess(spec, payload, tls);
    const args = ["run", "-A", "--v8-flags=--expose-gc", BENCH_MODULE];
    args.push("serve", spec, "--reply", base64(replyFor(payload)));
    if (options.tls) {
      args.push("--cert", options.tls.cert, "--key", options.tls.key);
    }
    return await spawnTarget(spec, Deno.execPath(), args, undefined, options);
  }
  const [program, ...args] = spec.command;
  return await spawnTarget(spec.name, program, args, spec.cwd, options);
}

async function startInProcess(
  kind: "raw" | "self",
  payload: Uint8Array | string,
  tls: { cert: string; key: string } | undefined,
): Promise<RunningTarget> {
  const server = kind === "raw"
    ? startRawResponder({ reply: replyFor(payload), tls })
    : await startSelf(0, "127.0.0.1", tls);
  const close = () =>
    server instanceof Receiver ? server.stop() : server.close();
  return {
    name: kind,
    hostname: "127.0.0.1",
    port: server.port,
    pid: Deno.pid,
    rss: () => Promise.resolve(Deno.memoryUsage().rss),
    cpuTime: () => Promise.resolve(undefined),
    close,
    [Symbol.asyncDispose]: close,
  };
}

function startSelf(
  port: number,
  hostname: string,
  tls: { cert: string; key: string } | undefined,
): Promise<Receiver> {
  return Receiver.start({
    port,
    hostname,
    dispatcher: EchoDispatcher,
    tls,
    // The load comes from one address, and may be thousands of connections.
    maxConnections: 1_000_000,
    maxConnectionsPerClient: 1_000_000,
  });
}

/** Spawns a child that speaks the child protocol and waits for its port. */
async function spawnTarget(
  name: string,
  program: string,
  args: string[],
  cwd: string | URL | undefined,
  options: StartTargetOptions,
): Promise<RunningTarget> {
  const child = new Deno.Command(program, {
    args,
    cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = new LineReader(child.stdout);
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      await writer.close().catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), 5000);
        }),
      ]);
      clearTimeout(timer);
      if (!exited) {
        logger.warn("{name} did not stop in 5 s; killing it", { name });
        try {
          child.kill("SIGKILL");
        } catch {
          // It exited just now.
        }
        await child.status;
      }
      await lines.cancel();
    })();
  let announced: { hostname?: string; port: number; pid?: number };
  try {
    announced = await lines.first(
      (line) => {
        const value = JSON.parse(line);
        return typeof value?.port === "number" ? value : undefined;
      },
      options.startTimeout ?? 30_000,
      `${name} (${program})`,
    );
  } catch (error) {
    await close();
    throw error;
  }
  let asking = Promise.resolve<number | undefined>(undefined);
  const rss = () =>
    asking = asking.then(async () => {
      await writer.write(encoder.encode("rss\n"));
      const line = await lines.next();
      const value = line === undefined ? undefined : JSON.parse(line)?.rss;
      return typeof value === "number" ? value : undefined;
    }, () => undefined);
  const pid = announced.pid ?? child.pid;
  return {
    name,
    hostname: announced.hostname ?? "127.0.0.1",
    port: announced.port,
    pid,
    rss,
    cpuTime: () => procCpuTime(pid),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Lines of a child's stdout. */
class LineReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  async next(): Promise<string | undefined> {
    while (true) {
      const end = this.#buffer.indexOf("\n");
      if (end !== -1) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#buffer += value;
    }
  }

  /** The first line `pick` accepts (lines it throws on are skipped). */
  async first<T>(
    pick: (line: string) => T | undefined,
    timeout: number,
    label: string,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `Cannot start ${label}: not listening within ${timeout} ms`,
            ),
          ),
        timeout,
      );
    });
    try {
      while (true) {
        const line = await Promise.race([this.next(), late]);
        if (line === undefined) {
          throw new Error(`Cannot start ${label}: it exited before listening`);
        }
        try {
          const value = pick(line);
          if (value !== undefined) return value;
        } catch {
          // Not the announcement.
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  cancel(): Promise<void> {
    return this.#reader.cancel().catch(() => {});
  }
}

/** VmRSS from `/proc/PID/status`, in bytes; `undefined` where unreadable. */
async function procRss(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * User plus system CPU time of a process, in ms, from `/proc/PID/stat`
 * (fields 14 and 15, in clock ticks of 10 ms, the Linux default);
 * `undefined` where unreadable.
 */
async function procCpuTime(pid: number): Promise<number | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The fields after the command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function unbase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * Runs `serve raw|self [--port N] [--hostname H] [--reply BASE64]
 * [--cert FILE --key FILE]`: the child side of {@linkcode startTarget}.
 *
 * @param args The arguments after `serve`.
 * @returns The exit status.
 */
export async function serveChild(args: string[]): Promise<number> {
  const [kind, ...rest] = args;
  if (kind !== "raw" && kind !== "self") {
    console.error("Usage: bench.ts serve raw|self [--port N] [--hostname H]");
    return 2;
  }
  const flags: Record<string, string> = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || rest[i + 1] === undefined) {
      console.error(`Unexpected argument "${rest[i]}"`);
      return 2;
    }
    flags[rest[i].slice(2)] = rest[i + 1];
  }
  const port = Number(flags.port ?? 0);
  const hostname = flags.hostname ?? "127.0.0.1";
  const tls = flags.cert && flags.key
    ? {
      cert: await Deno.readTextFile(flags.cert),
      key: await Deno.readTextFile(flags.key),
    }
    : undefined;
  const server = kind === "raw"
    ? startRawResponder({
      port,
      hostname,
      tls,
      reply: flags.reply ? unbase64(flags.reply) : undefined,
    })
    : await startSelf(port, hostname, tls);
  const say = (value: unknown) => {
    const data = encoder.encode(JSON.stringify(value) + "\n");
    for (let n = 0; n < data.length;) {
      n += Deno.stdout.writeSync(data.subarray(n));
    }
  };
  say({ hostname, port: server.port, pid: Deno.pid });
  const lines = new LineReader(Deno.stdin.readable);
  const stop = () => void lines.cancel();
  Deno.addSignalListener("SIGTERM", stop);
  try {
    for (
      let line = await lines.next();
      line !== undefined;
      line = await lines.next()
    ) {
      if (line.trim() === "rss") {
        (globalThis as { gc?: () => void }).gc?.();
        say({ rss: Deno.memoryUsage().rss });
      }
    }
  } finally {
    Deno.removeSignalListener("SIGTERM", stop);
    if (server instanceof Receiver) await server.stop({ deadline: 1000 });
    else await server.close();
  }
  return 0;
}
