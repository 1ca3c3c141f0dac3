/**
 * The end-to-end load: {@linkcode runBench} drives connections with this
 * library's client (the lean generator is `lean.ts`), and
 * {@linkcode measureIdle} holds idle ones open.
 * Re-exported by `bench.ts`.
 *
 * @module
 */

import {
  Client,
  type ClientTlsOptions,
  type SendResult,
} from "../client/client.ts";
import { makeAdtMessage } from "./raw.ts";

const encoder = new TextEncoder();

/**
 * The default number of connections of {@linkcode runBench}.
 *
 * @example Use more connections than the default
 * ```ts
 * import {
 *   DEFAULT_CONNECTIONS,
 *   runBench,
 *   startRawResponder,
 * } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_CONNECTIONS, 1);
 * await using responder = startRawResponder();
 * const result = await runBench({
 *   port: responder.port,
 *   connections: 4 * DEFAULT_CONNECTIONS,
 *   messages: 5,
 *   warmup: 1,
 * });
 * assertEquals([result.connections, result.sent], [4, 20]);
 * ```
 */
export const DEFAULT_CONNECTIONS = 1;
/**
 * The default number of measured messages per connection.
 *
 * @example A quick run with a tenth of the default messages
 * ```ts
 * import { DEFAULT_MESSAGES, runBench, startRawResponder } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_MESSAGES, 1000);
 * await using responder = startRawResponder();
 * const result = await runBench({
 *   port: responder.port,
 *   messages: DEFAULT_MESSAGES / 10,
 *   warmup: 5,
 * });
 * assertEquals(result.sent, 100);
 * ```
 */
export const DEFAULT_MESSAGES = 1000;
/**
 * The default number of warm-up messages per connection (not counted).
 *
 * @example Skip most of the warm-up
 * ```ts
 * import { DEFAULT_WARMUP, runBench, startRawResponder } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_WARMUP, 100);
 * await using responder = startRawResponder();
 * const result = await runBench({
 *   port: responder.port,
 *   messages: 20,
 *   warmup: DEFAULT_WARMUP / 20,
 * });
 * assertEquals([result.warmup, result.messagesPerConnection], [5, 20]);
 * ```
 */
export const DEFAULT_WARMUP = 100;
/**
 * Options for {@linkcode runBench}.
 *
 * @example Two connections sending a 2 KiB message
 * ```ts
 * import { type BenchOptions, makeAdtMessage, runBench, startTarget } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const payload = makeAdtMessage(2048);
 * await using responder = await startTarget("raw", { inProcess: true, payload }); // answers its ACK
 * const options: BenchOptions = {
 *   hostname: "127.0.0.1",
 *   port: responder.port,
 *   connections: 2,
 *   messages: 10,
 *   warmup: 2,
 *   payload,
 *   replyTimeout: 5_000,
 * };
 * const result = await runBench(options);
 * assertEquals([result.sent, result.payloadBytes], [20, 2048]);
 * ```
 */
export interface BenchOptions {
  /**
   * The receiver's host name or IP address.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** The receiver's port. */
  port: number;
  /**
   * How many connections send at once, each with its own client.
   *
   * @default {1}
   */
  connections?: number;
  /**
   * How many measured messages each connection sends, one at a time.
   *
   * @default {1000}
   */
  messages?: number;
  /**
   * How many messages each connection sends first, not counted. Every
   * connection finishes its warm-up before the measured part starts.
   *
   * @default {100}
   */
  warmup?: number;
  /**
   * The message sent, every time.
   *
   * @default {makeAdtMessage(1024)}
   */
  payload?: Uint8Array | string;
  /**
   * The reply timeout of each send, in milliseconds.
   *
   * @default {60000}
   */
  replyTimeout?: number;
  /**
   * Connect with TLS. The lean generator ({@linkcode runLean}) takes
   * `caCerts` and `serverName` only.
   */
  tls?: ClientTlsOptions;
  /**
   * The MLLP release spoken: with `2`, each message is first answered by a
   * commit frame (`0x06`), and the sender commits each reply the same way.
   *
   * @default {1}
   */
  mllpRelease?: 1 | 2;
  /** Stops the run early: it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Round-trip times of the measured messages that got a reply, in ms.
 *
 * @example Read percentiles
 * ```ts
 * import { type LatencySummary, summarizeLatency } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const roundTrips = Float64Array.from([4, 1, 3, 2]);
 * const latency: LatencySummary = summarizeLatency(roundTrips);
 * assertEquals([latency.p50, latency.max, latency.mean], [2, 4, 2.5]);
 * ```
 */
export interface LatencySummary {
  /** The median. */
  p50: number;
  /** The 90th percentile. */
  p90: number;
  /** The 99th percentile. */
  p99: number;
  /** The slowest. */
  max: number;
  /** The mean. */
  mean: number;
}

/**
 * What one {@linkcode runBench} measured.
 *
 * @example Check a run for failures
 * ```ts
 * import { type BenchResult, runBench, startRawResponder } from "@x/mllp/unstable-bench";
 * import { assert, assertEquals } from "@std/assert";
 *
 * await using responder = startRawResponder();
 * const result: BenchResult = await runBench({
 *   port: responder.port,
 *   messages: 20,
 *   warmup: 2,
 * });
 * assertEquals([result.ok, result.errors, result.failures], [20, 0, {}]);
 * assert(
 *   result.messagesPerSecond > 0 && result.latency.p99 >= result.latency.p50,
 * );
 * ```
 */
export interface BenchResult {
  /** The number of connections. */
  connections: number;
  /** Measured messages per connection. */
  messagesPerConnection: number;
  /** Warm-up messages per connection. */
  warmup: number;
  /** The payload size, in bytes. */
  payloadBytes: number;
  /** Measured messages sent: `connections × messagesPerConnection`. */
  sent: number;
  /** Of those, how many were accepted (or, if not HL7, got a reply). */
  ok: number;
  /** Of those, how many failed: `sent - ok`. */
  errors: number;
  /**
   * The failures by kind: an outcome such as `mismatch` or `error` (an
   * `AE`), or an error name such as `ReplyTimeoutError`.
   */
  failures: Record<string, number>;
  /** The wall time of the measured part, in seconds. */
  seconds: number;
  /** `sent / seconds`. */
  messagesPerSecond: number;
  /** Round trips, from handing a message to the client to its result. */
  latency: LatencySummary;
}

/**
 * Measures a receiver with this library's {@linkcode Client} as the load
 * (end to end: the client's own cost is in every round trip; see
 * {@linkcode runLean} for a load with none): opens `connections` clients,
 * sends `warmup` messages on each, then `messages` more on each,
 * stop-and-wait, and reports the rate and the round trips of the measured
 * ones.
 *
 * @param options Where to connect, how many connections and messages, and
 *   the payload.
 * @returns What was measured.
 * @throws {ClientError} If a connection cannot be opened.
 * @throws {RangeError} If a count is out of range.
 *
 * @example Measure a receiver
 * ```ts
 * import { runBench } from "@x/mllp/unstable-bench";
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 * });
 * const result = await runBench({ port: receiver.port, messages: 50, warmup: 5 });
 * assertEquals([result.sent, result.ok, result.errors], [50, 50, 0]);
 * ```
 */
export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const { hostname, connections, messages, warmup } = loadOf(options);
  const payload = typeof options.payload === "string"
    ? encoder.encode(options.payload)
    : options.payload ?? encoder.encode(makeAdtMessage());
  const signal = options.signal;
  signal?.throwIfAborted();
  const clients = await openClients(hostname, options.port, connections, {
    replyTimeout: options.replyTimeout,
    tls: options.tls,
    mllpRelease: options.mllpRelease,
  });
  const times = new Float64Array(connections * messages).fill(NaN);
  const failures: Record<string, number> = {};
  const fail = (kind: string) => failures[kind] = (failures[kind] ?? 0) + 1;
  let started = 0;
  let ended = 0;
  try {
    await Promise.all(clients.map(async (client) => {
      for (let i = 0; i < warmup && !signal?.aborted; i++) {
        await client.send(payload).catch(() => {});
      }
    }));
    signal?.throwIfAborted();
    started = performance.now();
    await Promise.all(clients.map(async (client, c) => {
      const offset = c * messages;
      for (let i = 0; i < messages && !signal?.aborted; i++) {
        const sent = performance.now();
        let result: SendResult;
        try {
          result = await client.send(payload);
        } catch (error) {
          fail(error instanceof Error ? error.name : "Error");
          continue;
        }
        times[offset + i] = performance.now() - sent;
        if (!result.ok) fail(result.outcome);
      }
    }));
    ended = performance.now();
    signal?.throwIfAborted();
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
  return resultOf({
    connections,
    messages,
    warmup,
    payloadBytes: payload.length,
    failures,
    started,
    ended,
    times,
  });
}

/** The load asked for: the options checked, with their defaults. */
export function loadOf(options: BenchOptions): {
  hostname: string;
  connections: number;
  messages: number;
  warmup: number;
} {
  return {
    hostname: options.hostname ?? "127.0.0.1",
    connections: count(
      options.connections ?? DEFAULT_CONNECTIONS,
      1,
      "connections",
    ),
    messages: count(options.messages ?? DEFAULT_MESSAGES, 1, "messages"),
    warmup: count(options.warmup ?? DEFAULT_WARMUP, 0, "warmup"),
  };
}

/** What a run counted, for {@linkcode resultOf}. */
export interface RunCounts {
  connections: number;
  messages: number;
  warmup: number;
  payloadBytes: number;
  /** Failed messages, by kind. */
  failures: Record<string, number>;
  /** When the measured part started and ended (`performance.now()`). */
  started: number;
  ended: number;
  /** The round trips, `NaN` for the messages that failed. */
  times: Float64Array;
}

/** The result of a run, from what it counted. */
export function resultOf(run: RunCounts): BenchResult {
  const sent = run.connections * run.messages;
  const errors = Object.values(run.failures).reduce((sum, n) => sum + n, 0);
  const seconds = (run.ended - run.started) / 1000;
  return {
    connections: run.connections,
    messagesPerConnection: run.messages,
    warmup: run.warmup,
    payloadBytes: run.payloadBytes,
    sent,
    ok: sent - errors,
    errors,
    failures: run.failures,
    seconds,
    messagesPerSecond: seconds > 0 ? sent / seconds : 0,
    latency: summarizeLatency(run.times.filter((t) => !Number.isNaN(t))),
  };
}

/** A whole number of at least `min`, or a RangeError. */
export function count(value: number, min: number, name: string): number {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(
      `Invalid ${name}: expected a whole number >= ${min}, got "${value}"`,
    );
  }
  return value;
}

/** Opens clients in batches, so that a listen backlog never overflows. */
async function openClients(
  hostname: string,
  port: number,
  connections: number,
  options: {
    replyTimeout?: number;
    tls?: ClientTlsOptions;
    mllpRelease?: 1 | 2;
  },
): Promise<Client[]> {
  const clients: Client[] = [];
  try {
    for (let i = 0; i < connections; i += 64) {
      const batch = Math.min(64, connections - i);
      const opened = await Promise.allSettled(
        Array.from({ length: batch }, () =>
          Client.connect(hostname, port, {
            replyTimeout: options.replyTimeout,
            tls: options.tls,
            mllpRelease: options.mllpRelease,
            reconnect: false,
          })),
      );
      for (const outcome of opened) {
        if (outcome.status === "fulfilled") clients.push(outcome.value);
      }
      const failed = opened.find((outcome) => outcome.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
  } catch (error) {
    await Promise.all(clients.map((client) => client.close()));
    throw error;
  }
  return clients;
}

/**
 * Summarizes round-trip times: nearest-rank percentiles, the maximum and
 * the mean. An empty list gives zeros.
 *
 * @param times Round-trip times in milliseconds, in any order. The array
 *   is sorted in place.
 * @returns The summary.
 *
 * @example Percentiles of 1 to 100
 * ```ts
 * import { summarizeLatency } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const times = Float64Array.from({ length: 100 }, (_, i) => 100 - i);
 * const { p50, p90, p99, max } = summarizeLatency(times);
 * assertEquals([p50, p90, p99, max], [50, 90, 99, 100]);
 * ```
 */
export function summarizeLatency(times: Float64Array): LatencySummary {
  if (times.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  times.sort();
  const rank = (p: number) =>
    times[Math.min(times.length - 1, Math.ceil(p / 100 * times.length) - 1)];
  let sum = 0;
  for (const t of times) sum += t;
  return {
    p50: rank(50),
    p90: rank(90),
    p99: rank(99),
    max: times[times.length - 1],
    mean: sum / times.length,
  };
}

/**
 * Options for {@linkcode measureIdle}.
 *
 * @example Measure idle connections to a receiver in this process
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { type IdleOptions, measureIdle } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 * });
 * const options: IdleOptions = {
 *   port: receiver.port,
 *   connections: 5,
 *   rss: () => Promise.resolve(Deno.memoryUsage().rss), // includes this process's clients
 *   settle: 10,
 * };
 * const result = await measureIdle(options);
 * assertEquals(result.connections, 5);
 * ```
 */
export interface IdleOptions {
  /**
   * The receiver's host name or IP address.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** The receiver's port. */
  port: number;
  /** How many idle connections to open. */
  connections: number;
  /** Reads the receiver's resident set size, in bytes. */
  rss: () => Promise<number | undefined>;
  /**
   * How long to wait for the receiver to settle before each reading, in
   * milliseconds.
   *
   * @default {1000}
   */
  settle?: number;
  /** Connect with TLS. */
  tls?: ClientTlsOptions;
}

/**
 * What {@linkcode measureIdle} measured.
 *
 * @example Report the cost per connection
 * ```ts
 * import type { IdleResult } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(result: IdleResult): string {
 *   const kib = (result.bytesPerConnection / 1024).toFixed(1);
 *   return `${result.connections} idle connections: +${kib} KiB each`;
 * }
 * const result: IdleResult = {
 *   connections: 100,
 *   rssBefore: 40_000_000,
 *   rssAfter: 42_048_000,
 *   rssGrowth: 2_048_000,
 *   bytesPerConnection: 20_480,
 * };
 * assertEquals(describe(result), "100 idle connections: +20.0 KiB each");
 * ```
 */
export interface IdleResult {
  /** The number of idle connections held open. */
  connections: number;
  /** The receiver's RSS before, in bytes (after a short warm-up). */
  rssBefore: number;
  /** The receiver's RSS with the connections open, in bytes. */
  rssAfter: number;
  /** `rssAfter - rssBefore`, in bytes. */
  rssGrowth: number;
  /** `rssGrowth / connections`, in bytes. */
  bytesPerConnection: number;
}

/**
 * Measures what idle connections cost a receiver: warms it up with a few
 * connections that each send one message, reads its RSS, opens
 * `connections` clients that send nothing, waits, and reads it again.
 *
 * @param options Where to connect, how many connections, and how to read
 *   the receiver's RSS (see {@linkcode RunningTarget.rss}).
 * @returns The two readings and the growth per connection.
 * @throws {Error} If the receiver's RSS cannot be read.
 * @throws {ClientError} If a connection cannot be opened.
 *
 * @example Idle connections to a child-process receiver
 * ```ts
 * import { measureIdle, startTarget } from "@x/mllp/unstable-bench";
 * import { assert } from "@std/assert";
 *
 * await using target = await startTarget("self");
 * const result = await measureIdle({
 *   port: target.port,
 *   connections: 20,
 *   rss: () => target.rss(),
 *   settle: 100,
 * });
 * assert(result.rssAfter > 0);
 * ```
 */
export async function measureIdle(options: IdleOptions): Promise<IdleResult> {
  const hostname = options.hostname ?? "127.0.0.1";
  const connections = count(options.connections, 1, "connections");
  const settle = options.settle ?? 1000;
  const read = async () => {
    await new Promise((resolve) => setTimeout(resolve, settle));
    const rss = await options.rss();
    if (rss === undefined) {
      throw new Error(
        "Cannot measure idle connections: the receiver's RSS is unknown",
      );
    }
    return rss;
  };
  // Warm up the receiver's connection and message paths first, so that
  // the growth is what the connections cost, not first-use compilation.
  await runBench({
    hostname,
    port: options.port,
    connections: Math.min(8, connections),
    messages: 1,
    warmup: 1,
    tls: options.tls,
  });
  const rssBefore = await read();
  const clients = await openClients(hostname, options.port, connections, {
    tls: options.tls,
  });
  try {
    const rssAfter = await read();
    return {
      connections,
      rssBefore,
      rssAfter,
      rssGrowth: rssAfter - rssBefore,
      bytesPerConnection: (rssAfter - rssBefore) / connections,
    };
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}
