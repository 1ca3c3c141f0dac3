/**
 * The child side of the bench: {@linkcode serveChild} runs a server for
 * `startTarget` (`bench.ts serve raw|self|responder`), and
 * {@linkcode clientChild} a client for `runClient` (`bench.ts client
 * lean|client`), each speaking its protocol on stdin and stdout.
 *
 * @module
 */

import { LineReader } from "./_children.ts";
import { startFloorResponder } from "./floor.ts";
import { runLean } from "./lean.ts";
import { type BenchOptions, type BenchResult, runBench } from "./load.ts";
import { startRawResponder } from "./raw.ts";
import { RESPONDER_MODES, startAckResponder } from "./responder.ts";
import { startSelf } from "./self.ts";
import { unbase64 } from "./targets.ts";

const encoder = new TextEncoder();

/** The usage line of `bench.ts`. */
export const CHILD_USAGE =
  "Usage: bench.ts serve raw|floor|self|responder [--port N] [--hostname H] | bench.ts client lean|client --port N [...]";

const SERVED = ["raw", "floor", "self", "responder"];

/** Writes one JSON line to stdout, whole. */
function say(value: unknown) {
  const data = encoder.encode(JSON.stringify(value) + "\n");
  for (let n = 0; n < data.length;) {
    n += Deno.stdout.writeSync(data.subarray(n));
  }
}

/** `--name value` pairs; a repeated name keeps every value. */
function parsePairs(args: string[]): Record<string, string[]> | undefined {
  const flags: Record<string, string[]> = {};
  for (let i = 0; i < args.length; i += 2) {
    if (!args[i].startsWith("--") || args[i + 1] === undefined) {
      console.error(`Unexpected argument "${args[i]}"`);
      return undefined;
    }
    (flags[args[i].slice(2)] ??= []).push(args[i + 1]);
  }
  return flags;
}

/**
 * Runs `serve raw|floor|self|responder [--port N] [--hostname H] [--reply
 * BASE64] [--mode MODE] [--cert FILE --key FILE]`: prints the address as
 * one JSON line, answers `rss` lines with the RSS after a garbage
 * collection, and stops when stdin ends or on SIGTERM.
 *
 * @param args The arguments after `serve`.
 * @returns The exit status.
 */
export async function serveChild(args: string[]): Promise<number> {
  const [kind, ...rest] = args;
  const flags = parsePairs(rest);
  if (!SERVED.includes(kind) || !flags) {
    console.error(CHILD_USAGE);
    return 2;
  }
  const flag = (name: string) => flags[name]?.at(-1);
  const port = Number(flag("port") ?? 0);
  const hostname = flag("hostname") ?? "127.0.0.1";
  const mode = RESPONDER_MODES.find((m) => m === (flag("mode") ?? "original"));
  if (mode === undefined) {
    console.error(`Invalid --mode "${flag("mode")}"`);
    return 2;
  }
  const cert = flag("cert");
  const key = flag("key");
  const tls = cert && key
    ? { cert: await Deno.readTextFile(cert), key: await Deno.readTextFile(key) }
    : undefined;
  const reply = flag("reply");
  const server = kind === "raw"
    ? startRawResponder({
      port,
      hostname,
      tls,
      reply: reply ? unbase64(reply) : undefined,
    })
    : kind === "floor"
    ? startFloorResponder({ port, hostname, tls })
    : kind === "responder"
    ? startAckResponder({ port, hostname, tls, mode })
    : await startSelf(port, hostname, tls);
  const lines = new LineReader(Deno.stdin.readable);
  const stop = () => void lines.cancel();
  // Before saying it is ready: the parent may stop it at once.
  Deno.addSignalListener("SIGTERM", stop);
  say({ hostname, port: server.port, pid: Deno.pid });
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
    if ("stop" in server) await server.stop({ deadline: 1000 });
    else await server.close();
  }
  return 0;
}

/**
 * Runs `client lean|client --port N [--hostname H] [--connections N]
 * [--messages N] [--warmup N] [--timeout MS] [--payload BASE64]
 * [--release 2] [--ca PEM-OR-FILE]... [--servername NAME]`, the client
 * protocol: prints `{"ready": true}`, waits for `go` on stdin, runs, prints
 * `{"result": ...}` or `{"error": ...}`, and returns when stdin ends.
 *
 * @param args The arguments after `client`.
 * @returns The exit status.
 */
export async function clientChild(args: string[]): Promise<number> {
  const [kind, ...rest] = args;
  const flags = parsePairs(rest);
  if ((kind !== "lean" && kind !== "client") || !flags) {
    console.error(CHILD_USAGE);
    return 2;
  }
  const flag = (name: string) => flags[name]?.at(-1);
  const number = (name: string) => {
    const value = flag(name);
    return value === undefined ? undefined : Number(value);
  };
  const payload = flag("payload");
  const cas = flags.ca ?? [];
  const serverName = flag("servername");
  const options: BenchOptions = {
    hostname: flag("hostname"),
    port: number("port") ?? 0,
    connections: number("connections"),
    messages: number("messages"),
    warmup: number("warmup"),
    replyTimeout: number("timeout"),
    payload: payload ? unbase64(payload) : undefined,
    mllpRelease: flag("release") === "2" ? 2 : 1,
    tls: cas.length > 0 || serverName
      ? { caCerts: cas.length > 0 ? cas : undefined, serverName }
      : undefined,
  };
  const lines = new LineReader(Deno.stdin.readable);
  say({ ready: true });
  const go = await lines.next();
  if (go?.trim() !== "go") return 1;
  let result: BenchResult;
  try {
    result = kind === "lean" ? await runLean(options) : await runBench(options);
  } catch (error) {
    say({ error: error instanceof Error ? error.message : String(error) });
    await lines.drain();
    return 1;
  }
  say({ result });
  await lines.drain();
  return 0;
}
