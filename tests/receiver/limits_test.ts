/**
 * The receiver's default frame limit, on loopback: with no `maxFrameBytes`
 * option, a frame of exactly 10 MiB (10,485,760 payload bytes) is
 * dispatched and answered, and one of 10 MiB + 1 byte is refused
 * (`frame_too_large`, the connection closed, nothing dispatched).
 *
 * The sizes are written out here rather than read from the library, so a
 * changed default fails these tests. One such frame is in memory at a
 * time.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import {
  type ConnectionCloseDetail,
  type FramingErrorDetail,
  Receiver,
  type ReceiverEventMap,
} from "../../src/receiver/receiver.ts";
import { deadline } from "../_helpers.ts";
import { FrameReader } from "../_raw_frames.ts";

/** The documented default of `maxFrameBytes`: 10 MiB. */
const TEN_MIB = 10 * 1024 * 1024;
/** Bounds every wait: generous, for a busy machine moving 10 MiB. */
const WAIT = 30_000;

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

/**
 * An HL7 message of exactly `size` payload bytes (padded with an NTE
 * segment), framed: VT, payload, FS, CR.
 */
function framedHl7(controlId: string, size: number): Uint8Array {
  const head = new TextEncoder().encode(
    `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rNTE|1||`,
  );
  assert(size > head.length, "size too small for the header");
  const frame = new Uint8Array(size + 3);
  frame[0] = VT;
  frame.set(head, 1);
  // The payload is frame[1] to frame[size]; it ends with a CR.
  frame.fill(0x78, 1 + head.length, size);
  frame[size] = CR;
  frame[size + 1] = FS;
  frame[size + 2] = CR;
  return frame;
}

/** Writes all of `data`; false if the receiver closed the connection first. */
async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<boolean> {
  try {
    let written = 0;
    while (written < data.length) {
      written += await conn.write(data.subarray(written));
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads until the receiver ends the connection; fails if anything arrives
 * (a reply) or it stays open for {@linkcode WAIT}.
 */
async function closedWithoutReply(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, WAIT);
  try {
    const n = await conn.read(buffer);
    if (n !== null) {
      throw new Error(
        `The receiver answered: ${
          JSON.stringify(new TextDecoder().decode(buffer.subarray(0, n)))
        }`,
      );
    }
  } catch (error) {
    if (timedOut) throw new Error("The receiver did not close the connection");
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The detail of the first `type` event from now on; awaiting it is bounded
 * by {@linkcode WAIT} from the moment it is awaited.
 */
function firstEvent<K extends keyof ReceiverEventMap>(
  receiver: Receiver,
  type: K,
): { detail(): Promise<ReceiverEventMap[K]["detail"]> } {
  const { promise, resolve } = Promise.withResolvers<
    ReceiverEventMap[K]["detail"]
  >();
  receiver.addEventListener(type, (event) => resolve(event.detail), {
    once: true,
  });
  return { detail: () => deadline(promise, WAIT) };
}

/** A receiver with default limits whose dispatcher notes each size. */
function startReceiver(sizes: number[]): Promise<Receiver> {
  return Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      if (message.kind !== "hl7") throw new Error(`got ${message.kind}`);
      sizes.push(message.raw.length);
      return Ack.forMessage(message, "AA");
    },
  });
}

Deno.test("default maxFrameBytes: the receiver dispatches and answers a frame of exactly 10 MiB", async () => {
  const sizes: number[] = [];
  await using receiver = await startReceiver(sizes);
  const framing: FramingErrorDetail[] = [];
  receiver.addEventListener("framingerror", (e) => framing.push(e.detail));
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: receiver.port,
  });
  const reader = new FrameReader(conn, { timeout: WAIT });
  assert(await writeAll(conn, framedHl7("AT-LIMIT", TEN_MIB)));
  const ack = Ack.parse(await reader.frame());
  assertEquals([ack.code, ack.messageControlId], ["AA", "AT-LIMIT"]);
  assertEquals(sizes, [TEN_MIB]);
  // The connection goes on.
  assert(await writeAll(conn, framedHl7("AFTER", 200)));
  const after = Ack.parse(await reader.frame());
  assertEquals([after.code, after.messageControlId], ["AA", "AFTER"]);
  assertEquals(framing, []);
});

Deno.test("default maxFrameBytes: the receiver refuses a frame of 10 MiB + 1 byte (frame_too_large) and closes that connection", async () => {
  const sizes: number[] = [];
  await using receiver = await startReceiver(sizes);
  const framing = firstEvent(receiver, "framingerror");
  const closing = firstEvent(receiver, "connectionclose");
  {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: receiver.port,
    });
    // The receiver may close before it has read all of it.
    const writing = writeAll(conn, framedHl7("OVER", TEN_MIB + 1));
    await closedWithoutReply(conn);
    await writing;
  }
  const error: FramingErrorDetail = await framing.detail();
  assertEquals([error.kind, error.bytes], ["frame_too_large", TEN_MIB]);
  const closed: ConnectionCloseDetail = await closing.detail();
  assertEquals(closed.reason, "frame too large");
  assertEquals(closed.messages, 0);
  assertEquals(sizes, [], "nothing dispatched");

  // The receiver goes on: a new connection is answered.
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: receiver.port,
  });
  const reader = new FrameReader(conn, { timeout: WAIT });
  assert(await writeAll(conn, framedHl7("NEXT", 200)));
  const ack = Ack.parse(await reader.frame());
  assertEquals([ack.code, ack.messageControlId], ["AA", "NEXT"]);
});
