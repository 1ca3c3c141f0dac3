/**
 * A sender with a `KvOutbox`, run as a child process by
 * tests/durable/durability_test.ts, which kills it with SIGKILL at random points
 * and starts it again.
 *
 * Usage: `deno run -A tests/durable/_durable_sender.ts KV_PATH PORT TOTAL`
 *
 * It starts the worker, queues messages `S-0000` ... up to TOTAL (going on
 * from the count already queued, after a restart), waits until the queue
 * is empty, and prints `done` on stdout.
 *
 * @module
 */

import { KvOutbox } from "../../src/durable/kv_outbox.ts";

const [path, portArg, totalArg] = Deno.args;
const total = Number(totalArg);
await using outbox = await KvOutbox.open(path, {
  destination: { hostname: "127.0.0.1", port: Number(portArg) },
  leaseMs: 1000,
  pollInterval: 10,
  retry: { initialDelay: 10, maxDelay: 100 },
});
outbox.start();
const { enqueued } = await outbox.stats();
for (let i = enqueued; i < total; i++) {
  const id = `S-${String(i).padStart(4, "0")}`;
  await outbox.enqueue(
    `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${id}|P|2.5\rPID|1||${id}^^^SFAC^MR\r`,
  );
}
await outbox.waitFor(total);
while ((await outbox.stats()).depth > 0) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}
console.log("done");
