/**
 * Tests of the minimal responder that clients are measured against
 * (`startAckResponder`): each frame gets an ACK whose MSA-2 is the
 * frame's MSH-10, checked with the library's own `verifyAck`, in each
 * mode, however the bytes arrive.
 *
 * @module
 */

import { assertEquals } from "@std/assert";
import { verifyAck } from "../../src/hl7/ack.ts";
import {
  type ResponderMode,
  startAckResponder,
} from "../../src/bench/bench.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

function frame(text: string | Uint8Array): Uint8Array {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return Uint8Array.of(VT, ...bytes, FS, CR);
}

function hl7(controlId: string, separator = "|", conditions = ""): string {
  const f = separator;
  return `MSH${f}^~\\&${f}SEND${f}FAC${f}RECV${f}FAC${f}20240101${f}${f}ADT^A01${f}${controlId}${f}P${f}2.5${conditions}\rPID${f}1${f}${f}42\r`;
}

/** The payloads of the whole frames in `bytes`. */
function splitFrames(bytes: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let start = bytes.indexOf(VT); start !== -1;) {
    let end = bytes.indexOf(FS, start);
    while (end !== -1 && bytes[end + 1] !== CR) {
      end = bytes.indexOf(FS, end + 1);
    }
    if (end === -1) break;
    frames.push(bytes.slice(start + 1, end));
    start = bytes.indexOf(VT, end + 2);
  }
  return frames;
}

/** Reads frames off a connection until `count` have come. */
async function readFrames(
  conn: Deno.Conn,
  count: number,
): Promise<Uint8Array[]> {
  const got: number[] = [];
  const buffer = new Uint8Array(4096);
  while (true) {
    const frames = splitFrames(Uint8Array.from(got));
    if (frames.length >= count) return frames;
    const n = await conn.read(buffer);
    if (n === null) throw new Error("Connection closed");
    got.push(...buffer.subarray(0, n));
  }
}

async function exchange(
  mode: ResponderMode,
  write: (conn: Deno.Conn) => Promise<void>,
  replies: number,
): Promise<Uint8Array[]> {
  await using responder = startAckResponder({ mode });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: responder.port,
  });
  await write(conn);
  return await readFrames(conn, replies);
}

Deno.test("startAckResponder: original mode answers AA with MSA-2 = MSH-10", async () => {
  const ids = ["A1", "CONTROL-0002", "x"];
  const replies = await exchange("original", async (conn) => {
    for (const id of ids) await conn.write(frame(hl7(id)));
  }, 3);
  assertEquals(replies.length, 3);
  replies.forEach((reply, i) => {
    const result = verifyAck(ids[i], reply);
    assertEquals([result.ok, result.outcome], [true, "accept"]);
    assertEquals(result.outcome === "accept" && result.code, "AA");
  });
});

Deno.test("startAckResponder: enhanced mode answers CA", async () => {
  const [reply] = await exchange("enhanced", async (conn) => {
    await conn.write(frame(hl7("E-7", "|", "|||AL|NE")));
  }, 1);
  const result = verifyAck("E-7", reply);
  assertEquals(result.outcome === "accept" && result.code, "CA");
});

Deno.test("startAckResponder: release 2 sends a commit frame first, and ignores the sender's", async () => {
  const replies = await exchange("release2", async (conn) => {
    await conn.write(frame(hl7("R-1")));
    // The sender commits the ACK: no answer to that.
    await conn.write(frame(Uint8Array.of(0x06)));
    await conn.write(frame(hl7("R-2")));
  }, 4);
  assertEquals(replies[0], Uint8Array.of(0x06));
  assertEquals(verifyAck("R-1", replies[1]).ok, true);
  assertEquals(replies[2], Uint8Array.of(0x06));
  assertEquals(verifyAck("R-2", replies[3]).ok, true);
  assertEquals(replies.length, 4);
});

Deno.test("startAckResponder: a commit frame gets no answer in any mode", async () => {
  for (const mode of ["original", "enhanced"] as const) {
    const replies = await exchange(mode, async (conn) => {
      await conn.write(frame(Uint8Array.of(0x06)));
      await conn.write(frame(Uint8Array.of(0x15)));
      await conn.write(frame(hl7("AFTER")));
    }, 1);
    assertEquals(verifyAck("AFTER", replies[0]).ok, true, mode);
  }
});

Deno.test("startAckResponder: one byte at a time, two frames in one write, another separator", async () => {
  const bytes = frame(hl7("SPLIT-1", "#"));
  const replies = await exchange("original", async (conn) => {
    for (let i = 0; i < bytes.length; i++) {
      await conn.write(bytes.subarray(i, i + 1));
      if (i % 16 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await conn.write(
      Uint8Array.from([...frame(hl7("TWO-1")), ...frame(hl7("TWO-2"))]),
    );
  }, 3);
  assertEquals(
    replies.map((reply, i) =>
      verifyAck(["SPLIT-1", "TWO-1", "TWO-2"][i], reply).ok
    ),
    [true, true, true],
  );
});

Deno.test("startAckResponder: a frame that is not HL7 gets an ACK with an empty MSA-2", async () => {
  const [reply] = await exchange("original", async (conn) => {
    await conn.write(frame("hello"));
  }, 1);
  const text = decoder.decode(reply);
  assertEquals(text.endsWith("\rMSA|AA|\r"), true, text);
  assertEquals(verifyAck("", reply).ok, true);
});

Deno.test("startAckResponder: an unknown mode is a RangeError", () => {
  let error: unknown;
  try {
    startAckResponder({ mode: "release3" as ResponderMode });
  } catch (e) {
    error = e;
  }
  assertEquals(error instanceof RangeError, true);
});
