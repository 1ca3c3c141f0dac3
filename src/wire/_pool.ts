/**
 * Small byte arrays carved out of larger blocks. Allocating an
 * `ArrayBuffer` costs far more than its bytes (a microsecond or so, and
 * work for the garbage collector), so the framer and the dispatcher take
 * the arrays they make for each message (payload copies, frames, replies)
 * from a block, one allocation per block rather than per message.
 *
 * Each pool belongs to one stream, so that a block holds the bytes of one
 * connection only. A region is handed out once and never reused: the
 * arrays are views of the block, a kept one keeps its whole block in
 * memory, and transferring one's `buffer` takes its neighbours' bytes too
 * (the pool notices, and starts a new block). Runtime-neutral, like the
 * framer.
 *
 * @module
 */

const utf8Encoder = new TextEncoder();

/** A source of small byte arrays, carved out of blocks of `blockBytes`. */
export class BytePool {
  readonly #blockBytes: number;
  /** Larger arrays are allocated on their own. */
  readonly #maxBytes: number;
  #block: Uint8Array | undefined;
  #used = 0;

  /**
   * @param blockBytes The size of each block.
   */
  constructor(blockBytes: number) {
    this.#blockBytes = blockBytes;
    this.#maxBytes = blockBytes / 4;
  }

  /** Room for `length` bytes at `#used` of the current block. */
  #room(length: number): Uint8Array {
    let block = this.#block;
    // A block whose buffer was transferred away has a length of 0.
    if (
      block === undefined || block.length === 0 ||
      this.#used + length > block.length
    ) {
      block = this.#block = new Uint8Array(this.#blockBytes);
      this.#used = 0;
    }
    return block;
  }

  /** Marks `length` bytes from `start` as handed out (8-byte aligned). */
  #take(block: Uint8Array, start: number, length: number): Uint8Array {
    this.#used = start + ((length + 7) & ~7);
    return block.subarray(start, start + length);
  }

  /**
   * A new array of `length` bytes, its contents unspecified (the caller
   * fills all of it).
   */
  alloc(length: number): Uint8Array {
    if (length > this.#maxBytes) return new Uint8Array(length);
    const block = this.#room(length);
    return this.#take(block, this.#used, length);
  }

  /** A copy of `bytes`. */
  copy(bytes: Uint8Array): Uint8Array {
    const copy = this.alloc(bytes.length);
    copy.set(bytes);
    return copy;
  }

  /** `text` encoded as UTF-8. */
  encodeUtf8(text: string): Uint8Array {
    // Each UTF-16 code unit takes at most three bytes.
    const most = text.length * 3;
    if (most > this.#maxBytes) return utf8Encoder.encode(text);
    const block = this.#room(most);
    const start = this.#used;
    const { written } = utf8Encoder.encodeInto(
      text,
      block.subarray(start, start + most),
    );
    return this.#take(block, start, written);
  }
}

/**
 * One buffer reused for every array it hands out, for bytes that are used
 * up before the next are made (a reply framed and written before the next
 * frame is read): no allocation at all once it is large enough. An array
 * from it is valid only until the next call.
 */
export class ScratchBytes {
  /** Larger arrays are allocated on their own, not kept. */
  readonly #maxBytes: number;
  #buffer: Uint8Array;

  /**
   * @param maxBytes The largest size kept for reuse.
   */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
    this.#buffer = new Uint8Array(0);
  }

  /** An array of `length` bytes, its contents unspecified. */
  alloc(length: number): Uint8Array {
    if (length > this.#buffer.length) {
      if (length > this.#maxBytes) return new Uint8Array(length);
      this.#buffer = new Uint8Array(Math.max(length, 1024));
    }
    return this.#buffer.subarray(0, length);
  }

  /** `text` encoded as UTF-8. */
  encodeUtf8(text: string): Uint8Array {
    // Each UTF-16 code unit takes at most three bytes.
    const most = text.length * 3;
    if (most > this.#maxBytes) return utf8Encoder.encode(text);
    if (most > this.#buffer.length) {
      this.#buffer = new Uint8Array(Math.max(most, 1024));
    }
    const { written } = utf8Encoder.encodeInto(text, this.#buffer);
    return this.#buffer.subarray(0, written);
  }
}
