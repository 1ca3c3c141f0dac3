/**
 * Property tests (fast-check, seeded) for the framer and the dispatch
 * stream: random frames with junk between them, cut into random chunks,
 * decode to exactly the frames sent; arbitrary bytes never make the
 * decoder throw anything but its documented {@linkcode FrameSizeError},
 * and it then agrees with a byte-at-a-time reference model; encode → decode
 * round-trips; and a decoder + {@linkcode DispatchStream} pipeline answers
 * every frame once, in order.
 *
 * Set `FC_SEED` to replay another seed, `FC_RUNS` to scale the run counts.
 *
 * @module
 */

import { assert, assertEquals, assertInstanceOf } from "@std/assert";
import fc from "fast-check";
import {
  type Dispatcher,
  DispatchStream,
  EchoDispatcher,
  UNKNOWN_REPLY,
} from "../../src/dispatch/dispatcher.ts";
import { FrameSizeError } from "../../src/errors.ts";
import {
  CARRIAGE_RETURN as CR,
  encodeFrame,
  END_BLOCK as FS,
  MllpDecoderStream,
  MllpEncoderStream,
  START_BLOCK as VT,
} from "../../src/wire/framer.ts";
import { bytes, text } from "../_helpers.ts";

const SEED = Number(Deno.env.get("FC_SEED") ?? 0x4d4c4c50);
const SCALE = Number(Deno.env.get("FC_RUNS") ?? 1);

/** fast-check parameters: seeded, with `runs` scaled by `FC_RUNS`. */
function params(runs: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: Math.max(1, Math.round(runs * SCALE)) };
}

// ---------------------------------------------------------------------------
// Arbitraries

/** A byte other than the given ones. */
function byteExcept(...excluded: number[]): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max: 255 }).filter((b) => !excluded.includes(b));
}

/** Bytes drawn mostly from the framing bytes and their neighbours. */
const nastyByte: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) },
  { weight: 2, arbitrary: fc.constantFrom(VT, FS, CR, 0x0a, 0x00) },
);

/** A payload: any bytes but VT and FS (MLLP has no escaping), maybe empty. */
const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  {
    weight: 6,
    arbitrary: fc.array(byteExcept(VT, FS), { maxLength: 200, size: "max" })
      .map((a) => new Uint8Array(a)),
  },
  {
    // CRs and LFs, as HL7 segments and broken senders have them.
    weight: 2,
    arbitrary: fc.array(
      fc.oneof(byteExcept(VT, FS), fc.constantFrom(CR, 0x0a)),
      { maxLength: 40, size: "max" },
    ).map((a) => new Uint8Array(a)),
  },
);

/**
 * Junk between frames: anything but VT, which would open a frame. FS and CR
 * outside a frame are junk like any other byte, so they are allowed.
 */
const junk: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(new Uint8Array(0)) },
  {
    weight: 2,
    arbitrary: fc.array(
      fc.oneof(byteExcept(VT), fc.constantFrom(CR, 0x0a, 0x00, FS)),
      { minLength: 1, maxLength: 30, size: "max" },
    ).map((a) => new Uint8Array(a)),
  },
);

/** How a byte stream is cut into chunks. */
type Chunking =
  | { kind: "whole" }
  | { kind: "bytes" }
  | { kind: "cuts"; cuts: number[] };

const chunking: fc.Arbitrary<Chunking> = fc.oneof(
  fc.constant({ kind: "whole" } as const),
  fc.constant({ kind: "bytes" } as const),
  // Fractions of the length, so the cuts fit any stream.
  fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 })
    .map((fractions) => ({ kind: "cuts", cuts: fractions }) as const),
);

/** Cuts `data` as `how` says; every chunk is a fresh copy. */
function cut(data: Uint8Array, how: Chunking): Uint8Array[] {
  switch (how.kind) {
    case "whole":
      return [data.slice()];
    case "bytes":
      return Array.from(data, (b) => new Uint8Array([b]));
    case "cuts": {
      const offsets = [
        ...new Set(how.cuts.map((f) => Math.floor(f * data.length))),
      ].sort((a, b) => a - b);
      const chunks: Uint8Array[] = [];
      let start = 0;
      for (const offset of [...offsets, data.length]) {
        // Empty chunks too: a read of zero bytes must be harmless.
        chunks.push(data.slice(start, offset));
        start = offset;
      }
      return chunks;
    }
  }
}

/** VT, payload, FS, CR. */
function framed(body: Uint8Array): Uint8Array {
  return bytes([VT], body, [FS, CR]);
}

// ---------------------------------------------------------------------------
// Running the decoder

interface Decoded {
  frames: Uint8Array[];
  junkBytes: number;
  junkReported: number;
  error?: unknown;
}

/** Decodes `chunks` with a fresh decoder; an error is returned, not thrown. */
async function decode(
  chunks: Uint8Array[],
  maxFrameBytes?: number,
): Promise<Decoded> {
  let junkReported = 0;
  const decoder = new MllpDecoderStream({
    maxFrameBytes,
    silent: true,
    onJunk: (n, data) => {
      assertEquals(data.length, n);
      junkReported += n;
    },
  });
  const frames: Uint8Array[] = [];
  try {
    for await (
      const frame of ReadableStream.from(chunks).pipeThrough(decoder)
    ) {
      frames.push(frame);
    }
  } catch (error) {
    return { frames, junkBytes: decoder.junkBytes, junkReported, error };
  }
  return { frames, junkBytes: decoder.junkBytes, junkReported };
}

/**
 * The documented decoding, one byte at a time: the model the decoder is
 * compared with. Returns the frames, or `"too_large"` when a payload would
 * exceed `max` bytes.
 */
function reference(data: Uint8Array, max: number): Uint8Array[] | "too_large" {
  const frames: Uint8Array[] = [];
  let current: number[] | undefined; // inside a frame
  let afterFs = false;
  for (let i = 0; i < data.length; i++) {
    const byte = data[i];
    if (afterFs) {
      afterFs = false;
      frames.push(new Uint8Array(current!));
      current = undefined;
      if (byte === CR) continue;
      // An FS without CR ends the frame; the byte is read anew, outside.
    }
    if (current === undefined) {
      if (byte === VT) current = [];
      continue; // junk otherwise
    }
    if (byte === VT) {
      current = []; // resync: drop the partial frame, start again
    } else if (byte === FS) {
      afterFs = true;
    } else {
      current.push(byte);
      if (current.length > max) return "too_large";
    }
  }
  if (afterFs) frames.push(new Uint8Array(current!));
  return frames;
}

// ---------------------------------------------------------------------------
// Properties

Deno.test("property: random frames with junk between, in any chunking, decode to exactly the frames sent", async () => {
  await fc.assert(
    fc.asyncProperty(
      junk,
      fc.array(fc.tuple(payload, junk), { maxLength: 12 }),
      chunking,
      async (lead, items, how) => {
        const stream = bytes(
          lead,
          ...items.flatMap(([body, after]) => [framed(body), after]),
        );
        const sentJunk = lead.length +
          items.reduce((sum, [, after]) => sum + after.length, 0);
        const decoded = await decode(cut(stream, how));
        assertEquals(decoded.error, undefined);
        assertEquals(decoded.frames, items.map(([body]) => body));
        assertEquals(decoded.junkBytes, sentJunk);
        assertEquals(decoded.junkReported, sentJunk);
      },
    ),
    params(1000),
  );
});

Deno.test("property: a source that reuses one read buffer (as a connection's reader does) decodes to exactly the frames sent", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(payload, junk), { maxLength: 12 }),
      chunking,
      async (items, how) => {
        const chunks = cut(
          bytes(...items.flatMap(([body, after]) => [framed(body), after])),
          how,
        );
        // One buffer for every chunk, overwritten (and the rest poisoned
        // with framing bytes) on each pull: a decoder that kept a view of
        // a chunk past its write would hand out damaged payloads.
        const size = Math.max(1, ...chunks.map((c) => c.length));
        const buffer = new Uint8Array(size);
        let next = 0;
        const source = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (next === chunks.length) return controller.close();
            const chunk = chunks[next++];
            buffer.fill(VT);
            buffer.set(chunk);
            controller.enqueue(buffer.subarray(0, chunk.length));
          },
        }, { highWaterMark: 0 });
        const frames: Uint8Array[] = [];
        for await (
          const frame of source.pipeThrough(
            new MllpDecoderStream({ silent: true }),
          )
        ) frames.push(frame);
        assertEquals(frames, items.map(([body]) => body));
      },
    ),
    params(500),
  );
});

Deno.test("property: the same stream decodes the same whole, byte by byte and cut at random", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(payload, junk), { minLength: 1, maxLength: 8 }),
      chunking,
      async (items, how) => {
        const stream = bytes(
          ...items.flatMap(([body, after]) => [framed(body), after]),
        );
        const [whole, oneByOne, other] = await Promise.all([
          decode(cut(stream, { kind: "whole" })),
          decode(cut(stream, { kind: "bytes" })),
          decode(cut(stream, how)),
        ]);
        assertEquals(oneByOne.frames, whole.frames);
        assertEquals(other.frames, whole.frames);
        assertEquals(oneByOne.junkBytes, whole.junkBytes);
      },
    ),
    params(300),
  );
});

Deno.test("property: arbitrary bytes in any chunking never throw but FrameSizeError, and match the reference model", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(nastyByte, { maxLength: 400, size: "max" }).map((a) =>
        new Uint8Array(a)
      ),
      chunking,
      fc.oneof(
        fc.constant(undefined),
        fc.integer({ min: 0, max: 64 }),
      ),
      async (data, how, maxFrameBytes) => {
        const decoded = await decode(cut(data, how), maxFrameBytes);
        const expected = reference(data, maxFrameBytes ?? Infinity);
        if (expected === "too_large") {
          assertInstanceOf(decoded.error, FrameSizeError);
          assertEquals(
            (decoded.error as FrameSizeError).limit,
            maxFrameBytes,
          );
        } else {
          assertEquals(decoded.error, undefined);
          assertEquals(decoded.frames, expected);
        }
      },
    ),
    params(2000),
  );
});

Deno.test("property: a frame over maxFrameBytes errors with FrameSizeError in any chunking; one at the limit passes", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 48 }),
      fc.integer({ min: 1, max: 40 }),
      payload,
      chunking,
      async (limit, over, anyBefore, how) => {
        const before = anyBefore.subarray(0, limit);
        const fits = new Uint8Array(limit).fill(0x41);
        const tooLarge = new Uint8Array(limit + over).fill(0x42);
        const good = await decode(
          cut(bytes(framed(before), framed(fits)), how),
          limit,
        );
        assertEquals(good.error, undefined);
        assertEquals(good.frames, [before, fits]);
        // With or without its end block, a frame over the limit fails.
        for (const stream of [framed(tooLarge), bytes([VT], tooLarge)]) {
          const bad = await decode(cut(stream, how), limit);
          assertInstanceOf(bad.error, FrameSizeError);
          assertEquals((bad.error as FrameSizeError).limit, limit);
        }
      },
    ),
    params(500),
  );
});

Deno.test("property: encode → decode round-trips, through encodeFrame and MllpEncoderStream", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(payload, { maxLength: 10 }),
      chunking,
      async (payloads, how) => {
        const encoded = await Array.fromAsync(
          ReadableStream.from(payloads).pipeThrough(new MllpEncoderStream()),
        );
        assertEquals(encoded, payloads.map((p) => encodeFrame(p)));
        const decoded = await decode(cut(bytes(...encoded), how));
        assertEquals(decoded.error, undefined);
        assertEquals(decoded.frames, payloads);
        assertEquals(decoded.junkBytes, 0);
      },
    ),
    params(600),
  );
});

Deno.test("property: encodeFrame refuses payloads holding VT or FS", () => {
  fc.assert(
    fc.property(
      payload,
      fc.constantFrom(VT, FS),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (body, bad, where) => {
        const at = Math.floor(where * body.length);
        const tainted = bytes(body.subarray(0, at), [bad], body.subarray(at));
        let threw: unknown;
        try {
          encodeFrame(tainted);
        } catch (error) {
          threw = error;
        }
        assertInstanceOf(threw, TypeError);
      },
    ),
    params(200),
  );
});

// ---------------------------------------------------------------------------
// Decoder + DispatchStream

/** One message of a random interleaving, and the reply it must get. */
type Item =
  | { kind: "hl7"; id: string }
  | { kind: "unknown"; body: Uint8Array }
  | { kind: "unreadable" };

const controlId: fc.Arbitrary<string> = fc.string({
  unit: fc.constantFrom(
    ..."ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-".split(""),
  ),
  minLength: 1,
  maxLength: 20,
});

const item: fc.Arbitrary<Item> = fc.oneof(
  {
    weight: 4,
    arbitrary: controlId.map((id) => ({ kind: "hl7", id }) as const),
  },
  {
    weight: 3,
    // Anything that does not start with "MSH": not HL7 to the receiver.
    arbitrary: payload
      .filter((b) => !text(b.subarray(0, 3)).startsWith("MSH"))
      .map((body) => ({ kind: "unknown", body }) as const),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "unreadable" } as const) },
);

function hl7(id: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${id}|P|2.5\rPID|1||${id}^^^SFAC^MR\r`;
}

function bodyOf(it: Item): Uint8Array {
  switch (it.kind) {
    case "hl7":
      return new TextEncoder().encode(hl7(it.id));
    case "unknown":
      return it.body;
    case "unreadable":
      return new TextEncoder().encode("MSH|");
  }
}

/** The MSA fields of an ACK, or undefined when the reply is not one. */
function msa(reply: Uint8Array): string[] | undefined {
  return text(reply).split("\r").find((s) => s.startsWith("MSA|"))?.split(
    "|",
  );
}

/** Asserts that `reply` is the reply `it` must get. */
function assertReplyFor(it: Item, reply: Uint8Array) {
  switch (it.kind) {
    case "hl7":
      assertEquals(msa(reply)?.slice(1, 3), ["AA", it.id]);
      break;
    case "unknown":
      assertEquals(text(reply), UNKNOWN_REPLY);
      break;
    case "unreadable":
      assertEquals(msa(reply)?.[1], "AR");
      break;
  }
}

/** Frames, junk and chunking through decoder → dispatch → replies. */
function replies(
  items: Item[],
  gaps: Uint8Array[],
  how: Chunking,
  dispatcher: Dispatcher,
): Promise<Uint8Array[]> {
  const stream = bytes(
    ...items.flatMap((it, i) => [framed(bodyOf(it)), gaps[i] ?? []]),
  );
  return Array.fromAsync(
    ReadableStream.from(cut(stream, how))
      .pipeThrough(new MllpDecoderStream({ silent: true }))
      .pipeThrough(new DispatchStream(dispatcher)),
  );
}

Deno.test("property: decoder + DispatchStream with the EchoDispatcher answer each HL7 and non-HL7 frame once, in order", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(item, { maxLength: 15 }),
      fc.array(junk, { maxLength: 15 }),
      chunking,
      async (items, gaps, how) => {
        const got = await replies(items, gaps, how, EchoDispatcher);
        assertEquals(got.length, items.length);
        items.forEach((it, i) => assertReplyFor(it, got[i]));
      },
    ),
    params(500),
  );
});

Deno.test("property: replies keep message order when the dispatcher takes a random time for each", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(item, { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 12 }),
      chunking,
      async (items, ticks, how) => {
        let call = 0;
        let running = 0;
        const dispatcher: Dispatcher = async (message, ctx) => {
          running++;
          assertEquals(running, 1, "one dispatch at a time per stream");
          // A random number of turns of the microtask queue.
          for (let t = ticks[call++ % ticks.length]; t > 0; t--) {
            await Promise.resolve();
          }
          running--;
          return EchoDispatcher.dispatch(message, ctx);
        };
        const got = await replies(items, [], how, dispatcher);
        assertEquals(got.length, items.length);
        items.forEach((it, i) => assertReplyFor(it, got[i]));
        // The unreadable header is answered without calling the dispatcher.
        assert(call === items.filter((it) => it.kind !== "unreadable").length);
      },
    ),
    params(400),
  );
});
