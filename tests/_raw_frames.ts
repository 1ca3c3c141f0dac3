/**
 * A raw MLLP connection for wire-level tests: frames written and read by
 * hand (not with the library's framer), so the bytes a receiver or client
 * puts on the wire are checked independently.
 *
 * @module
 */

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Frames a payload by hand: VT, payload, FS, CR. */
export function rawFrame(payload: string | Uint8Array): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const frame = new Uint8Array(body.length + 3);
  frame[0] = VT;
  frame.set(body, 1);
  frame[body.length + 1] = FS;
  frame[body.length + 2] = CR;
  return frame;
}

/** Describes a frame payload: `ACK` / `NAK` for the one-byte commit frames, `MSA-1 MSA-2` for an ACK, else the text. */
export function describe(payload: Uint8Array): string {
  if (payload.length === 1 && payload[0] === 0x06) return "ACK";
  if (payload.length === 1 && payload[0] === 0x15) return "NAK";
  const text = decoder.decode(payload);
  const msa = text.split("\r").find((s) => s.startsWith("MSA|"));
  if (!msa) return text;
  const fields = msa.split("|");
  return `${fields[1]} ${fields[2]}`;
}

/** One TCP connection, read frame by frame. */
export class RawConn implements AsyncDisposable {
  readonly conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  #reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#reader = conn.readable.getReader();
  }

  /** Connects to 127.0.0.1:`port`. */
  static async connect(port: number): Promise<RawConn> {
    return new RawConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Writes one framed payload (or raw bytes with `framed: false`). */
  async send(payload: string | Uint8Array, framed = true): Promise<void> {
    const bytes = framed
      ? rawFrame(payload)
      : typeof payload === "string"
      ? encoder.encode(payload)
      : payload;
    let written = 0;
    while (written < bytes.length) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  /** Reads the next frame's payload; `null` when the peer closed. */
  async next(): Promise<Uint8Array | null> {
    while (true) {
      const start = this.#buffer.indexOf(VT);
      if (start !== -1) {
        for (let i = start + 1; i + 1 < this.#buffer.length; i++) {
          if (this.#buffer[i] === FS && this.#buffer[i + 1] === CR) {
            const payload = this.#buffer.slice(start + 1, i);
            this.#buffer = this.#buffer.slice(i + 2);
            return payload;
          }
        }
      }
      const { value, done } = await this.#reader.read();
      if (done) return null;
      const joined = new Uint8Array(this.#buffer.length + value.length);
      joined.set(this.#buffer);
      joined.set(value, this.#buffer.length);
      this.#buffer = joined;
    }
  }

  /**
   * Reads frames until one that `last` matches (included); gives up (and
   * closes the connection) after `ms` milliseconds, so a test never hangs.
   */
  async until(
    last: (described: string) => boolean,
    ms = 10_000,
  ): Promise<string[]> {
    const seen: string[] = [];
    const timer = setTimeout(() => this.close(), ms);
    try {
      while (true) {
        const frame = await this.next();
        if (frame === null) throw new Error(`Peer closed after ${seen}`);
        seen.push(describe(frame));
        if (last(seen.at(-1)!)) return seen;
      }
    } catch (error) {
      throw new Error(`Frames so far: ${JSON.stringify(seen)}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection. */
  close() {
    this.#reader.releaseLock();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
