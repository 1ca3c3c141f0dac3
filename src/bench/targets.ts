/**
 * The servers the load tool measures: {@linkcode startTarget} starts the
 * raw responder, the minimal ACK responder or this library's receiver (in
 * a child process or in this one), or any server command, or describes a
 * receiver already running. The child side is `child.ts`. Re-exported by
 * `bench.ts`.
 *
 * @module
 */

import { LineReader, stopChild } from "./_children.ts";
import { procCpuTime, procListening, procRss } from "./_proc.ts";
import { closeQuietly } from "./_serve.ts";
import { makeAdtMessage, replyFor, startRawResponder } from "./raw.ts";
import { startFloorResponder } from "./floor.ts";
import { type ResponderMode, startAckResponder } from "./responder.ts";
import { startSelf } from "./self.ts";

const encoder = new TextEncoder();
/** The module a child runs: `bench.ts serve ...`. */
export const BENCH_MODULE: string = new URL("./bench.ts", import.meta.url).href;

/**
 * What to measure: `"raw"` (the raw responder), `"floor"` (the least a
 * receiver answering each message with its AA can do, see
 * {@linkcode startFloorResponder}), `"self"` (this library's receiver with
 * the EchoDispatcher), `"responder"` (the minimal ACK
 * responder that clients are measured against), a server command, or a
 * receiver already running.
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
  | "floor"
  | "self"
  | "responder"
  | CommandTarget
  | AddressTarget;

/**
 * A server started as a child process: one that speaks the child protocol
 * (see the module doc of `@x/mllp/unstable-bench`), or, with
 * `ready: "listen"`, any server command that takes a port.
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
 *
 * @example Start `mllp listen`, its log going to a file
 * ```ts
 * import { type CommandTarget, runLean, startTarget } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const log = await Deno.makeTempFile();
 * const listen: CommandTarget = {
 *   name: "listen",
 *   command: [Deno.execPath(), "run", "-A", "src/cli.ts", "listen", "--port", "{port}", "--hostname", "127.0.0.1"],
 *   ready: "listen",
 *   stderr: log,
 * };
 * await using target = await startTarget(listen);
 * const result = await runLean({ port: target.port, messages: 10, warmup: 1 });
 * assertEquals(result.errors, 0);
 * await target.close();
 * await Deno.remove(log);
 * ```
 */
export interface CommandTarget {
  /** The name reported. */
  name: string;
  /**
   * The program and its arguments, such as `["node", "server.mjs"]`. With
   * `ready: "listen"`, every `{port}` in them is replaced by the port the
   * server is to listen on.
   */
  command: string[];
  /** The working directory. */
  cwd?: string | URL;
  /**
   * How the server says it is ready. `"announce"`: it speaks the child
   * protocol. `"listen"`: it is a plain server command; the bench picks a
   * free port for its `{port}`, waits until something listens there (on
   * Linux, read from `/proc/net/tcp`; elsewhere by connecting once), reads
   * its RSS from `/proc`, and stops it with SIGTERM (SIGKILL after 5 s).
   *
   * @default {"announce"}
   */
  ready?: "announce" | "listen";
  /**
   * A file its stderr is written to (replaced), instead of this process's
   * stderr: for a server that logs a line per message. Runs the command
   * through `/bin/sh`, which then `exec`s it.
   */
  stderr?: string;
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
   * Start `"raw"`, `"floor"`, `"self"` and `"responder"` in this process rather than
   * in a child.
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
  /**
   * What `"responder"` answers.
   *
   * @default {"original"}
   */
  mode?: ResponderMode;
  /**
   * Serve `"raw"`, `"floor"`, `"self"` and `"responder"` with TLS: certificate and
   * key, PEM files.
   */
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
 * assert((await target.rssNow() ?? 0) > 0);
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
   * Reads the server's resident set size after asking it to collect its
   * garbage (a child that speaks the child protocol does), for a reading
   * that settles: what idle connections cost.
   *
   * @returns The RSS in bytes, or `undefined` when it cannot be known.
   */
  rss(): Promise<number | undefined>;
  /**
   * Reads the server's resident set size as it is (from `/proc` for a
   * child or a known pid; this process's for one in this process), for
   * samples under load.
   *
   * @returns The RSS in bytes, or `undefined` when it cannot be known.
   */
  rssNow(): Promise<number | undefined>;
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
 * `"raw"`, `"floor"`, `"self"` and `"responder"` run in a child Deno process by
 * default, so that the server and the load generator each get a thread,
 * as a server under Node does; a command target always does.
 *
 * @param spec What to start.
 * @param options In-process or not, the payload, the responder's mode,
 *   TLS and a start timeout.
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
    const rss = () => Promise.resolve(spec.pid ? procRss(spec.pid) : undefined);
    return {
      name: spec.name ?? `${spec.hostname}:${spec.port}`,
      hostname: spec.hostname,
      port: spec.port,
      pid: spec.pid,
      rss,
      rssNow: rss,
      cpuTime: () =>
        Promise.resolve(spec.pid ? procCpuTime(spec.pid) : undefined),
      close: () => Promise.resolve(),
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  }
  if (
    spec === "raw" || spec === "floor" || spec === "self" ||
    spec === "responder"
  ) {
    const payload = options.payload ?? makeAdtMessage();
    const mode = options.mode ?? "original";
    const tls = options.tls && {
      cert: await Deno.readTextFile(options.tls.cert),
      key: await Deno.readTextFile(options.tls.key),
    };
    if (options.inProcess) {
      return await startInProcess(spec, payload, mode, tls);
    }
    const args = ["run", "-A", "--v8-flags=--expose-gc", BENCH_MODULE];
    args.push("serve", spec);
    if (spec === "raw") args.push("--reply", base64(replyFor(payload)));
    if (spec === "responder") args.push("--mode", mode);
    if (options.tls) {
      args.push("--cert", options.tls.cert, "--key", options.tls.key);
    }
    return await spawnTarget(spec, Deno.execPath(), args, undefined, options);
  }
  if (spec.ready === "listen") return await spawnListening(spec, options);
  const [program, ...args] = spec.command;
  return await spawnTarget(spec.name, program, args, spec.cwd, options);
}

async function startInProcess(
  kind: "raw" | "floor" | "self" | "responder",
  payload: Uint8Array | string,
  mode: ResponderMode,
  tls: { cert: string; key: string } | undefined,
): Promise<RunningTarget> {
  const server = kind === "raw"
    ? startRawResponder({ reply: replyFor(payload), tls })
    : kind === "floor"
    ? startFloorResponder({ tls })
    : kind === "responder"
    ? startAckResponder({ mode, tls })
    : await startSelf(0, "127.0.0.1", tls);
  const close = () => "stop" in server ? server.stop() : server.close();
  const rss = () => Promise.resolve(Deno.memoryUsage().rss);
  return {
    name: kind,
    hostname: "127.0.0.1",
    port: server.port,
    pid: Deno.pid,
    rss,
    rssNow: rss,
    cpuTime: () => Promise.resolve(undefined),
    close,
    [Symbol.asyncDispose]: close,
  };
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
      await stopChild(child, name, undefined);
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
    rssNow: async () => await procRss(pid) ?? await rss(),
    cpuTime: () => procCpuTime(pid),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Spawns a plain server command on a free port, its stderr to a file if
 * asked, and waits until it listens.
 */
async function spawnListening(
  spec: CommandTarget,
  options: StartTargetOptions,
): Promise<RunningTarget> {
  const hostname = "127.0.0.1";
  const port = freePort(hostname);
  const command = spec.command.map((arg) =>
    arg.replaceAll("{port}", String(port))
  );
  const [program, ...args] = spec.stderr === undefined ? command : [
    "/bin/sh",
    "-c",
    'f="$1"; shift; exec "$@" 2>"$f"',
    "sh",
    spec.stderr,
    ...command,
  ];
  const child = new Deno.Command(program, {
    args,
    cwd: spec.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  const close = () => stopChild(child, spec.name, "SIGTERM");
  const timeout = options.startTimeout ?? 30_000;
  const deadline = performance.now() + timeout;
  try {
    while (!await listening(hostname, port)) {
      if (exited) {
        throw new Error(
          `Cannot start ${spec.name} (${
            command[0]
          }): it exited before listening`,
        );
      }
      if (performance.now() > deadline) {
        throw new Error(
          `Cannot start ${spec.name} (${
            command[0]
          }): not listening within ${timeout} ms`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await close();
    throw error;
  }
  const rss = () => procRss(child.pid);
  return {
    name: spec.name,
    hostname,
    port,
    pid: child.pid,
    rss,
    rssNow: rss,
    cpuTime: () => procCpuTime(child.pid),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A port nothing listens on now. */
function freePort(hostname: string): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Whether something listens on the port: from /proc, or by connecting. */
async function listening(hostname: string, port: number): Promise<boolean> {
  const known = await procListening(port);
  if (known !== undefined) return known;
  try {
    closeQuietly(await Deno.connect({ hostname, port }));
    return true;
  } catch {
    return false;
  }
}

/** Bytes as base64, for a child's command line. */
export function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return btoa(binary);
}

/** Base64 from a command line, as bytes. */
export function unbase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
