/**
 * The client's default frame limit, on loopback: with no `maxFrameBytes`
 * option, a reply of exactly 10 MiB (10,485,760 payload bytes) is read
 * and verified, and one of 10 MiB + 1 byte fails the send with an
 * `InvalidReplyError` whose problem is `frame_too_large` (the connection is
 * closed; the next send opens another).
 *
 * The peer is written here (`Deno.listen`, frames and ACKs by hand). The
 * sizes are written out rather than read from the library, so a changed
 * default fails these tests. One such frame is in memory at a time.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "@std/assert";
import { Client, type InvalidReplyDetail } from "../../src/client/client.ts";
import { FrameSizeError, InvalidReplyError } from "../../src/errors.ts";
import { accepted, deadline } from "../_helpers.ts";

/** The documented default of `maxFrameBytes`: 10 MiB. */
const TEN_MIB = 10 * 1024 * 1024;
/** Bounds every wait: generous, for a busy machine moving 10 MiB. */
const WAIT = 30_000;

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A small HL7 v2.5 ADT^A01 with the given control id. */
function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/**
 * An AA ACK for `controlId` of exactly `size` payload bytes (padded with
 * an NTE segment after the MSA), framed: VT, payload, FS, CR.
 */
function framedAck(controlId: string, size: number): Uint8Array {
  const head = encoder.encode(
    `MSH|^~\\&|RCV|RFAC|SND|SFAC|20240101120001||ACK^A01^ACK|ACK-${controlId}|P|2.5\rMSA|AA|${controlId}\rNTE|1||`,
  );
  assert(size > head.length, "size too small for the ACK");
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

/** MSH-10 of each whole frame in `buffer`, and the bytes left over. */
function splitFrames(
  buffer: Uint8Array,
): { ids: string[]; rest: Uint8Array } {
  const ids: string[] = [];
  let start = buffer.indexOf(VT);
  while (start !== -1) {
    const end = buffer.indexOf(FS, start);
    if (end === -1 || end + 1 >= buffer.length) break;
    const msh = decoder.decode(buffer.subarray(start + 1, end)).split("\r")[0];
    ids.push(msh.split("|")[9] ?? "");
    buffer = buffer.subarray(end + 2);
    start = buffer.indexOf(VT);
  }
  return { ids, rest: start === -1 ? new Uint8Array(0) : buffer.slice(start) };
}

/**
 * A peer on loopback that answers each message with an AA ACK of
 * `replySize(controlId)` payload bytes, on every connection, until it is
 * disposed. Its replies are built one at a time.
 */
function startPeer(replySize: (controlId: string) => number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serving: Promise<void>[] = [];
  const serve = async (conn: Deno.Conn) => {
    const chunk = new Uint8Array(16 * 1024);
    let pending: Uint8Array = new Uint8Array(0);
    try {
      while (true) {
        const n = await conn.read(chunk);
        if (n === null) return;
        const joined = new Uint8Array(pending.length + n);
        joined.set(pending);
        joined.set(chunk.subarray(0, n), pending.length);
        const { ids, rest } = splitFrames(joined);
        pending = rest;
        for (const id of ids) {
          const reply = framedAck(id, replySize(id));
          let written = 0;
          while (written < reply.length) {
            written += await conn.write(reply.subarray(written));
          }
        }
      }
    } catch {
      // The client closed the connection (as it must after a reply that is
      // too large, perhaps while it was being written).
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serving.push(serve(conn));
    }
  })().catch(() => {}); // the listener was closed
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      await Promise.all(serving);
    },
  };
}

Deno.test("default maxFrameBytes: the client reads a reply of exactly 10 MiB", async () => {
  await using peer = startPeer((id) => id === "AT-LIMIT" ? TEN_MIB : 200);
  await using client = await Client.connect("127.0.0.1", peer.port);
  let closes = 0;
  client.addEventListener("closed", () => closes++);
  const result = accepted(
    await deadline(client.send(hl7("AT-LIMIT")), WAIT),
  );
  assertEquals(result.ack.messageControlId, "AT-LIMIT");
  assertEquals(result.ack.toString().length, TEN_MIB);
  // The connection goes on.
  const after = accepted(await deadline(client.send(hl7("AFTER")), WAIT));
  assertEquals(after.ack.messageControlId, "AFTER");
  assertEquals([client.isConnected, closes], [true, 0]);
});

Deno.test("default maxFrameBytes: the client refuses a reply of 10 MiB + 1 byte (frame_too_large)", async () => {
  await using peer = startPeer((id) => id === "OVER" ? TEN_MIB + 1 : 200);
  await using client = await Client.connect("127.0.0.1", peer.port);
  const invalid: InvalidReplyDetail[] = [];
  client.addEventListener("invalidreply", (e) => invalid.push(e.detail));
  const error: InvalidReplyError = await deadline(
    assertRejects(() => client.send(hl7("OVER")), InvalidReplyError),
    WAIT,
  );
  assertEquals(error.problem, "frame_too_large");
  const cause = error.cause;
  if (!(cause instanceof FrameSizeError)) {
    throw new Error(`Expected a FrameSizeError as the cause, got ${cause}`);
  }
  assertEquals(cause.limit, TEN_MIB);
  assertEquals(
    invalid.map((d) => [d.controlId, d.problem]),
    [["OVER", "frame_too_large"]],
  );
  // That connection is closed; the next send is answered on a new one.
  const next = accepted(await deadline(client.send(hl7("NEXT")), WAIT));
  assertEquals(next.ack.messageControlId, "NEXT");
});
