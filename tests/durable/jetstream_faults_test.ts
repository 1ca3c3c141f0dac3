/**
 * Faults on a real JetStream cluster (three `nats-server` nodes on
 * loopback, `tests/_nats.ts`), with a real `Receiver` on a
 * `JetStreamMessageStore` and real `Client`s that resend whatever was not
 * acknowledged (`AE`, a timeout, a dropped connection) until it is:
 *
 * - (a) the stream's leader is SIGKILLed mid-run (and, once the cluster
 *   is whole again, the leader of the consumer the receiver pulls from):
 *   every ACKed message is dispatched, each message's effect happens once,
 *   nothing is lost;
 * - (b) two of the three nodes are SIGKILLed: no `AA` goes out while they
 *   are down; once they are back (and their replicas current) sending goes
 *   on, and everything is stored and dispatched once.
 *
 * Each prints its counts (console.log), so that CI output shows them.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Client } from "../../src/client/client.ts";
import type { StoredDispatchContext } from "../../src/dispatch/message_store.ts";
import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { withCapturedLogs } from "../_helpers.ts";
import { type NatsCluster, startNatsCluster, waitFor } from "../_nats.ts";

function hl7(sender: number, seq: number): string {
  const id = `F${sender}-${seq}`;
  return `MSH|^~\\&|SND${sender}|SFAC|RCV|RFAC|20240101120000||ORU^R01^ORU_R01|${id}|P|2.5\rOBX|1|NM|GLU||${seq}\r`;
}

/** What the senders saw. */
interface Tally {
  acked: Set<string>;
  aa: number;
  ae: number;
  transportErrors: number;
  resends: number;
  /** When each AA was received (ms since the epoch). */
  aaTimes: number[];
}

/**
 * Sends `count` messages from each of `senders` clients, one at a time,
 * each until it gets AA; `pause` (when set) holds new sends.
 */
async function runSenders(
  port: number,
  senders: number,
  count: number,
  tally: Tally,
): Promise<void> {
  await Promise.all(
    Array.from({ length: senders }, async (_, sender) => {
      const client = await Client.connect("127.0.0.1", port, {
        replyTimeout: 8_000,
      });
      try {
        for (let seq = 0; seq < count; seq++) {
          const message = hl7(sender, seq);
          for (let attempt = 1;; attempt++) {
            if (attempt > 1) tally.resends++;
            if (attempt > 400) throw new Error(`F${sender}-${seq} never AA`);
            try {
              const result = await client.send(message);
              if (result.outcome === "accept") {
                tally.aa++;
                tally.aaTimes.push(Date.now());
                tally.acked.add(`F${sender}-${seq}`);
                break;
              }
              tally.ae++;
            } catch {
              tally.transportErrors++;
            }
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
      } finally {
        await client.close();
      }
    }),
  );
}

/** A receiver whose dispatcher records one effect per message id. */
async function startReceiver(cluster: NatsCluster) {
  const store = await JetStreamMessageStore.open(cluster.servers, {
    publishTimeout: 2_000,
    ackWait: 5_000,
    retry: { initialDelay: 50, jitter: 0 },
  });
  const effects = new Map<string, string>(); // message id → control id
  const idsOf = new Map<string, Set<string>>(); // control id → message ids
  const counts = { calls: 0, redelivered: 0 };
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: (message, context) => {
      if (message.kind !== "hl7") return;
      const ctx = context as StoredDispatchContext;
      counts.calls++;
      if (ctx.attempt > 1) counts.redelivered++;
      const controlId = message.header.controlId;
      // The effect, idempotent on the message id.
      if (!effects.has(ctx.messageId)) effects.set(ctx.messageId, controlId);
      const ids = idsOf.get(controlId) ?? new Set();
      ids.add(ctx.messageId);
      idsOf.set(controlId, ids);
    },
  });
  return {
    store,
    receiver,
    effects,
    idsOf,
    counts,
    async [Symbol.asyncDispose]() {
      await receiver.stop();
      await store.close();
    },
  };
}

/** How many ACKed messages were never dispatched. */
function lost(
  r: Awaited<ReturnType<typeof startReceiver>>,
  tally: Tally,
): number {
  return [...tally.acked].filter((controlId) => !r.idsOf.has(controlId))
    .length;
}

/** Checks that everything ACKed was stored once and had its effect once. */
async function checkDelivered(
  r: Awaited<ReturnType<typeof startReceiver>>,
  tally: Tally,
  total: number,
): Promise<void> {
  // Wait for every ACKed message to be dispatched; then say how many
  // were not.
  await waitFor(() => lost(r, tally) === 0, "every ACKed message dispatched")
    .catch(() => {});
  assertEquals(lost(r, tally), 0, "ACKed messages were never dispatched");
  // Right after a fault the JetStream API can answer "temporarily
  // unavailable" for a moment: ask again.
  await waitFor(
    async () => (await r.store.stats().catch(() => undefined))?.pending === 0,
    "nothing pending",
    30_000,
  );
  assertEquals(tally.acked.size, total);
  for (const controlId of tally.acked) {
    const ids = r.idsOf.get(controlId);
    assertEquals(ids?.size, 1, `${controlId} was stored twice`);
  }
  assertEquals(r.effects.size, total);
  const stats = await r.store.stats();
  assertEquals([stats.stored, stats.dispatched, stats.parked], [
    total,
    total,
    0,
  ]);
}

Deno.test("faults (a): the stream leader SIGKILLed mid-run, then the consumer's leader: every ACKed message dispatched, effects once, nothing lost", async () => {
  await withCapturedLogs(async (logs) => {
    await using cluster = await startNatsCluster();
    await using r = await startReceiver(cluster);
    const SENDERS = 4;
    const COUNT = 150;
    const total = SENDERS * COUNT;
    const tally: Tally = {
      acked: new Set(),
      aa: 0,
      ae: 0,
      transportErrors: 0,
      resends: 0,
      aaTimes: [],
    };
    const startedAt = Date.now();
    const sending = runSenders(r.receiver.port, SENDERS, COUNT, tally);
    // Fault 1, a third of the way: the stream's leader.
    await waitFor(() => tally.acked.size >= total / 3, "a third ACKed", 30_000);
    const leader = await cluster.streamLeader("HL7_IN");
    const killedAt = Date.now();
    const ackedAtKill = tally.acked.size;
    await cluster.kill(leader);
    await waitFor(
      () => tally.acked.size > ackedAtKill + 5,
      "sending to resume",
      30_000,
    );
    const resumedAfter = Date.now() - killedAt;
    await cluster.start(leader);
    await cluster.waitCurrent("HL7_IN");
    // Fault 2, two thirds of the way: the leader of the consumer the
    // receiver pulls from (its pulls fail until another node leads it).
    await waitFor(
      () => tally.acked.size >= (2 * total) / 3,
      "two thirds ACKed",
      30_000,
    );
    const consumerLeader = await cluster.consumerLeader("HL7_IN", "mllp");
    const ackedAtSecond = tally.acked.size;
    if (consumerLeader !== undefined) {
      await cluster.kill(consumerLeader);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await cluster.start(consumerLeader);
    }
    await sending;
    await cluster.waitCurrent("HL7_IN");
    await checkDelivered(r, tally, total);
    const stats = await r.store.stats();
    // The pulls that failed and were tried again, by reason (such as
    // `heartbeats missed` when the consumer's leader died).
    const pullFailures = logs.filter((l) =>
      l.text.startsWith("Pull from consumer")
    ).map((l) => /: (.*); pulling again$/.exec(l.text)?.[1] ?? l.text);
    const reasons = [...new Set(pullFailures)].join(" / ") || "none";
    console.log(
      `fault (a): ${total} sent by ${SENDERS} senders, ${tally.acked.size} ACKed (AA ${tally.aa}, AE ${tally.ae}, transport errors ${tally.transportErrors}, resends ${tally.resends}), stream leader ${
        cluster.nodes[leader].name
      } SIGKILLed at ${ackedAtKill} ACKed, AA again after ${resumedAfter} ms; consumer leader ${
        consumerLeader === undefined ? "?" : cluster.nodes[consumerLeader].name
      } SIGKILLed at ${ackedAtSecond} ACKed, ${pullFailures.length} failed pulls retried (${reasons}); ${stats.stored} stored, ${stats.duplicates} resends answered from the stream, ${r.effects.size} dispatched once (${r.counts.calls} dispatch calls, ${r.counts.redelivered} redelivered), ${
        lost(r, tally)
      } lost, ${Date.now() - startedAt} ms`,
    );
    assert(consumerLeader !== undefined, "the consumer's leader was found");
  });
});

Deno.test("faults (b): 2 of 3 nodes SIGKILLed: no AA while they are down; sending resumes when they return", async () => {
  await using cluster = await startNatsCluster();
  await using r = await startReceiver(cluster);
  const SENDERS = 4;
  const COUNT = 100;
  const total = SENDERS * COUNT;
  const tally: Tally = {
    acked: new Set(),
    aa: 0,
    ae: 0,
    transportErrors: 0,
    resends: 0,
    aaTimes: [],
  };
  const startedAt = Date.now();
  const sending = runSenders(r.receiver.port, SENDERS, COUNT, tally);
  await waitFor(() => tally.acked.size >= total / 4, "a quarter ACKed", 30_000);
  const leader = await cluster.streamLeader("HL7_IN");
  const down = [leader, (leader + 1) % 3];
  const ackedAtKill = tally.acked.size;
  for (const index of down) await cluster.kill(index);
  const downAt = Date.now();
  const aeAtKill = tally.ae + tally.transportErrors;
  // Stay down a while: every send gets AE (or times out), none AA. (An
  // AA for a publish acknowledged just before the kill may still be on
  // its way for a moment.)
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const upAt = Date.now();
  const failedWhileDown = tally.ae + tally.transportErrors - aeAtKill;
  const aaWhileDown =
    tally.aaTimes.filter((t) => t > downAt + 200 && t < upAt).length;
  assertEquals(aaWhileDown, 0, "AA went out with 2 of 3 nodes down");
  assert(failedWhileDown > 0, "sends were tried while the nodes were down");
  for (const index of down) await cluster.start(index);
  await cluster.waitCurrent("HL7_IN");
  const currentAfter = Date.now() - upAt;
  const ackedAtReturn = tally.acked.size;
  await waitFor(
    () => tally.acked.size > ackedAtReturn + 5,
    "sending to resume",
    30_000,
  );
  const resumedAfter = Date.now() - upAt;
  await sending;
  await checkDelivered(r, tally, total);
  const stats = await r.store.stats();
  console.log(
    `fault (b): ${total} sent by ${SENDERS} senders, ${tally.acked.size} ACKed (AA ${tally.aa}, AE ${tally.ae}, transport errors ${tally.transportErrors}, resends ${tally.resends}); ${
      down.map((i) => cluster.nodes[i].name).join(" and ")
    } SIGKILLed at ${ackedAtKill} ACKed, down ${
      upAt - downAt
    } ms: ${aaWhileDown} AA and ${failedWhileDown} AE or timeouts while down; replicas current ${currentAfter} ms after restart, AA again after ${resumedAfter} ms; ${stats.stored} stored, ${stats.duplicates} resends answered from the stream, ${r.effects.size} dispatched once (${r.counts.calls} dispatch calls, ${r.counts.redelivered} redelivered), ${
      lost(r, tally)
    } lost, ${Date.now() - startedAt} ms`,
  );
});
