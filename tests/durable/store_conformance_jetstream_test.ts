/**
 * The store conformance suite (`_store_conformance.ts`) against
 * `JetStreamMessageStore`, on a 3-node JetStream cluster on loopback
 * (`tests/_nats.ts`), a fresh stream with 3 replicas per case (two handles
 * on one stream stand for two receivers sharing it).
 *
 * @module
 */

import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import { startNatsCluster } from "../_nats.ts";
import {
  type ConformingStore,
  runStoreConformance,
} from "./_store_conformance.ts";

Deno.test("store conformance: NATS JetStream (3 nodes, 3 replicas)", async (t) => {
  await using cluster = await startNatsCluster();
  let n = 0;
  await runStoreConformance(t, {
    name: "JetStream",
    fresh() {
      const stream = `CONFORMANCE_${++n}`;
      return Promise.resolve(async (options = {}) => {
        const store = await JetStreamMessageStore.open(cluster.servers, {
          stream,
          retry: { initialDelay: 20, jitter: 0 },
          maxAttempts: options.maxAttempts,
        });
        const conforming: ConformingStore = Object.assign(store, {
          parkedList: async () =>
            (await Array.fromAsync(store.parked())).map((record) => ({
              id: record.id,
              reason: record.reason,
            })),
        });
        return conforming;
      });
    },
  });
});
