/**
 * What `JetStreamOutbox` does beyond the outbox conformance suite, on real
 * `nats-server` nodes and a real receiver on loopback: `AE` is sent again
 * after a delay (nak) and the order holds behind it; parked after
 * `maxAttempts` with the reason, requeued; no reply in time is resent
 * flagged; a worker killed mid-send is taken over by a second worker; no
 * quorum rejects `enqueue`; retention by `maxAge`; no network permission
 * gives one line naming the flag; the consumer's leader SIGKILLed
 * mid-queue; a wrong password fails `open` without ending the process.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { connect } from "@nats-io/transport-node";
import { Ack } from "../../src/hl7/ack.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { JetStreamOutbox } from "../../src/durable/jetstream.ts";
import type { OutboxRetryDetail } from "../../src/durable/kv_outbox_types.ts";
import { startNatsCluster, waitFor, waitListening } from "../_nats.ts";
import { withCapturedLogs } from "../_helpers.ts";
import { fieldToken } from "../../src/durable/_jetstream_codec.ts";
import { hl7, recordingReceiver } from "./_outbox_conformance.ts";

const FAST_RETRY = { initialDelay: 50, maxDelay: 200, jitter: 0 };

Deno.test("jetstream outbox: AE is sent again after a delay and the messages behind it wait; parked after maxAttempts, requeued", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  const answers = new Map<string, string[]>([
    ["FLAKY", ["AE", "AE"]],
    ["BROKEN", ["AE", "AE", "AE"]],
  ]);
  const { receiver, arrivals } = await recordingReceiver(
    0,
    (id) => answers.get(id)?.shift() ?? "AA",
  );
  await using _r = receiver;
  await using outbox = await JetStreamOutbox.open(cluster.servers, {
    destination: { hostname: "127.0.0.1", port: receiver.port },
    replicas: 1,
    retry: FAST_RETRY,
    maxAttempts: 3,
  });
  const retries: OutboxRetryDetail[] = [];
  outbox.addEventListener("retrying", (e) => retries.push(e.detail));
  const seqs: number[] = [];
  for (const id of ["A", "FLAKY", "B", "BROKEN", "C"]) {
    seqs.push((await outbox.enqueue(hl7(id))).seq);
  }
  outbox.start();
  assertEquals((await outbox.waitFor(seqs[4])).state, "acked");
  assertEquals(arrivals, [
    "A",
    "FLAKY",
    "FLAKY",
    "FLAKY",
    "B",
    "BROKEN",
    "BROKEN",
    "BROKEN",
    "C",
  ]);
  const flaky = await outbox.get(seqs[1]);
  assertEquals(
    [flaky?.state, flaky?.attempts, flaky?.possibleDuplicate],
    ["acked", 3, false],
  );
  assertEquals(
    retries.map((r) => [r.record.controlId, r.written, r.delayMs]),
    [
      ["FLAKY", true, 50],
      ["FLAKY", true, 100],
      ["BROKEN", true, 50],
      ["BROKEN", true, 100],
    ],
  );
  const broken = await outbox.get(seqs[3]);
  assertEquals(broken?.state, "parked");
  assertEquals(broken?.reason, "Gave up after 3 attempts: AE: AE for BROKEN");
  assertEquals((await outbox.stats()).parked, 1);
  assertEquals(
    await outbox.read(seqs[3]),
    new TextEncoder().encode(hl7("BROKEN")),
  );
  assert(await outbox.requeue(seqs[3]));
  assertEquals((await outbox.get(seqs[3]))?.state, "pending");
  const again = await outbox.waitFor(seqs[3]);
  assertEquals([again.state, again.attempts, again.ackCode], [
    "acked",
    1,
    "AA",
  ]);
  assertEquals(arrivals.at(-1), "BROKEN");
  const stats = await outbox.stats();
  assertEquals([stats.depth, stats.parked, stats.enqueued], [0, 0, 5]);
});

Deno.test("jetstream outbox: no reply in time is sent again with the same control id, flagged possibleDuplicate", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  let slow = true;
  const arrivals: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.kind !== "hl7") return;
      arrivals.push(message.header.controlId);
      if (slow) {
        slow = false;
        await new Promise((resolve) => setTimeout(resolve, 800));
      }
      return Ack.forMessage(message, "AA");
    },
  });
  await using outbox = await JetStreamOutbox.open(cluster.servers, {
    destination: {
      hostname: "127.0.0.1",
      port: receiver.port,
      replyTimeout: 300,
    },
    replicas: 1,
    retry: FAST_RETRY,
  });
  const { seq } = await outbox.enqueue(hl7("SLOW"));
  const next = await outbox.enqueue(hl7("NEXT"));
  outbox.start();
  const record = await outbox.waitFor(seq);
  assertEquals(
    [record.state, record.attempts, record.possibleDuplicate],
    ["acked", 2, true],
  );
  assertEquals((await outbox.waitFor(next.seq)).possibleDuplicate, false);
  assertEquals(arrivals, ["SLOW", "SLOW", "NEXT"]);
});

Deno.test("jetstream outbox: a worker killed mid-send is taken over by a second worker, which resends that message flagged; all in order", async () => {
  await using cluster = await startNatsCluster();
  const held = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const arrivals: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.kind !== "hl7") return;
      const id = message.header.controlId;
      arrivals.push(id);
      if (id === "M-3" && arrivals.filter((a) => a === id).length === 1) {
        held.resolve();
        await release.promise;
      }
      return Ack.forMessage(message, "AA");
    },
  });
  const options = {
    destination: { hostname: "127.0.0.1", port: receiver.port },
    ackWait: 1_500,
    retry: FAST_RETRY,
  };
  // The first worker's own connection, to cut as a crash would.
  const nc = await connect({ servers: cluster.servers });
  const first = await JetStreamOutbox.open(nc, options);
  await using second = await JetStreamOutbox.open(cluster.servers, options);
  const ids = Array.from({ length: 8 }, (_, i) => `M-${i}`);
  const seqs: number[] = [];
  for (const id of ids) seqs.push((await second.enqueue(hl7(id))).seq);
  first.start();
  await held.promise;
  assertEquals((await second.get(seqs[3]))?.state, "in_flight");
  second.start();
  await nc.close(); // the first worker dies holding M-3
  release.resolve();
  const last = await second.waitFor(seqs[7]);
  assertEquals(last.state, "acked");
  await first.close();
  assertEquals(arrivals, [...ids.slice(0, 4), ...ids.slice(3)]);
  const m3 = await second.get(seqs[3]);
  assertEquals(
    [m3?.state, m3?.attempts, m3?.possibleDuplicate],
    ["acked", 2, true],
  );
  const records = await Array.fromAsync(second.list());
  assertEquals(records.map((r) => r.state), ids.map(() => "acked"));
  assertEquals(
    records.filter((r) => r.possibleDuplicate).map((r) => r.controlId),
    ["M-3"],
  );
});

Deno.test("jetstream outbox: with 2 of 3 nodes down enqueue rejects, naming the quorum; nothing is queued", async () => {
  await using cluster = await startNatsCluster();
  await using outbox = await JetStreamOutbox.open(cluster.servers, {
    destination: { hostname: "127.0.0.1", port: 9 },
    publishTimeout: 1_500,
  });
  await outbox.enqueue(hl7("BEFORE"));
  const leader = await cluster.streamLeader("HL7_OUT");
  await cluster.kill(leader);
  await cluster.kill((leader + 1) % 3);
  const error = await assertRejects(() => outbox.enqueue(hl7("NO-QUORUM")));
  assertStringIncludes((error as Error).message, "Cannot queue message");
  assertStringIncludes((error as Error).message, "quorum");
  await cluster.start(leader);
  await cluster.start((leader + 1) % 3);
  await cluster.waitCurrent("HL7_OUT");
  await cluster.waitCurrent("HL7_OUT_STATUS");
  // Each stream answers once its leader is back: read until they do.
  let queued: { controlId?: string }[] = [];
  await waitFor(
    async () => {
      try {
        queued = await Array.fromAsync(outbox.list());
        return (await outbox.stats()).enqueued === 1;
      } catch {
        return false;
      }
    },
    "the streams to answer again with one message",
    20_000,
  );
  assertEquals(queued.map((r) => r.controlId), ["BEFORE"]);
});

Deno.test("jetstream outbox: retention removes messages older than maxAge, and stats count them", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  await using outbox = await JetStreamOutbox.open(cluster.servers, {
    destination: { hostname: "127.0.0.1", port: 9 },
    replicas: 1,
    maxAge: 1_000,
  });
  for (let i = 0; i < 3; i++) await outbox.enqueue(hl7(`OLD-${i}`));
  assertEquals((await outbox.stats()).enqueued, 3);
  await waitFor(
    async () => (await outbox.stats()).removed === 3,
    "max_age to remove them",
    10_000,
  );
  const after = await outbox.stats();
  assertEquals([after.enqueued, after.depth, after.bytes], [0, 0, 0]);
});

Deno.test({
  name:
    "jetstream outbox: without network permission, open fails with one line naming --allow-net",
  permissions: { net: false, read: true },
  async fn() {
    const error = await assertRejects(() =>
      JetStreamOutbox.open("nats://127.0.0.1:4222", {
        destination: { hostname: "127.0.0.1", port: 2575 },
      })
    );
    assertInstanceOf(error, Deno.errors.NotCapable);
    assertEquals(
      error.message,
      'Cannot connect to NATS at nats://127.0.0.1:4222: no net permission for "127.0.0.1:4222"; run Deno with --allow-net=127.0.0.1:4222 (or -A for every permission, or -P for the permission set in deno.json)',
    );
  },
});

Deno.test("jetstream outbox: the consumer's leader SIGKILLed mid-queue: the worker goes on (a failed pull, such as heartbeats missed, is pulled again) and everything is delivered in order", async () => {
  await withCapturedLogs(async (logs) => {
    await using cluster = await startNatsCluster();
    const arrivals: string[] = [];
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: async (message) => {
        if (message.kind !== "hl7") return;
        arrivals.push(message.header.controlId);
        await new Promise((resolve) => setTimeout(resolve, 20));
        return Ack.forMessage(message, "AA");
      },
    });
    await using outbox = await JetStreamOutbox.open(cluster.servers, {
      destination: { hostname: "127.0.0.1", port: receiver.port },
      ackWait: 2_000,
      retry: FAST_RETRY,
    });
    const ids = Array.from({ length: 80 }, (_, i) => `L-${i}`);
    const seqs: number[] = [];
    for (const id of ids) seqs.push((await outbox.enqueue(hl7(id))).seq);
    outbox.start();
    await waitFor(() => arrivals.length >= 20, "20 arrivals", 20_000);
    const token = await fieldToken(outbox.destination, 60);
    const found = await cluster.consumerLeader(
      "HL7_OUT",
      `mllp-out__${token}`,
    );
    if (found === undefined) throw new Error("No leader for the consumer");
    const leader = found;
    await cluster.kill(leader);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await cluster.start(leader);
    const last = await outbox.waitFor(seqs.at(-1)!, {
      signal: AbortSignal.timeout(45_000),
    });
    assertEquals(last.state, "acked");
    // Copies only of messages flagged as possible duplicates, right after
    // their first copy: the order holds.
    const firsts = arrivals.filter((id, i) => arrivals.indexOf(id) === i);
    assertEquals(firsts, ids);
    const records = await Array.fromAsync(outbox.list());
    const flagged = records.filter((r) => r.possibleDuplicate).map((r) =>
      r.controlId
    );
    const twice = ids.filter((id) =>
      arrivals.filter((a) => a === id).length > 1
    );
    assert(twice.every((id) => flagged.includes(id)), "copies are flagged");
    const pulls = logs.filter((l) => l.text.includes("pull failed"));
    console.log(
      `consumer leader ${
        cluster.nodes[leader].name
      } SIGKILLed after 20 arrivals: ${ids.length} delivered in order, ${twice.length} sent twice (flagged), ${pulls.length} failed pulls pulled again (${
        [
          ...new Set(
            pulls.map((l) =>
              l.text.replace(/.*\): /, "").replace(/; pulling again/, "")
            ),
          ),
        ].join(", ")
      })`,
    );
  });
});

Deno.test("jetstream outbox: a wrong password fails open with one line and the process goes on (no uncaught ECONNRESET from the node transport)", async () => {
  await using cluster = await startNatsCluster({
    nodes: 1,
    extraConfig:
      `authorization { users: [ { user: "mllp", password: "s3cret" } ] }`,
  });
  const [server] = cluster.servers;
  const script = `
import { JetStreamOutbox } from "./src/durable/jetstream.ts";
try {
  await JetStreamOutbox.open("${server}", {
    destination: { hostname: "127.0.0.1", port: 2575 },
    replicas: 1,
    connection: { user: "mllp", pass: "wrong" },
  });
} catch (error) {
  console.error("error: " + error.message);
}
// Long enough for a late socket error to end the process, if it would.
await new Promise((resolve) => setTimeout(resolve, 300));
Deno.exit(3);`;
  for (let run = 0; run < 3; run++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "-"],
      cwd: new URL("../../", import.meta.url),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(script));
    await writer.close();
    const { code, stderr } = await child.output();
    const text = new TextDecoder().decode(stderr).trim();
    assertEquals(code, 3, text);
    assertEquals(
      text,
      `error: Cannot connect to NATS at ${server}: Authorization Violation`,
    );
  }
});

Deno.test("jetstream outbox: opened on a cluster still starting (no JetStream leader yet), it waits for it, then delivers", async () => {
  await using cluster = await startNatsCluster({ waitReady: false });
  await waitListening(cluster.servers);
  const { receiver, arrivals } = await recordingReceiver(0, () => "AA");
  await using _r = receiver;
  await using outbox = await JetStreamOutbox.open(cluster.servers, {
    destination: { hostname: "127.0.0.1", port: receiver.port },
  });
  const { seq } = await outbox.enqueue(hl7("EARLY-1"));
  outbox.start();
  assertEquals((await outbox.waitFor(seq)).state, "acked");
  assertEquals(arrivals, ["EARLY-1"]);
});
