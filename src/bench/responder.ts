/**
 * The yardstick for clients: {@linkcode startAckResponder} answers each
 * frame with an ACK whose MSA-2 is the frame's MSH-10, found by bytes,
 * with no framing library and no HL7 parser. Re-exported by `bench.ts`.
 *
 * @module
 */

import {
  listenBare,
  noDelay,
  type RawResponder,
  serveBare,
  writeAll,
} from "./_serve.ts";

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;
const COMMIT_ACK = 0x06;
const COMMIT_NAK = 0x15;
/** The longest MSH-10 copied into MSA-2; longer ones are cut. */
const MAX_CONTROL_ID = 199;
const encoder = new TextEncoder();

/**
 * What {@linkcode startAckResponder} answers: `"original"` one ACK with
 * `MSA|AA`; `"enhanced"` a commit ACK, `MSA|CA` (what a sender that set
 * MSH-15 `AL` and MSH-16 `NE` waits for); `"release2"` an MLLP release 2
 * commit frame (`0x06`) and then the `MSA|AA` ACK, and no answer to the
 * sender's own commit frames.
 *
 * @example Pick a mode from a command-line argument
 * ```ts
 * import type { ResponderMode } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * const modes: readonly ResponderMode[] = ["original", "enhanced", "release2"];
 * const parse = (arg: string) => modes.find((mode) => mode === arg);
 * assertEquals(parse("release2"), "release2");
 * assertEquals(parse("release3"), undefined);
 * ```
 */
export type ResponderMode = "original" | "enhanced" | "release2";

/**
 * The modes of {@linkcode startAckResponder}, in the order the bench
 * reports them.
 *
 * @example Every mode has a name
 * ```ts
 * import { RESPONDER_MODES } from "@x/mllp/unstable-bench";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(RESPONDER_MODES, ["original", "enhanced", "release2"]);
 * ```
 */
export const RESPONDER_MODES: readonly ResponderMode[] = Object.freeze([
  "original",
  "enhanced",
  "release2",
]);

/**
 * Options for {@linkcode startAckResponder}.
 *
 * @example A release 2 responder on a port of its own choosing
 * ```ts
 * import { type AckResponderOptions, startAckResponder } from "@x/mllp/unstable-bench";
 * import { Client } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const options: AckResponderOptions = { port: 0, mode: "release2" };
 * await using responder = startAckResponder(options);
 * await using client = await Client.connect("127.0.0.1", responder.port, {
 *   mllpRelease: 2,
 * });
 * const result = await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|42|P|2.5\r");
 * assertEquals([result.ok, result.outcome], [true, "accept"]);
 * ```
 */
export interface AckResponderOptions {
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
  /**
   * What to answer.
   *
   * @default {"original"}
   */
  mode?: ResponderMode;
  /** Serve TLS with this certificate chain and key (PEM text). */
  tls?: { cert: string; key: string };
}

/**
 * Starts the minimal correct responder that clients are measured against:
 * a bare TCP (or TLS) server that reads into one 16 KiB buffer per
 * connection, finds each frame's MSH-10 by bytes (from the ninth field
 * separator of the MSH segment to the next one), and answers each frame
 * with a pre-built ACK whose MSA-2 is that control id (see
 * {@linkcode ResponderMode} for the code and the release 2 commit frame).
 * A frame that is not HL7 gets the same ACK with an empty MSA-2. No
 * framing library, no HL7 parser: the least work a correct receiver can
 * do, so that the difference between two clients measured against it is
 * what they cost.
 *
 * @param options Port, address, mode and TLS.
 * @returns The running responder.
 *
 * @example The ACK names the message
 * ```ts
 * import { startAckResponder } from "@x/mllp/unstable-bench";
 * import { Client } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * await using responder = startAckResponder({ mode: "enhanced" });
 * await using client = await Client.connect("127.0.0.1", responder.port);
 * const result = await client.send(
 *   "MSH|^~\\&|A|B|C|D|1||ADT^A01|MSG-7|P|2.5|||AL|NE\r",
 * );
 * assertEquals(result.outcome === "accept" && result.code, "CA");
 * ```
 */
export function startAckResponder(
  options: AckResponderOptions = {},
): RawResponder {
  const hostname = options.hostname ?? "127.0.0.1";
  const mode = options.mode ?? "original";
  if (!RESPONDER_MODES.includes(mode)) {
    throw new RangeError(
      `Invalid mode: expected ${RESPONDER_MODES.join(", ")}, got "${mode}"`,
    );
  }
  const code = mode === "enhanced" ? "CA" : "AA";
  const head = encoder.encode(
    `${
      mode === "release2" ? "\x0b\x06\x1c\r" : ""
    }\x0bMSH|^~\\&|BENCH|RESPONDER|||20240101000000||ACK|BENCH-ACK|P|2.5\rMSA|${code}|`,
  );
  const listener = listenBare(hostname, options.port ?? 0, options.tls);
  return serveBare(listener, hostname, (conn) => serveAcks(conn, head));
}

// Where the scanner is in the byte stream.
/** Between frames: waiting for VT. */
const OUTSIDE = 0;
/** In the MSH segment, before MSH-10. */
const HEADER = 1;
/** In MSH-10. */
const CONTROL_ID = 2;
/** After MSH-10 (or in a frame that is not HL7): waiting for FS. */
const BODY = 3;
/** Just after an FS: a CR ends the frame. */
const AFTER_FS = 4;

async function serveAcks(conn: Deno.Conn, head: Uint8Array): Promise<void> {
  noDelay(conn);
  const input = new Uint8Array(16 * 1024);
  let output = new Uint8Array(4 * 1024);
  const id = new Uint8Array(MAX_CONTROL_ID);
  let at: number = OUTSIDE;
  let position = 0; // payload bytes seen in the current frame's header
  let separator = 0;
  let fields = 0;
  let idLength = 0;
  let commit = false; // the frame so far is one commit byte
  while (true) {
    const n = await conn.read(input);
    if (n === null) break;
    let out = 0;
    for (let i = 0; i < n;) {
      if (at === OUTSIDE) {
        const start = input.indexOf(VT, i);
        if (start === -1 || start >= n) break;
        at = HEADER;
        position = 0;
        fields = 0;
        idLength = 0;
        commit = false;
        i = start + 1;
      } else if (at === BODY) {
        const end = input.indexOf(FS, i);
        if (end === -1 || end >= n) break;
        at = AFTER_FS;
        i = end + 1;
      } else if (at === AFTER_FS) {
        if (input[i++] !== CR) {
          at = BODY;
          continue;
        }
        at = OUTSIDE;
        if (commit) continue; // the sender's release 2 commit frame
        const size = head.length + idLength + 3;
        if (output.length < out + size) {
          const larger = new Uint8Array(2 * (out + size));
          larger.set(output.subarray(0, out));
          output = larger;
        }
        output.set(head, out);
        output.set(id.subarray(0, idLength), out + head.length);
        out += head.length + idLength;
        output[out++] = CR;
        output[out++] = FS;
        output[out++] = CR;
      } else {
        const byte = input[i++];
        if (byte === FS) {
          at = AFTER_FS;
          continue;
        }
        if (at === CONTROL_ID) {
          if (byte === separator || byte === CR) at = BODY;
          else if (idLength < MAX_CONTROL_ID) id[idLength++] = byte;
          continue;
        }
        // HEADER: "MSH", the separator, then count separators.
        const p = position++;
        if (p === 0) {
          // A commit frame is this one byte, then FS.
          commit = byte === COMMIT_ACK || byte === COMMIT_NAK;
          if (byte !== 0x4d && !commit) at = BODY; // M
        } else if (p < 3) {
          commit = false;
          if (byte !== (p === 1 ? 0x53 : 0x48)) at = BODY; // S, H
        } else if (p === 3) {
          separator = byte;
          fields = 1;
        } else if (byte === CR) {
          at = BODY;
        } else if (byte === separator && ++fields === 9) {
          at = CONTROL_ID;
        }
      }
    }
    if (out > 0) await writeAll(conn, output.subarray(0, out));
  }
}
