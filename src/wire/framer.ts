/**
 * Web-Streams framing for MLLP: {@linkcode MllpDecoderStream} turns a byte
 * stream into frame payloads, {@linkcode MllpEncoderStream} turns payloads
 * into framed bytes.
 *
 * The framer is runtime-neutral: it uses only Web Streams and `Uint8Array`,
 * so it runs unchanged in Deno, Node.js, browsers and workers.
 *
 * @example Decode frames from a byte stream
 * ```ts
 * import { MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new Uint8Array([0x0b, 0x41, 0x1c, 0x0d, 0x0b, 0x42, 0x1c, 0x0d]);
 * const frames = await Array.fromAsync(
 *   ReadableStream.from([bytes]).pipeThrough(new MllpDecoderStream()),
 * );
 * assertEquals(frames.map((f) => new TextDecoder().decode(f)), ["A", "B"]);
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { BytePool } from "./_pool.ts";
import { findFramingByte, framingProblem, WordViews } from "./_scan.ts";
import { FrameSizeError } from "./errors.ts";

/**
 * The MLLP start block byte, VT (`0x0b`).
 *
 * @example Build a frame by hand
 * ```ts
 * import {
 *   CARRIAGE_RETURN,
 *   encodeFrame,
 *   END_BLOCK,
 *   START_BLOCK,
 * } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const frame = new Uint8Array([START_BLOCK, 0x41, END_BLOCK, CARRIAGE_RETURN]);
 * assertEquals(START_BLOCK, 0x0b);
 * assertEquals(encodeFrame(new Uint8Array([0x41])), frame);
 * ```
 */
export const START_BLOCK = 0x0b;
/**
 * The first byte of the MLLP end block, FS (`0x1c`).
 *
 * @example Find the end of a frame
 * ```ts
 * import { END_BLOCK, START_BLOCK } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new Uint8Array([START_BLOCK, 0x48, 0x69, END_BLOCK, 0x0d]);
 * const payload = bytes.subarray(1, bytes.indexOf(END_BLOCK));
 * assertEquals(END_BLOCK, 0x1c);
 * assertEquals(new TextDecoder().decode(payload), "Hi");
 * ```
 */
export const END_BLOCK = 0x1c;
/**
 * The second byte of the MLLP end block, CR (`0x0d`).
 *
 * @example Check the end block
 * ```ts
 * import { CARRIAGE_RETURN, encodeFrame, END_BLOCK } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const frame = encodeFrame(new TextEncoder().encode("MSH|"));
 * assertEquals(CARRIAGE_RETURN, 0x0d);
 * assertEquals([...frame.slice(-2)], [END_BLOCK, CARRIAGE_RETURN]);
 * ```
 */
export const CARRIAGE_RETURN = 0x0d;
/**
 * The default largest payload a decoder accepts: 10 MiB.
 *
 * @example Raise the limit for large documents
 * ```ts
 * import { DEFAULT_MAX_FRAME_BYTES, MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_MAX_FRAME_BYTES, 10 * 1024 * 1024);
 * const decoder = new MllpDecoderStream({
 *   maxFrameBytes: 4 * DEFAULT_MAX_FRAME_BYTES,
 * });
 * const frames = await Array.fromAsync(
 *   ReadableStream.from([new Uint8Array([0x0b, 0x41, 0x1c, 0x0d])]).pipeThrough(
 *     decoder,
 *   ),
 * );
 * assertEquals(frames.length, 1);
 * ```
 */
export const DEFAULT_MAX_FRAME_BYTES = 10 * 1024 * 1024;

const logger = getLogger(["mllp", "framer"]);

/**
 * The block size of a decoder's payload copies: payloads up to a quarter
 * of it (2 KiB) share blocks.
 */
const DECODER_BLOCK_BYTES = 8 * 1024;
/** The block size of an encoder's frames: frames up to 2 KiB share blocks. */
const ENCODER_BLOCK_BYTES = 8 * 1024;

/**
 * Options for {@linkcode MllpDecoderStream}.
 *
 * @example Limit frame size and count junk
 * ```ts
 * import { type MllpDecoderOptions, MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const skipped: number[] = [];
 * const options: MllpDecoderOptions = {
 *   maxFrameBytes: 1024, // a larger frame errors the stream with FrameSizeError
 *   onJunk: (bytes) => skipped.push(bytes),
 *   silent: true,
 * };
 * const input = new Uint8Array([0x0d, 0x0a, 0x0b, 0x41, 0x1c, 0x0d]);
 * const frames = await Array.fromAsync(
 *   ReadableStream.from([input]).pipeThrough(new MllpDecoderStream(options)),
 * );
 * assertEquals([frames.length, skipped], [1, [2]]);
 * ```
 */
export interface MllpDecoderOptions {
  /**
   * The largest payload accepted, in bytes. A frame that grows past it
   * errors the stream with a {@linkcode FrameSizeError}; the bytes held
   * never exceed this limit plus one chunk.
   *
   * @default {10485760}
   */
  maxFrameBytes?: number;
  /**
   * Called for each run of bytes skipped outside a frame (junk between
   * frames, such as `\r\n` or NUL), with the number of bytes skipped and
   * a view of them (valid only during the call).
   */
  onJunk?: (bytes: number, data: Uint8Array) => void;
  /**
   * Called when a start block arrives inside an unfinished frame: the
   * partial payload (of the given size) is dropped and a new frame starts.
   */
  onResync?: (droppedBytes: number) => void;
  /** A label for log lines, such as the peer's address. */
  label?: string;
  /**
   * Called when a start block opens a frame (for frame timeouts).
   */
  onFrameStart?: () => void;
  /**
   * Do not log; the callbacks report what happened. For callers that log
   * in their own way (a receiver rate-limits warnings per client).
   *
   * @default {false}
   */
  silent?: boolean;
}

/**
 * Where {@linkcode MllpDecoderStream.decode} puts each payload: a
 * `TransformStreamDefaultController`, or any object with `enqueue`.
 *
 * @example Collect payloads in an array
 * ```ts
 * import { type FrameSink, MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const payloads: Uint8Array[] = [];
 * const sink: FrameSink = { enqueue: (payload) => payloads.push(payload) };
 * new MllpDecoderStream().decode(new Uint8Array([0x0b, 0x41, 0x1c, 0x0d]), sink);
 * assertEquals(payloads, [new Uint8Array([0x41])]);
 * ```
 */
export interface FrameSink {
  /**
   * Takes one payload.
   *
   * @param payload The frame's payload (a copy, not a view of the input).
   */
  enqueue(payload: Uint8Array): void;
}

/**
 * A transform stream that splits MLLP-framed bytes into frame payloads.
 *
 * It handles every chunking: frames split at any byte (including between
 * the FS and CR of the end block), several frames in one chunk, and empty
 * frames. Bytes between frames are skipped, counted and logged. A start
 * block inside an unfinished frame drops the partial frame and starts a new
 * one. Work is linear in the bytes received: each byte is scanned at most
 * twice and copied at most twice.
 *
 * Payloads are always copies, never views of the input chunks, so the
 * caller may reuse its read buffer (the decoder is done with a chunk once
 * its write has resolved). To keep allocations few, payloads share
 * buffers: the payloads of frames that lie whole in one input chunk are
 * views of one copy, and small copies (up to 2 KiB) are carved out of
 * 8 KiB blocks that the decoder allocates as it goes. Each payload is a
 * view of its own range, so a kept payload can hold up to one chunk or one
 * block in memory, and transferring a payload's `buffer` also takes the
 * bytes of other payloads from the same decoder. Use `payload.slice()` to
 * own the bytes alone.
 *
 * An end block whose FS is followed by anything but CR still ends the frame
 * (with a warning); the byte after it is then read as if between frames.
 *
 * @example Frames split across chunks
 * ```ts
 * import { MllpDecoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const chunks = [
 *   new Uint8Array([0x0b, 0x48, 0x69, 0x1c]),
 *   new Uint8Array([0x0d, 0x0d, 0x0a]), // CR of the end block, then junk
 * ];
 * const decoder = new MllpDecoderStream();
 * const frames = await Array.fromAsync(
 *   ReadableStream.from(chunks).pipeThrough(decoder),
 * );
 * assertEquals(new TextDecoder().decode(frames[0]), "Hi");
 * assertEquals(decoder.junkBytes, 2);
 * ```
 */
export class MllpDecoderStream extends TransformStream<Uint8Array, Uint8Array> {
  #maxFrameBytes: number;
  #onJunk?: (bytes: number, data: Uint8Array) => void;
  #onResync?: (droppedBytes: number) => void;
  #label: string;
  /** True between a start block and its end block. */
  #inFrame = false;
  /** True when the last byte seen inside a frame was FS. */
  #sawEndBlock = false;
  /** Pieces of the current frame that arrived in earlier chunks. */
  #parts: Uint8Array[] = [];
  /** Start and end offsets of whole frames in the current chunk. */
  #pending: number[] = [];
  #size = 0;
  #junkBytes = 0;
  #onFrameStart?: () => void;
  #silent: boolean;
  #frames = 0;
  /** Where the copies of small payloads come from. */
  #pool = new BytePool(DECODER_BLOCK_BYTES);
  /** The word view of the input's buffer, kept for the next chunk. */
  #words = new WordViews();

  /**
   * Constructs a new decoder.
   *
   * @param options Limits and callbacks.
   */
  constructor(options: MllpDecoderOptions = {}) {
    super(
      {
        transform: (chunk, controller) => this.#transform(chunk, controller),
        flush: (controller) => this.#flush(controller),
        // The writable side keeps its default high-water mark of one chunk,
        // so that a pipe into the decoder takes a chunk only once the one
        // before has been decoded: its source may reuse its read buffer.
        // A high-water mark of one on the readable side (not zero) saves a
        // backpressure round trip per chunk.
      },
      undefined,
      { highWaterMark: 1 },
    );
    const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!(max >= 0) || !Number.isFinite(max)) {
      throw new RangeError(
        `Cannot create decoder: maxFrameBytes must be a finite number >= 0, got "${max}"`,
      );
    }
    this.#maxFrameBytes = max;
    this.#onJunk = options.onJunk;
    this.#onResync = options.onResync;
    this.#label = options.label ?? "stream";
    this.#onFrameStart = options.onFrameStart;
    this.#silent = options.silent ?? false;
  }

  /** The total number of bytes skipped outside frames so far. */
  get junkBytes(): number {
    return this.#junkBytes;
  }

  /** Whether a frame has started and not yet ended. */
  get inFrame(): boolean {
    return this.#inFrame;
  }

  /** The number of frames decoded so far. */
  get frames(): number {
    return this.#frames;
  }

  /**
   * Decodes a chunk at once, outside the stream: each whole frame's
   * payload goes to `sink.enqueue`, in order, before this returns. For a
   * caller that reads a socket itself and handles each frame in the same
   * turn (this library's receiver and client do): it skips the stream's
   * queues and promises, with the same framing, limits, callbacks and
   * copies. Use it or the stream's `writable`, not both.
   *
   * @param chunk The bytes read; not kept (payloads are copies).
   * @param sink Where payloads go.
   * @throws {FrameSizeError} If a frame grows past `maxFrameBytes`; the
   * decoder drops that frame and can go on with the next chunk.
   *
   * @example Decode chunks as they are read
   * ```ts
   * import { MllpDecoderStream } from "@x/mllp/framer";
   * import { assertEquals } from "@std/assert";
   *
   * const decoder = new MllpDecoderStream();
   * const frames: string[] = [];
   * const sink = {
   *   enqueue: (payload: Uint8Array) =>
   *     frames.push(new TextDecoder().decode(payload)),
   * };
   * decoder.decode(new Uint8Array([0x0b, 0x41, 0x1c, 0x0d, 0x0b, 0x42]), sink);
   * decoder.decode(new Uint8Array([0x1c, 0x0d]), sink);
   * decoder.end(sink);
   * assertEquals(frames, ["A", "B"]);
   * ```
   */
  decode(chunk: Uint8Array, sink: FrameSink): void {
    this.#transform(chunk, sink);
  }

  /**
   * Ends the input given to {@linkcode MllpDecoderStream.decode}, as the
   * stream's end does: a payload whose FS came last, without its CR, is
   * delivered; an unfinished frame is dropped (and logged).
   *
   * @param sink Where a last payload goes.
   */
  end(sink: FrameSink): void {
    this.#flush(sink);
  }

  #warn(message: string, properties: Record<string, unknown>) {
    if (!this.#silent) logger.warn(message, properties);
  }

  #junk(chunk: Uint8Array, start: number, end: number) {
    const bytes = end - start;
    this.#junkBytes += bytes;
    this.#warn("Skipped {bytes} bytes outside a frame from {label}", {
      bytes,
      label: this.#label,
    });
    this.#onJunk?.(bytes, chunk.subarray(start, end));
  }

  #emit(
    controller: FrameSink,
    chunk: Uint8Array,
    start: number,
    end: number,
  ) {
    if (this.#parts.length === 0) {
      // The whole payload is in this chunk: copy it out later, together
      // with the chunk's other whole frames (see #enqueuePending).
      this.#pending.push(start, end);
    } else {
      // Only the first frame ended in a chunk can have parts, so no
      // pending frame comes before it.
      const payload = this.#pool.alloc(this.#size + (end - start));
      let offset = 0;
      for (const part of this.#parts) {
        payload.set(part, offset);
        offset += part.length;
      }
      payload.set(chunk.subarray(start, end), offset);
      controller.enqueue(payload);
    }
    this.#reset();
    this.#frames++;
  }

  /**
   * Enqueues the frames that lie whole in `chunk`. One copy of the span
   * from the first to the last of them backs them all: one allocation per
   * chunk rather than per frame, which is what makes many small frames
   * fast. The payloads are views into that copy, never into `chunk`.
   */
  #enqueuePending(
    chunk: Uint8Array,
    controller: FrameSink,
  ) {
    const pending = this.#pending;
    const base = pending[0];
    const copy = this.#pool.copy(
      chunk.subarray(base, pending[pending.length - 1]),
    );
    if (pending.length === 2) {
      controller.enqueue(copy);
    } else {
      for (let k = 0; k < pending.length; k += 2) {
        controller.enqueue(
          copy.subarray(pending[k] - base, pending[k + 1] - base),
        );
      }
    }
    pending.length = 0;
  }

  #reset() {
    this.#inFrame = false;
    this.#sawEndBlock = false;
    if (this.#parts.length > 0) this.#parts = [];
    this.#size = 0;
  }

  #keep(chunk: Uint8Array, start: number, end: number) {
    if (end > start) {
      this.#parts.push(this.#pool.copy(chunk.subarray(start, end)));
      this.#size += end - start;
    }
  }

  #checkSize(extra: number) {
    if (this.#size + extra > this.#maxFrameBytes) {
      const held = this.#size + extra;
      this.#reset();
      throw new FrameSizeError(
        `Cannot decode frame: exceeded ${this.#maxFrameBytes} bytes (${held} bytes without an end block)`,
        { limit: this.#maxFrameBytes },
      );
    }
  }

  #transform(
    chunk: Uint8Array,
    controller: FrameSink,
  ) {
    if (chunk.constructor !== Uint8Array) {
      // A subclass such as Node's Buffer, whose slice() is a view: read it
      // as a plain Uint8Array so that payloads are always copies.
      chunk = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
    try {
      this.#scan(chunk, controller);
    } finally {
      if (this.#pending.length > 0) this.#enqueuePending(chunk, controller);
    }
  }

  #scan(
    chunk: Uint8Array,
    controller: FrameSink,
  ) {
    const length = chunk.length;
    let i = 0;
    while (i < length) {
      if (this.#sawEndBlock) {
        // The previous byte was FS inside a frame.
        this.#sawEndBlock = false;
        if (chunk[i] === CARRIAGE_RETURN) {
          this.#emit(controller, chunk, i, i);
          i++;
          continue;
        }
        this.#warn("End block without CR from {label}; frame ended at FS", {
          label: this.#label,
        });
        this.#emit(controller, chunk, i, i);
        continue;
      }
      if (!this.#inFrame) {
        const start = chunk.indexOf(START_BLOCK, i);
        if (start === -1) {
          this.#junk(chunk, i, length);
          return;
        }
        if (start > i) this.#junk(chunk, i, start);
        this.#inFrame = true;
        this.#onFrameStart?.();
        i = start + 1;
        continue;
      }
      // Inside a frame: look for FS (end) or VT (a new frame: resync). Each
      // search ends at the first of them, so every byte is searched once.
      const stop = findFramingByte(chunk, i, this.#words);
      if (stop === -1) {
        this.#checkSize(length - i);
        this.#keep(chunk, i, length);
        return;
      }
      this.#checkSize(stop - i);
      if (chunk[stop] === START_BLOCK) {
        const dropped = this.#size + (stop - i);
        this.#warn(
          "Start block inside an unfinished frame from {label}; dropped {dropped} bytes and started a new frame",
          { label: this.#label, dropped },
        );
        this.#reset();
        this.#onResync?.(dropped);
        this.#inFrame = true;
        this.#onFrameStart?.();
        i = stop + 1;
        continue;
      }
      // FS found at `stop`.
      if (stop + 1 < length) {
        if (chunk[stop + 1] !== CARRIAGE_RETURN) {
          this.#warn("End block without CR from {label}; frame ended at FS", {
            label: this.#label,
          });
          this.#emit(controller, chunk, i, stop);
          i = stop + 1;
        } else {
          this.#emit(controller, chunk, i, stop);
          i = stop + 2;
        }
      } else {
        // FS is the last byte of this chunk: wait for the CR.
        this.#keep(chunk, i, stop);
        this.#sawEndBlock = true;
        return;
      }
    }
  }

  #flush(controller: FrameSink) {
    if (this.#sawEndBlock) {
      this.#warn("Stream from {label} ended after FS without CR", {
        label: this.#label,
      });
      // The payload is complete; deliver it rather than lose it.
      const empty = new Uint8Array(0);
      this.#emit(controller, empty, 0, 0);
      if (this.#pending.length > 0) this.#enqueuePending(empty, controller);
      return;
    }
    if (this.#inFrame) {
      this.#warn(
        "Stream from {label} ended inside a frame; dropped {dropped} bytes",
        { label: this.#label, dropped: this.#size },
      );
      this.#reset();
    }
  }
}

/**
 * Options for {@linkcode MllpEncoderStream}.
 *
 * @example Validation rejects a payload that would break the framing
 * ```ts
 * import { type MllpEncoderOptions, MllpEncoderStream } from "@x/mllp/framer";
 * import { assertRejects } from "@std/assert";
 *
 * const options: MllpEncoderOptions = { validate: true };
 * const payload = new Uint8Array([0x41, 0x1c, 0x42]); // holds FS
 * await assertRejects(
 *   () =>
 *     Array.fromAsync(
 *       ReadableStream.from([payload]).pipeThrough(
 *         new MllpEncoderStream(options),
 *       ),
 *     ),
 *   TypeError,
 * );
 * ```
 */
export interface MllpEncoderOptions {
  /**
   * Reject payloads that contain a start block (VT) or end block (FS)
   * byte, which would corrupt the framing. Turn it off only for trusted
   * payloads where the scan's cost matters.
   *
   * @default {true}
   */
  validate?: boolean;
}

/**
 * A transform stream that wraps each payload in an MLLP frame: `0x0b`,
 * the payload, `0x1c 0x0d`. Each frame is enqueued as one chunk, so a
 * reply goes to the socket in one write. Small frames (up to 2 KiB) are
 * views of 8 KiB blocks that the encoder allocates as it goes, one
 * allocation per block rather than per frame; use `frame.slice()` to own
 * the bytes alone.
 *
 * @example Encode a payload
 * ```ts
 * import { MllpEncoderStream } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * const [frame] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode("A")])
 *     .pipeThrough(new MllpEncoderStream()),
 * );
 * assertEquals(frame, new Uint8Array([0x0b, 0x41, 0x1c, 0x0d]));
 * ```
 */
export class MllpEncoderStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * Constructs a new encoder.
   *
   * @param options Whether to validate payloads.
   */
  constructor(options: MllpEncoderOptions = {}) {
    const validate = options.validate ?? true;
    const pool = new BytePool(ENCODER_BLOCK_BYTES);
    super(
      {
        transform(payload, controller) {
          if (validate) checkPayload(payload);
          controller.enqueue(
            writeFrame(payload, pool.alloc(payload.length + 3)),
          );
        },
        // As DispatchStream: one payload may wait while one is framed, and
        // one frame for the socket, which saves backpressure round trips.
      },
      { highWaterMark: 2 },
      { highWaterMark: 1 },
    );
  }
}

/**
 * Wraps one payload in an MLLP frame.
 *
 * @param payload The bytes to frame.
 * @param validate Whether to reject payloads containing VT or FS.
 * @returns A new array: VT, the payload, FS, CR.
 * @throws {TypeError} If `validate` is true and the payload holds VT or FS.
 *
 * @example Frame bytes
 * ```ts
 * import { encodeFrame } from "@x/mllp/framer";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(encodeFrame(new Uint8Array([0x41])), new Uint8Array([0x0b, 0x41, 0x1c, 0x0d]));
 * ```
 */
export function encodeFrame(payload: Uint8Array, validate = true): Uint8Array {
  if (validate) checkPayload(payload);
  return writeFrame(payload, new Uint8Array(payload.length + 3));
}

/** Throws if a payload holds VT or FS, which would break the framing. */
function checkPayload(payload: Uint8Array) {
  const problem = framingProblem(payload);
  if (problem) {
    throw new TypeError(`Cannot encode frame: payload contains ${problem}`);
  }
}

/** Writes VT, the payload, FS and CR into `frame` (3 bytes longer). */
function writeFrame(payload: Uint8Array, frame: Uint8Array): Uint8Array {
  frame[0] = START_BLOCK;
  frame.set(payload, 1);
  frame[payload.length + 1] = END_BLOCK;
  frame[payload.length + 2] = CARRIAGE_RETURN;
  return frame;
}
