/**
 * Retention of `JetStreamMessageStore` on a real `nats-server`: under a
 * steady load the stream holds a bounded number of messages and bytes
 * (its `max_age` removes the old ones, and `stats()` counts them), while a
 * parked message stays until it is requeued or purged; and a duplicate
 * window longer than `maxAge` is refused, since a resend's duplicate key
 * (the first copy's subject) must live at least as long as the window.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { accepted } from "../_helpers.ts";
import { startNatsCluster, waitFor } from "../_nats.ts";

function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

Deno.test("jetstream retention: under a steady load the stream holds a bounded size, stats count what max_age removed, a parked message stays", async () => {
  await using cluster = await startNatsCluster({ nodes: 1 });
  const MAX_AGE = 1_000;
  await using store = await JetStreamMessageStore.open(cluster.servers, {
    replicas: 1,
    maxAge: MAX_AGE,
    duplicateWindow: 500,
    retry: { initialDelay: 20, jitter: 0 },
  });
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: (message) => {
      if (message.kind !== "hl7") return;
      if (message.header.controlId === "P-0") {
        return Ack.forMessage(message, "AR", { text: "parked on purpose" });
      }
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  accepted(await client.send(hl7("P-0")));
  await waitFor(async () => (await store.stats()).parked === 1, "P-0 parked");
  // A steady load for 4 s (four times max_age), sampling the stream.
  const startedAt = Date.now();
  let sent = 1;
  const samples: { stored: number; bytes: number; removed: number }[] = [];
  let lastSample = startedAt;
  while (Date.now() - startedAt < 4 * MAX_AGE) {
    accepted(await client.send(hl7(`S-${sent++}`)));
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (Date.now() - lastSample >= 250) {
      lastSample = Date.now();
      const { stored, bytes, removed } = await store.stats();
      samples.push({ stored, bytes, removed });
    }
  }
  const elapsed = Date.now() - startedAt;
  const rate = sent / elapsed; // messages per ms
  const maxStored = Math.max(...samples.map((s) => s.stored));
  const maxBytes = Math.max(...samples.map((s) => s.bytes));
  const last = samples.at(-1)!;
  console.log(
    `retention: ${sent} sent over ${elapsed} ms with max_age ${MAX_AGE} ms; the stream held at most ${maxStored} messages (${maxBytes} bytes), ${last.removed} removed by max_age; 1 parked message kept`,
  );
  // What arrived in the last max_age, plus the expiry timer's slack (the
  // server checks about once per max_age): well under everything sent.
  assert(
    maxStored <= rate * 2.5 * MAX_AGE + 10,
    `the stream held ${maxStored} of ${sent} messages`,
  );
  assert(maxStored < sent / 2, `the stream held ${maxStored} of ${sent}`);
  assert(last.removed >= sent / 2, `only ${last.removed} removed`);
  // The parked message outlived max_age, and stays until purged.
  const parked = [];
  for await (const record of store.parked()) parked.push(record.controlId);
  assertEquals(parked, ["P-0"]);
  const stats = await store.stats();
  assertEquals(stats.parked, 1);
  const [record] = await Array.fromAsync(store.parked());
  assertEquals(await store.purge(record.id), true);
  assertEquals((await store.stats()).parked, 0);
});

Deno.test("jetstream retention: a duplicate window longer than maxAge is refused, naming both", async () => {
  await assertRejects(
    () =>
      JetStreamMessageStore.open("nats://127.0.0.1:1", {
        maxAge: 60_000,
        duplicateWindow: 120_000,
      }),
    RangeError,
    "duplicateWindow (120000 ms) must not exceed maxAge (60000 ms)",
  );
});
