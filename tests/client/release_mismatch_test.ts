/**
 * A client and a receiver that speak different MLLP releases (issue 15,
 * item 8): the send fails with an error that says which release the
 * receiver speaks and names the option (`mllpRelease`) and the CLI flag
 * (`--mllp-release`), and nothing the mismatch causes is credited to a
 * later send.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Client } from "../../src/client/client.ts";
import { ClientError, ReleaseMismatchError } from "../../src/errors.ts";
import { Ack } from "../../src/hl7/ack.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { withCapturedLogs } from "../_helpers.ts";

const TIMEOUT = 5_000;

function hl7(controlId: string): string {
  return `MSH|^~\\&|A|B|C|D|20240101||ADT^A01|${controlId}|P|2.5\r`;
}

/** A receiver that records every payload it gets, as text. */
async function recordingReceiver(mllpRelease: 1 | 2) {
  const payloads: string[] = [];
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease,
    dispatcher: (message) => {
      payloads.push(new TextDecoder().decode(message.raw));
      return message.kind === "hl7" ? Ack.forMessage(message, "AA") : "?";
    },
  });
  return { receiver, payloads };
}

/**
 * A peer on 127.0.0.1 that answers every chunk it reads (one frame each,
 * from a stop-and-wait client) with one frame holding `byte` alone.
 */
function loneByte(byte: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buffer = new Uint8Array(64 * 1024);
        try {
          while ((await conn.read(buffer)) !== null) {
            await conn.write(new Uint8Array([0x0b, byte, 0x1c, 0x0d]));
          }
        } catch {
          // The client closed it.
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Closed already.
          }
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      await serving.catch(() => {});
    },
  };
}

Deno.test("release mismatch: a release 1 client to a release 2 receiver fails the send, naming mllpRelease: 2 and --mllp-release 2", async () => {
  const { receiver } = await recordingReceiver(2);
  await using _receiver = receiver;
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: TIMEOUT,
    connectTimeout: TIMEOUT,
  });
  const error = await assertRejects(() => client.send(hl7("R1-1")));
  assert(error instanceof ClientError, String(error));
  assert(error instanceof ReleaseMismatchError, String(error));
  assertEquals(error.context, "receiving");
  assertEquals([...error.reply], [0x06]);
  assertEquals(
    [error.name, error.reason],
    ["ReleaseMismatchError", "release_mismatch"],
  );
  assertEquals((error as ClientError & { peerRelease: number }).peerRelease, 2);
  assertStringIncludes(error.message, `127.0.0.1:${receiver.port}`);
  assertStringIncludes(error.message, "R1-1");
  assertStringIncludes(error.message, "0x06");
  assertStringIncludes(error.message, "MLLP release 2");
  assertStringIncludes(error.message, "mllpRelease: 2");
  assertStringIncludes(error.message, "--mllp-release 2");
  // The ACK that followed the commit frame is credited to no later send.
  const next = await assertRejects(() => client.send(hl7("R1-2")));
  assertEquals((next as Error).name, "ReleaseMismatchError");
  assertStringIncludes((next as Error).message, "R1-2");
});

Deno.test("release mismatch: a lone NAK (0x15) where an ACK was due says the receiver speaks release 2 and could not take the message", async () => {
  await using peer = loneByte(0x15);
  await using client = await Client.connect("127.0.0.1", peer.port, {
    replyTimeout: TIMEOUT,
    connectTimeout: TIMEOUT,
  });
  const error = await assertRejects(() => client.send(hl7("NAK-1")));
  assertEquals((error as Error).name, "ReleaseMismatchError");
  assertStringIncludes((error as Error).message, "0x15");
  assertStringIncludes((error as Error).message, "mllpRelease: 2");
  assertStringIncludes((error as Error).message, "--mllp-release 2");
});

Deno.test("release mismatch: a lone NAK in reply to a payload that is not HL7 is still its reply", async () => {
  await using peer = loneByte(0x15);
  await using client = await Client.connect("127.0.0.1", peer.port, {
    replyTimeout: TIMEOUT,
    connectTimeout: TIMEOUT,
  });
  const result = await client.send("PING");
  assertEquals(result.outcome, "reply");
  assertEquals(
    result.outcome === "reply" && [...result.reply],
    [0x15],
  );
});

Deno.test("release mismatch: a release 2 client to a release 1 receiver fails the send, naming mllpRelease and --mllp-release", async () => {
  const { receiver, payloads } = await recordingReceiver(1);
  await using _receiver = receiver;
  await withCapturedLogs(async () => {
    await using client = await Client.connect("127.0.0.1", receiver.port, {
      replyTimeout: TIMEOUT,
      connectTimeout: TIMEOUT,
      mllpRelease: 2,
      commitTimeout: TIMEOUT,
    });
    const error = await assertRejects(() => client.send(hl7("R2-1")));
    assert(error instanceof ClientError, String(error));
    assert(error instanceof ReleaseMismatchError, String(error));
    assertEquals(
      [error.name, error.reason],
      ["ReleaseMismatchError", "release_mismatch"],
    );
    assertEquals(
      (error as ClientError & { peerRelease: number }).peerRelease,
      1,
    );
    assertStringIncludes(error.message, "R2-1");
    assertStringIncludes(error.message, "MLLP release 1");
    assertStringIncludes(error.message, "AA");
    assertStringIncludes(error.message, "mllpRelease");
    assertStringIncludes(error.message, "--mllp-release 2");
    await client.close();
  });
  // The client did not commit the ACK with a 0x06 the receiver would take
  // for a message.
  assertEquals(payloads, [hl7("R2-1")]);
});
