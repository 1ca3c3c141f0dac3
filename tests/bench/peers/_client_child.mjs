// The client protocol the bench tool (src/bench/clients.ts) speaks with the
// clients it runs: flags --hostname --port --connections --messages --warmup
// --timeout --payload BASE64 (and --release, --ca, --servername); print
// {"ready": true} once loaded, wait for "go" on stdin, run, print
// {"result": {...}} (the shape of the bench's BenchResult) or
// {"error": "..."}, and exit when stdin ends.
//
// A client script gives runClient one function, open(options), that opens
// one connection and resolves to { send(): Promise<unknown>, close() }:
// send() sends the payload once and settles when its reply has come.

import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import process from "node:process";
import { createInterface } from "node:readline";

/** The flags, with defaults. */
export function parseClientArgs(argv = process.argv.slice(2)) {
  const options = {
    hostname: "127.0.0.1",
    port: 0,
    connections: 1,
    messages: 1000,
    warmup: 100,
    timeout: 60_000,
    payload: "",
    release: 1,
    ca: [],
    servername: undefined,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    switch (flag) {
      case "--hostname":
        options.hostname = value;
        break;
      case "--servername":
        options.servername = value;
        break;
      case "--payload":
        options.payload = Buffer.from(value, "base64").toString("latin1");
        break;
      case "--ca":
        options.ca.push(
          value.includes("-----BEGIN ") ? value : readFileSync(value, "utf8"),
        );
        break;
      case "--port":
      case "--connections":
      case "--messages":
      case "--warmup":
      case "--timeout":
      case "--release":
        options[flag.slice(2)] = Number(value);
        break;
      default:
        throw new Error(`Unknown argument "${flag}"`);
    }
  }
  return options;
}

function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/** Nearest-rank percentiles, as the bench's summarizeLatency computes them. */
function summarize(times) {
  if (times.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  times.sort((a, b) => a - b);
  const rank = (p) =>
    times[Math.min(times.length - 1, Math.ceil(p / 100 * times.length) - 1)];
  return {
    p50: rank(50),
    p90: rank(90),
    p99: rank(99),
    max: times[times.length - 1],
    mean: times.reduce((sum, t) => sum + t, 0) / times.length,
  };
}

/** Opens the connections, 64 at a time. */
async function openAll(open, options) {
  const conns = [];
  try {
    for (let i = 0; i < options.connections; i += 64) {
      const batch = Math.min(64, options.connections - i);
      const opened = await Promise.allSettled(
        Array.from({ length: batch }, () => open(options)),
      );
      for (const o of opened) if (o.status === "fulfilled") conns.push(o.value);
      const failed = opened.find((o) => o.status === "rejected");
      if (failed) throw failed.reason;
    }
  } catch (error) {
    await Promise.all(conns.map((c) => c.close()));
    throw error;
  }
  return conns;
}

async function measure(open, options) {
  const { connections, messages, warmup, timeout } = options;
  const conns = await openAll(open, options);
  const failures = {};
  const fail = (kind) => failures[kind] = (failures[kind] ?? 0) + 1;
  // One watchdog for every connection, not a timer per message.
  const waiting = conns.map(() => undefined);
  const watchdog = setInterval(() => {
    const now = performance.now();
    waiting.forEach((w, c) => {
      if (w && now - w.since > timeout) {
        waiting[c] = undefined;
        w.reject(
          Object.assign(new Error("No reply"), { name: "ReplyTimeout" }),
        );
      }
    });
  }, Math.min(1000, Math.max(10, timeout / 4)));
  const send = (c) =>
    new Promise((resolve, reject) => {
      waiting[c] = { since: performance.now(), reject };
      conns[c].send().then(resolve, reject).finally(() => {
        waiting[c] = undefined;
      });
    });
  const times = [];
  let started = 0;
  let ended = 0;
  try {
    await Promise.all(conns.map(async (_, c) => {
      for (let i = 0; i < warmup; i++) await send(c).catch(() => {});
    }));
    started = performance.now();
    await Promise.all(conns.map(async (_, c) => {
      for (let i = 0; i < messages; i++) {
        const sent = performance.now();
        try {
          await send(c);
        } catch (error) {
          fail(error?.name ?? "Error");
          continue;
        }
        times.push(performance.now() - sent);
      }
    }));
    ended = performance.now();
  } finally {
    clearInterval(watchdog);
    await Promise.all(conns.map((c) => c.close()));
  }
  const sent = connections * messages;
  const errors = Object.values(failures).reduce((sum, n) => sum + n, 0);
  const seconds = (ended - started) / 1000;
  return {
    connections,
    messagesPerConnection: messages,
    warmup,
    payloadBytes: Buffer.byteLength(options.payload, "latin1"),
    sent,
    ok: sent - errors,
    errors,
    failures,
    seconds,
    messagesPerSecond: seconds > 0 ? sent / seconds : 0,
    latency: summarize(times),
  };
}

/**
 * Speaks the client protocol around `open`.
 *
 * @param {(options: ReturnType<typeof parseClientArgs>) => Promise<{
 *   send(): Promise<unknown>, close(): unknown }>} open
 * @param {{ release2?: boolean, tls?: boolean }} supports What the client
 *   can do; a run that asks for more is an error.
 */
export async function runClient(open, supports = {}) {
  const options = parseClientArgs();
  const lines = createInterface({ input: process.stdin });
  const input = lines[Symbol.asyncIterator]();
  say({ ready: true });
  const go = await input.next();
  if (go.done || go.value.trim() !== "go") process.exit(1);
  try {
    if (options.release === 2 && !supports.release2) {
      throw new Error("MLLP release 2 is not supported");
    }
    if ((options.ca.length > 0 || options.servername) && !supports.tls) {
      throw new Error("TLS is not supported");
    }
    say({ result: await measure(open, options) });
  } catch (error) {
    say({ error: error instanceof Error ? error.message : String(error) });
  }
  for await (const _ of input) {
    // Wait for the bench to close stdin.
  }
  process.exit(0);
}
