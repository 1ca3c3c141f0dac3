/**
 * A fault-injecting MLLP receiver for client tests: a real `Deno.listen`
 * server on 127.0.0.1 that answers each message as a script (or a seeded
 * random choice) says, and misbehaves on purpose: it closes before the
 * reply, cuts a reply in half, answers late, answers for another message,
 * sends junk, or restarts on the same port.
 *
 * It reads and writes MLLP frames and ACKs by hand, not with the library's
 * framer or ACK builder, so the client is tested against an independent
 * implementation.
 *
 * @module
 */

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * What the peer does with one message.
 *
 * - `none`: answers `AA` with the message's control id.
 * - `reject` / `error`: answers `AR` / `AE`.
 * - `close`: closes the connection without answering.
 * - `reset`: writes the first half of the reply frame, then closes.
 * - `late`: answers `AA` after `lateMs` (or once `lateUntil` resolves), on
 *   the same socket, then goes on serving that socket.
 * - `mismatch`: answers `AA` for another control id.
 * - `junk`: writes junk bytes, then the reply, in one write.
 * - `trailing`: writes the reply followed by junk bytes, in one write.
 * - `crlf`: writes the reply followed by `\r\n`, in one write.
 * - `not_ack`: answers with a frame that is not an ACK.
 * - `silent`: never answers (the connection stays open).
 * - `restart`: stops the peer (closing every connection) without
 *   answering, and starts it again on the same port after `downMs`.
 */
export type Fault =
  | "none"
  | "reject"
  | "error"
  | "close"
  | "reset"
  | "late"
  | "mismatch"
  | "junk"
  | "trailing"
  | "crlf"
  | "not_ack"
  | "silent"
  | "restart";

/** A message as the peer saw it. */
export interface SeenMessage {
  /** MSH-10 read by hand; `""` for a payload that is not HL7. */
  controlId: string;
  /** The payload as text. */
  text: string;
  /** Which message this is, counting every connection, from 0. */
  index: number;
  /** Which accepted connection carried it, from 0. */
  connection: number;
}

/** A message and what the peer did with it. */
export interface HandledMessage extends SeenMessage {
  /** The fault applied. */
  fault: Fault;
}

/** Chooses the fault for a message; may wait (to hold a reply). */
export type Decide = (message: SeenMessage) => Fault | Promise<Fault>;

/** Options for {@linkcode FaultPeer.start}. */
export interface FaultPeerOptions {
  /**
   * Chooses what to do with each message.
   *
   * @default {() => "none"}
   */
  decide?: Decide;
  /**
   * How long a `late` reply waits, in milliseconds.
   *
   * @default {300}
   */
  lateMs?: number;
  /**
   * How long a `restart` keeps the port closed, in milliseconds.
   *
   * @default {30}
   */
  downMs?: number;
  /**
   * When set, a `late` reply waits for the promise this returns instead of
   * `lateMs`: a reply held until the client has given up on the message
   * is late however slow the machine is. Stopping the peer ends the wait.
   */
  lateUntil?: (message: SeenMessage) => Promise<void>;
}

/** Decides by control id; anything not listed gets `fallback`. */
export function byControlId(
  faults: Record<string, Fault>,
  fallback: Fault = "none",
): Decide {
  return ({ controlId }) => faults[controlId] ?? fallback;
}

/**
 * A small seeded PRNG (mulberry32): the same seed gives the same numbers
 * in [0, 1).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Decides at random with a seeded PRNG: each fault with its rate (a
 * fraction of messages), `none` for the rest.
 */
export function seededFaults(
  seed: number,
  rates: Partial<Record<Fault, number>>,
): Decide {
  const random = seededRandom(seed);
  const entries = Object.entries(rates) as [Fault, number][];
  return () => {
    let roll = random();
    for (const [fault, rate] of entries) {
      if (roll < rate) return fault;
      roll -= rate;
    }
    return "none";
  };
}

/** MSH-10 of a payload read by hand; `""` if it is not HL7. */
export function controlIdOf(text: string): string {
  const msh = text.split("\r")[0];
  if (!msh.startsWith("MSH")) return "";
  return msh.split(msh[3] ?? "|")[9] ?? "";
}

/** An ACK written by hand, acknowledging `controlId` with `code`. */
export function handAck(controlId: string, code = "AA"): string {
  return `MSH|^~\\&|RCV|RFAC|SND|SFAC|20240101120001||ACK^A01^ACK|ACK-${controlId}|P|2.5\rMSA|${code}|${controlId}\r`;
}

/** Frames a payload by hand: VT, payload, FS, CR. */
export function handFrame(payload: string): Uint8Array {
  const body = encoder.encode(payload);
  const frame = new Uint8Array(body.length + 3);
  frame[0] = VT;
  frame.set(body, 1);
  frame[body.length + 1] = FS;
  frame[body.length + 2] = CR;
  return frame;
}

function join(...parts: (Uint8Array | string)[]): Uint8Array {
  const arrays = parts.map((p) =>
    typeof p === "string" ? encoder.encode(p) : p
  );
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const array of arrays) {
    out.set(array, offset);
    offset += array.length;
  }
  return out;
}

/** Splits a byte stream into MLLP payloads, skipping bytes between frames. */
class FrameSplitter {
  #buffer: Uint8Array = new Uint8Array(0);

  /** Adds bytes; returns the payloads completed by them. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.#buffer = join(this.#buffer, chunk);
    const payloads: Uint8Array[] = [];
    while (true) {
      const start = this.#buffer.indexOf(VT);
      if (start === -1) {
        this.#buffer = new Uint8Array(0);
        break;
      }
      let end = -1;
      for (let i = start + 1; i + 1 < this.#buffer.length; i++) {
        if (this.#buffer[i] === FS && this.#buffer[i + 1] === CR) {
          end = i;
          break;
        }
      }
      if (end === -1) {
        this.#buffer = this.#buffer.slice(start);
        break;
      }
      payloads.push(this.#buffer.slice(start + 1, end));
      this.#buffer = this.#buffer.slice(end + 2);
    }
    return payloads;
  }
}

function closeQuietly(closer: { close(): void }) {
  try {
    closer.close();
  } catch {
    // Already closed.
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<boolean> {
  try {
    let written = 0;
    while (written < data.length) {
      written += await conn.write(data.subarray(written));
    }
    return true;
  } catch {
    return false; // the client is gone
  }
}

interface Connection {
  conn: Deno.TcpConn;
  index: number;
  /** A message arrived and its reply has not been started. */
  outstanding: boolean;
}

/**
 * The fault-injecting MLLP peer. Create it with {@linkcode FaultPeer.start};
 * dispose of it with `await using`.
 */
export class FaultPeer implements AsyncDisposable {
  #options: Required<Omit<FaultPeerOptions, "lateUntil">> & {
    lateUntil?: (message: SeenMessage) => Promise<void>;
  };
  #listener: Deno.TcpListener | undefined;
  #port = 0;
  #accepting: Promise<void> = Promise.resolve();
  #connections = new Set<Connection>();
  #serving = new Set<Promise<void>>();
  #sleepers = new Map<ReturnType<typeof setTimeout>, () => void>();
  #holds = new Set<() => void>();
  #restarts = new Set<Promise<void>>();
  #disposed = false;
  #accepted = 0;
  #messages = 0;
  #connectionWaiters: (() => void)[] = [];
  #keyWaiters = new Map<string, (() => void)[]>();
  #happened = new Set<string>();
  /** Every message, in arrival order, with the fault applied to it. */
  readonly handled: HandledMessage[] = [];
  /** How often each control id arrived. */
  readonly seen = new Map<string, number>();
  /**
   * Messages that arrived on a connection while an earlier one on it was
   * still unanswered: a client breaking stop-and-wait.
   */
  violations = 0;
  /** How many restarts the peer has done. */
  restarts = 0;

  private constructor(options: FaultPeerOptions) {
    this.#options = {
      decide: options.decide ?? (() => "none"),
      lateMs: options.lateMs ?? 300,
      downMs: options.downMs ?? 30,
      lateUntil: options.lateUntil,
    };
  }

  /** Starts a peer on 127.0.0.1 and a free port. */
  static async start(options: FaultPeerOptions = {}): Promise<FaultPeer> {
    const peer = new FaultPeer(options);
    await peer.start();
    return peer;
  }

  /** The port, the same across restarts. */
  get port(): number {
    return this.#port;
  }

  /** Whether the peer is listening. */
  get running(): boolean {
    return this.#listener !== undefined;
  }

  /** How many connections the peer has accepted, across restarts. */
  get connections(): number {
    return this.#accepted;
  }

  /** How many connections are open now. */
  get openConnections(): number {
    return this.#connections.size;
  }

  /** How many times `controlId` arrived. */
  count(controlId: string): number {
    return this.seen.get(controlId) ?? 0;
  }

  /** Resolves once the peer has accepted `n` connections in all. */
  waitForConnections(n: number): Promise<void> {
    if (this.#accepted >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.#accepted >= n) resolve();
        else this.#connectionWaiters.push(check);
      };
      this.#connectionWaiters.push(check);
    });
  }

  /**
   * Resolves once the peer has finished with a message carrying
   * `controlId` (its reply, late or not, written or failed).
   */
  waitForHandled(controlId: string): Promise<void> {
    return this.#waitFor(`handled ${controlId}`);
  }

  /** Resolves once a message carrying `controlId` has arrived. */
  waitForArrival(controlId: string): Promise<void> {
    return this.#waitFor(`arrived ${controlId}`);
  }

  #waitFor(key: string): Promise<void> {
    if (this.#happened.has(key)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.#keyWaiters.get(key) ?? [];
      list.push(resolve);
      this.#keyWaiters.set(key, list);
    });
  }

  #happen(key: string) {
    this.#happened.add(key);
    const waiters = this.#keyWaiters.get(key) ?? [];
    this.#keyWaiters.delete(key);
    for (const waiter of waiters) waiter();
  }

  /**
   * Listens (again): on a free port the first time, on the same port
   * after. Tries for a while if the port is still taken.
   */
  async start(): Promise<void> {
    if (this.#listener || this.#disposed) return;
    let listener: Deno.TcpListener | undefined;
    for (let tries = 0; !listener; tries++) {
      try {
        listener = Deno.listen({ hostname: "127.0.0.1", port: this.#port });
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse) || tries >= 100) {
          throw error;
        }
        await this.sleep(20);
        if (this.#disposed) return;
      }
    }
    this.#listener = listener;
    this.#port = listener.addr.port;
    this.#accepting = this.#accept(listener);
  }

  /** Stops listening and closes every connection, as a receiver stop. */
  async stop(): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    if (listener) closeQuietly(listener);
    await this.#accepting;
    this.dropConnections();
    this.#wakeSleepers();
    await Promise.all(this.#serving);
  }

  /** Stops, waits `downMs`, and starts again on the same port. */
  async restart(downMs = this.#options.downMs): Promise<void> {
    this.restarts++;
    await this.stop();
    await this.sleep(downMs);
    await this.start();
  }

  /** Closes every open connection; the listener stays. */
  dropConnections(): void {
    for (const connection of this.#connections) closeQuietly(connection.conn);
  }

  /** Writes raw bytes to every open connection. */
  async inject(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    await Promise.all(
      [...this.#connections].map((c) => writeAll(c.conn, bytes)),
    );
  }

  /** Sleeps in a way that stopping or disposing cuts short. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const id = setTimeout(() => {
        this.#sleepers.delete(id);
        resolve();
      }, ms);
      this.#sleepers.set(id, resolve);
    });
  }

  /** Waits for `promise`, or until the peer stops, whichever is first. */
  #hold(promise: Promise<void>): Promise<void> {
    const { promise: stopped, resolve } = Promise.withResolvers<void>();
    this.#holds.add(resolve);
    return Promise.race([promise, stopped]).finally(() =>
      this.#holds.delete(resolve)
    );
  }

  #wakeSleepers() {
    for (const [id, wake] of this.#sleepers) {
      clearTimeout(id);
      wake();
    }
    this.#sleepers.clear();
    for (const wake of this.#holds) wake();
    this.#holds.clear();
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) {
        if (this.#listener !== listener) {
          closeQuietly(conn);
          break;
        }
        const connection: Connection = {
          conn,
          index: this.#accepted++,
          outstanding: false,
        };
        this.#connections.add(connection);
        const serving = this.#serve(connection).finally(() => {
          closeQuietly(conn);
          this.#connections.delete(connection);
          this.#serving.delete(serving);
        });
        this.#serving.add(serving);
        for (const waiter of this.#connectionWaiters.splice(0)) waiter();
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(connection: Connection): Promise<void> {
    const splitter = new FrameSplitter();
    const buffer = new Uint8Array(16 * 1024);
    let chain = Promise.resolve();
    try {
      while (true) {
        let n: number | null;
        try {
          n = await connection.conn.read(buffer);
        } catch {
          break; // reset, or closed here
        }
        if (n === null) break;
        for (const payload of splitter.push(buffer.subarray(0, n))) {
          if (connection.outstanding) this.violations++;
          connection.outstanding = true;
          const text = decoder.decode(payload);
          const message: SeenMessage = {
            controlId: controlIdOf(text),
            text,
            index: this.#messages++,
            connection: connection.index,
          };
          this.seen.set(
            message.controlId,
            (this.seen.get(message.controlId) ?? 0) + 1,
          );
          this.#happen(`arrived ${message.controlId}`);
          chain = chain.then(() => this.#handle(connection, message));
        }
      }
    } finally {
      await chain;
    }
  }

  async #handle(connection: Connection, message: SeenMessage): Promise<void> {
    try {
      await this.#apply(connection, message);
    } finally {
      this.#happen(`handled ${message.controlId}`);
    }
  }

  async #apply(connection: Connection, message: SeenMessage): Promise<void> {
    let fault: Fault;
    try {
      fault = await this.#options.decide(message);
    } catch {
      fault = "close";
    }
    this.handled.push({ ...message, fault });
    const { conn } = connection;
    const id = message.controlId;
    const reply = (code = "AA", ackFor = id) =>
      handFrame(handAck(ackFor, code));
    const answer = async (data: Uint8Array) => {
      // Cleared before writing: the client may answer the reply at once.
      connection.outstanding = false;
      await writeAll(conn, data);
    };
    switch (fault) {
      case "none":
        return answer(reply());
      case "reject":
        return answer(reply("AR"));
      case "error":
        return answer(reply("AE"));
      case "close":
        closeQuietly(conn);
        return;
      case "reset": {
        const frame = reply();
        await writeAll(conn, frame.subarray(0, frame.length >> 1));
        closeQuietly(conn);
        return;
      }
      case "late":
        if (this.#options.lateUntil) {
          await this.#hold(this.#options.lateUntil(message));
        } else {
          await this.sleep(this.#options.lateMs);
        }
        return answer(reply());
      case "mismatch":
        return answer(reply("AA", `${id}-OTHER`));
      case "junk":
        return answer(join("JUNK\x00", reply()));
      case "trailing":
        return answer(join(reply(), "TRAILING JUNK"));
      case "crlf":
        return answer(join(reply(), "\r\n"));
      case "not_ack":
        return answer(handFrame("This is not an ACK"));
      case "silent":
        return;
      case "restart": {
        // Not awaited: stopping waits for this handler to end.
        const restart: Promise<void> = this.restart().catch(() => {})
          .finally(() => this.#restarts.delete(restart));
        this.#restarts.add(restart);
        return;
      }
    }
  }

  /** Stops for good: closes the listener and every connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#disposed = true;
    this.#wakeSleepers();
    await Promise.all(this.#restarts);
    await this.stop();
  }
}
