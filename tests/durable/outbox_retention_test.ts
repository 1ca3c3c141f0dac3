/**
 * Retention and group commit in `KvOutbox`: acknowledged messages (record
 * and bytes) are removed once older than `retentionMs`, parked ones stay
 * until requeued or purged, `stats()` counts what was removed; an outbox
 * under a steady load holds a bounded number of keys; and enqueues from
 * many callers at once share commits, numbered in call order.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { KvOutbox } from "../../src/durable/kv_outbox.ts";
import { sweepOutbox } from "../../src/durable/kv_outbox_retention.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { TestClock } from "./_test_clock.ts";
import { WatchedKv } from "./_watched_kv.ts";

function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** A receiver that answers AR to control ids starting with BAD, else AA. */
function answering(): Promise<Receiver> {
  return Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) =>
      message.kind === "hl7"
        ? Ack.forMessage(
          message,
          message.header.controlId.startsWith("BAD") ? "AR" : "AA",
        )
        : undefined,
  });
}

/** The keys under a prefix, by their first part after it. */
async function keysOf(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for await (const entry of kv.list({ prefix })) {
    const part = String(entry.key[prefix.length]);
    counts[part] = (counts[part] ?? 0) + 1;
  }
  return counts;
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

const MINUTE = 60_000;

Deno.test("outbox retention: acknowledged messages are removed once older than retentionMs, not before, and counted; parked ones stay", async () => {
  await using receiver = await answering();
  using kv = await Deno.openKv(":memory:");
  await using outbox = await KvOutbox.open(kv, {
    destination: { hostname: "127.0.0.1", port: receiver.port },
    retentionMs: MINUTE,
    sweepInterval: 0,
  });
  const base = ["mllp", "outbox", outbox.destination];
  for (const id of ["OK-1", "BAD-2", "OK-3"]) await outbox.enqueue(hl7(id));
  outbox.start();
  await outbox.waitFor(3);
  await outbox.stop();
  const clock = new TestClock();
  const sweep = () =>
    sweepOutbox({
      kv,
      base,
      retentionMs: MINUTE,
      partialTtl: 60 * MINUTE,
      now: clock.now,
    });
  assertEquals((await sweep()).removed, 0, "not yet a minute old");
  assertEquals((await outbox.get(1))?.state, "acked");
  clock.advance(MINUTE + 1);
  assertEquals((await sweep()).removed, 2);
  assertEquals(await outbox.get(1), undefined);
  assertEquals(await outbox.get(3), undefined);
  await assertRejects(() => outbox.read(1), Error, "not queued");
  assertEquals((await outbox.get(2))?.state, "parked");
  const keys = await keysOf(kv, base);
  assertEquals([keys.item, keys.chunk, keys.done], [1, 1, undefined]);
  const stats = await outbox.stats();
  assertEquals(
    [stats.enqueued, stats.depth, stats.parked, stats.removed],
    [3, 0, 1, 2],
  );
  clock.advance(100 * MINUTE);
  assertEquals((await sweep()).removed, 0, "parked ones are not swept");
  assertEquals((await outbox.get(2))?.state, "parked");
});

Deno.test("outbox retention: purge removes a parked or acknowledged message and its bytes, and is counted; a pending one cannot be purged", async () => {
  await using receiver = await answering();
  using kv = await Deno.openKv(":memory:");
  await using outbox = await KvOutbox.open(kv, {
    destination: { hostname: "127.0.0.1", port: receiver.port },
  });
  const base = ["mllp", "outbox", outbox.destination];
  for (const id of ["OK-1", "BAD-2"]) await outbox.enqueue(hl7(id));
  outbox.start();
  await outbox.waitFor(2);
  await outbox.stop();
  await outbox.enqueue(hl7("LATER-3"));
  assertEquals(await outbox.purge(3), false, "pending: not purged");
  assertEquals(await outbox.purge(99), false);
  assertEquals(await outbox.purge(2), true);
  assertEquals(await outbox.purge(2), false, "already gone");
  assertEquals(await outbox.purge(1), true);
  assertEquals([await outbox.get(1), await outbox.get(2)], [
    undefined,
    undefined,
  ]);
  const keys = await keysOf(kv, base);
  assertEquals([keys.item, keys.chunk, keys.parked], [1, 1, undefined]);
  const stats = await outbox.stats();
  assertEquals(
    [stats.depth, stats.parked, stats.purged, stats.enqueued],
    [1, 0, 2, 3],
  );
});

Deno.test("outbox group commit: enqueues from many callers at once share commits, numbered in call order, each returning after its commit", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using outbox = await KvOutbox.open(watched.kv, {
    destination: { hostname: "127.0.0.1", port: 2575 },
  });
  watched.hold();
  const settled: number[] = [];
  const enqueue = (id: string) =>
    outbox.enqueue(hl7(id)).then((result) => {
      settled.push(result.seq);
      return result;
    });
  const first = enqueue("Q-0");
  await until(() => watched.commits.length === 1, "the first commit");
  const rest = Array.from({ length: 20 }, (_, i) => enqueue(`Q-${i + 1}`));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(settled, [], "nothing returns while its commit is held");
  watched.release();
  const results = await Promise.all([first, ...rest]);
  assertEquals(
    results.map((r) => [r.seq, r.controlId]),
    Array.from({ length: 21 }, (_, i) => [i + 1, `Q-${i}`]),
  );
  const writes = watched.setting(
    ["mllp", "outbox", outbox.destination],
    "item",
  );
  assertEquals(
    writes.map((c) => c.sets.filter((k) => k[3] === "item").length),
    [1, 20],
  );
  for (const commit of writes) assert(await commit.done);
  assertEquals((await outbox.stats()).enqueued, 21);
});

Deno.test("outbox retention: an outbox under a steady load holds a bounded number of keys", async () => {
  await using receiver = await answering();
  const dir = await Deno.makeTempDir();
  try {
    using kv = await Deno.openKv(`${dir}/outbox.sqlite`);
    await using outbox = await KvOutbox.open(kv, {
      destination: { hostname: "127.0.0.1", port: receiver.port },
      retentionMs: 100,
      sweepInterval: 50,
      pollInterval: 5,
    });
    const base = ["mllp", "outbox", outbox.destination];
    outbox.start();
    const PHASES = 8;
    const PER_PHASE = 150;
    const samples: number[] = [];
    let last = 0;
    for (let phase = 0; phase < PHASES; phase++) {
      for (let i = 0; i < PER_PHASE; i++) {
        last = (await outbox.enqueue(hl7(`L-${phase}-${i}`))).seq;
      }
      await outbox.waitFor(last);
      samples.push(
        Object.values(await keysOf(kv, base)).reduce((a, b) => a + b, 0),
      );
    }
    await until(
      async () => (await outbox.stats()).removed >= PHASES * PER_PHASE - 10,
      "removed",
      5_000,
    ).catch(() => {});
    const stats = await outbox.stats();
    console.log(
      `outbox retention under load: enqueued=${stats.enqueued} removed=${stats.removed} keys per phase=${
        samples.join(",")
      }`,
    );
    const total = PHASES * PER_PHASE;
    // Without retention each message leaves 3 keys (record, bytes, done
    // entry): 3,600 at the end. With it, never more than two phases leave.
    for (const [i, keys] of samples.entries()) {
      if (i === 0) continue;
      assert(
        keys <= 2 * 3 * PER_PHASE,
        `keys after phase ${
          i + 1
        }: ${keys}, more than two phases leave without retention (${
          2 * 3 * PER_PHASE
        })`,
      );
    }
    const firstHalfMax = Math.max(...samples.slice(0, PHASES / 2));
    for (const [i, keys] of samples.entries()) {
      if (i < PHASES / 2) continue;
      assert(
        keys <= Math.max(2 * firstHalfMax, 600),
        `keys after phase ${
          i + 1
        }: ${keys} (first half at most ${firstHalfMax})`,
      );
    }
    assert(stats.removed > total / 2, `removed ${stats.removed} of ${total}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
