/**
 * Fault (d) on a real JetStream cluster (three `nats-server` nodes on
 * loopback, `tests/_nats.ts`): an outbox worker process (a child
 * `deno run` with a `JetStreamOutbox`) is SIGKILLed mid-queue, while the
 * receiver holds one message it has not answered; a second worker process
 * takes over. Every message is delivered, in order; the message the first
 * worker died holding is sent again with the same MSH-10, flagged
 * `possibleDuplicate`, and the receiver counts each MSH-10 it saw twice.
 * The first copy of that message is answered `AE` once the first worker is
 * gone (it stands for a receiver that did not commit it), so an outbox that
 * acked it in the stream before the receiver's `AA` would lose it.
 *
 * Prints its counts (console.log), so that CI output shows them.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { JetStreamOutbox } from "../../src/durable/jetstream.ts";
import { startNatsCluster, waitFor } from "../_nats.ts";

const COUNT = 200;
const KILL_AT = 60;

function hl7(seq: number): string {
  const id = `D-${String(seq).padStart(4, "0")}`;
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ORU^R01^ORU_R01|${id}|P|2.5\rOBX|1|NM|GLU||${seq}\r`;
}

/** A worker process; resolves once it printed `ready`. */
async function startWorker(args: string[]): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_outbox_worker_child.ts", import.meta.url).pathname,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Worker exited before it was ready: ${seen}`);
    seen += value;
  }
  await reader.cancel();
  return child;
}

Deno.test("fault (d): an outbox worker SIGKILLed mid-queue, a second takes over: all delivered, in order, duplicates flagged", async () => {
  await using cluster = await startNatsCluster();
  const stream = "HL7_OUT";
  const held = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const killAt = hl7(KILL_AT).split("|")[9];
  /** Every MSH-10 as it arrived, copies included. */
  const seen: string[] = [];
  /** The MSH-10s answered AA, in order. */
  const delivered: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.kind !== "hl7") return;
      const id = message.header.controlId;
      seen.push(id);
      if (id === killAt && !seen.slice(0, -1).includes(id)) {
        // Hold the first copy until its worker is dead; then it was not
        // committed here.
        held.resolve();
        await release.promise;
        return Ack.forMessage(message, "AE", { text: "Not committed" });
      }
      delivered.push(id);
      return Ack.forMessage(message, "AA");
    },
  });
  await using producer = await JetStreamOutbox.open(cluster.servers, {
    destination: { hostname: "127.0.0.1", port: receiver.port },
    stream,
  });
  const ids: string[] = [];
  const seqs: number[] = [];
  for (let i = 1; i <= COUNT; i++) {
    const { seq, controlId } = await producer.enqueue(hl7(i));
    seqs.push(seq);
    ids.push(controlId!);
  }
  const args = [
    cluster.servers.join(","),
    String(receiver.port),
    stream,
    "2000",
  ];
  const first = await startWorker(args);
  let second: Deno.ChildProcess | undefined;
  try {
    await held.promise;
    second = await startWorker(args);
    first.kill("SIGKILL");
    await first.status;
    const killedAt = Date.now();
    release.resolve();
    // Waits that end without throwing, so that the counts print even when
    // something is missing; the assertions below say what.
    let takeoverMs = NaN;
    await waitFor(
      () => delivered.includes(killAt),
      `${killAt} delivered by the second worker`,
      10_000,
    ).then(() => takeoverMs = Date.now() - killedAt, () => {});
    await waitFor(
      () => delivered.length >= COUNT,
      "every message delivered",
      20_000,
    ).catch(() => {});
    await waitFor(
      async () => (await producer.get(seqs.at(-1)!))?.state === "acked",
      "the last message recorded acked",
      5_000,
    ).catch(() => {});
    const records = await Array.fromAsync(producer.list());
    const counts = new Map<string, number>();
    for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1);
    const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const flagged = records.filter((r) => r.possibleDuplicate).map((r) =>
      r.controlId!
    );
    const missing = ids.filter((id) => !delivered.includes(id));
    const inOrder = JSON.stringify(delivered) === JSON.stringify(ids);
    console.log(
      `fault (d): ${COUNT} queued, ${seen.length} received (${counts.size} distinct MSH-10), ${delivered.length} delivered (AA) ${
        inOrder ? "in order" : "OUT OF ORDER"
      }, ${missing.length} missing, ${twice.length} MSH-10 seen twice (${
        twice.join(", ")
      }), ${flagged.length} flagged possibleDuplicate (${
        flagged.join(", ")
      }); worker 1 SIGKILLed holding message ${KILL_AT}, worker 2 delivered it ${
        Number.isNaN(takeoverMs)
          ? "never"
          : `${(takeoverMs / 1000).toFixed(1)} s later`
      }`,
    );
    assertEquals(missing, []);
    assertEquals(delivered, ids);
    assertEquals(records.map((r) => r.state), ids.map(() => "acked"));
    assertEquals(twice, [killAt]);
    assert(twice.every((id) => flagged.includes(id)), "duplicates flagged");
    assertEquals(flagged, [killAt]);
  } finally {
    release.resolve();
    for (const child of [first, second]) {
      if (!child) continue;
      try {
        child.kill("SIGTERM");
      } catch {
        // Ended already.
      }
      await child.status;
    }
  }
});
