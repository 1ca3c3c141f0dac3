/**
 * A release 2 receiver whose sender speaks MLLP release 1 (issue 15, item
 * 8): a release 1 sender never commits the receiver's reply with `0x06`,
 * and takes the receiver's commit frame for its reply. The receiver cannot
 * tell from one message; when the next message comes with the reply before
 * it not committed, it says once per connection what is probably wrong.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Client } from "../../src/client/client.ts";
import { Ack } from "../../src/hl7/ack.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { type LogLine, withCapturedLogs } from "../_helpers.ts";

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

function hl7(controlId: string): string {
  return `MSH|^~\\&|A|B|C|D|20240101||ADT^A01|${controlId}|P|2.5\r`;
}

function frame(payload: string | number[]): Uint8Array {
  const body = typeof payload === "string"
    ? new TextEncoder().encode(payload)
    : new Uint8Array(payload);
  return new Uint8Array([VT, ...body, FS, CR]);
}

/** Reads until `count` frames (by their trailers) have come. */
async function readFrames(conn: Deno.Conn, count: number): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  let seen = 0;
  while (seen < count) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error("The receiver closed the connection");
    for (let i = 0; i < n; i++) if (buffer[i] === FS) seen++;
  }
}

/** The receiver's warnings about the release spoken. */
function releaseWarnings(logs: LogLine[]): string[] {
  return logs.filter((line) =>
    line.level === "warning" && /release 1/.test(line.text)
  ).map((line) => line.text);
}

async function release2Receiver() {
  return await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    dispatcher: (message) => Ack.forMessage(message, "AA"),
  });
}

Deno.test("release 2 receiver: a sender that never commits its replies is named, once per connection, as maybe speaking release 1", async () => {
  await using receiver = await release2Receiver();
  await withCapturedLogs(async (logs) => {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: receiver.port,
    });
    // A release 1 sender: a message, the commit frame and the ACK back,
    // and the next message with no 0x06 for that ACK.
    for (const id of ["V1-1", "V1-2", "V1-3"]) {
      await conn.write(frame(hl7(id)));
      await readFrames(conn, 2);
    }
    const warnings = releaseWarnings(logs);
    assertEquals(warnings.length, 1, warnings.join("\n"));
    const [warning] = warnings;
    assert(warning.includes("127.0.0.1:"), warning);
    assert(warning.includes("V1-2"), warning);
    assert(warning.includes("0x06"), warning);
    assert(warning.includes("--mllp-release 2"), warning);
  });
});

Deno.test("release 2 receiver: a release 2 sender that commits each reply gets no such warning", async () => {
  await using receiver = await release2Receiver();
  await withCapturedLogs(async (logs) => {
    await using client = await Client.connect("127.0.0.1", receiver.port, {
      mllpRelease: 2,
    });
    for (const id of ["V2-1", "V2-2", "V2-3"]) {
      assertEquals((await client.send(hl7(id))).outcome, "accept");
    }
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: receiver.port,
    });
    for (const id of ["V2-4", "V2-5"]) {
      await conn.write(frame(hl7(id)));
      await readFrames(conn, 2);
      await conn.write(frame([0x06]));
    }
    await client.close();
    assertEquals(releaseWarnings(logs), []);
  });
});
