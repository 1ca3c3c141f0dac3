/**
 * Fault (c) on a real JetStream cluster: two receiver processes (the real
 * command line, `mllp listen --store nats://...`) behind one TCP address (a
 * round-robin layer-4 proxy, `tests/_tcp_proxy.ts`), and senders that
 * resend whatever was not acknowledged. One receiver is SIGKILLed mid-run:
 * its clients reconnect through the proxy to the other, and every message
 * that was ACKed is in the stream, once, and dispatched.
 *
 * It prints its counts (console.log), so that CI output shows them.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Client } from "../../src/client/client.ts";
import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import { startNatsCluster, waitFor } from "../_nats.ts";
import { startTcpProxy } from "../_tcp_proxy.ts";
import { type Listening, startListen } from "../cli/_helpers.ts";

function hl7(sender: number, seq: number): string {
  const id = `C${sender}-${seq}`;
  return `MSH|^~\\&|SND${sender}|SFAC|RCV|RFAC|20240101120000||ORU^R01^ORU_R01|${id}|P|2.5\rOBX|1|NM|GLU||${seq}\r`;
}

Deno.test("faults (c): two receiver processes behind one TCP address, one SIGKILLed mid-run: clients reconnect to the other, nothing ACKed is lost", async () => {
  await using cluster = await startNatsCluster();
  const store = cluster.servers.join(",");
  const receivers: Listening[] = [];
  let outputs: string[] = [];
  try {
    // One after the other: the first creates the streams and consumer.
    receivers.push(await startListen(["--store", store]));
    receivers.push(await startListen(["--store", store]));
    await using proxy = startTcpProxy(
      receivers.map((r) => ({ hostname: "127.0.0.1", port: r.port })),
    );
    const SENDERS = 4;
    const COUNT = 150;
    const total = SENDERS * COUNT;
    const acked = new Set<string>();
    let ae = 0;
    let transportErrors = 0;
    let resends = 0;
    const startedAt = Date.now();
    const sending = Promise.all(
      Array.from({ length: SENDERS }, async (_, sender) => {
        const client = await Client.connect("127.0.0.1", proxy.port, {
          replyTimeout: 8_000,
          reconnect: { initialDelay: 20, maxDelay: 200, jitter: 0 },
        });
        try {
          for (let seq = 0; seq < COUNT; seq++) {
            for (let attempt = 1;; attempt++) {
              if (attempt > 1) resends++;
              if (attempt > 400) throw new Error(`C${sender}-${seq} never AA`);
              try {
                const result = await client.send(hl7(sender, seq));
                if (result.outcome === "accept") {
                  acked.add(`C${sender}-${seq}`);
                  break;
                }
                ae++;
              } catch {
                transportErrors++;
              }
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          }
        } finally {
          await client.close();
        }
      }),
    );
    await waitFor(() => acked.size >= total / 3, "a third ACKed", 60_000);
    const ackedAtKill = acked.size;
    Deno.kill(receivers[0].pid, "SIGKILL");
    const killedAt = Date.now();
    await waitFor(
      () => acked.size > ackedAtKill + 5,
      "sending to resume",
      30_000,
    );
    const resumedAfter = Date.now() - killedAt;
    await sending;
    // What the stream has: each ACKed message, once; and the group's
    // consumer done with all of them (a message the killed receiver had
    // in hand comes back after the consumer's ack wait, 30 s).
    await using check = await JetStreamMessageStore.open(cluster.servers);
    const missing: string[] = [];
    for (const id of acked) {
      const [sender, seq] = id.slice(1).split("-");
      if (!(await check.lookup(`SND${sender}`, "SFAC", `C${sender}-${seq}`))) {
        missing.push(id);
      }
    }
    await waitFor(
      async () => (await check.stats().catch(() => undefined))?.pending === 0,
      "the group to dispatch everything",
      45_000,
      250,
    );
    const stats = await check.stats();
    outputs = await Promise.all(
      receivers.map(async (r) => (await r.stop()).stderr),
    );
    receivers.length = 0;
    // Dispatches, as the receivers logged them ("Answering AA ... control
    // id C0-1 ...").
    const calls = new Map<string, number>();
    const perReceiver = outputs.map((text) => {
      let n = 0;
      for (const match of text.matchAll(/control id (C\d+-\d+) /g)) {
        calls.set(match[1], (calls.get(match[1]) ?? 0) + 1);
        n++;
      }
      return n;
    });
    const twice = [...calls.values()].filter((n) => n > 1).length;
    // A SIGKILLed process loses the log lines it had not yet written, so
    // the consumer (nothing pending: every message acked after its
    // dispatch succeeded) is what proves dispatch; the logs only count.
    const notLogged = [...acked].filter((id) => !calls.has(id)).length;
    console.log(
      `fault (c): ${total} sent by ${SENDERS} senders through a round-robin TCP proxy to 2 receiver processes, ${acked.size} ACKed (AE ${ae}, transport errors ${transportErrors}, resends ${resends}); receiver 1 SIGKILLed at ${ackedAtKill} ACKed, AA again after ${resumedAfter} ms; proxy connections ${
        proxy.counts.perBackend.join(" + ")
      } (${proxy.counts.refused} refused by the dead receiver); ${stats.stored} stored, ${missing.length} lost; dispatch calls ${
        perReceiver.join(" + ")
      } (${twice} dispatched twice, by the killed receiver and again; ${notLogged} not in the logs), ${stats.pending} pending, ${
        Date.now() - startedAt
      } ms`,
    );
    assertEquals(missing, [], "ACKed messages missing from the stream");
    assertEquals(acked.size, total);
    assertEquals([stats.stored, stats.pending, stats.parked], [total, 0, 0]);
    assert(
      proxy.counts.perBackend[1] > 1,
      "clients reconnected to the other receiver",
    );
  } finally {
    for (const r of receivers) await r.stop();
  }
});
