/**
 * Searching bytes for the MLLP framing bytes, VT and FS. Runtime-neutral,
 * like the framer.
 *
 * @module
 */

const VT = 0x0b;
const FS = 0x1c;

/** Buffers larger than this get a fresh word view, not a kept one. */
const MAX_KEPT_BYTES = 1024 * 1024;

/**
 * The word view of the buffer searched last: one owner (a decoder, a
 * reply checker) searches the same buffer over and over (its read buffer,
 * its pool's block), and a typed array costs far more to make than to
 * keep. A buffer over 1 MiB is not kept, so that a large frame's memory is
 * not held after it.
 */
export class WordViews {
  #buffer: ArrayBufferLike | undefined;
  #view: Uint32Array | undefined;

  /** A `Uint32Array` over the whole of `buffer` (its first bytes, if odd). */
  of(buffer: ArrayBufferLike): Uint32Array {
    const words = buffer.byteLength >> 2;
    // A buffer that was transferred away (or shrank) is not reused.
    if (buffer === this.#buffer && this.#view!.length === words) {
      return this.#view!;
    }
    const view = new Uint32Array(buffer, 0, words);
    if (buffer.byteLength <= MAX_KEPT_BYTES) {
      this.#buffer = buffer;
      this.#view = view;
    }
    return view;
  }
}

/**
 * The index of the first VT or FS in `bytes` at or after `from`, or -1.
 * It tests four bytes at a time (in a `Uint32Array` over the same memory,
 * kept in `views` between calls), which is several times faster than two
 * `indexOf` searches.
 */
export function findFramingByte(
  bytes: Uint8Array,
  from: number,
  views?: WordViews,
): number {
  const end = bytes.length;
  const offset = bytes.byteOffset;
  let i = from;
  // Byte by byte up to a four-byte boundary of the buffer.
  for (; i < end && ((offset + i) & 3) !== 0; i++) {
    const byte = bytes[i];
    if (byte === VT || byte === FS) return i;
  }
  const words = (end - i) >> 2;
  if (words >= 4) {
    // Word k of the search is word `first + k` of the whole buffer.
    const view = views
      ? views.of(bytes.buffer)
      : new Uint32Array(bytes.buffer, 0, bytes.buffer.byteLength >> 2);
    const first = (offset + i) >> 2;
    let k = 0;
    for (; k < words; k++) {
      // A byte of `word` is VT (or FS) when the same byte of `vt` (or
      // `fs`) is zero. The classic test for a zero byte in a word tells
      // exactly whether there is one, not which: the byte loop below finds
      // it.
      const word = view[first + k];
      const vt = word ^ 0x0b0b0b0b;
      const fs = word ^ 0x1c1c1c1c;
      if (
        (((vt - 0x01010101) & ~vt) | ((fs - 0x01010101) & ~fs)) & 0x80808080
      ) break;
    }
    i += k * 4;
  }
  for (; i < end; i++) {
    const byte = bytes[i];
    if (byte === VT || byte === FS) return i;
  }
  return -1;
}

/**
 * What in a payload would break its MLLP framing: `"a VT byte at offset
 * N"` for its first VT, else `"a FS byte at offset N"` for its first FS,
 * or `undefined` when it holds neither.
 */
export function framingProblem(
  payload: Uint8Array,
  views?: WordViews,
): string | undefined {
  const at = findFramingByte(payload, 0, views);
  if (at === -1) return undefined;
  const vt = payload[at] === VT ? at : payload.indexOf(VT, at + 1);
  return vt === -1 ? `a FS byte at offset ${at}` : `a VT byte at offset ${vt}`;
}
