/**
 * Benchmarks for the MLLP framer. Run with `deno bench tests/wire/framer_bench.ts`.
 *
 * - "decode": 64 MiB of payload as 1 KiB frames in 64 KiB chunks, and one
 *   64 MiB frame in 64 KiB chunks. Divide the input size by the time per
 *   iteration for throughput. The 64 MiB frame is compared with a
 *   reference that only copies the chunks and joins them (the least a
 *   decoder must do with them).
 * - "encode": framing 1 KiB payloads, with and without validation, directly
 *   and through the stream.
 *
 * Each decode iteration checks the number (and size) of frames it got, so a
 * broken decoder fails the bench instead of timing nothing.
 *
 * @module
 */

import {
  CARRIAGE_RETURN,
  encodeFrame,
  END_BLOCK,
  MllpDecoderStream,
  MllpEncoderStream,
  START_BLOCK,
} from "../../src/wire/framer.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const CHUNK = 64 * KIB;
const TOTAL_PAYLOAD = 64 * MIB;

/** Fills a payload with printable bytes (never VT or FS). */
function payloadOf(size: number): Uint8Array {
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = 0x20 + (i % 95);
  return payload;
}

/** Cuts one buffer into chunks of `size` bytes (views, no copies). */
function chunksOf(data: Uint8Array, size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) {
    chunks.push(data.subarray(i, Math.min(i + size, data.length)));
  }
  return chunks;
}

/**
 * Decodes `chunks` and returns the number of frames and payload bytes. The
 * source is a plain pull source, not an async generator, so the bench
 * measures the decoder rather than generator overhead.
 */
async function decodeAll(
  chunks: Uint8Array[],
  maxFrameBytes: number,
): Promise<{ frames: number; bytes: number }> {
  let next = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++]);
      else controller.close();
    },
  });
  let frames = 0;
  let bytes = 0;
  for await (
    const frame of source.pipeThrough(new MllpDecoderStream({ maxFrameBytes }))
  ) {
    frames++;
    bytes += frame.length;
  }
  return { frames, bytes };
}

function check(
  got: { frames: number; bytes: number },
  frames: number,
  bytes: number,
) {
  if (got.frames !== frames || got.bytes !== bytes) {
    throw new Error(
      `Expected ${frames} frames of ${bytes} bytes in all, got ${got.frames} frames of ${got.bytes} bytes`,
    );
  }
}

// (a) 1 KiB frames, 64 MiB of payload in all, in 64 KiB chunks.
const SMALL = 1 * KIB;
const SMALL_FRAMES = TOTAL_PAYLOAD / SMALL;
const smallFrame = encodeFrame(payloadOf(SMALL));
const smallStream = new Uint8Array(smallFrame.length * SMALL_FRAMES);
for (let i = 0; i < SMALL_FRAMES; i++) {
  smallStream.set(smallFrame, i * smallFrame.length);
}
const smallChunks = chunksOf(smallStream, CHUNK);

// (b) one 64 MiB frame in 64 KiB chunks.
const bigStream = new Uint8Array(TOTAL_PAYLOAD + 3);
bigStream[0] = START_BLOCK;
bigStream.set(payloadOf(TOTAL_PAYLOAD), 1);
bigStream[TOTAL_PAYLOAD + 1] = END_BLOCK;
bigStream[TOTAL_PAYLOAD + 2] = CARRIAGE_RETURN;
const bigChunks = chunksOf(bigStream, CHUNK);

Deno.bench({
  name:
    `decode ${SMALL_FRAMES} x 1 KiB frames (${smallStream.length} bytes) in 64 KiB chunks`,
  group: "decode 64 MiB",
  baseline: true,
  n: 20,
  warmup: 3,
  async fn() {
    check(
      await decodeAll(smallChunks, 2 * SMALL),
      SMALL_FRAMES,
      TOTAL_PAYLOAD,
    );
  },
});

// The least any decoder can do with one frame that arrives in chunks it
// may not keep (a socket reuses its read buffer), and that it does not
// know the size of until its end: copy each chunk, then join the copies
// into the one array it hands over. Two copies of 64 MiB, no scanning.
Deno.bench({
  name: `reference: copy and join 64 MiB in 64 KiB chunks`,
  group: "one 64 MiB frame",
  baseline: true,
  n: 20,
  warmup: 3,
  fn() {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (const chunk of bigChunks) {
      parts.push(chunk.slice());
      size += chunk.length;
    }
    const joined = new Uint8Array(size);
    let offset = 0;
    for (const part of parts) {
      joined.set(part, offset);
      offset += part.length;
    }
    if (joined[1] !== bigStream[1]) throw new Error("Lost a byte");
  },
});

Deno.bench({
  name: `decode 1 x 64 MiB frame (${bigStream.length} bytes) in 64 KiB chunks`,
  group: "one 64 MiB frame",
  n: 20,
  warmup: 3,
  async fn() {
    check(await decodeAll(bigChunks, 2 * TOTAL_PAYLOAD), 1, TOTAL_PAYLOAD);
  },
});

// (c) encoding 1 KiB payloads.
const ENCODE_COUNT = 10_000;
const encodePayload = payloadOf(SMALL);
const encodePayloads = Array.from(
  { length: ENCODE_COUNT },
  () => encodePayload,
);

Deno.bench({
  name: `encodeFrame ${ENCODE_COUNT} x 1 KiB`,
  group: "encode 1 KiB",
  baseline: true,
  fn() {
    let bytes = 0;
    for (let i = 0; i < ENCODE_COUNT; i++) {
      bytes += encodeFrame(encodePayload).length;
    }
    if (bytes !== ENCODE_COUNT * (SMALL + 3)) throw new Error("Bad size");
  },
});

Deno.bench({
  name: `encodeFrame ${ENCODE_COUNT} x 1 KiB, validate: false`,
  group: "encode 1 KiB",
  fn() {
    let bytes = 0;
    for (let i = 0; i < ENCODE_COUNT; i++) {
      bytes += encodeFrame(encodePayload, false).length;
    }
    if (bytes !== ENCODE_COUNT * (SMALL + 3)) throw new Error("Bad size");
  },
});

Deno.bench({
  name: `MllpEncoderStream ${ENCODE_COUNT} x 1 KiB`,
  group: "encode 1 KiB",
  async fn() {
    let bytes = 0;
    for await (
      const frame of ReadableStream.from(encodePayloads).pipeThrough(
        new MllpEncoderStream(),
      )
    ) {
      bytes += frame.length;
    }
    if (bytes !== ENCODE_COUNT * (SMALL + 3)) throw new Error("Bad size");
  },
});
