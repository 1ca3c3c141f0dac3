/**
 * Hardening tests on real loopback sockets: frame size, connection limits,
 * idle, frame (slowloris) and dispatch timeouts, backpressure, reply order,
 * port-scanner garbage and rate-limited warnings, graceful stop, and a
 * storing dispatcher that must see every accepted message exactly once.
 *
 * Timeouts are small and exercised as behaviour; nothing asserts how long
 * anything took. Where a test must know that a timeout has passed, it waits
 * for a witness: another connection that the same timeout closes, opened
 * after the moment of interest. Every wait is bounded, so a broken receiver
 * fails a test instead of hanging it.
 *
 * Raw `Deno.connect` sockets and a frame reader written here (not the
 * library's framer or client) check what goes over the wire.
 *
 * @module
 */

import { FrameReader } from "../_raw_frames.ts";
import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { delay as untypedDelay } from "@std/async/delay";
import { Ack } from "../../src/hl7/ack.ts";
import type {
  DispatchContext,
  Dispatcher,
  DispatchReply,
} from "../../src/dispatch/dispatcher.ts";
import type { Message } from "../../src/hl7/message.ts";
import {
  Receiver,
  type ReceiverEventMap,
  type ReceiverOptions,
} from "../../src/receiver/receiver.ts";
import { bytes, type LogLine, text, withCapturedLogs } from "../_helpers.ts";

const delay: (ms: number) => Promise<void> = untypedDelay;

const HOST = "127.0.0.1";
const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;
const NAK = 0x15;

/** How long one raw read may wait before the test fails. */
const READ_TIMEOUT = 5_000;
/** How long a test waits for a receiver event or a condition. */
const WAIT_TIMEOUT = 5_000;
/**
 * How long a test waits for bulk work (tens of MiB through the receiver):
 * only a bound against hanging, as the work takes seconds of CPU on a
 * busy machine.
 */
const BULK_TIMEOUT = 120_000;

const TLS_DIR = new URL("../../tls/", import.meta.url);
const SERVER_CERT = await Deno.readTextFile(
  new URL("server/server_certificate.pem", TLS_DIR),
);
const SERVER_KEY = await Deno.readTextFile(
  new URL("server/private_key.pem", TLS_DIR),
);
const ROOT_CA = await Deno.readTextFile(
  new URL("root-ca/ca_certificate.pem", TLS_DIR),
);

// ---------------------------------------------------------------------------
// Messages

/** VT, payload, FS, CR. */
function frame(payload: string | Uint8Array): Uint8Array {
  return bytes([VT], payload, [FS, CR]);
}

/** A small HL7 v2.5 ADT^A01 with the given control id. */
function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** An HL7 message of exactly `size` bytes (padded with an NTE segment). */
function hl7OfSize(controlId: string, size: number): string {
  const head = `${hl7(controlId)}NTE|1||`;
  assert(size >= head.length + 1, "size too small for the header");
  return `${head}${"x".repeat(size - head.length - 1)}\r`;
}

/** The fields of the MSA segment of an ACK (index 1 is MSA-1). */
function msa(payload: Uint8Array): string[] {
  const segment = text(payload).split("\r").find((s) => s.startsWith("MSA|"));
  if (segment === undefined) {
    throw new Error(
      `No MSA segment in reply: ${JSON.stringify(text(payload))}`,
    );
  }
  return segment.split("|");
}

function controlIdOf(message: Message): string {
  return message.kind === "hl7" ? message.header.controlId : "";
}

/** A small seeded PRNG (mulberry32), so "random" tests replay the same. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------
// A raw connection

/** A raw client connection with its own bounded MLLP frame reader. */
class Wire implements Disposable {
  readonly conn: Deno.Conn;
  #reader: FrameReader;
  #closed = false;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#reader = new FrameReader(conn, { timeout: READ_TIMEOUT });
  }

  /** Connects over TCP, or TLS trusting the test root CA. */
  static async open(
    port: number,
    options: { tls?: boolean } = {},
  ): Promise<Wire> {
    if (!options.tls) {
      return new Wire(await Deno.connect({ hostname: HOST, port }));
    }
    const conn = await Deno.connectTls({
      hostname: HOST,
      port,
      caCerts: [ROOT_CA],
    });
    try {
      await conn.handshake();
    } catch (error) {
      conn.close();
      throw error;
    }
    return new Wire(conn);
  }

  /** The client's port: the receiver sees it as `peer.port`. */
  get port(): number {
    return (this.conn.localAddr as Deno.NetAddr).port;
  }

  /** Writes all of `data`. */
  async write(data: Uint8Array | string): Promise<void> {
    let rest = typeof data === "string" ? new TextEncoder().encode(data) : data;
    while (rest.length > 0) {
      rest = rest.subarray(await this.conn.write(rest));
    }
  }

  /** Writes one framed message. */
  send(payload: string | Uint8Array): Promise<void> {
    return this.write(frame(payload));
  }

  /** The next frame's payload, or `null` if the stream ends first. */
  next(): Promise<Uint8Array | null> {
    return this.#reader.next();
  }

  /** The next frame's payload; fails if the stream ends first. */
  frame(): Promise<Uint8Array> {
    return this.#reader.frame();
  }

  /** Sends an HL7 message and returns the MSA fields of its reply. */
  async ask(controlId: string): Promise<string[]> {
    await this.send(hl7(controlId));
    return msa(await this.frame());
  }

  /**
   * Reads until the receiver ends the connection: `"eof"` for an orderly
   * close, `"reset"` for an abortive one. Whatever arrives is discarded.
   */
  closed(): Promise<"eof" | "reset"> {
    return this.#reader.closed();
  }

  /** Bytes received and not returned as a frame. */
  get buffered(): Uint8Array {
    return this.#reader.buffered;
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }

  [Symbol.dispose]() {
    this.close();
  }
}

/** Writes without caring whether the peer has closed already. */
async function writeQuietly(wire: Wire, data: Uint8Array | string) {
  try {
    await wire.write(data);
  } catch {
    // The receiver may have closed it first: that is what is tested.
  }
}

// ---------------------------------------------------------------------------
// The storing dispatcher

/**
 * A store behind a dispatcher: it counts every HL7 frame dispatched, by
 * the connection (the sender's port) and control id. Tests note which
 * messages their senders saw accepted; {@linkcode Store.check} then holds
 * the receiver to exactly once.
 */
class Store {
  /** Dispatches, by `port control-id`. */
  readonly frames = new Map<string, number>();
  /** Messages whose sender saw AA, as `port control-id`. */
  readonly accepted = new Set<string>();
  /** Every dispatcher call, HL7 or not. */
  calls = 0;

  /**
   * A dispatcher that stores each message, then answers as `answer` says
   * (AA by default).
   */
  dispatcher(
    answer?: (
      message: Message,
      ctx: DispatchContext,
    ) => DispatchReply | Promise<DispatchReply>,
  ): Dispatcher {
    return (message, ctx) => {
      this.calls++;
      if (message.kind === "hl7") {
        const key = `${ctx.peer.port} ${controlIdOf(message)}`;
        this.frames.set(key, (this.frames.get(key) ?? 0) + 1);
      }
      return answer ? answer(message, ctx) : Ack.forMessage(message, "AA");
    };
  }

  /** How many times a control id was dispatched, on any connection. */
  count(controlId: string): number {
    let n = 0;
    for (const [key, count] of this.frames) {
      if (key.endsWith(` ${controlId}`)) n += count;
    }
    return n;
  }

  /** Notes that the sender on `port` saw AA for `controlId`. */
  accept(port: number, controlId: string) {
    this.accepted.add(`${port} ${controlId}`);
  }

  /**
   * Every frame was dispatched once, and every message a sender saw
   * accepted is in the store exactly once.
   */
  check() {
    for (const [key, count] of this.frames) {
      assertEquals(count, 1, `frame "${key}" dispatched ${count} times`);
    }
    for (const key of this.accepted) {
      assertEquals(
        this.frames.get(key),
        1,
        `accepted message "${key}" is not in the store exactly once`,
      );
    }
  }
}

/** Dispatches that wait until the test lets them go. */
class Gate {
  #entries = new Map<
    string,
    { entered: PromiseWithResolvers<void>; release: PromiseWithResolvers<void> }
  >();
  #open = false;

  #entry(id: string) {
    let entry = this.#entries.get(id);
    if (!entry) {
      entry = {
        entered: Promise.withResolvers<void>(),
        release: Promise.withResolvers<void>(),
      };
      if (this.#open) entry.release.resolve();
      this.#entries.set(id, entry);
    }
    return entry;
  }

  /** For the dispatcher: marks `id` entered; resolves when released. */
  hold(id: string): Promise<void> {
    const entry = this.#entry(id);
    entry.entered.resolve();
    return entry.release.promise;
  }

  /** Resolves once the dispatcher holds `id` (bounded). */
  entered(id: string): Promise<void> {
    return bounded(this.#entry(id).entered.promise, `dispatch of ${id}`);
  }

  /** Lets `id` go. */
  release(id: string) {
    this.#entry(id).release.resolve();
  }

  /** Lets everything go, now and later. */
  releaseAll() {
    this.#open = true;
    for (const entry of this.#entries.values()) entry.release.resolve();
  }
}

/**
 * Rejects if `promise` takes longer than `ms` (by default
 * {@linkcode WAIT_TIMEOUT}).
 */
async function bounded<T>(
  promise: Promise<T>,
  what: string,
  ms: number = WAIT_TIMEOUT,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Timed out waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Receiver events and logs

type EventName = keyof ReceiverEventMap;
type Detail<K extends EventName> = ReceiverEventMap[K]["detail"];

const EVENT_NAMES: EventName[] = [
  "connectionopen",
  "connectionclose",
  "clientreject",
  "handshakeerror",
  "framingerror",
  "dispatch",
];

/** Records every event of a receiver and waits for particular ones. */
class Recorder {
  #seen = new Map<EventName, unknown[]>();
  #target = new EventTarget();

  constructor(receiver: Receiver) {
    for (const name of EVENT_NAMES) {
      this.#seen.set(name, []);
      receiver.addEventListener(name, (event: CustomEvent) => {
        this.#seen.get(name)!.push(event.detail);
        this.#target.dispatchEvent(new Event("any"));
      });
    }
  }

  all<K extends EventName>(name: K): Detail<K>[] {
    return this.#seen.get(name) as Detail<K>[];
  }

  /** Events of a connection, by the client's port. */
  of<K extends EventName>(name: K, port: number): Detail<K>[] {
    return this.all(name).filter((d) =>
      (d as { peer: { port: number } }).peer.port === port
    );
  }

  /** The first event `name` that matches, waiting for it if need be. */
  wait<K extends EventName>(
    name: K,
    match: (detail: Detail<K>) => boolean,
    what: string = name,
  ): Promise<Detail<K>> {
    const found = () => this.all(name).find(match);
    const now = found();
    if (now) return Promise.resolve(now);
    const { promise, resolve } = Promise.withResolvers<Detail<K>>();
    const listener = () => {
      const detail = found();
      if (detail) resolve(detail);
    };
    this.#target.addEventListener("any", listener);
    return bounded(promise, what).finally(() =>
      this.#target.removeEventListener("any", listener)
    );
  }

  /** Waits for event `name` of the connection from `port`. */
  waitFor<K extends EventName>(name: K, port: number): Promise<Detail<K>> {
    return this.wait(
      name,
      (d) => (d as { peer: { port: number } }).peer.port === port,
      `${name} of ${port}`,
    );
  }
}

/** One captured log record. */
/**
 * Registers a test that runs with the `mllp` logs captured (debug and up)
 * instead of printed.
 */
function hardeningTest(
  name: string,
  fn: (logs: LogLine[]) => Promise<void>,
): void {
  Deno.test(name, () => withCapturedLogs(fn));
}

function receiverWarnings(logs: LogLine[]): string[] {
  return logs
    .filter((l) =>
      l.level === "warning" && l.category.join(".") === "mllp.receiver" &&
      !l.text.includes("data will pass unencrypted")
    )
    .map((l) => l.text);
}

// ---------------------------------------------------------------------------
// A well-behaved client talking in the background

/**
 * A client that sends one message at a time on its own connection and
 * checks each ACK, until stopped. Tests use it to show that a fault on
 * another connection does not disturb it.
 */
class Chatter {
  readonly wire: Wire;
  count = 0;
  #stop = false;
  #loop: Promise<void>;
  #progress = new EventTarget();

  constructor(wire: Wire, prefix: string, store: Store) {
    this.wire = wire;
    this.#loop = (async () => {
      while (!this.#stop) {
        const id = `${prefix}-${this.count + 1}`;
        const fields = await wire.ask(id);
        assertEquals(fields.slice(1, 3), ["AA", id]);
        store.accept(wire.port, id);
        this.count++;
        this.#progress.dispatchEvent(new Event("ack"));
        await delay(5);
      }
    })();
    // Failures surface in stop(); this only keeps them from being unhandled.
    this.#loop.catch(() => this.#progress.dispatchEvent(new Event("ack")));
  }

  /** Waits until `n` more ACKs have arrived than now. */
  async more(n: number): Promise<void> {
    const target = this.count + n;
    const { promise, resolve } = Promise.withResolvers<void>();
    const check = () => {
      if (this.count >= target) resolve();
    };
    this.#progress.addEventListener("ack", check);
    check();
    try {
      // A failed loop fails the wait at once.
      await bounded(
        Promise.race([promise, this.#loop.then(() => promise)]),
        `${n} more ACKs on ${this.wire.port}`,
      );
    } finally {
      this.#progress.removeEventListener("ack", check);
    }
  }

  /** Stops after the round trip in progress; rethrows a failure. */
  async stop(): Promise<number> {
    this.#stop = true;
    await this.#loop;
    return this.count;
  }
}

function start(options: Omit<ReceiverOptions, "port">): Promise<Receiver> {
  return Receiver.start({ port: 0, hostname: HOST, ...options });
}

function assertClosedByReceiver(how: "eof" | "reset") {
  assert(how === "eof" || how === "reset", `closed (${how})`);
}

// ---------------------------------------------------------------------------
// Frame size

hardeningTest(
  "oversize frame: that connection is closed (frame_too_large), a good client keeps its ACKs",
  async (logs) => {
    const store = new Store();
    await using receiver = await start({
      dispatcher: store.dispatcher(),
      maxFrameBytes: 1024,
    });
    const events = new Recorder(receiver);
    using good = await Wire.open(receiver.port);
    using bad = await Wire.open(receiver.port);
    const chatter = new Chatter(good, "GOOD", store);
    try {
      await chatter.more(3);
      // A frame of exactly the limit is fine.
      await bad.send(hl7OfSize("AT-LIMIT", 1024));
      assertEquals(msa(await bad.frame()).slice(1, 3), ["AA", "AT-LIMIT"]);
      store.accept(bad.port, "AT-LIMIT");
      // One that grows past it ends the connection, end block or not.
      await writeQuietly(bad, bytes([VT], "y".repeat(16 * 1024)));
      assertClosedByReceiver(await bad.closed());
      const error = await events.waitFor("framingerror", bad.port);
      assertEquals(error.kind, "frame_too_large");
      assertEquals(error.bytes, 1024);
      const closed = await events.waitFor("connectionclose", bad.port);
      assertEquals(closed.reason, "frame too large");
      assertEquals(closed.messages, 1);
      await chatter.more(3);
    } finally {
      await chatter.stop();
    }
    assertEquals(events.of("connectionclose", good.port), []);
    assert(
      receiverWarnings(logs).some((line) =>
        line.startsWith(`Closing connection from 127.0.0.1:${bad.port}: `) &&
        line.includes("exceeded 1024 bytes")
      ),
      receiverWarnings(logs).join("\n"),
    );
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Connection limits

/**
 * Opens connections up to the limit, shows that one more is closed at once
 * without a dispatch, then that closing one lets a new one in.
 */
async function checkConnectionLimit(
  options: Pick<ReceiverOptions, "maxConnections" | "maxConnectionsPerClient">,
  limit: number,
  logs: LogLine[],
  scope: string,
) {
  const store = new Store();
  await using receiver = await start({
    dispatcher: store.dispatcher(),
    ...options,
  });
  const events = new Recorder(receiver);
  const wires: Wire[] = [];
  let chatter: Chatter | undefined;
  try {
    for (let i = 0; i < limit; i++) {
      const wire = await Wire.open(receiver.port);
      wires.push(wire);
      const id = `IN-${i}`;
      assertEquals((await wire.ask(id)).slice(1, 3), ["AA", id]);
      store.accept(wire.port, id);
    }
    assertEquals(receiver.connections, limit);
    // The first keeps talking throughout.
    chatter = new Chatter(wires.shift()!, "CHATTY", store);
    await chatter.more(2);

    using extra = await Wire.open(receiver.port);
    await writeQuietly(extra, frame(hl7("REFUSED-1")));
    assertClosedByReceiver(await extra.closed());
    const rejected = await events.waitFor("clientreject", extra.port);
    assertEquals(rejected.reason, "too_many_connections");
    assertEquals(events.of("connectionopen", extra.port), []);
    assertEquals(store.count("REFUSED-1"), 0);
    assert(
      receiverWarnings(logs).some((line) =>
        line.startsWith(`Refusing connection from 127.0.0.1:${extra.port}: `) &&
        line.endsWith(`${scope} (limit ${limit})`)
      ),
      receiverWarnings(logs).join("\n"),
    );

    await chatter.more(2);

    // One leaves; a new one is let in, and the others still work.
    const leaving = wires.shift()!;
    leaving.close();
    await events.waitFor("connectionclose", leaving.port);
    const again = await Wire.open(receiver.port);
    wires.push(again);
    for (const [i, wire] of wires.entries()) {
      const id = `AFTER-${i}`;
      assertEquals((await wire.ask(id)).slice(1, 3), ["AA", id]);
      store.accept(wire.port, id);
    }
    await chatter.more(2);
    assertEquals(events.all("connectionclose").length, 1, "only one left");
  } finally {
    await chatter?.stop();
    chatter?.wire.close();
    for (const wire of wires) wire.close();
  }
  store.check();
}

hardeningTest(
  "maxConnections: one over the limit is closed at once without a dispatch; after one closes, a new one is admitted",
  async (logs) => {
    await checkConnectionLimit({ maxConnections: 3 }, 3, logs, "in all");
  },
);

hardeningTest(
  "maxConnectionsPerClient: the same from one address, below the total limit",
  async (logs) => {
    await checkConnectionLimit(
      { maxConnections: 10, maxConnectionsPerClient: 2 },
      2,
      logs,
      "from this address",
    );
  },
);

hardeningTest(
  "maxConnections over TLS: the refusal comes before the handshake",
  async () => {
    const store = new Store();
    await using receiver = await start({
      dispatcher: store.dispatcher(),
      maxConnections: 2,
      // Far longer than any wait here: a close seen sooner is no timeout.
      tls: { cert: SERVER_CERT, key: SERVER_KEY, handshakeTimeout: 60_000 },
    });
    const events = new Recorder(receiver);
    const wires: Wire[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const wire = await Wire.open(receiver.port, { tls: true });
        wires.push(wire);
        assertEquals((await wire.ask(`TLS-${i}`)).slice(1, 3), [
          "AA",
          `TLS-${i}`,
        ]);
        store.accept(wire.port, `TLS-${i}`);
      }
      // A silent TCP connection: a TLS server would wait for its
      // ClientHello; over the limit, it is closed without one.
      using silent = await Wire.open(receiver.port);
      assertClosedByReceiver(await silent.closed());
      assertEquals(
        (await events.waitFor("clientreject", silent.port)).reason,
        "too_many_connections",
      );
      // A TLS client over the limit fails its handshake.
      let refused = false;
      try {
        using _third = await Wire.open(receiver.port, { tls: true });
      } catch {
        refused = true;
      }
      assert(refused, "a third TLS client was let in");
      assertEquals(events.all("clientreject").length, 2);
      assertEquals(events.all("handshakeerror"), []);

      const leaving = wires.shift()!;
      leaving.close();
      await events.waitFor("connectionclose", leaving.port);
      const again = await Wire.open(receiver.port, { tls: true });
      wires.push(again);
      assertEquals((await again.ask("TLS-AGAIN")).slice(1, 3), [
        "AA",
        "TLS-AGAIN",
      ]);
      store.accept(again.port, "TLS-AGAIN");
    } finally {
      for (const wire of wires) wire.close();
    }
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Idle timeout

hardeningTest(
  "idleTimeout: a silent connection is closed; a chatty one and one whose message is slowly dispatched are not",
  async (logs) => {
    const store = new Store();
    const gate = new Gate();
    await using receiver = await start({
      // The silent connection and the witness meet it for certain; the
      // chatty one (a message every few ms) must never, so it leaves a
      // busy machine over a second of room.
      idleTimeout: 1_500,
      dispatcher: store.dispatcher(async (message) => {
        const id = controlIdOf(message);
        if (id.startsWith("SLOW")) await gate.hold(id);
        return Ack.forMessage(message, "AA");
      }),
    });
    const events = new Recorder(receiver);
    using silent = await Wire.open(receiver.port);
    using chatty = await Wire.open(receiver.port);
    using slow = await Wire.open(receiver.port);
    const chatter = new Chatter(chatty, "CHATTY", store);
    try {
      await slow.send(hl7("SLOW-1"));
      await gate.entered("SLOW-1");
      // Opened after SLOW-1's dispatch began: once the idle timeout closes
      // it, SLOW-1 has been in the dispatcher longer than the idle timeout.
      using witness = await Wire.open(receiver.port);

      assertEquals(await silent.closed(), "eof");
      assertEquals(await witness.closed(), "eof");
      for (const wire of [silent, witness]) {
        const closed = await events.waitFor("connectionclose", wire.port);
        assertEquals(closed.reason, "idle timeout: no data for 1500 ms");
      }
      assert(
        receiverWarnings(logs).includes(
          `Closing connection from 127.0.0.1:${silent.port}: idle timeout: no data for 1500 ms`,
        ),
      );

      gate.release("SLOW-1");
      assertEquals(msa(await slow.frame()).slice(1, 3), ["AA", "SLOW-1"]);
      store.accept(slow.port, "SLOW-1");
      assertEquals((await slow.ask("AFTER-SLOW")).slice(1, 3), [
        "AA",
        "AFTER-SLOW",
      ]);
      store.accept(slow.port, "AFTER-SLOW");
      assertEquals(events.of("connectionclose", slow.port), []);
      await chatter.more(2);
      assertEquals(events.of("connectionclose", chatty.port), []);
    } finally {
      gate.releaseAll();
      await chatter.stop();
    }
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Frame timeout (slowloris)

hardeningTest(
  "frameTimeout: a slowloris trickling a frame is closed (frame_timeout); a good client is unaffected",
  async (logs) => {
    const store = new Store();
    await using receiver = await start({
      frameTimeout: 300,
      dispatcher: store.dispatcher(),
    });
    const events = new Recorder(receiver);
    using good = await Wire.open(receiver.port);
    using loris = await Wire.open(receiver.port);
    const chatter = new Chatter(good, "GOOD", store);
    try {
      await loris.write(bytes([VT], "MSH|^~\\&|"));
      let ended = false;
      const closed = loris.closed().finally(() => ended = true);
      // A byte every 20 ms keeps the connection busy, never idle.
      for (let i = 0; i < 500 && !ended; i++) {
        try {
          await loris.write("x");
        } catch {
          break;
        }
        await delay(20);
      }
      assertClosedByReceiver(await closed);
      const error = await events.waitFor("framingerror", loris.port);
      assertEquals(error.kind, "frame_timeout");
      const close = await events.waitFor("connectionclose", loris.port);
      assertEquals(
        close.reason,
        "frame timeout: a frame was not finished within 300 ms",
      );
      assert(
        receiverWarnings(logs).includes(
          `Closing connection from 127.0.0.1:${loris.port}: frame timeout: a frame was not finished within 300 ms`,
        ),
      );
      await chatter.more(3);
    } finally {
      await chatter.stop();
    }
    assertEquals(events.of("connectionclose", good.port), []);
    assertEquals(events.of("dispatch", loris.port), []);
    store.check();
  },
);

hardeningTest(
  "frameTimeout: time the receiver spends not reading (a slow dispatch) does not count against a pipelined frame",
  async () => {
    const store = new Store();
    const gate = new Gate();
    await using receiver = await start({
      frameTimeout: 300,
      dispatcher: store.dispatcher(async (message) => {
        const id = controlIdOf(message);
        if (id.startsWith("HOLD")) await gate.hold(id);
        return Ack.forMessage(message, "AA");
      }),
    });
    const events = new Recorder(receiver);
    using wire = await Wire.open(receiver.port);
    try {
      // A message, and the first part of the next, in one write: the
      // receiver holds a partial frame while the first is dispatched.
      const next = new TextEncoder().encode(hl7("NEXT-2"));
      await wire.write(bytes(frame(hl7("HOLD-1")), [VT], next.subarray(0, 20)));
      await gate.entered("HOLD-1");
      // A witness slowloris, opened after: once it is closed for its frame
      // timeout, HOLD-1 has been held longer than the frame timeout.
      using witness = await Wire.open(receiver.port);
      await witness.write(bytes([VT], "MSH|"));
      assertClosedByReceiver(await witness.closed());
      assertEquals(
        (await events.waitFor("framingerror", witness.port)).kind,
        "frame_timeout",
      );
      // The sender finishes its frame, then the receiver reads again.
      await wire.write(bytes(next.subarray(20), [FS, CR]));
      gate.release("HOLD-1");
      assertEquals(msa(await wire.frame()).slice(1, 3), ["AA", "HOLD-1"]);
      assertEquals(msa(await wire.frame()).slice(1, 3), ["AA", "NEXT-2"]);
      store.accept(wire.port, "HOLD-1");
      store.accept(wire.port, "NEXT-2");
      assertEquals((await wire.ask("THIRD-3")).slice(1, 3), ["AA", "THIRD-3"]);
      store.accept(wire.port, "THIRD-3");
    } finally {
      gate.releaseAll();
    }
    assertEquals(events.of("framingerror", wire.port), []);
    assertEquals(events.of("connectionclose", wire.port), []);
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Dispatch timeout

hardeningTest(
  "dispatchTimeout: a dispatcher that answers the moment its signal aborts still gets AE (the timeout wins)",
  async () => {
    await using receiver = await start({
      dispatchTimeout: 100,
      dispatcher: (message, ctx) =>
        new Promise((resolve) => {
          // Answers at once when told to stop: with nothing for one
          // message, with an AA for the other. Neither may be sent.
          ctx.signal.addEventListener("abort", () => {
            const id = message.kind === "hl7" ? controlIdOf(message) : "";
            resolve(
              id.startsWith("NOTHING") || message.kind !== "hl7"
                ? undefined
                : Ack.forMessage(message, "AA"),
            );
          });
        }),
    });
    using wire = await Wire.open(receiver.port);
    const nothing = await wire.ask("NOTHING-1");
    assertEquals(nothing.slice(1, 3), ["AE", "NOTHING-1"]);
    assertStringIncludes(nothing[3], "did not answer within 100 ms");
    const late = await wire.ask("LATE-2");
    assertEquals(late.slice(1, 3), ["AE", "LATE-2"]);
  },
);

hardeningTest(
  "dispatchTimeout: a hung dispatcher gets AE (NAK for non-HL7), its signal is aborted, and the connection goes on",
  async () => {
    const store = new Store();
    const gate = new Gate();
    const signals = new Map<string, AbortSignal>();
    await using receiver = await start({
      dispatchTimeout: 200,
      dispatcher: store.dispatcher(async (message, ctx) => {
        const id = message.kind === "hl7" ? controlIdOf(message) : message.text;
        signals.set(id, ctx.signal);
        if (id.startsWith("HANG") || id.startsWith("hang")) {
          await gate.hold(id);
        }
        return message.kind === "hl7" ? Ack.forMessage(message, "AA") : "ok";
      }),
    });
    const events = new Recorder(receiver);
    using wire = await Wire.open(receiver.port);
    using other = await Wire.open(receiver.port);
    const chatter = new Chatter(other, "OTHER", store);
    try {
      await chatter.more(2);
      const hung = await wire.ask("HANG-1");
      assertEquals(hung.slice(1, 3), ["AE", "HANG-1"]);
      assertStringIncludes(hung[3], "did not answer within 200 ms");
      assertEquals(signals.get("HANG-1")?.aborted, true);

      assertEquals((await wire.ask("OK-2")).slice(1, 3), ["AA", "OK-2"]);
      store.accept(wire.port, "OK-2");
      assertEquals(signals.get("OK-2")?.aborted, false);

      await wire.send("hang, not HL7");
      assertEquals(await wire.frame(), new Uint8Array([NAK]));
      assertEquals(signals.get("hang, not HL7")?.aborted, true);

      // A late answer from the hung dispatch is never sent.
      gate.release("HANG-1");
      assertEquals((await wire.ask("OK-3")).slice(1, 3), ["AA", "OK-3"]);
      store.accept(wire.port, "OK-3");
      assertEquals(wire.buffered.length, 0);
      await chatter.more(2);
    } finally {
      gate.releaseAll();
      await chatter.stop();
    }
    assertEquals(events.all("connectionclose"), []);
    const outcomes = events.of("dispatch", wire.port);
    assertEquals(
      outcomes.map((o) => [o.controlId, o.ackCode, o.failed]),
      [
        ["HANG-1", "AE", true],
        ["OK-2", "AA", false],
        [undefined, undefined, true],
        ["OK-3", "AA", false],
      ],
    );
    assertEquals(store.count("HANG-1"), 1);
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Backpressure

hardeningTest(
  "backpressure: a slow dispatcher stops the reading of its connection; other connections are served",
  async () => {
    const FRAMES = 64;
    const SIZE = 1024 * 1024;
    const store = new Store();
    const gate = new Gate();
    await using receiver = await start({
      dispatcher: store.dispatcher(async (message) => {
        const id = controlIdOf(message);
        if (id === "BIG-0") await gate.hold(id);
        return Ack.forMessage(message, "AA");
      }),
    });
    using heavy = await Wire.open(receiver.port);
    using other = await Wire.open(receiver.port);
    let written = 0;
    const writing = (async () => {
      for (let i = 0; i < FRAMES; i++) {
        const framed = frame(hl7OfSize(`BIG-${i}`, SIZE));
        await heavy.write(framed);
        written += framed.length;
      }
    })();
    const total = FRAMES * (SIZE + 3);
    try {
      await gate.entered("BIG-0");
      // Wait until the writer makes no more progress: the socket buffers
      // are full, because the receiver has stopped reading.
      let last = -1;
      let steady = 0;
      for (let i = 0; i < 200 && steady < 5; i++) {
        await delay(50);
        steady = written === last ? steady + 1 : 0;
        last = written;
      }
      assertLess(written, total, "the receiver read everything anyway");
      assertEquals(store.calls, 1, "one message in the dispatcher");

      // Meanwhile another connection is served as usual.
      for (let i = 0; i < 5; i++) {
        assertEquals((await other.ask(`OTHER-${i}`)).slice(1, 3), [
          "AA",
          `OTHER-${i}`,
        ]);
        store.accept(other.port, `OTHER-${i}`);
      }
      assertEquals(store.calls, 6);

      gate.release("BIG-0");
      await bounded(writing, "the rest of the writes", BULK_TIMEOUT);
      for (let i = 0; i < FRAMES; i++) {
        const id = `BIG-${i}`;
        assertEquals(msa(await heavy.frame()).slice(1, 3), ["AA", id]);
        store.accept(heavy.port, id);
      }
    } finally {
      gate.releaseAll();
      heavy.close();
      await writing.catch(() => {});
    }
    assertEquals(store.calls, FRAMES + 5);
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Reply order

hardeningTest(
  "replies stay in message order per connection when dispatch times vary",
  async () => {
    const random = prng(7);
    const store = new Store();
    await using receiver = await start({
      dispatcher: store.dispatcher(async (message) => {
        await delay(Math.floor(random() * 8));
        return Ack.forMessage(message, "AA");
      }),
    });
    const wires = await Promise.all(
      Array.from({ length: 4 }, () => Wire.open(receiver.port)),
    );
    try {
      await Promise.all(wires.map(async (wire, w) => {
        const ids = Array.from({ length: 40 }, (_, i) => `ORD-${w}-${i}`);
        const stream = bytes(...ids.map((id) => frame(hl7(id))));
        // Written in random pieces, so frames straddle the writes.
        let at = 0;
        while (at < stream.length) {
          const size = 1 + Math.floor(random() * 700);
          await wire.write(stream.subarray(at, at + size));
          at += size;
        }
        for (const id of ids) {
          assertEquals(msa(await wire.frame()).slice(1, 3), ["AA", id]);
          store.accept(wire.port, id);
        }
      }));
    } finally {
      for (const wire of wires) wire.close();
    }
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Port scanners

/** A TLS record header, then bytes that hold a whole MLLP frame. */
function fakeClientHello(): Uint8Array {
  const body = bytes(
    [0x01, 0x00, 0x00, 0x30, 0x03, 0x03],
    new Uint8Array(8).fill(0x2a),
    // The extension type ec_point_formats is 0x000b: a VT. Random bytes
    // can then hold FS and CR, as in a real ClientHello.
    [0x00, 0x0b, 0x00, 0x02, 0x01, 0x00],
    "junk",
    [FS, CR],
    new Uint8Array(8).fill(0x11),
  );
  return bytes([0x16, 0x03, 0x01, 0x00, body.length], body);
}

hardeningTest(
  "port-scanner garbage on a plain receiver: nothing crashes or wedges, and warnings are rate-limited",
  async (logs) => {
    const store = new Store();
    await using receiver = await start({ dispatcher: store.dispatcher() });
    const events = new Recorder(receiver);
    using good = await Wire.open(receiver.port);
    let n = 0;
    const check = async () => {
      const id = `GOOD-${++n}`;
      assertEquals((await good.ask(id)).slice(1, 3), ["AA", id]);
      store.accept(good.port, id);
    };
    await check();

    // A TLS ClientHello is closed at once, with a warning, and nothing in it
    // is dispatched, even where its bytes look like a frame.
    {
      using hello = await Wire.open(receiver.port);
      await hello.write(fakeClientHello());
      assertClosedByReceiver(await hello.closed());
      await events.waitFor("connectionclose", hello.port);
      assertEquals(events.of("dispatch", hello.port), []);
    }
    // A real TLS client learns at once too.
    let tlsFailed = false;
    try {
      using _tls = await Wire.open(receiver.port, { tls: true });
    } catch {
      tlsFailed = true;
    }
    assert(tlsFailed, "a TLS handshake with a plain receiver succeeded");
    await check();

    // Connect and close, fifty times.
    for (let i = 0; i < 50; i++) {
      const wire = await Wire.open(receiver.port);
      wire.close();
    }
    await check();

    // HTTP requests: junk, skipped and reported; the scanner gives up.
    for (let i = 0; i < 10; i++) {
      using http = await Wire.open(receiver.port);
      await http.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await events.wait(
        "framingerror",
        (d) => d.peer.port === http.port && d.kind === "junk",
      );
    }
    await check();

    // Random bytes, some of which frame "messages" that get replies.
    const random = prng(42);
    for (let i = 0; i < 10; i++) {
      using noise = await Wire.open(receiver.port);
      const data = Uint8Array.from(
        { length: 4096 },
        () => Math.floor(random() * 256),
      );
      await writeQuietly(noise, data);
    }
    await check();

    // Everything closes in the end; only the good client stays.
    await bounded(
      (async () => {
        while (receiver.connections > 1) await delay(10);
      })(),
      "the scanners' connections to close",
    );
    await check();

    const warnings = receiverWarnings(logs);
    assertEquals(warnings.length, 6, warnings.join("\n"));
    assertMatch(
      warnings[0],
      /^Client 127\.0\.0\.1:\d+ started a TLS handshake, but this receiver speaks plain TCP; closing the connection$/,
    );
    assertEquals(
      warnings[5],
      "Further warnings from 127.0.0.1 are suppressed for 60 s",
    );
    // Not one warning per event.
    assertGreater(events.all("framingerror").length, 20);
    store.check();
  },
);

hardeningTest(
  "port-scanner garbage on a TLS receiver: handshake failures are rate-limited, connect-and-close leaks no slot",
  async (logs) => {
    const store = new Store();
    await using receiver = await start({
      dispatcher: store.dispatcher(),
      maxConnections: 4,
      tls: { cert: SERVER_CERT, key: SERVER_KEY, handshakeTimeout: 2_000 },
    });
    const events = new Recorder(receiver);
    using good = await Wire.open(receiver.port, { tls: true });
    let n = 0;
    const check = async () => {
      const id = `GOOD-${++n}`;
      assertEquals((await good.ask(id)).slice(1, 3), ["AA", id]);
      store.accept(good.port, id);
    };
    await check();

    // Connect and close, fifty times: far more than the 4 slots. Each ends
    // as a failed handshake, which frees its slot.
    for (let i = 0; i < 50; i++) {
      const wire = await Wire.open(receiver.port);
      wire.close();
      await events.waitFor("handshakeerror", wire.port);
    }
    await check();

    // HTTP and random bytes instead of a ClientHello.
    const random = prng(3);
    for (let i = 0; i < 10; i++) {
      using garbage = await Wire.open(receiver.port);
      await writeQuietly(
        garbage,
        i % 2 === 0
          ? new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
          : Uint8Array.from({ length: 512 }, () => Math.floor(random() * 256)),
      );
      assertClosedByReceiver(await garbage.closed());
      await events.waitFor("handshakeerror", garbage.port);
    }
    await check();

    // Every slot is free again: three more TLS clients fit beside the good one.
    const more: Wire[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const wire = await Wire.open(receiver.port, { tls: true });
        more.push(wire);
        assertEquals((await wire.ask(`MORE-${i}`)).slice(1, 3), [
          "AA",
          `MORE-${i}`,
        ]);
        store.accept(wire.port, `MORE-${i}`);
      }
    } finally {
      for (const wire of more) wire.close();
    }
    assertEquals(events.all("clientreject"), []);
    assertGreater(events.all("handshakeerror").length, 9);

    const warnings = receiverWarnings(logs);
    assertEquals(warnings.length, 6, warnings.join("\n"));
    for (const line of warnings.slice(0, 5)) {
      assertMatch(line, /^TLS handshake with 127\.0\.0\.1:\d+ failed: /);
    }
    assertEquals(
      warnings[5],
      "Further warnings from 127.0.0.1 are suppressed for 60 s",
    );
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Graceful stop

hardeningTest(
  "graceful stop: messages in flight get their replies, then the connections close and finished resolves",
  async () => {
    const store = new Store();
    const gate = new Gate();
    const receiver = await start({
      dispatcher: store.dispatcher(async (message) => {
        await gate.hold(controlIdOf(message));
        return Ack.forMessage(message, "AA");
      }),
    });
    const events = new Recorder(receiver);
    const port = receiver.port;
    const wires = await Promise.all(
      Array.from({ length: 3 }, () => Wire.open(port)),
    );
    using idle = await Wire.open(port);
    using partial = await Wire.open(port);
    try {
      await Promise.all(wires.map((wire, i) => wire.send(hl7(`STOP-${i}`))));
      await Promise.all(wires.map((_, i) => gate.entered(`STOP-${i}`)));
      await partial.write(bytes([VT], "MSH|^~\\&|half a message"));
      await events.waitFor("connectionopen", idle.port);
      await events.waitFor("connectionopen", partial.port);

      const stopping = receiver.stop({ deadline: 2_000 });
      assert(receiver.stopped);
      // No new connections.
      let refused = false;
      try {
        (await Deno.connect({ hostname: HOST, port })).close();
      } catch {
        refused = true;
      }
      assert(refused, "a connection was accepted after stop()");
      // Connections with nothing in flight close at once.
      assertEquals(await idle.closed(), "eof");
      assertEquals(await partial.closed(), "eof");

      gate.releaseAll();
      for (const [i, wire] of wires.entries()) {
        assertEquals(msa(await wire.frame()).slice(1, 3), ["AA", `STOP-${i}`]);
        store.accept(wire.port, `STOP-${i}`);
        assertEquals(await wire.closed(), "eof");
      }
      await bounded(stopping, "stop()");
      await bounded(receiver.finished, "finished");
    } finally {
      gate.releaseAll();
      for (const wire of wires) wire.close();
      await receiver.stop();
    }
    assertEquals(receiver.connections, 0);
    for (const wire of [...wires, idle, partial]) {
      assertEquals(
        (await events.waitFor("connectionclose", wire.port)).reason,
        "receiver stopped",
      );
    }
    assertEquals(store.calls, 3);
    store.check();
  },
);

hardeningTest(
  "graceful stop: at the deadline a hung dispatch's connection is closed, and what is queued behind it is never dispatched",
  async (logs) => {
    const store = new Store();
    const gate = new Gate();
    let signal: AbortSignal | undefined;
    const receiver = await start({
      dispatchTimeout: 0, // wait for ever: only the deadline ends it
      dispatcher: store.dispatcher(async (message, ctx) => {
        const id = controlIdOf(message);
        if (id === "HANG-1") signal = ctx.signal;
        await gate.hold(id);
        return Ack.forMessage(message, "AA");
      }),
    });
    const events = new Recorder(receiver);
    using wire = await Wire.open(receiver.port);
    try {
      await wire.write(bytes(
        frame(hl7("HANG-1")),
        frame(hl7("QUEUED-2")),
        frame(hl7("QUEUED-3")),
      ));
      await gate.entered("HANG-1");
      await bounded(receiver.stop({ deadline: 200 }), "stop() at its deadline");
      await bounded(receiver.finished, "finished");
      assertEquals(await wire.next(), null, "no reply after the deadline");
      assertEquals(signal?.aborted, true);
      const closed = await events.waitFor("connectionclose", wire.port);
      assertEquals(closed.reason, "receiver stopped at its deadline");
      assert(
        receiverWarnings(logs).includes(
          `Receiver on port ${receiver.port}: connections still busy at the stop deadline (200 ms): 1; closing them`,
        ),
        receiverWarnings(logs).join("\n"),
      );
    } finally {
      gate.releaseAll();
      await receiver.stop();
    }
    // The hung dispatch has answered now; nothing queued was dispatched.
    for (let i = 0; i < 10; i++) await delay(5);
    assertEquals(store.calls, 1);
    assertEquals(store.count("QUEUED-2") + store.count("QUEUED-3"), 0);
    store.check();
  },
);

// ---------------------------------------------------------------------------
// Exactly once, with every fault at once

hardeningTest(
  "exactly once: a storing dispatcher sees each accepted message once while every fault happens at once",
  async () => {
    const random = prng(2024);
    const store = new Store();
    const gate = new Gate();
    let resends = 0;
    await using receiver = await start({
      maxFrameBytes: 8 * 1024,
      maxConnections: 40,
      maxConnectionsPerClient: 40,
      // The faults meet these for certain (an idler never sends, a loris
      // never finishes, HANG-1 is held until the end); the good senders
      // must never meet them, so they leave a busy machine seconds of
      // room. A loris trickles a byte every 20 ms: its frame timeout
      // comes long before an idle timeout could.
      idleTimeout: 3_000,
      frameTimeout: 1_500,
      dispatchTimeout: 1_000,
      dispatcher: store.dispatcher(async (message) => {
        const id = controlIdOf(message);
        if (id.startsWith("HANG") || (id === "RESEND-1" && resends++ === 0)) {
          // Answers only when the test ends, long after anyone waits.
          await gate.hold(id);
          return Ack.forMessage(message, "AA");
        }
        if (id.startsWith("THROW")) throw new Error("boom");
        await delay(Math.floor(random() * 4));
        return Ack.forMessage(message, "AA");
      }),
    });
    const events = new Recorder(receiver);
    const port = receiver.port;
    const wires: Wire[] = [];
    const open = async () => {
      const wire = await Wire.open(port);
      wires.push(wire);
      return wire;
    };
    /** Reads replies until the connection ends, noting every AA. */
    const harvest = async (wire: Wire) => {
      try {
        for (;;) {
          const reply = await wire.next();
          if (reply === null) return;
          const fields = msa(reply);
          if (fields[1] === "AA") store.accept(wire.port, fields[2]);
        }
      } catch {
        // Reset by the receiver: what arrived before counts.
      }
    };

    // Everyone who must get in connects first.
    const good = await Promise.all(Array.from({ length: 6 }, open));
    const [resendA, resendB] = [await open(), await open()];
    const hang = await open();
    const oversize = await Promise.all(Array.from({ length: 3 }, open));
    const lorises = await Promise.all(Array.from({ length: 2 }, open));
    const idlers = await Promise.all(Array.from({ length: 3 }, open));
    assertEquals(idlers.length, 3);

    try {
      const work: Promise<unknown>[] = [];
      // Well-behaved senders, pipelining bursts of five.
      for (const [w, wire] of good.entries()) {
        work.push((async () => {
          for (let burst = 0; burst < 5; burst++) {
            const ids = Array.from(
              { length: 5 },
              (_, i) => `G${w}-${burst * 5 + i}`,
            );
            await wire.write(bytes(...ids.map((id) => frame(hl7(id)))));
            for (const id of ids) {
              const fields = msa(await wire.frame());
              assertEquals(fields.slice(1, 3), ["AA", id]);
              store.accept(wire.port, id);
            }
          }
        })());
      }
      // A hung message (AE at the dispatch timeout), a throwing one, and
      // messages after them on the same connection.
      work.push((async () => {
        await hang.write(bytes(
          frame(hl7("HANG-1")),
          frame(hl7("THROW-2")),
          frame(hl7("AFTER-3")),
        ));
        assertEquals(msa(await hang.frame()).slice(1, 3), ["AE", "HANG-1"]);
        assertEquals(msa(await hang.frame()).slice(1, 3), ["AE", "THROW-2"]);
        assertEquals(msa(await hang.frame()).slice(1, 3), ["AA", "AFTER-3"]);
        store.accept(hang.port, "AFTER-3");
      })());
      // A sender that gives up waiting and resends on a new connection.
      work.push((async () => {
        await resendA.send(hl7("RESEND-1"));
        await gate.entered("RESEND-1");
        resendA.close();
        assertEquals((await resendB.ask("RESEND-1")).slice(1, 3), [
          "AA",
          "RESEND-1",
        ]);
        store.accept(resendB.port, "RESEND-1");
      })());
      // Good frames, then one too large, in one write.
      for (const [w, wire] of oversize.entries()) {
        work.push((async () => {
          await writeQuietly(
            wire,
            bytes(
              frame(hl7(`BIG${w}-1`)),
              frame(hl7(`BIG${w}-2`)),
              [VT],
              "z".repeat(20 * 1024),
            ),
          );
          await harvest(wire);
        })());
      }
      // Slowlorises with a good message first.
      for (const [w, wire] of lorises.entries()) {
        work.push((async () => {
          assertEquals((await wire.ask(`LORIS${w}-1`)).slice(1, 3), [
            "AA",
            `LORIS${w}-1`,
          ]);
          store.accept(wire.port, `LORIS${w}-1`);
          await wire.write(bytes([VT], "MSH|^~\\&|"));
          let ended = false;
          const closed = harvest(wire).finally(() => ended = true);
          for (let i = 0; i < 500 && !ended; i++) {
            await writeQuietly(wire, "x");
            await delay(20);
          }
          await closed;
        })());
      }
      // Scanners: connect, maybe send a frame, and close.
      work.push((async () => {
        for (let i = 0; i < 30; i++) {
          try {
            using scan = await Wire.open(port);
            if (i % 3 === 0) await writeQuietly(scan, frame(hl7(`SCAN-${i}`)));
          } catch {
            // Refused at the limit: fine.
          }
        }
      })());
      await bounded(Promise.all(work), "the senders", BULK_TIMEOUT);
      // Idlers and slowlorises are gone by their timeouts.
      for (const wire of [...idlers, ...lorises, ...oversize]) {
        await events.waitFor("connectionclose", wire.port);
      }
    } finally {
      gate.releaseAll();
      for (const wire of wires) wire.close();
    }
    await receiver.stop();
    for (const wire of idlers) {
      assertStringIncludes(
        (await events.waitFor("connectionclose", wire.port)).reason,
        "idle timeout",
      );
    }
    for (const wire of lorises) {
      assertStringIncludes(
        (await events.waitFor("connectionclose", wire.port)).reason,
        "frame timeout",
      );
    }
    for (const wire of oversize) {
      assertEquals(
        (await events.waitFor("connectionclose", wire.port)).reason,
        "frame too large",
      );
    }
    assertEquals(store.count("RESEND-1"), 2, "one per frame received");
    assertEquals(store.count("HANG-1"), 1);
    assertEquals(store.count("THROW-2"), 1);
    assertGreater(store.accepted.size, 6 * 25);
    store.check();
  },
);
