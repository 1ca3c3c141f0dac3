/**
 * An outbox worker process for the fault tests: opens a `JetStreamOutbox`
 * on the given NATS servers and destination, starts its worker, prints
 * `ready` on stdout, and delivers until it is SIGKILLed (or, on SIGTERM,
 * stops after the send in hand).
 *
 * Usage: deno run -A tests/durable/_outbox_worker_child.ts SERVERS PORT STREAM ACK_WAIT_MS
 *
 * @module
 */

import { JetStreamOutbox } from "../../src/durable/jetstream.ts";

const [servers, port, stream, ackWait] = Deno.args;
const outbox = await JetStreamOutbox.open(servers, {
  destination: { hostname: "127.0.0.1", port: Number(port) },
  stream,
  ackWait: Number(ackWait),
  retry: { initialDelay: 50, maxDelay: 200, jitter: 0 },
});
outbox.start();
console.log("ready");
const stopped = Promise.withResolvers<void>();
Deno.addSignalListener("SIGTERM", () => stopped.resolve());
await stopped.promise;
await outbox.close();
