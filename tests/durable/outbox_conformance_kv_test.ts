/**
 * The outbox conformance suite (`_outbox_conformance.ts`) against
 * `KvOutbox`, on `":memory:"` KVs (a fresh one per case).
 *
 * @module
 */

import { KvOutbox } from "../../src/durable/kv_outbox.ts";
import { runOutboxConformance } from "./_outbox_conformance.ts";

Deno.test("outbox conformance: Deno KV", async (t) => {
  await runOutboxConformance(t, {
    name: "KV",
    open: (options) => KvOutbox.open(":memory:", { ...options }),
  });
});
