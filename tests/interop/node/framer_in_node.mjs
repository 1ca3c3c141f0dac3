// Runs the framer and the envelope helpers under Node's own test runner,
// from the JavaScript that `deno bundle` makes of src/wire/framer.ts and
// src/wire/envelope.ts (tests/interop/node_framer_test.ts bundles them and runs this
// file with `node --test`). The bundles' URLs come in MLLP_FRAMER and
// MLLP_ENVELOPE. There is no `Deno` here: a framer that used `Deno.*`
// would throw a ReferenceError in these tests.

import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer } from "node:net";
import { Readable } from "node:stream";
import { test } from "node:test";

const framer = await import(process.env.MLLP_FRAMER);
const envelope = await import(process.env.MLLP_ENVELOPE);
const { MllpDecoderStream, MllpEncoderStream, encodeFrame } = framer;
const { wrap, unwrap, isWrapped } = envelope;

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function frame(text) {
  return new Uint8Array([VT, ...encoder.encode(text), FS, CR]);
}

async function decode(chunks, options) {
  const stream = ReadableStream.from(chunks).pipeThrough(
    new MllpDecoderStream(options),
  );
  const frames = [];
  for await (const payload of stream) frames.push(decoder.decode(payload));
  return frames;
}

test("this is Node, not Deno", () => {
  assert.equal(typeof globalThis.Deno, "undefined");
  assert.match(process.version, /^v\d+/);
});

test("decodes two frames in one chunk", async () => {
  const bytes = new Uint8Array([...frame("A"), ...frame("B")]);
  assert.deepEqual(await decode([bytes]), ["A", "B"]);
});

test("decodes a frame fed one byte at a time", async () => {
  const bytes = frame("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r");
  const chunks = [...bytes].map((byte) => new Uint8Array([byte]));
  assert.deepEqual(await decode(chunks), [
    "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r",
  ]);
});

test("decodes an end block split between FS and CR", async () => {
  const bytes = frame("split");
  const at = bytes.length - 1;
  assert.deepEqual(
    await decode([bytes.subarray(0, at), bytes.subarray(at)]),
    ["split"],
  );
});

test("skips and counts junk between frames", async () => {
  let junk = 0;
  const frames = await decode(
    [new Uint8Array([0x0d, 0x0a, ...frame("X"), 0x00, ...frame("Y")])],
    { onJunk: (bytes) => (junk += bytes), silent: true },
  );
  assert.deepEqual(frames, ["X", "Y"]);
  assert.equal(junk, 3);
});

test("drops a partial frame when a new start block arrives", async () => {
  let dropped = -1;
  const bytes = new Uint8Array([VT, 0x41, 0x42, ...frame("C")]);
  const frames = await decode([bytes], {
    onResync: (n) => (dropped = n),
    silent: true,
  });
  assert.deepEqual(frames, ["C"]);
  assert.equal(dropped, 2);
});

test("errors the stream past maxFrameBytes", async () => {
  await assert.rejects(
    decode([frame("0123456789")], { maxFrameBytes: 4 }),
    (error) => error.name === "FrameSizeError" && error.limit === 4,
  );
});

test("reads Node Buffers from a real TCP socket", async () => {
  const server = createServer((socket) => {
    socket.end(Buffer.from([...frame("one"), ...frame("two")]));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const socket = connect(server.address().port, "127.0.0.1");
    const readable = Readable.toWeb(socket);
    const frames = [];
    for await (const payload of readable.pipeThrough(new MllpDecoderStream())) {
      assert.equal(payload.constructor, Uint8Array);
      frames.push(decoder.decode(payload));
    }
    assert.deepEqual(frames, ["one", "two"]);
  } finally {
    server.close();
  }
});

test("encodes payloads and refuses framing bytes", async () => {
  const out = [];
  const stream = ReadableStream.from([encoder.encode("A")]).pipeThrough(
    new MllpEncoderStream(),
  );
  for await (const chunk of stream) out.push([...chunk]);
  assert.deepEqual(out, [[VT, 0x41, FS, CR]]);
  assert.deepEqual([...encodeFrame(new Uint8Array([0x41]))], [
    VT,
    0x41,
    FS,
    CR,
  ]);
  assert.throws(
    () => encodeFrame(new Uint8Array([0x41, FS])),
    (error) => error instanceof TypeError && /FS byte/.test(error.message),
  );
});

test("wraps and unwraps text and bytes", () => {
  const framed = wrap("Hip hip hurray");
  assert.equal(framed, "\x0bHip hip hurray\x1c\r");
  assert.equal(wrap(framed), framed);
  assert.equal(unwrap(framed), "Hip hip hurray");
  assert.equal(unwrap("not framed"), "not framed");
  assert.equal(isWrapped(framed), true);
  assert.deepEqual([...wrap(new Uint8Array([0x41]))], [VT, 0x41, FS, CR]);
  assert.deepEqual([...unwrap(new Uint8Array([VT, 0x41, FS, CR]))], [0x41]);
});
