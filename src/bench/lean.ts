/**
 * The lean load generator: {@linkcode runLean} drives connections with
 * nothing but `Deno.connect`, `write` and `read`, so that what it measures
 * is the receiver. Re-exported by `bench.ts`.
 *
 * @module
 */

import { loadPems } from "../net/tls.ts";
import { closeQuietly, noDelay, writeAll } from "./_serve.ts";
import {
  type BenchOptions,
  type BenchResult,
  loadOf,
  resultOf,
} from "./load.ts";
import { makeAdtMessage } from "./raw.ts";

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;
/** A release 2 commit frame: VT, `0x06`, FS, CR. */
const COMMIT = Uint8Array.of(VT, 0x06, FS, CR);
const encoder = new TextEncoder();

/** Why a connection stopped before its last message. */
class Stopped extends Error {
  constructor(readonly kind: string) {
    super(kind);
  }
}

/**
 * Measures a receiver with the least work a sender can do: per
 * connection, `Deno.connect` (or a TLS connection, with `tls`) with
 * Nagle's algorithm off, then stop-and-wait: write the framed message
 * (built once, before the loop), read into a reused 16 KiB buffer until
 * the frame end `FS CR` (an FS at the end of one read and a CR at the
 * start of the next count too), note the round trip, repeat. With
 * `mllpRelease: 2` it reads two frame ends (the receiver's commit frame
 * and the reply) and then writes its own commit frame for the reply.
 * The connections run in this process, side by side; every one finishes
 * its `warmup` messages before the measured part starts.
 *
 * It reads no reply: a reply is counted as received, whatever it says
 * (use {@linkcode runBench}, this library's client, to check them). A
 * connection that closes, fails, or waits longer than `replyTimeout` for
 * a reply stops, and its remaining measured messages count as failures
 * (`ConnectionClosed`, `ReplyTimeout`, or the error's name).
 *
 * @param options Where to connect, how many connections and messages, the
 *   payload, the MLLP release and TLS (`caCerts` and `serverName` only).
 * @returns What was measured, as {@linkcode runBench} reports it.
 * @throws {Error} If a connection cannot be opened (the connect error is
 *   its `cause`).
 * @throws {RangeError} If a count is out of range.
 * @throws {TypeError} If `tls` asks for a client certificate.
 *
 * @example Measure a receiver with the lean generator
 * ```ts
 * import { runLean } from "@x/mllp/unstable-bench";
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   dispatcher: EchoDispatcher,
 * });
 * const result = await runLean({
 *   port: receiver.port,
 *   connections: 2,
 *   messages: 50,
 *   warmup: 5,
 * });
 * assertEquals([result.sent, result.ok, result.errors], [100, 100, 0]);
 * ```
 */
export async function runLean(options: BenchOptions): Promise<BenchResult> {
  const { hostname, connections, messages, warmup } = loadOf(options);
  const timeout = options.replyTimeout ?? 60_000;
  const payload = unframed(
    typeof options.payload === "string"
      ? encoder.encode(options.payload)
      : options.payload ?? encoder.encode(makeAdtMessage()),
  );
  const frame = new Uint8Array(payload.length + 3);
  frame[0] = VT;
  frame.set(payload, 1);
  frame[payload.length + 1] = FS;
  frame[payload.length + 2] = CR;
  const release = options.mllpRelease ?? 1;
  const ends = release === 2 ? 2 : 1;
  const signal = options.signal;
  signal?.throwIfAborted();
  const conns = await openConns(hostname, options.port, connections, options);
  const times = new Float64Array(connections * messages).fill(NaN);
  const failures: Record<string, number> = {};
  const fail = (kind: string, n: number) =>
    failures[kind] = (failures[kind] ?? 0) + n;
  // One watchdog for all connections, rather than a timer per message:
  // a connection that waits too long for its reply is closed.
  const waitingSince = new Float64Array(connections).fill(NaN);
  const timedOut = new Uint8Array(connections);
  const watchdog = setInterval(() => {
    const now = performance.now();
    for (let c = 0; c < connections; c++) {
      if (now - waitingSince[c] > timeout) {
        timedOut[c] = 1;
        closeQuietly(conns[c]);
      }
    }
  }, Math.min(1000, Math.max(10, timeout / 4)));
  const onAbort = () => conns.forEach(closeQuietly);
  signal?.addEventListener("abort", onAbort, { once: true });

  /** Sends `n` messages on connection `c`; records them from `offset`. */
  const exchange = async (
    c: number,
    n: number,
    buffer: Uint8Array,
    offset: number | undefined,
  ) => {
    const conn = conns[c];
    let afterFs = false;
    for (let i = 0; i < n; i++) {
      const sent = performance.now();
      waitingSince[c] = sent;
      await writeAll(conn, frame);
      for (let seen = 0; seen < ends;) {
        const read = await conn.read(buffer);
        if (read === null) throw new Stopped("ConnectionClosed");
        const data = buffer.subarray(0, read);
        if (afterFs && data[0] === CR) seen++;
        for (
          let at = data.indexOf(FS);
          at !== -1;
          at = data.indexOf(FS, at + 1)
        ) {
          if (data[at + 1] === CR) seen++;
        }
        afterFs = data[read - 1] === FS;
      }
      const now = performance.now();
      waitingSince[c] = NaN;
      if (offset !== undefined) times[offset + i] = now - sent;
      if (release === 2) await writeAll(conn, COMMIT);
    }
  };
  const kindOf = (c: number, error: unknown) =>
    timedOut[c]
      ? "ReplyTimeout"
      : error instanceof Stopped
      ? error.kind
      : error instanceof Error
      ? error.name
      : "Error";

  const buffers = conns.map(() => new Uint8Array(16 * 1024));
  const alive = conns.map(() => true);
  let started = 0;
  let ended = 0;
  try {
    await Promise.all(conns.map(async (_, c) => {
      try {
        await exchange(c, warmup, buffers[c], undefined);
      } catch (error) {
        alive[c] = false;
        fail(kindOf(c, error), messages);
      }
    }));
    signal?.throwIfAborted();
    started = performance.now();
    await Promise.all(conns.map(async (_, c) => {
      if (!alive[c]) return;
      try {
        await exchange(c, messages, buffers[c], c * messages);
      } catch (error) {
        let done = 0;
        for (let i = c * messages; i < (c + 1) * messages; i++) {
          if (!Number.isNaN(times[i])) done++;
        }
        fail(kindOf(c, error), messages - done);
      }
    }));
    ended = performance.now();
    signal?.throwIfAborted();
  } finally {
    clearInterval(watchdog);
    signal?.removeEventListener("abort", onAbort);
    conns.forEach(closeQuietly);
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

/** The payload inside a frame, or the payload itself if it is not framed. */
function unframed(payload: Uint8Array): Uint8Array {
  const n = payload.length;
  return n >= 3 && payload[0] === VT && payload[n - 2] === FS &&
      payload[n - 1] === CR
    ? payload.subarray(1, n - 2)
    : payload;
}

/** Opens the connections in batches, so that a listen backlog never overflows. */
async function openConns(
  hostname: string,
  port: number,
  connections: number,
  options: BenchOptions,
): Promise<Deno.Conn[]> {
  const tls = options.tls;
  if (tls?.cert !== undefined || tls?.key !== undefined) {
    throw new TypeError(
      "Cannot present a client certificate: the lean load generator does not (use this library's client as the load)",
    );
  }
  const caCerts = tls ? await loadPems(tls.caCerts, "the CA certificate") : [];
  const open = async () => {
    let tcp: Deno.TcpConn;
    try {
      tcp = await Deno.connect({ hostname, port });
    } catch (error) {
      throw new Error(
        `Cannot connect to ${hostname}:${port}: ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
    noDelay(tcp);
    if (!tls) return tcp;
    try {
      const conn = await Deno.startTls(tcp, {
        hostname: tls.serverName ?? hostname,
        caCerts: caCerts.length > 0 ? caCerts : undefined,
      });
      await conn.handshake();
      return conn;
    } catch (error) {
      closeQuietly(tcp);
      throw error;
    }
  };
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < connections; i += 64) {
      const opened = await Promise.allSettled(
        Array.from({ length: Math.min(64, connections - i) }, open),
      );
      for (const outcome of opened) {
        if (outcome.status === "fulfilled") conns.push(outcome.value);
      }
      const failed = opened.find((outcome) => outcome.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
  } catch (error) {
    conns.forEach(closeQuietly);
    throw error;
  }
  return conns;
}
