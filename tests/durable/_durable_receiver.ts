/**
 * A receiver with a `KvMessageStore`, run as a child process by
 * tests/durable/durability_test.ts, which kills it with SIGKILL at random points.
 *
 * Usage: `deno run -A tests/durable/_durable_receiver.ts KV_PATH PORT TAG`
 *
 * Its dispatcher records each call under `["test", "call", messageId,
 * random]` (with the attempt and TAG), and its effect exactly once under
 * `["test", "effect", messageId]`: a commit that checks the key is absent,
 * the pattern docs/durable.md gives for effects in the same KV. Once listening
 * it prints `{"port": N}` on stdout. SIGTERM stops it gracefully.
 *
 * @module
 */

import {
  Receiver,
  type StoredDispatchContext,
} from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";

const [path, portArg, tag = "r"] = Deno.args;
const kv = await Deno.openKv(path);
const store = await KvMessageStore.open(kv, {
  leaseMs: 1000,
  pollInterval: 10,
  retry: { initialDelay: 10, maxDelay: 100 },
});
const receiver = await Receiver.start({
  port: Number(portArg),
  hostname: "127.0.0.1",
  store,
  dispatcher: async (message, ctx) => {
    const { messageId, attempt } = ctx as StoredDispatchContext;
    const controlId = message.header?.controlId ?? "";
    await kv.set(["test", "call", messageId, crypto.randomUUID()], {
      attempt,
      tag,
    });
    // Some dispatches take a moment, so kills land inside them too.
    if (Math.random() < 0.3) {
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    await kv.atomic()
      .check({ key: ["test", "effect", messageId], versionstamp: null })
      .set(["test", "effect", messageId], { controlId, tag })
      .commit();
  },
});
console.log(JSON.stringify({ port: receiver.port }));

await new Promise<void>((resolve) => {
  Deno.addSignalListener("SIGTERM", () => resolve());
});
await receiver.stop();
await store.close();
kv.close();
