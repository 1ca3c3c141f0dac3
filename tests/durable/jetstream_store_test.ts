/**
 * What `JetStreamMessageStore` does beyond the conformance suite, on real
 * `nats-server` nodes on loopback: no quorum answered AE / CE / NAK and
 * never AA; a resend after the duplicate window still answered from the
 * stream; a message larger than the server's max_payload answered AE with
 * what to change; per-sender order; retention by max_age, counted in
 * stats; a stopping receiver hands its message on; no network permission
 * gives a one-line error naming the flag.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import type { StoredDispatchContext } from "../../src/dispatch/message_store.ts";
import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { accepted, acked } from "../_helpers.ts";
import { startNatsCluster, waitFor, waitListening } from "../_nats.ts";
import { RawConn } from "../_raw_frames.ts";

function hl7(controlId: string, app = "SND", fac = "SFAC", msh15 = ""): string {
  const modes = msh15 ? `|||${msh15}|NE` : "";
  return `MSH|^~\\&|${app}|${fac}|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5${modes}\rPID|1||${controlId}^^^SFAC^MR\r`;
}

const FAST = { retry: { initialDelay: 20, jitter: 0 } };

/** The value of `read`, asked again while it fails (up to 10 s). */
async function eventually<T>(read: () => Promise<T>): Promise<T> {
  for (let tries = 1;; tries++) {
    try {
      return await read();
    } catch (error) {
      if (tries >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

Deno.test("jetstream: stores opened together on a cluster still starting (no JetStream leader yet) wait for it, then work", async () => {
  await using cluster = await startNatsCluster({ waitReady: false });
  await waitListening(cluster.servers);
  const [first, second] = await Promise.all([
    JetStreamMessageStore.open(cluster.servers, FAST),
    JetStreamMessageStore.open(cluster.servers, FAST),
  ]);
  await using _first = first;
  await using _second = second;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store: second,
    dispatcher: () => {},
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  accepted(await client.send(hl7("EARLY-1")));
});

Deno.test("jetstream: with 2 of 3 nodes down, AE (CE in enhanced mode, NAK with release 2), never AA; stored again once they return", async () => {
  await using cluster = await startNatsCluster();
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    ...FAST,
    publishTimeout: 1_500,
  });
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: () => {},
  });
  await using r2 = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    mllpRelease: 2,
    dispatcher: () => {},
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    replyTimeout: 10_000,
  });
  accepted(await client.send(hl7("Q-0")));
  const leader = await cluster.streamLeader("HL7_IN");
  // Two nodes down, the stream's leader among them.
  const down = [leader, (leader + 1) % 3];
  for (const index of down) await cluster.kill(index);
  const original = acked(await client.send(hl7("Q-1")));
  assertEquals(original.code, "AE");
  assertStringIncludes(original.ack.text, "Cannot store message");
  const enhanced = acked(await client.send(hl7("Q-2", "SND", "SFAC", "AL")));
  assertEquals(enhanced.code, "CE");
  await using raw = await RawConn.connect(r2.port);
  await raw.send(hl7("Q-3"));
  assertEquals(await raw.until((f) => f === "NAK", 10_000), ["NAK"]);
  // They come back: the same messages are stored now, once.
  for (const index of down) await cluster.start(index);
  await cluster.waitCurrent("HL7_IN");
  await waitFor(async () => {
    const result = await client.send(hl7("Q-1"));
    return result.outcome === "accept";
  }, "Q-1 to be stored after the nodes returned");
  accepted(await client.send(hl7("Q-2", "SND", "SFAC", "AL")));
  // Right after the nodes return the JetStream API can time out for a
  // moment: ask again.
  assertNotEquals(
    await eventually(() => store.lookup("SND", "SFAC", "Q-1")),
    undefined,
  );
  const stats = await eventually(() => store.stats());
  assert(stats.stored >= 3 && stats.stored <= 4, `stored ${stats.stored}`);
});

Deno.test("jetstream: a resend after the duplicate window is answered from the stream and not stored again", async () => {
  await using cluster = await startNatsCluster();
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    ...FAST,
    duplicateWindow: 500,
  });
  let dispatched = 0;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: () => {
      dispatched++;
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const first = accepted(await client.send(hl7("W-1")));
  const within = accepted(await client.send(hl7("W-1")));
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const beyond = accepted(await client.send(hl7("W-1")));
  assertEquals(within.ack.toString(), first.ack.toString());
  assertEquals(beyond.ack.toString(), first.ack.toString());
  await waitFor(async () => (await store.stats()).pending === 0, "dispatch");
  const stats = await store.stats();
  assertEquals([stats.stored, stats.duplicates, dispatched], [1, 2, 1]);
});

Deno.test("jetstream: a message larger than the server's max_payload gets AE naming max_payload", async () => {
  await using cluster = await startNatsCluster({
    nodes: 1,
    maxPayload: 1024 * 1024,
  });
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    replicas: 1,
  });
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: () => {},
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const big = hl7("BIG") + "OBX|1|ED|PDF||" + "A".repeat(2 * 1024 * 1024) +
    "\r";
  const result = acked(await client.send(big));
  assertEquals(result.code, "AE");
  assertStringIncludes(
    result.ack.text,
    "raise max_payload in the server's config",
  );
  accepted(await client.send(hl7("SMALL")));
});

Deno.test("jetstream: ordered, each sender's messages are dispatched in order, a retry holds up only its sender", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    ...FAST,
    replicas: 1,
    ordered: true,
    discoveryInterval: 50,
  });
  const order: string[] = [];
  let failures = 0;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: (message) => {
      if (message.kind !== "hl7") return;
      const id = message.header.controlId;
      if (id === "A-1" && failures < 3) {
        failures++;
        throw new Error("not yet");
      }
      order.push(id);
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  for (let i = 1; i <= 4; i++) {
    accepted(await client.send(hl7(`A-${i}`, "APP", "A")));
    accepted(await client.send(hl7(`B-${i}`, "APP", "B")));
  }
  await waitFor(() => order.length === 8, "eight dispatches", 15_000);
  const of = (prefix: string) => order.filter((id) => id.startsWith(prefix));
  assertEquals(of("A"), ["A-1", "A-2", "A-3", "A-4"]);
  assertEquals(of("B"), ["B-1", "B-2", "B-3", "B-4"]);
  // B did not wait for A's retries.
  assert(order.indexOf("B-4") < order.indexOf("A-1"), order.join(" "));
  assertEquals(failures, 3);
});

Deno.test("jetstream: retention removes messages older than maxAge, and stats count them", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    ...FAST,
    replicas: 1,
    maxAge: 1_000,
  });
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: () => {},
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  for (let i = 0; i < 5; i++) accepted(await client.send(hl7(`R-${i}`)));
  const before = await store.stats();
  assertEquals(before.stored, 5);
  await waitFor(
    async () => (await store.stats()).removed === 5,
    "max_age to remove them",
    10_000,
  );
  const after = await store.stats();
  assertEquals([after.stored, after.pending, after.bytes], [0, 0, 0]);
});

Deno.test("jetstream: a stopping receiver's message in hand goes to the next receiver at once, as attempt 2", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  const options = { ...FAST, replicas: 1, ackWait: 60_000 };
  await using first = await JetStreamMessageStore.open(
    cluster.servers,
    options,
  );
  const started = Promise.withResolvers<void>();
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store: first,
    dispatcher: (_message, ctx) => {
      started.resolve();
      // Never done: the stop gives up on it.
      return new Promise((_resolve, reject) =>
        ctx.signal?.addEventListener("abort", () => reject(ctx.signal?.reason))
      );
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  accepted(await client.send(hl7("H-1")));
  await started.promise;
  await client.close();
  await receiver.stop({ deadline: 100 });
  await using second = await JetStreamMessageStore.open(
    cluster.servers,
    options,
  );
  const taken = Promise.withResolvers<number>();
  await using other = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store: second,
    dispatcher: (_message, ctx) =>
      taken.resolve((ctx as StoredDispatchContext).attempt),
  });
  const startedAt = Date.now();
  assertEquals(await taken.promise, 2);
  assert(Date.now() - startedAt < 10_000, "well before the ack wait");
  assert(other.port > 0);
});

Deno.test({
  name:
    "jetstream: without network permission, open fails with one line naming --allow-net",
  permissions: { net: false, read: true },
  async fn() {
    const error = await assertRejects(() =>
      JetStreamMessageStore.open("nats://127.0.0.1:4222")
    );
    assertInstanceOf(error, Deno.errors.NotCapable);
    assertEquals(
      error.message,
      'Cannot connect to NATS at nats://127.0.0.1:4222: no net permission for "127.0.0.1:4222"; run Deno with --allow-net=127.0.0.1:4222 (or -A for every permission, or -P for the permission set in deno.json)',
    );
  },
});

Deno.test("jetstream: the stored ACK is the receiver's AA, and the record says where the message came from", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    replicas: 1,
  });
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: () => Ack.forMessage(hl7("x"), "AA"),
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const result = accepted(await client.send(hl7("REC-1", "LAB", "HÔP.1")));
  const id = (await store.lookup("LAB", "HÔP.1", "REC-1"))!;
  const record = await store.get(id);
  assertEquals(new TextDecoder().decode(record?.ack), result.ack.toString());
  assertEquals(
    [record?.sendingFacility, record?.controlId, record?.messageType],
    ["HÔP.1", "REC-1", "ADT^A01^ADT_A01"],
  );
  assertEquals(record?.peer.hostname, "127.0.0.1");
  assertEquals(record?.local.port, receiver.port);
  assertEquals(record?.subject, "HL7_IN.LAB.H_c3_94P_2e1.REC-1");
});
