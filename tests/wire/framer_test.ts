import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertNotStrictEquals,
  assertRejects,
  assertThrows,
} from "@std/assert";
import {
  CARRIAGE_RETURN,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  END_BLOCK,
  type MllpDecoderOptions,
  MllpDecoderStream,
  MllpEncoderStream,
  START_BLOCK,
} from "../../src/wire/framer.ts";
import { FrameSizeError } from "../../src/errors.ts";
import { bytes, collect, fixtureBytes, text } from "../_helpers.ts";

const VT = [START_BLOCK];
const FS = [END_BLOCK];
const CR = [CARRIAGE_RETURN];

/** One MLLP frame around `payload`. */
function frame(payload: string | Uint8Array): Uint8Array {
  return bytes(VT, payload, FS, CR);
}

/** Cuts `data` at the given (ascending) offsets. */
function splitAt(data: Uint8Array, ...offsets: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const offset of offsets) {
    chunks.push(data.slice(start, offset));
    start = offset;
  }
  chunks.push(data.slice(start));
  return chunks;
}

/** Cuts `data` into chunks of `size` bytes (the last may be shorter). */
function chunksOf(data: Uint8Array, size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) {
    chunks.push(data.slice(i, i + size));
  }
  return chunks;
}

interface Decoded {
  payloads: string[];
  junk: number[];
  resyncs: number[];
  junkBytes: number;
  frames: number;
}

/** Decodes `chunks` with a fresh decoder, recording every callback. */
async function decode(
  chunks: Uint8Array[],
  options: MllpDecoderOptions = {},
): Promise<Decoded> {
  const junk: number[] = [];
  const resyncs: number[] = [];
  const decoder = new MllpDecoderStream({
    ...options,
    onJunk: (n) => junk.push(n),
    onResync: (n) => resyncs.push(n),
  });
  const payloads = (await collect(chunks, decoder)).map(text);
  return {
    payloads,
    junk,
    resyncs,
    junkBytes: decoder.junkBytes,
    frames: decoder.frames,
  };
}

/** Mulberry32: a small seeded PRNG, so random tests repeat exactly. */
function prng(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * below);
  };
}

/** Random bytes that are never VT or FS, so they can be framed. */
function randomPayload(random: (below: number) => number, length: number) {
  const payload = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    let byte = random(256);
    while (byte === START_BLOCK || byte === END_BLOCK) byte = random(256);
    payload[i] = byte;
  }
  return payload;
}

/** Cuts `data` into chunks of random sizes from 0 to `max` bytes. */
function randomChunks(
  random: (below: number) => number,
  data: Uint8Array,
  max: number,
): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let i = 0;
  while (i < data.length) {
    const size = random(max + 1);
    chunks.push(data.slice(i, i + size));
    i += size;
  }
  return chunks;
}

const TWO_FRAMES = bytes(frame("MSH|a"), frame("MSH|b"));
/** The offset of the CR ending the first frame: a split here puts FS last. */
const FIRST_CR = 7;

Deno.test("MllpDecoderStream decodes two frames split at every offset", async () => {
  assertEquals(TWO_FRAMES.length, 16);
  assertEquals(TWO_FRAMES[FIRST_CR - 1], END_BLOCK);
  assertEquals(TWO_FRAMES[FIRST_CR], CARRIAGE_RETURN);
  let cases = 0;
  for (let at = 0; at <= TWO_FRAMES.length; at++) {
    const result = await decode(splitAt(TWO_FRAMES, at));
    assertEquals(result.payloads, ["MSH|a", "MSH|b"], `split at ${at}`);
    assertEquals(result.junkBytes, 0, `split at ${at}`);
    assertEquals(result.resyncs, [], `split at ${at}`);
    assertEquals(result.frames, 2, `split at ${at}`);
    cases++;
  }
  assertEquals(cases, 17);
});

Deno.test("MllpDecoderStream decodes two frames split in three at every pair of offsets", async () => {
  let cases = 0;
  for (let a = 0; a <= TWO_FRAMES.length; a++) {
    for (let b = a; b <= TWO_FRAMES.length; b++) {
      const chunks = splitAt(TWO_FRAMES, a, b);
      assertEquals(chunks.length, 3);
      const result = await decode(chunks);
      assertEquals(result.payloads, ["MSH|a", "MSH|b"], `split at ${a}, ${b}`);
      assertEquals(result.junkBytes, 0, `split at ${a}, ${b}`);
      assertEquals(result.resyncs, [], `split at ${a}, ${b}`);
      cases++;
    }
  }
  assertEquals(cases, (17 * 18) / 2);
});

Deno.test("MllpDecoderStream keeps frames apart when FS ends one chunk and CR plus the next frame start the next", async () => {
  const chunks = splitAt(TWO_FRAMES, FIRST_CR);
  assertEquals(chunks[0], bytes(VT, "MSH|a", FS));
  assertEquals(chunks[1], bytes(CR, frame("MSH|b")));
  const result = await decode(chunks);
  assertEquals(result.payloads, ["MSH|a", "MSH|b"]);
  assertEquals(result.junkBytes, 0);
});

Deno.test("MllpDecoderStream decodes one byte at a time", async () => {
  const adt = await fixtureBytes("adt_a01_wikipedia.hl7");
  const ack = await fixtureBytes("ack_aa_for_wikipedia.hl7");
  const data = bytes(frame(adt), frame(""), frame(ack));
  const chunks = chunksOf(data, 1);
  assertEquals(chunks.length, adt.length + ack.length + 9);
  const decoder = new MllpDecoderStream();
  const payloads = await collect(chunks, decoder);
  assertEquals(payloads, [adt, new Uint8Array(0), ack]);
  assertEquals(decoder.frames, 3);
  assertEquals(decoder.junkBytes, 0);
});

Deno.test("MllpDecoderStream decodes several frames in one chunk, in order", async () => {
  const data = bytes(
    frame("MSH|1"),
    frame("MSH|2"),
    frame(""),
    frame("MSH|4\rPID|1"),
    frame("x"),
  );
  const result = await decode([data]);
  assertEquals(result.payloads, ["MSH|1", "MSH|2", "", "MSH|4\rPID|1", "x"]);
  assertEquals(result.frames, 5);
  assertEquals(result.junkBytes, 0);
});

Deno.test("MllpDecoderStream delivers complete frames before a partial one completes", async () => {
  const decoder = new MllpDecoderStream();
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  // Writes wait for reads: the readable side holds no frames unread.
  const first = writer.write(
    bytes(frame("MSH|a"), frame("MSH|b"), VT, "MSH|c"),
  );
  assertEquals(text((await reader.read()).value!), "MSH|a");
  assertEquals(text((await reader.read()).value!), "MSH|b");
  await first;
  assertEquals(decoder.frames, 2);
  const next = reader.read();
  await writer.write(bytes("de"));
  await writer.write(bytes(FS));
  assertEquals(decoder.frames, 2);
  const last = writer.write(bytes(CR, frame("MSH|f")));
  assertEquals(text((await next).value!), "MSH|cde");
  assertEquals(text((await reader.read()).value!), "MSH|f");
  await last;
  await writer.close();
  assertEquals(await reader.read(), { done: true, value: undefined });
  assertEquals(decoder.frames, 4);
});

Deno.test("MllpDecoderStream yields an empty array for an empty frame", async () => {
  const empty = bytes(VT, FS, CR);
  for (const chunks of [[empty], splitAt(empty, 1), splitAt(empty, 2)]) {
    const payloads = await collect(chunks, new MllpDecoderStream());
    assertEquals(payloads.length, 1);
    assertInstanceOf(payloads[0], Uint8Array);
    assertEquals(payloads[0].length, 0);
  }
  const payloads = await collect(
    [bytes(empty, empty, frame("a"), empty)],
    new MllpDecoderStream(),
  );
  assertEquals(payloads.map(text), ["", "", "a", ""]);
});

Deno.test("MllpDecoderStream skips and counts junk between frames", async () => {
  const http = "GET / HTTP/1.1\r\n";
  const data = bytes(
    "\n",
    frame("MSH|a"),
    "\r\n",
    frame("MSH|b"),
    [0],
    frame("MSH|c"),
    http,
    frame("MSH|d"),
    "\r\n\r\n",
  );
  const result = await decode([data]);
  assertEquals(result.payloads, ["MSH|a", "MSH|b", "MSH|c", "MSH|d"]);
  assertEquals(result.junk, [1, 2, 1, http.length, 4]);
  assertEquals(result.junkBytes, 1 + 2 + 1 + 16 + 4);
  assertEquals(result.resyncs, []);

  // The same bytes at every split point: the total is exact, nothing stalls.
  for (let at = 0; at <= data.length; at++) {
    const split = await decode(splitAt(data, at));
    assertEquals(split.payloads, ["MSH|a", "MSH|b", "MSH|c", "MSH|d"]);
    assertEquals(split.junkBytes, 24, `split at ${at}`);
    assertEquals(
      split.junk.reduce((a, b) => a + b, 0),
      24,
      `split at ${at}`,
    );
  }
});

Deno.test("MllpDecoderStream counts junk before the first and after the last frame", async () => {
  const result = await decode([
    bytes("hello\0"),
    bytes("\r\n", frame("MSH|a")),
    bytes("\n\n"),
    bytes([0, 0, 0]),
  ]);
  assertEquals(result.payloads, ["MSH|a"]);
  assertEquals(result.junk, [6, 2, 2, 3]);
  assertEquals(result.junkBytes, 13);
});

Deno.test("MllpDecoderStream counts stray end block bytes outside a frame as junk", async () => {
  const result = await decode([
    bytes(FS, CR, frame("a"), CR, FS, FS, CR, frame("b")),
  ]);
  assertEquals(result.payloads, ["a", "b"]);
  assertEquals(result.junk, [2, 4]);
  assertEquals(result.junkBytes, 6);
});

Deno.test("MllpDecoderStream never stalls on junk-only chunks", async () => {
  const decoder = new MllpDecoderStream();
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  const next = reader.read();
  await writer.write(bytes("GET / HTTP/1.1\r\n"));
  await writer.write(bytes("\r\n"));
  await writer.write(bytes([0]));
  assertEquals(decoder.junkBytes, 19);
  await writer.write(frame("MSH|a"));
  assertEquals(text((await next).value!), "MSH|a");
  await writer.close();
  assertEquals((await reader.read()).done, true);
  assertEquals(decoder.junkBytes, 19);
});

Deno.test("MllpDecoderStream drops a partial frame when a start block arrives inside it", async () => {
  const one = await decode([bytes(VT, "MSH|partial", frame("MSH|b"))]);
  assertEquals(one.payloads, ["MSH|b"]);
  assertEquals(one.resyncs, [11]);
  assertEquals(one.junkBytes, 0);

  // The partial spread over several chunks: the dropped size counts them all.
  const many = await decode([
    bytes(frame("MSH|a"), VT, "MSH"),
    bytes("|par"),
    bytes("tial"),
    bytes(VT, "MSH|b", FS),
    bytes(CR),
  ]);
  assertEquals(many.payloads, ["MSH|a", "MSH|b"]);
  assertEquals(many.resyncs, [11]);

  // Two start blocks in a row drop an empty partial.
  const twice = await decode([bytes(VT, VT, "x", FS, CR)]);
  assertEquals(twice.payloads, ["x"]);
  assertEquals(twice.resyncs, [0]);

  // A partial whose FS ended a chunk is already a whole frame, not dropped.
  const ended = await decode([bytes(VT, "a", FS), bytes(VT, "b", FS, CR)]);
  assertEquals(ended.payloads, ["a", "b"]);
  assertEquals(ended.resyncs, []);
});

Deno.test("MllpDecoderStream ends a frame at FS even without CR", async () => {
  // The byte after FS is read as if between frames: junk, or a start block.
  const junk = await decode([bytes(VT, "a", FS, "X", frame("b"))]);
  assertEquals(junk.payloads, ["a", "b"]);
  assertEquals(junk.junkBytes, 1);

  const start = await decode([bytes(VT, "a", FS, frame("b"))]);
  assertEquals(start.payloads, ["a", "b"]);
  assertEquals(start.junkBytes, 0);

  // The same with FS last in its chunk.
  const split = await decode([bytes(VT, "a", FS), bytes("X", frame("b"))]);
  assertEquals(split.payloads, ["a", "b"]);
  assertEquals(split.junkBytes, 1);

  const splitStart = await decode([bytes(VT, "a", FS), frame("b")]);
  assertEquals(splitStart.payloads, ["a", "b"]);
  assertEquals(splitStart.junkBytes, 0);
});

Deno.test("MllpDecoderStream delivers a frame when the stream ends right after FS", async () => {
  assertEquals((await decode([bytes(VT, "MSH|a", FS)])).payloads, ["MSH|a"]);
  assertEquals(
    (await decode([bytes(VT, "MSH|"), bytes("a"), bytes(FS)])).payloads,
    ["MSH|a"],
  );
  assertEquals((await decode([bytes(VT, FS)])).payloads, [""]);
  const result = await decode([bytes(frame("x"), VT, "MSH|a", FS)]);
  assertEquals(result.payloads, ["x", "MSH|a"]);
  assertEquals(result.frames, 2);
});

Deno.test("MllpDecoderStream drops a partial frame when the stream ends inside it", async () => {
  const result = await decode([bytes(frame("MSH|a"), VT, "MSH|b")]);
  assertEquals(result.payloads, ["MSH|a"]);
  assertEquals(result.frames, 1);
  assertEquals(result.resyncs, []);
  assertEquals(result.junkBytes, 0);

  assertEquals((await decode([bytes(VT)])).payloads, []);
  assertEquals((await decode([bytes(VT, "a"), bytes("b")])).payloads, []);
  assertEquals((await decode([])).payloads, []);
});

Deno.test("MllpDecoderStream errors with FrameSizeError when a frame in one chunk exceeds maxFrameBytes", async () => {
  for (
    const data of [
      bytes(VT, "12345678901"),
      bytes(VT, "12345678901", FS, CR),
      bytes(VT, "12345678901", VT),
    ]
  ) {
    const error: FrameSizeError = await assertRejects(
      () => collect([data], new MllpDecoderStream({ maxFrameBytes: 10 })),
      FrameSizeError,
    );
    assertEquals(error.limit, 10);
    assertEquals(error.name, "FrameSizeError");
    assertEquals(
      error.message,
      "Cannot decode frame: exceeded 10 bytes (11 bytes without an end block)",
    );
  }
});

Deno.test("MllpDecoderStream errors with FrameSizeError when a frame grows past maxFrameBytes over many chunks", async () => {
  const chunks = [bytes(VT, "abc"), bytes("def"), bytes("ghi"), bytes("jkl")];
  const error: FrameSizeError = await assertRejects(
    () => collect(chunks, new MllpDecoderStream({ maxFrameBytes: 10 })),
    FrameSizeError,
  );
  assertEquals(error.limit, 10);
  assertEquals(
    error.message,
    "Cannot decode frame: exceeded 10 bytes (12 bytes without an end block)",
  );

  // Byte by byte, the error names the first size past the limit.
  const byByte: FrameSizeError = await assertRejects(
    () =>
      collect(
        chunksOf(bytes(VT, "a".repeat(100)), 1),
        new MllpDecoderStream({ maxFrameBytes: 10 }),
      ),
    FrameSizeError,
  );
  assertEquals(
    byByte.message,
    "Cannot decode frame: exceeded 10 bytes (11 bytes without an end block)",
  );
});

Deno.test("MllpDecoderStream delivers earlier frames, then errors on an oversize frame", async () => {
  const decoder = new MllpDecoderStream({ maxFrameBytes: 5 });
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  const first = writer.write(frame("12345"));
  assertEquals(text((await reader.read()).value!), "12345");
  await first;
  const next = assertRejects(() => reader.read(), FrameSizeError);
  await assertRejects(
    () => writer.write(bytes(VT, "123456")),
    FrameSizeError,
    "Cannot decode frame: exceeded 5 bytes (6 bytes without an end block)",
  );
  await next;
  await assertRejects(() => writer.write(frame("1")), FrameSizeError);
});

Deno.test("MllpDecoderStream accepts a frame of exactly maxFrameBytes", async () => {
  const data = frame("0123456789");
  for (let at = 0; at <= data.length; at++) {
    const result = await decode(splitAt(data, at), { maxFrameBytes: 10 });
    assertEquals(result.payloads, ["0123456789"], `split at ${at}`);
  }
  const byByte = await decode(chunksOf(bytes(data, data), 1), {
    maxFrameBytes: 10,
  });
  assertEquals(byByte.payloads, ["0123456789", "0123456789"]);
  // A resync at the limit drops the partial without an error.
  const resync = await decode([bytes(VT, "0123456789", data)], {
    maxFrameBytes: 10,
  });
  assertEquals(resync.payloads, ["0123456789"]);
  assertEquals(resync.resyncs, [10]);
});

Deno.test("MllpDecoderStream with maxFrameBytes 0 accepts only empty frames", async () => {
  const empty = bytes(VT, FS, CR);
  const result = await decode([bytes(empty, "\r\n", empty)], {
    maxFrameBytes: 0,
  });
  assertEquals(result.payloads, ["", ""]);
  const error: FrameSizeError = await assertRejects(
    () =>
      collect(
        [bytes(empty, frame("a"))],
        new MllpDecoderStream({ maxFrameBytes: 0 }),
      ),
    FrameSizeError,
  );
  assertEquals(error.limit, 0);
  assertEquals(
    error.message,
    "Cannot decode frame: exceeded 0 bytes (1 bytes without an end block)",
  );
});

Deno.test("MllpDecoderStream errors on the write that crosses maxFrameBytes", async () => {
  const chunk = 1000;
  const decoder = new MllpDecoderStream({ maxFrameBytes: 10_000 });
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  // A pending read keeps the writable side free of backpressure.
  const read = assertRejects(() => reader.read(), FrameSizeError);
  await writer.write(bytes(VT, "a".repeat(chunk - 1)));
  let accepted = 1;
  let error: unknown;
  for (let i = 0; i < 1000 && error === undefined; i++) {
    try {
      await writer.write(new Uint8Array(chunk).fill(0x61));
      accepted++;
    } catch (e) {
      error = e;
    }
  }
  // 999 + 9 * 1000 = 9999 bytes fit; the 11th chunk makes 10999.
  assertEquals(accepted, 10);
  assertInstanceOf(error, FrameSizeError);
  assertEquals(
    (error as FrameSizeError).message,
    "Cannot decode frame: exceeded 10000 bytes (10999 bytes without an end block)",
  );
  await read;
});

Deno.test("MllpDecoderStream stops pulling from the source soon after the frame limit is crossed", async () => {
  const chunk = 64 * 1024;
  const limit = 1024 * 1024;
  let pulled = 0;
  const finished = Promise.withResolvers<void>();
  async function* source() {
    try {
      yield bytes(VT, new Uint8Array(chunk - 1));
      pulled++;
      for (let i = 0; i < 10_000; i++) {
        await Promise.resolve();
        yield new Uint8Array(chunk);
        pulled++;
      }
    } finally {
      finished.resolve();
    }
  }
  // Count as each chunk is taken, not as the generator resumes.
  let taken = 0;
  const counted = ReadableStream.from(source()).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(data, controller) {
        taken++;
        controller.enqueue(data);
      },
    }),
  );
  const error: FrameSizeError = await assertRejects(
    () =>
      Array.fromAsync(
        counted.pipeThrough(new MllpDecoderStream({ maxFrameBytes: limit })),
      ),
    FrameSizeError,
  );
  await finished.promise;
  assertEquals(error.limit, limit);
  // (chunk - 1) + 15 * chunk = limit - 1 fits; the 17th chunk crosses it.
  assertEquals(
    error.message,
    `Cannot decode frame: exceeded ${limit} bytes (${
      limit - 1 + chunk
    } bytes without an end block)`,
  );
  // The error comes with the 17th chunk; read-ahead takes at most a few.
  assert(taken >= 17 && taken <= 20, `took ${taken} chunks`);
  assert(pulled <= taken, `pulled ${pulled}, took ${taken}`);
});

Deno.test("MllpDecoderStream payloads are copies, not views of the input", async () => {
  const whole = bytes(frame("MSH|a"), frame("MSH|b"), frame("c"));
  const split = splitAt(bytes(frame("MSH|split"), frame("d")), 4, 7);
  const tail = bytes(VT, "MSH|", FS);
  const chunks = [whole, ...split, tail];
  const decoder = new MllpDecoderStream();
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  const payloads: Uint8Array[] = [];
  const reading = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      payloads.push(value);
    }
  })();
  for (const chunk of chunks) await writer.write(chunk);
  await writer.close();
  await reading;
  const before = payloads.map((p) => p.slice());
  assertEquals(before.map(text), [
    "MSH|a",
    "MSH|b",
    "c",
    "MSH|split",
    "d",
    "MSH|",
  ]);
  for (const chunk of chunks) chunk.fill(0x7a);
  assertEquals(payloads, before);
  for (const payload of payloads) {
    for (const chunk of chunks) {
      assertNotStrictEquals(payload.buffer, chunk.buffer);
    }
  }
  // Payloads that share a copy do not overlap: writing one leaves the others.
  payloads[0].fill(0x21);
  assertEquals(payloads.slice(1).map(text), [
    "MSH|b",
    "c",
    "MSH|split",
    "d",
    "MSH|",
  ]);
});

Deno.test("MllpDecoderStream payloads do not change when a reused read buffer is refilled", async () => {
  // Like a socket reader that reads into one buffer again and again.
  const buffer = new Uint8Array(8);
  const data = bytes(frame("ab"), frame("cdef"), frame("g"), "\n");
  const decoder = new MllpDecoderStream();
  const writer = decoder.writable.getWriter();
  const payloads: Uint8Array[] = [];
  const reading = decoder.readable.pipeTo(
    new WritableStream({ write: (p) => void payloads.push(p) }),
  );
  for (let i = 0; i < data.length; i += buffer.length) {
    const n = Math.min(buffer.length, data.length - i);
    buffer.set(data.subarray(i, i + n));
    await writer.write(buffer.subarray(0, n));
    buffer.fill(0);
  }
  await writer.close();
  await reading;
  assertEquals(payloads.map(text), ["ab", "cdef", "g"]);
  assertEquals(decoder.junkBytes, 1);
});

Deno.test("MllpDecoderStream keeps decoding when a payload's buffer is transferred away", async () => {
  // Small payloads share blocks: transferring one's buffer takes the
  // block, and the decoder must start a new one for the next payloads.
  const decoder = new MllpDecoderStream();
  const writer = decoder.writable.getWriter();
  const reader = decoder.readable.getReader();
  // Reads first: the decoder transforms a chunk once its frames are asked
  // for.
  const decode = async (chunk: Uint8Array) =>
    (await Promise.all([reader.read(), writer.write(chunk)]))[0].value!;
  const first = await decode(bytes(frame("MSH|one")));
  assertEquals(text(first), "MSH|one");
  (first.buffer as ArrayBuffer).transfer();
  assertEquals(first.length, 0, "the payload went with its buffer");
  for (let i = 0; i < 50; i++) {
    const payload = await decode(bytes(frame(`MSH|${i}`), "\r\n"));
    assertEquals(text(payload), `MSH|${i}`);
  }
  await writer.close();
  assertEquals((await reader.read()).done, true);
});

Deno.test("MllpEncoderStream frames never overlap, however many share a block", async () => {
  const payloads = Array.from(
    { length: 200 },
    (_, i) => bytes(`MSH|${i}|${"x".repeat(i % 97)}`),
  );
  const frames = await collect(payloads, new MllpEncoderStream());
  assertEquals(frames.length, payloads.length);
  frames.forEach((f, i) => assertEquals(f, encodeFrame(payloads[i])));
  // Writing into one frame leaves the others as they were.
  frames[0].fill(0x21);
  frames.slice(1).forEach((f, i) =>
    assertEquals(f, encodeFrame(payloads[i + 1]))
  );
});

Deno.test("MllpDecoderStream decodes chunks that are views into a larger buffer", async () => {
  // Chunks with non-zero offsets into one buffer, the frames' edges inside
  // them, and junk just outside them that must not be read.
  const backing = bytes("\n\n\n\n", frame("MSH|a"), frame("MSH|b"), "\n\n\n\n");
  const chunks = [backing.subarray(4, 7), backing.subarray(7, 20)];
  assertEquals(backing.length, 24);
  assertEquals(chunks.map((c) => c.byteOffset), [4, 7]);
  const result = await decode(chunks);
  assertEquals(result.payloads, ["MSH|a", "MSH|b"]);
  assertEquals(result.junkBytes, 0);
});

Deno.test("MllpDecoderStream matches a byte-at-a-time model on random input and chunking", async () => {
  const random = prng(0x4d4c4c50);
  // Bytes weighted towards the framing bytes, so every case turns up.
  const alphabet = [
    START_BLOCK,
    START_BLOCK,
    END_BLOCK,
    END_BLOCK,
    CARRIAGE_RETURN,
    CARRIAGE_RETURN,
    0x0a,
    0x00,
    0x61,
    0x62,
    0x63,
    0x64,
  ];
  const seen = { frames: 0, junk: 0, resyncs: 0, errors: 0 };
  for (let round = 0; round < 400; round++) {
    const data = new Uint8Array(random(80));
    for (let i = 0; i < data.length; i++) {
      data[i] = alphabet[random(alphabet.length)];
    }
    const maxFrameBytes = [DEFAULT_MAX_FRAME_BYTES, 0, 3, 8][random(4)];
    const want = model(data, maxFrameBytes);
    for (let split = 0; split < 3; split++) {
      const chunks = randomChunks(random, data, 1 + random(12));
      const junk: number[] = [];
      const resyncs: number[] = [];
      const decoder = new MllpDecoderStream({
        maxFrameBytes,
        onJunk: (n) => junk.push(n),
        onResync: (n) => resyncs.push(n),
      });
      const where = `round ${round}, data [${data}], chunks ${
        chunks.map((c) => c.length)
      }, max ${maxFrameBytes}`;
      if (want.error) {
        await assertRejects(() => collect(chunks, decoder), FrameSizeError);
        assertEquals(resyncs, want.resyncs.slice(0, resyncs.length), where);
        continue;
      }
      const payloads = await collect(chunks, decoder);
      assertEquals(payloads.map((p) => [...p]), want.payloads, where);
      assertEquals(resyncs, want.resyncs, where);
      assertEquals(decoder.junkBytes, want.junkBytes, where);
      assertEquals(junk.reduce((a, b) => a + b, 0), want.junkBytes, where);
      assert(!junk.includes(0), where);
      assertEquals(decoder.frames, want.payloads.length, where);
    }
    seen.frames += want.payloads.length;
    seen.junk += want.junkBytes;
    seen.resyncs += want.resyncs.length;
    seen.errors += want.error ? 1 : 0;
  }
  // The input really exercised every path.
  assert(seen.frames > 100, `frames ${seen.frames}`);
  assert(seen.junk > 100, `junk ${seen.junk}`);
  assert(seen.resyncs > 50, `resyncs ${seen.resyncs}`);
  assert(seen.errors > 20, `errors ${seen.errors}`);
});

/**
 * The decoder's documented behaviour, one byte at a time, as plainly as
 * possible: the reference for the randomized test.
 */
function model(data: Uint8Array, maxFrameBytes: number) {
  const payloads: number[][] = [];
  const resyncs: number[] = [];
  let junkBytes = 0;
  let state: "out" | "in" | "fs" = "out";
  let frame: number[] = [];
  for (const byte of data) {
    if (state === "fs") {
      payloads.push(frame);
      frame = [];
      state = "out";
      if (byte === CARRIAGE_RETURN) continue;
    }
    if (state === "out") {
      if (byte === START_BLOCK) state = "in";
      else junkBytes++;
    } else if (byte === START_BLOCK) {
      resyncs.push(frame.length);
      frame = [];
    } else if (byte === END_BLOCK) {
      state = "fs";
    } else {
      frame.push(byte);
      if (frame.length > maxFrameBytes) {
        return { payloads, resyncs, junkBytes, error: true };
      }
    }
  }
  if (state === "fs") payloads.push(frame);
  return { payloads, resyncs, junkBytes, error: false };
}

Deno.test("MllpDecoderStream constructor rejects a bad maxFrameBytes", () => {
  for (const bad of [-1, -0.5, NaN, Infinity, -Infinity]) {
    const error = assertThrows(
      () => new MllpDecoderStream({ maxFrameBytes: bad }),
      RangeError,
    );
    assertEquals(
      (error as RangeError).message,
      `Cannot create decoder: maxFrameBytes must be a finite number >= 0, got "${bad}"`,
    );
  }
  // 0 and the default are fine.
  new MllpDecoderStream({ maxFrameBytes: 0 });
  new MllpDecoderStream();
});

Deno.test("encodeFrame wraps a payload in VT ... FS CR", () => {
  assertEquals(encodeFrame(bytes("MSH|a")), bytes(VT, "MSH|a", FS, CR));
  assertEquals(encodeFrame(new Uint8Array(0)), bytes(VT, FS, CR));
  // A view with an offset frames only its own bytes.
  const view = bytes("xxMSH|ayy").subarray(2, 7);
  const framed = encodeFrame(view);
  assertEquals(framed, bytes(VT, "MSH|a", FS, CR));
  assertNotStrictEquals(framed.buffer, view.buffer);
  // CR and LF inside the payload are fine: HL7 separates segments with CR.
  assertEquals(encodeFrame(bytes("A\rB\n")), bytes(VT, "A\rB\n", FS, CR));
});

Deno.test("encodeFrame rejects payloads holding VT or FS unless validate is false", () => {
  assertThrows(
    () => encodeFrame(bytes("abc", VT, "d")),
    TypeError,
    "Cannot encode frame: payload contains a VT byte at offset 3",
  );
  assertThrows(
    () => encodeFrame(bytes(FS)),
    TypeError,
    "Cannot encode frame: payload contains a FS byte at offset 0",
  );
  assertThrows(
    () => encodeFrame(bytes("ab", FS, CR), true),
    TypeError,
    "Cannot encode frame: payload contains a FS byte at offset 2",
  );
  assertEquals(
    encodeFrame(bytes("a", VT, FS, "b"), false),
    bytes(VT, "a", VT, FS, "b", FS, CR),
  );
});

Deno.test("MllpEncoderStream frames each payload as one chunk", async () => {
  const frames = await collect(
    [bytes("MSH|a"), new Uint8Array(0), bytes("b")],
    new MllpEncoderStream(),
  );
  assertEquals(frames, [frame("MSH|a"), bytes(VT, FS, CR), frame("b")]);
});

Deno.test("MllpEncoderStream errors with TypeError on VT or FS unless validate is false", async () => {
  await assertRejects(
    () => collect([bytes("ok"), bytes("a", VT)], new MllpEncoderStream()),
    TypeError,
    "Cannot encode frame: payload contains a VT byte at offset 1",
  );
  await assertRejects(
    () => collect([bytes("a", FS)], new MllpEncoderStream({ validate: true })),
    TypeError,
    "Cannot encode frame: payload contains a FS byte at offset 1",
  );
  const frames = await collect(
    [bytes("a", VT, FS)],
    new MllpEncoderStream({ validate: false }),
  );
  assertEquals(frames, [bytes(VT, "a", VT, FS, FS, CR)]);
});

Deno.test("MllpEncoderStream output decodes back to the same random payloads", async () => {
  const random = prng(20_240_601);
  const payloads: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) {
    // Mostly short, some empty, some long.
    const length = [0, random(16), random(300), random(3000)][random(4)];
    payloads.push(randomPayload(random, length));
  }
  assert(payloads.some((p) => p.length === 0));
  assert(payloads.some((p) => p.length > 1000));
  assert(payloads.some((p) => p.includes(CARRIAGE_RETURN)));
  const frames = await collect(payloads, new MllpEncoderStream());
  assertEquals(frames.length, payloads.length);
  for (let i = 0; i < frames.length; i++) {
    assertEquals(frames[i], encodeFrame(payloads[i]));
  }
  const wire = bytes(...frames);
  for (const max of [5, 64, 4096, wire.length]) {
    const decoder = new MllpDecoderStream();
    const decoded = await collect(randomChunks(random, wire, max), decoder);
    assertEquals(decoded, payloads, `chunks up to ${max} bytes`);
    assertEquals(decoder.junkBytes, 0);
    assertEquals(decoder.frames, payloads.length);
  }
});
