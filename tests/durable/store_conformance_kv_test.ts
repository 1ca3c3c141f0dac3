/**
 * The store conformance suite (`_store_conformance.ts`) against
 * `KvMessageStore`, on KV files in a temporary directory (two handles to
 * one file stand for two receivers sharing it).
 *
 * @module
 */

import { KvMessageStore } from "../../src/durable/kv_store.ts";
import {
  type ConformingStore,
  runStoreConformance,
} from "./_store_conformance.ts";

Deno.test("store conformance: Deno KV", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "mllp-kv-conformance-" });
  let n = 0;
  try {
    await runStoreConformance(t, {
      name: "KV",
      fresh() {
        const path = `${dir}/store-${++n}.sqlite`;
        return Promise.resolve(async (options = {}) => {
          const store = await KvMessageStore.open(path, {
            pollInterval: 10,
            retry: { initialDelay: 5, jitter: 0 },
            maxAttempts: options.maxAttempts,
          });
          const conforming: ConformingStore = Object.assign(store, {
            parkedList: async () =>
              (await Array.fromAsync(store.list({ state: "parked" }))).map(
                (record) => ({ id: record.id, reason: record.lastError ?? "" }),
              ),
          });
          return conforming;
        });
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
