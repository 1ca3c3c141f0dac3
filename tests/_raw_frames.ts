/**
 * Raw MLLP connections for wire-level tests: frames written and read by
 * hand (not with the library's framer), so the bytes a receiver or client
 * puts on the wire are checked independently. {@linkcode FrameReader} is
 * the one frame reader the tests share.
 *
 * @module
 */

import { assertEquals } from "@std/assert";

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

/** Options for a {@linkcode FrameReader}. */
export interface FrameReaderOptions {
  /**
   * How long one read may wait, in ms: then the connection is closed and
   * the read fails with "Timed out waiting for data" (0: no limit).
   */
  timeout?: number;
  /** A read that fails (reset, closed here) ends the stream instead. */
  errorsEnd?: boolean;
}

/**
 * Reads a connection frame by frame, by hand (not with the library's
 * framer): each frame must end with FS CR.
 */
export class FrameReader {
  #conn: Deno.Conn;
  #buffer: Uint8Array = new Uint8Array(0);
  #eof = false;
  #timeout: number;
  #errorsEnd: boolean;

  constructor(conn: Deno.Conn, options: FrameReaderOptions = {}) {
    this.#conn = conn;
    this.#timeout = options.timeout ?? 5_000;
    this.#errorsEnd = options.errorsEnd ?? false;
  }

  /** All bytes received and not yet returned as a frame. */
  get buffered(): Uint8Array {
    return this.#buffer;
  }

  /** Reads more bytes; returns false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(64 * 1024);
    let timedOut = false;
    const timer = this.#timeout > 0
      ? setTimeout(() => {
        timedOut = true;
        try {
          this.#conn.close();
        } catch {
          // Already closed.
        }
      }, this.#timeout)
      : undefined;
    let n: number | null;
    try {
      n = await this.#conn.read(chunk);
    } catch (error) {
      if (timedOut) throw new Error("Timed out waiting for data");
      if (this.#errorsEnd) n = null;
      else throw error;
    } finally {
      clearTimeout(timer);
    }
    if (timedOut) throw new Error("Timed out waiting for data");
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#buffer = concat(this.#buffer, chunk.subarray(0, n));
    return true;
  }

  /** The next frame's payload, or `null` if the stream ends first. */
  async next(): Promise<Uint8Array | null> {
    while (true) {
      const start = this.#buffer.indexOf(VT);
      if (start !== -1) {
        const end = this.#buffer.indexOf(FS, start);
        if (end !== -1 && end + 1 < this.#buffer.length) {
          assertEquals(this.#buffer[end + 1], CR, "FS CR ends each frame");
          const payload = this.#buffer.slice(start + 1, end);
          this.#buffer = this.#buffer.slice(end + 2);
          return payload;
        }
      }
      if (!await this.#fill()) return null;
    }
  }

  /** The next frame's payload; fails if the stream ends first. */
  async frame(): Promise<Uint8Array> {
    const payload = await this.next();
    if (payload === null) {
      throw new Error("Connection closed before a reply frame arrived");
    }
    return payload;
  }

  /**
   * Reads until the peer closes: `"eof"` for an orderly close, `"reset"`
   * for an abortive one. Whatever else arrives is discarded. Fails if the
   * connection was not closed in time.
   */
  async closed(): Promise<"eof" | "reset"> {
    try {
      while (await this.#fill()) {
        // Discard whatever else arrives.
      }
      return "eof";
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("Timed out")) {
        throw new Error("The connection was not closed", { cause: error });
      }
      return "reset";
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** One TCP connection, written and read frame by frame. */
export class RawConn implements AsyncDisposable {
  readonly conn: Deno.Conn;
  #reader: FrameReader;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#reader = new FrameReader(conn, { timeout: 0 });
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
  next(): Promise<Uint8Array | null> {
    return this.#reader.next();
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
