/**
 * The outbox conformance suite (`_outbox_conformance.ts`) against
 * `JetStreamOutbox`, on a 3-node JetStream cluster on loopback
 * (`tests/_nats.ts`), a fresh stream with 3 replicas per case.
 *
 * @module
 */

import { JetStreamOutbox } from "../../src/durable/jetstream.ts";
import { startNatsCluster } from "../_nats.ts";
import { runOutboxConformance } from "./_outbox_conformance.ts";

Deno.test("outbox conformance: NATS JetStream (3 nodes, 3 replicas)", async (t) => {
  await using cluster = await startNatsCluster();
  let n = 0;
  await runOutboxConformance(t, {
    name: "JetStream",
    open: (options) =>
      JetStreamOutbox.open(cluster.servers, {
        ...options,
        stream: `OUT_CONFORMANCE_${++n}`,
      }),
  });
});
