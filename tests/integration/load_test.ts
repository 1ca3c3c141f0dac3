/**
 * Load: 1,000 concurrent connections × 20 messages each against one
 * receiver on loopback. Every ACK's MSA-2 must equal its message's MSH-10.
 * Prints one line with the wall time and the peak RSS of this process
 * (clients and receiver together), sampled every 50 ms:
 *
 * ```text
 * load: connections=1000 messages=20000 wall=...ms peak_rss=...MiB
 * ```
 *
 * The senders behave as MLLP senders do: each waits for the ACK before it
 * sends the next message on its connection. Raw sockets keep the client
 * side light, so the numbers are mostly the receiver's.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Receiver } from "../../src/receiver/receiver.ts";

const CONNECTIONS = 1_000;
const MESSAGES = 20;
/** File descriptors needed: both ends of every connection, and some. */
const FDS_NEEDED = 2 * CONNECTIONS + 200;
/** The whole run must end within this, or the test fails. */
const RUN_LIMIT = 120_000;
/** How many connects may be in progress at once. */
const CONNECT_BATCH = 100;

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function frame(controlId: string): Uint8Array {
  return encoder.encode(
    `\x0bMSH|^~\\&|LOAD|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r\x1c\r`,
  );
}

/** The soft limit of open files, from the shell. */
async function openFileLimit(): Promise<number> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", "ulimit -n"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const value = decoder.decode(stdout).trim();
  return value === "unlimited" ? Infinity : Number(value);
}

/** One sender: a raw connection and a reader of reply frames. */
class Sender {
  #conn: Deno.TcpConn;
  #buffer = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  async #writeAll(data: Uint8Array) {
    while (data.length > 0) data = data.subarray(await this.#conn.write(data));
  }

  /** The next reply frame's payload. */
  async #reply(): Promise<Uint8Array> {
    for (;;) {
      const view = this.#buffer.subarray(this.#start, this.#end);
      const start = view.indexOf(VT);
      const end = start === -1 ? -1 : view.indexOf(FS, start);
      if (end !== -1 && end + 1 < view.length) {
        assertEquals(view[end + 1], CR);
        this.#start += end + 2;
        return view.slice(start + 1, end);
      }
      if (this.#start > 0) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      if (this.#end === this.#buffer.length) {
        const bigger = new Uint8Array(this.#buffer.length * 2);
        bigger.set(this.#buffer);
        this.#buffer = bigger;
      }
      const n = await this.#conn.read(this.#buffer.subarray(this.#end));
      if (n === null) throw new Error("The receiver closed the connection");
      this.#end += n;
    }
  }

  /** Sends one message and checks its ACK: AA, MSA-2 equal to MSH-10. */
  async exchange(controlId: string): Promise<void> {
    await this.#writeAll(frame(controlId));
    const reply = decoder.decode(await this.#reply());
    const msa = reply.split("\r").find((s) => s.startsWith("MSA|"))?.split(
      "|",
    );
    assertEquals(msa?.slice(1, 3), ["AA", controlId], reply);
  }

  close() {
    try {
      this.#conn.close();
    } catch {
      // Closed already.
    }
  }
}

Deno.test("load: 1,000 concurrent connections × 20 messages each, every ACK for its message", async () => {
  const limit = await openFileLimit();
  if (limit < FDS_NEEDED) {
    throw new Error(
      `The open file limit (ulimit -n) is ${limit}; this test needs at least ${FDS_NEEDED} for ${CONNECTIONS} connections (both ends): raise it with "ulimit -n 4096" before running the tests`,
    );
  }

  let dispatched = 0;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    maxConnections: CONNECTIONS + 100,
    maxConnectionsPerClient: CONNECTIONS + 100,
    dispatcher: (message) => {
      dispatched++;
      return Ack.forMessage(message, "AA");
    },
  });

  let peakRss = Deno.memoryUsage().rss;
  let peakConnections = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
    peakConnections = Math.max(peakConnections, receiver.connections);
  }, 50);
  const guard = new AbortController();
  const overdue = setTimeout(() => guard.abort(), RUN_LIMIT);
  const senders: Sender[] = [];
  const started = performance.now();
  try {
    // All connections first, in batches so the listen backlog keeps up.
    for (let i = 0; i < CONNECTIONS; i += CONNECT_BATCH) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(CONNECT_BATCH, CONNECTIONS - i) },
          () => Deno.connect({ hostname: "127.0.0.1", port: receiver.port }),
        ),
      );
      senders.push(...batch.map((conn) => new Sender(conn)));
    }
    // One message each; then all 1,000 are open at the receiver at once.
    await Promise.all(senders.map((s, c) => s.exchange(`L${c}-0`)));
    assertEquals(receiver.connections, CONNECTIONS);
    peakConnections = Math.max(peakConnections, receiver.connections);
    // The other 19 each, all connections at once.
    const run = Promise.all(senders.map(async (sender, c) => {
      for (let m = 1; m < MESSAGES; m++) {
        if (guard.signal.aborted) throw new Error("Load run took too long");
        await sender.exchange(`L${c}-${m}`);
      }
    }));
    await run;
  } finally {
    for (const sender of senders) sender.close();
    clearTimeout(overdue);
    clearInterval(sampler);
  }
  const wall = performance.now() - started;
  peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
  assertEquals(dispatched, CONNECTIONS * MESSAGES);
  assert(peakConnections >= CONNECTIONS);
  console.log(
    `load: connections=${CONNECTIONS} messages=${CONNECTIONS * MESSAGES} wall=${
      Math.round(wall)
    }ms peak_rss=${(peakRss / 1024 / 1024).toFixed(1)}MiB`,
  );
});
