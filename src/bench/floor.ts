/**
 * The `"floor"` target: the least work a receiver that answers each
 * message the EchoDispatcher's way can do with this library's parts. Each
 * connection is one loop: read with `conn.read`, decode with
 * `MllpDecoderStream.decode`, read the message (`readMessage`), build its
 * `AA` (`Ack.forMessage`), frame it and write it. No `Receiver`: no
 * stages, limits, events or telemetry. Between `raw` (no HL7 at all) and
 * `self` (the library's receiver), it shows how much of `self`'s cost is
 * the HL7 work every answer needs, and how much the receiver adds.
 *
 * @module
 */

import { ECHO_TEXT, UNKNOWN_REPLY } from "../dispatch/echo.ts";
import { Ack } from "../hl7/ack.ts";
import { readMessage } from "../hl7/message.ts";
import { MllpDecoderStream } from "../wire/framer.ts";
import { listenBare, type RawResponder, serveBare } from "./_serve.ts";

/** Options for {@linkcode startFloorResponder}. */
export interface FloorResponderOptions {
  /**
   * The port to listen on; `0` picks a free one.
   *
   * @default {0}
   */
  port?: number;
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** Serve TLS with this certificate chain and key (PEM text). */
  tls?: { cert: string; key: string };
}

const encoder = new TextEncoder();

/**
 * Starts the floor responder (see the module doc).
 *
 * @param options Where to listen.
 * @returns The running responder.
 *
 * @example Answer a message with its AA
 * ```ts
 * import { startFloorResponder } from "@x/mllp/unstable-bench";
 * import { Client } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using floor = startFloorResponder();
 * await using client = await Client.connect(floor.hostname, floor.port);
 * const result = await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|M1|P|2.5\r");
 * assertEquals(result.outcome === "accept" && result.ack.messageControlId, "M1");
 * ```
 */
export function startFloorResponder(
  options: FloorResponderOptions = {},
): RawResponder {
  const hostname = options.hostname ?? "127.0.0.1";
  const listener = listenBare(hostname, options.port ?? 0, options.tls);
  return serveBare(listener, hostname, serveFloor);
}

async function serveFloor(conn: Deno.Conn): Promise<void> {
  try {
    (conn as Deno.TcpConn).setNoDelay?.(true);
  } catch {
    // The peer may be gone already.
  }
  const buffer = new Uint8Array(16 * 1024);
  const decoder = new MllpDecoderStream({ silent: true });
  const frames: Uint8Array[] = [];
  const sink = { enqueue: (frame: Uint8Array) => frames.push(frame) };
  let out = new Uint8Array(4096);
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) break;
    decoder.decode(buffer.subarray(0, n), sink);
    for (const frame of frames) {
      const message = readMessage(frame);
      const text = message.kind === "hl7"
        ? Ack.forMessage(message, "AA", { text: ECHO_TEXT }).toString()
        : UNKNOWN_REPLY;
      if (out.length < text.length * 3 + 3) {
        out = new Uint8Array(text.length * 3 + 3);
      }
      const { written } = encoder.encodeInto(text, out.subarray(1));
      out[0] = 0x0b;
      out[written + 1] = 0x1c;
      out[written + 2] = 0x0d;
      const reply = out.subarray(0, written + 3);
      let done = await conn.write(reply);
      while (done < reply.length) {
        done += await conn.write(reply.subarray(done));
      }
    }
    frames.length = 0;
  }
}
