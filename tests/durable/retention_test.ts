/**
 * Retention in `KvMessageStore`: dispatched messages (record and bytes)
 * are removed once older than `retentionMs`, duplicate keys live at least
 * as long as the dedupe window, parked messages stay until requeued or
 * purged, `stats()` counts what was removed, and a store under a steady
 * load holds a bounded number of keys and a bounded file.
 *
 * The sweeps with exact ages run the store's sweeper on a test clock;
 * the steady load runs the store's own sweeper on short ages.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { type Hl7Message, readMessage } from "../../src/hl7/message.ts";
import {
  KvMessageStore,
  type KvMessageStoreOptions,
  type StoreEntry,
} from "../../src/durable/kv_store.ts";
import { sweepStore } from "../../src/durable/kv_store_retention.ts";
import { TestClock } from "./_test_clock.ts";

const PREFIX = ["mllp", "store"];

function entryFor(controlId: string, ackText = "Stored"): StoreEntry {
  const message = readMessage(
    `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`,
  ) as Hl7Message;
  const address = { hostname: "127.0.0.1", port: 2575 };
  return {
    message,
    ack: Ack.forMessage(message, "AA", { text: ackText }).toBytes(),
    peer: address,
    local: address,
    receivedAt: new Date(),
  };
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 10_000,
) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The keys under the store's prefix, by their first part after it. */
async function keysOf(kv: Deno.Kv): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for await (const entry of kv.list({ prefix: PREFIX })) {
    const part = String(entry.key[PREFIX.length]);
    counts[part] = (counts[part] ?? 0) + 1;
  }
  return counts;
}

const MINUTE = 60_000;

/**
 * A store with messages A and B dispatched, C parked and D pending, and
 * the sweeper's settings on a test clock that starts now.
 */
async function scene(kv: Deno.Kv, options: KvMessageStoreOptions) {
  const store = await KvMessageStore.open(kv, {
    pollInterval: 5,
    sweepInterval: 0,
    ...options,
  });
  const ids: Record<string, string> = {};
  for (const name of ["A", "B", "C"]) {
    ids[name] = (await store.put(entryFor(name, `first ${name}`))).id;
  }
  const consumer = store.consume((message) =>
    Promise.resolve(
      message.id === ids.C
        ? { outcome: "park", reason: "Unknown patient" }
        : { outcome: "done" },
    )
  );
  await until(async () => {
    const stats = await store.stats();
    return stats.dispatched === 2 && stats.parked === 1;
  }, "A and B dispatched, C parked");
  await consumer.stop();
  ids.D = (await store.put(entryFor("D"))).id;
  const clock = new TestClock();
  const sweep = (at: TestClock) =>
    sweepStore({
      kv,
      prefix: PREFIX,
      retentionMs: options.retentionMs ?? 7 * 24 * 60 * MINUTE,
      dedupeWindowMs: options.dedupeWindowMs ?? 7 * 24 * 60 * MINUTE,
      partialTtl: 60 * MINUTE,
      now: at.now,
    });
  return { store, ids, clock, sweep };
}

Deno.test("retention: a dispatched message's record and bytes are removed once older than retentionMs, not before, and counted; parked and pending ones stay", async () => {
  using kv = await Deno.openKv(":memory:");
  const { store, ids, clock, sweep } = await scene(kv, {
    retentionMs: MINUTE,
    dedupeWindowMs: 2 * MINUTE,
  });
  await using _ = store;
  assertEquals((await sweep(clock)).removed, 0, "not yet a minute old");
  assertEquals((await store.get(ids.A))?.state, "dispatched");
  clock.advance(MINUTE + 1);
  assertEquals((await sweep(clock)).removed, 2);
  assertEquals(await store.get(ids.A), undefined);
  assertEquals(await store.get(ids.B), undefined);
  await assertRejects(() => store.read(ids.A), Error, "not stored");
  assertEquals((await store.get(ids.C))?.state, "parked");
  assertEquals((await store.get(ids.D))?.state, "pending");
  const keys = await keysOf(kv);
  assertEquals(keys.chunk, 2, "only C's and D's bytes are left");
  assertEquals(keys.msg, 2);
  assertEquals(keys.done, undefined);
  const stats = await store.stats();
  assertEquals(
    [stats.stored, stats.dispatched, stats.parked, stats.pending],
    [4, 2, 1, 1],
  );
  assertEquals(stats.removed, 2);
  clock.advance(100 * MINUTE);
  assertEquals((await sweep(clock)).removed, 0, "C and D are not swept");
  assertEquals((await store.get(ids.C))?.state, "parked");
  assertEquals((await store.stats()).removed, 2);
});

Deno.test("retention: a duplicate key outlives its record inside the dedupe window (a resend still gets the first ACK), and goes with it past the window", async () => {
  using kv = await Deno.openKv(":memory:");
  {
    const { store, ids, clock, sweep } = await scene(kv, {
      retentionMs: MINUTE,
      dedupeWindowMs: 5 * MINUTE,
    });
    await using _ = store;
    clock.advance(MINUTE + 1);
    assertEquals((await sweep(clock)).removed, 2);
    assertEquals(await store.lookup("SND", "SFAC", "A"), ids.A);
    const again = await store.put(entryFor("A", "second A"));
    if (!again.duplicate) {
      throw new Error("A resend inside the window was stored");
    }
    assertEquals([again.id, Ack.parse(again.ack).text], [ids.A, "first A"]);
    assertEquals((await store.stats()).stored, 4, "the resend is not stored");
  }
  using other = await Deno.openKv(":memory:");
  {
    const { store, ids, clock, sweep } = await scene(other, {
      retentionMs: MINUTE,
      dedupeWindowMs: 30_000,
    });
    await using _ = store;
    clock.advance(MINUTE + 1);
    const swept = await sweep(clock);
    assertEquals([swept.removed, swept.dedupeKeys], [2, 2]);
    assertEquals(await store.lookup("SND", "SFAC", "A"), undefined);
    const again = await store.put(entryFor("A", "second A"));
    assert(!again.duplicate, "past the window a resend is a new message");
    assert(again.id !== ids.A);
    // C is parked: its record and its duplicate key stay.
    assertEquals(await store.lookup("SND", "SFAC", "C"), ids.C);
  }
});

Deno.test("retention: purge removes a parked (or dispatched) message with its bytes and duplicate key, and is counted; pending ones cannot be purged", async () => {
  using kv = await Deno.openKv(":memory:");
  const { store, ids } = await scene(kv, {});
  await using _ = store;
  assertEquals(await store.purge(ids.D), false, "pending: not purged");
  assertEquals(await store.purge("no-such-id"), false);
  assertEquals(await store.purge(ids.C), true);
  assertEquals(await store.purge(ids.C), false, "already gone");
  assertEquals(await store.get(ids.C), undefined);
  await assertRejects(() => store.read(ids.C), Error, "not stored");
  assertEquals(await store.lookup("SND", "SFAC", "C"), undefined);
  assertEquals(await store.purge(ids.A), true);
  let stats = await store.stats();
  assertEquals(
    [stats.parked, stats.pending, stats.dispatched, stats.purged],
    [0, 1, 2, 2],
  );
  assertEquals((await keysOf(kv)).parked, undefined);
  // A purged message is forgotten: a resend of it is stored as new.
  const again = await store.put(entryFor("C"));
  assert(!again.duplicate);
  stats = await store.stats();
  assertEquals([stats.stored, stats.pending], [5, 2]);
});

Deno.test("retention: a store under a steady load holds a bounded number of keys and a bounded file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.sqlite`;
  try {
    using kv = await Deno.openKv(path);
    await using store = await KvMessageStore.open(kv, {
      pollInterval: 5,
      retentionMs: 100,
      dedupeWindowMs: 100,
      sweepInterval: 50,
    });
    const consumer = store.consume(() => Promise.resolve({ outcome: "done" }));
    const fileSize = async () => {
      let size = 0;
      for (const suffix of ["", "-wal"]) {
        size += await Deno.stat(path + suffix).then((s) => s.size, () => 0);
      }
      return size;
    };
    const samples: { stored: number; keys: number; bytes: number }[] = [];
    const PHASES = 10;
    const PER_PHASE = 240;
    let next = 0;
    for (let phase = 0; phase < PHASES; phase++) {
      // 8 senders at once, as from 8 connections; then the consumer
      // catches up (a load above what it dispatches grows the backlog,
      // which no retention may remove).
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let i = 0; i < PER_PHASE / 8; i++) {
          await store.put(entryFor(`S-${next++}`));
        }
      }));
      await until(
        async () => (await store.stats()).pending === 0,
        "the backlog dispatched",
        60_000,
      );
      const keys = Object.values(await keysOf(kv)).reduce((a, b) => a + b, 0);
      samples.push({ stored: next, keys, bytes: await fileSize() });
    }
    await consumer.stop();
    const stats = await store.stats();
    console.log(
      `retention under load: stored=${stats.stored} removed=${stats.removed} keys per phase=${
        samples.map((s) => s.keys).join(",")
      } file KiB per phase=${
        samples.map((s) => Math.round(s.bytes / 1024)).join(",")
      }`,
    );
    const total = PHASES * PER_PHASE;
    assertEquals(stats.stored, total);
    // Without retention each message leaves 4 keys (record, bytes,
    // duplicate key, done entry): 9,600 at the end. With it the count
    // stays near what one phase brings, and never above what two bring.
    const later = samples.slice(PHASES / 2);
    const firstHalfMax = Math.max(
      ...samples.slice(0, PHASES / 2).map((s) => s.keys),
    );
    for (const sample of samples.slice(1)) {
      assert(
        sample.keys <= 2 * 4 * PER_PHASE,
        `keys after ${sample.stored} messages: ${sample.keys}, more than two phases leave without retention (${
          2 * 4 * PER_PHASE
        })`,
      );
    }
    for (const sample of later) {
      assert(
        sample.keys <= Math.max(2 * firstHalfMax, 2_000),
        `keys after ${sample.stored} messages: ${sample.keys} (first half at most ${firstHalfMax})`,
      );
      assert(sample.keys < sample.stored, "fewer keys than messages");
    }
    assert(stats.removed > total / 2, `removed ${stats.removed} of ${total}`);
    // The file stops growing: freed pages are used again.
    const fileAtHalf = samples[PHASES / 2 - 1].bytes;
    const fileAtEnd = samples[PHASES - 1].bytes;
    assert(
      fileAtEnd <= 1.5 * fileAtHalf,
      `file ${fileAtEnd} bytes at the end, ${fileAtHalf} at half time`,
    );
    // Once the load stops and retention passes, only counters are left.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await store.sweep();
    const left = await keysOf(kv);
    assertEquals(
      [left.msg, left.chunk, left.dedupe, left.done, left.ready],
      [undefined, undefined, undefined, undefined, undefined],
      JSON.stringify(left),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
