/**
 * MLLP release 2 commit frames (`0x06` / `0x15`), on real sockets: this
 * library on both sides; a receiver's wire bytes read by a raw peer; and a
 * release 2 client against peers written here that lose a commit, answer
 * NAK, never commit, or answer both copies of a resent frame.
 */

import { assertEquals, assertRejects } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import { CommitError } from "../../src/errors.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { buildBatch } from "../../src/hl7/batch.ts";
import { describe, RawConn, rawFrame } from "../_raw_frames.ts";
import { acked, deadline } from "../_helpers.ts";

function message(id: string, ackTypes = ""): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ORU^R01^ORU_R01|${id}|P|2.5${ackTypes}\rOBX|1|NM|GLU||5.4\r`;
}

const ACK = new Uint8Array([0x06]);
const NAK = new Uint8Array([0x15]);

/** A hand-written ACK for a control id. */
function handAck(id: string, code = "AA"): string {
  return `MSH|^~\\&|RCV|RFAC|SND|SFAC|20240101120001||ACK^R01^ACK|A${id}|P|2.5\rMSA|${code}|${id}\r`;
}

/**
 * A release 2 peer written here: `answer` says what to write for the n-th
 * frame received (from 0); it records each frame it reads.
 */
function scriptedPeer(
  answer: (index: number, payload: Uint8Array) => Uint8Array[],
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: string[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      const raw = new RawConn(conn);
      (async () => {
        let index = 0;
        while (true) {
          const payload = await raw.next();
          if (payload === null) break;
          seen.push(describe(payload).split("\r")[0]);
          // The client's commit of our replies is not a message.
          if (payload.length === 1) continue;
          for (const out of answer(index++, payload)) {
            await raw.send(out);
          }
        }
      })().catch(() => {}).finally(() => raw.close());
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    seen,
    async [Symbol.asyncDispose]() {
      listener.close();
      await serving;
    },
  };
}

const encoder = new TextEncoder();

Deno.test("release 2 on both sides: commit, reply, commit of the reply", async () => {
  const dispatched: string[] = [];
  const events: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    dispatcher: (m) => {
      dispatched.push(m.kind === "hl7" ? m.header.controlId : m.text);
      return m.kind === "hl7" ? Ack.forMessage(m, "AA") : "pong";
    },
  });
  receiver.addEventListener("dispatch", (e) => events.push(e.detail.kind));
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    mllpRelease: 2,
  });
  const one = acked(await client.send(message("R2A")));
  assertEquals([one.code, one.ack.messageControlId], ["AA", "R2A"]);
  const pong = await client.send("ping");
  assertEquals(pong.outcome === "reply" && pong.text, "pong");
  const two = acked(await client.send(message("R2B")));
  assertEquals(two.code, "AA");
  // The client's 0x06 commits of the three replies were consumed.
  assertEquals(dispatched, ["R2A", "ping", "R2B"]);
  assertEquals(events, ["hl7", "unknown", "hl7"]);
});

Deno.test("a release 2 receiver's wire bytes", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    dispatcher: (m) => Ack.forMessage(m, "AA"),
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("W1"));
  await peer.send(ACK); // our commit of its reply: consumed
  await peer.send("MSH|"); // unreadable: committed, then AR
  await peer.send(NAK); // consumed too
  await peer.send(message("W2"));
  assertEquals(await peer.until((f) => f === "AA W2"), [
    "ACK",
    "AA W1",
    "ACK",
    "AR ",
    "ACK",
    "AA W2",
  ]);
  // Byte for byte: the first four bytes are the commit frame VT 0x06 FS CR.
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: receiver.port,
  });
  try {
    await conn.write(rawFrame(message("W3")));
    const head = new Uint8Array(4);
    let got = 0;
    while (got < 4) {
      const n = await conn.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    assertEquals(head, new Uint8Array([0x0b, 0x06, 0x1c, 0x0d]));
  } finally {
    conn.close();
  }
});

Deno.test("a release 2 receiver with a store: ACK after storing, NAK when the store fails", async () => {
  await using store = await KvMessageStore.open(":memory:");
  await using stored = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    store,
    dispatcher: () => {},
  });
  await using peer = await RawConn.connect(stored.port);
  await peer.send(message("S1"));
  assertEquals(await peer.until((f) => f.startsWith("AA")), ["ACK", "AA S1"]);
  assertEquals((await store.stats()).stored, 1);
  // Enhanced mode too: the commit frame once stored, then CA.
  await peer.send(message("S3", "|||AL|NE"));
  assertEquals(await peer.until((f) => f.startsWith("CA")), ["ACK", "CA S3"]);

  const failing = {
    put: () => Promise.reject(new Error("disk full")),
    consume: () => ({ stop: () => Promise.resolve() }),
  };
  await using broken = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    store: failing,
    dispatcher: (m) => m.kind === "unknown" ? "pong" : undefined,
  });
  await using other = await RawConn.connect(broken.port);
  await other.send(message("S2"));
  await other.send("ping"); // not HL7: not stored, committed, answered
  assertEquals(await other.until((f) => f === "pong"), ["NAK", "ACK", "pong"]);
});

Deno.test("a lost commit: the client resends, the store dedupes, one dispatch", async () => {
  await using store = await KvMessageStore.open(":memory:");
  const dispatched: string[] = [];
  const second = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    store,
    dispatcher: (m) => {
      if (m.kind === "hl7") dispatched.push(m.header.controlId);
      if (dispatched.includes("L2")) second.resolve();
    },
  });
  // A proxy that loses what the receiver answers to the first frame: its
  // commit frame and its ACK.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxying = (async () => {
    const conn = await listener.accept();
    const upstream = await Deno.connect({
      hostname: "127.0.0.1",
      port: receiver.port,
    });
    const back = new RawConn(upstream);
    let dropped = 0;
    const down = (async () => {
      while (true) {
        const payload = await back.next();
        if (payload === null) break;
        if (dropped < 2) {
          dropped++;
          continue;
        }
        await conn.write(rawFrame(payload));
      }
    })().catch(() => {});
    await conn.readable.pipeTo(upstream.writable).catch(() => {});
    back.close();
    await down;
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const client = await Client.connect("127.0.0.1", port, {
    mllpRelease: 2,
    commitTimeout: 200,
  });
  try {
    const result = acked(await client.send(message("L1")));
    assertEquals([result.code, result.ack.text], ["AA", "Stored"]);
    acked(await client.send(message("L2")));
    await deadline(second.promise, 10_000);
    // The consumer dispatches in order: L1 once, then L2.
    assertEquals(dispatched, ["L1", "L2"]);
    assertEquals((await store.stats()).duplicates, 1);
  } finally {
    await client.close();
    listener.close();
    await proxying;
  }
});

Deno.test("a NAK: the client writes the frame again", async () => {
  await using peer = await scriptedPeer((index, payload) => {
    if (index === 0) return [NAK];
    const id = new TextDecoder().decode(payload).split("|")[9];
    return [ACK, encoder.encode(handAck(id))];
  });
  await using client = await Client.connect("127.0.0.1", peer.port, {
    mllpRelease: 2,
  });
  const result = acked(await client.send(message("N1")));
  assertEquals(result.code, "AA");
  acked(await client.send(message("N2")));
  // Twice the first message, the client's commit of its ACK (written
  // before the next message), then the next message.
  assertEquals(peer.seen.slice(0, 4).map((s) => s.slice(0, 3)), [
    "MSH",
    "MSH",
    "ACK",
    "MSH",
  ]);
});

Deno.test("no commit ever: a CommitError after the retries", async () => {
  await using peer = await scriptedPeer(() => []);
  await using client = await Client.connect("127.0.0.1", peer.port, {
    mllpRelease: 2,
    commitTimeout: 100,
    commitRetries: 2,
  });
  const error = await assertRejects(
    () => client.send(message("C1")),
    CommitError,
    "did not commit message C1 after 3 writes",
  );
  assertEquals([error.attempts, error.last, error.reason], [
    3,
    "timeout",
    "no_commit",
  ]);
  await client.close();
  assertEquals(peer.seen.length, 3);
});

Deno.test("NAK every time: a CommitError naming the NAK", async () => {
  await using peer = await scriptedPeer(() => [NAK]);
  await using client = await Client.connect("127.0.0.1", peer.port, {
    mllpRelease: 2,
    commitRetries: 1,
  });
  const error = await assertRejects(
    () => client.send(message("C2")),
    CommitError,
    "NAK",
  );
  assertEquals([error.attempts, error.last], [2, "nak"]);
});

Deno.test("both copies of a resent frame answered: the late duplicate reply is swallowed", async () => {
  await using peer = await scriptedPeer((index, payload) => {
    const id = new TextDecoder().decode(payload).split("|")[9];
    const reply = [ACK, encoder.encode(handAck(id))];
    // The first copy's commit is "lost"; the resend gets both answers.
    if (index === 0) return [];
    if (index === 1) return [...reply, ...reply];
    return reply;
  });
  await using client = await Client.connect("127.0.0.1", peer.port, {
    mllpRelease: 2,
    commitTimeout: 100,
  });
  let connects = 0;
  client.addEventListener("connected", () => connects++);
  const one = acked(await client.send(message("D1")));
  const two = acked(await client.send(message("D2")));
  assertEquals([one.code, one.ack.messageControlId], ["AA", "D1"]);
  assertEquals([two.code, two.ack.messageControlId], ["AA", "D2"]);
  assertEquals([client.isConnected, connects], [true, 0]);
});

Deno.test("release 2 with enhanced mode: commit frame, CA, then AA", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    dispatcher: (m) => Ack.forMessage(m, "AA"),
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("E1", "|||AL|AL"));
  assertEquals(await peer.until((f) => f.startsWith("AA")), [
    "ACK",
    "CA E1",
    "AA E1",
  ]);
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    mllpRelease: 2,
  });
  const result = acked(await client.send(message("E2", "|||AL|AL")));
  assertEquals(result.code, "CA");
  const app = await result.applicationAck;
  assertEquals([app?.code, app?.messageControlId], ["AA", "E2"]);
});

Deno.test("mllpRelease must be 1 or 2", async () => {
  await assertRejects(
    () =>
      Receiver.start({
        port: 0,
        dispatcher: () => {},
        mllpRelease: 3 as 2,
      }),
    RangeError,
    "mllpRelease",
  );
  let threw = false;
  try {
    new Client("127.0.0.1", 1, { mllpRelease: 3 as 2 });
  } catch (error) {
    threw = error instanceof RangeError;
  }
  assertEquals(threw, true);
});

Deno.test("release 2 and batches: one commit frame per batch frame, then the response batch (with a store, after storing)", async () => {
  for (const withStore of [false, true]) {
    await using store = await KvMessageStore.open(":memory:");
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      mllpRelease: 2,
      batchAcks: "all",
      ...(withStore ? { store } : {}),
      dispatcher: (m) => m.kind === "hl7" ? Ack.forMessage(m, "AA") : "?",
    });
    await using peer = await RawConn.connect(receiver.port);
    // Messages that ask for enhanced mode: inside a batch they are answered
    // in the response batch only, with no commit ACK frames of their own.
    const batch = buildBatch([
      message("B1", "|||AL|AL"),
      message("B2", "|||AL|AL"),
    ]);
    await peer.send(batch.raw);
    await peer.send(message("W9"));
    const frames = await peer.until((f) => f === "AA W9");
    assertEquals(frames.length, 4, frames.join(" / "));
    assertEquals(frames[0], "ACK");
    assertEquals(frames[1], "AA B1"); // the response batch's first MSA
    assertEquals(frames.slice(2), ["ACK", "AA W9"]);
    if (withStore) assertEquals((await store.stats()).stored, 3);
  }
});
