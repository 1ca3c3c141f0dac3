/**
 * Group commit in `KvMessageStore`: messages that arrive while a commit is
 * in flight are written together in the next one; none is acknowledged
 * before the commit that holds it; resends of one id that land in one group
 * are stored once; and a group stays inside Deno KV's limits on a commit.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import { type Hl7Message, readMessage } from "../../src/hl7/message.ts";
import { type MessageStore, Receiver } from "../../src/receiver/receiver.ts";
import {
  KvMessageStore,
  type StoreEntry,
  type StorePutResult,
} from "../../src/durable/kv_store.ts";
import { WatchedKv } from "./_watched_kv.ts";
import { GroupCommitter } from "../../src/durable/_kv_group.ts";
import { accepted } from "../_helpers.ts";

const PREFIX = ["mllp", "store"];

/** A small ADT^A01 with the given control id, padded to `size` bytes. */
function hl7(controlId: string, size = 0): string {
  const text =
    `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
  return size > text.length
    ? text + "NTE|1||" + "x".repeat(size - text.length - 8) + "\r"
    : text;
}

function entryOf(text: string, ackText = "Stored"): StoreEntry {
  const message = readMessage(text) as Hl7Message;
  const address = { hostname: "127.0.0.1", port: 2575 };
  return {
    message,
    ack: Ack.forMessage(message, "AA", { text: ackText }).toBytes(),
    peer: address,
    local: address,
    receivedAt: new Date(),
  };
}

/** Waits until `check` holds, polling; fails after `ms`. */
async function until(check: () => boolean, what: string, ms = 5_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

Deno.test("group commit: puts that arrive while a commit is in flight share the next commit, and none resolves before the commit that holds it", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv);
  watched.hold();
  const settled: string[] = [];
  const put = (id: string) =>
    store.put(entryOf(hl7(id))).then((result) => {
      settled.push(id);
      return result;
    });
  const first = put("G-0");
  await until(() => watched.commits.length === 1, "the first commit");
  const rest = Array.from({ length: 20 }, (_, i) => put(`G-${i + 1}`));
  await tick();
  assertEquals(settled, [], "nothing resolves while its commit is held");
  watched.release();
  const results = await Promise.all([first, ...rest]);
  assert(results.every((r) => !r.duplicate));
  const writes = watched.setting(PREFIX, "chunk");
  assertEquals(
    writes.map((c) => c.sets.filter((k) => k[2] === "msg").length),
    [1, 20],
    "the 20 that waited share one commit",
  );
  for (const commit of writes) assert(await commit.done);
  for (let i = 0; i <= 20; i++) {
    assert(await store.lookup("SND", "SFAC", `G-${i}`), `G-${i} stored`);
  }
  assertEquals((await store.stats()).stored, 21);
});

Deno.test("group commit: through a receiver, messages from 16 connections that arrive together are written in one commit and acknowledged only after it", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv, {
    pollInterval: 10,
  });
  let entered = 0;
  const counting: MessageStore = {
    put: (entry) => {
      entered++;
      return store.put(entry);
    },
    consume: (handler) => store.consume(handler),
  };
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store: counting,
    dispatcher: () => {},
  });
  const clients = await Promise.all(
    Array.from(
      { length: 16 },
      () => Client.connect("127.0.0.1", receiver.port),
    ),
  );
  try {
    watched.hold();
    let answered = 0;
    const sends = clients.map((client, i) =>
      client.send(hl7(`R-${i}`)).then((result) => {
        answered++;
        return result;
      })
    );
    await until(() => entered === 16, "16 messages at the store");
    await tick();
    assertEquals(answered, 0, "no ACK before the commit");
    watched.release();
    for (const result of await Promise.all(sends)) accepted(result);
    const writes = watched.setting(PREFIX, "chunk");
    assertEquals(writes.length, 2, "one commit, then the 15 that waited");
    assertEquals(
      writes.reduce(
        (n, c) => n + c.sets.filter((k) => k[2] === "msg").length,
        0,
      ),
      16,
    );
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});

Deno.test("group commit: resends of one id in one group are stored once, all get the first ACK, and each is counted as a duplicate", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv);
  const x = await store.put(entryOf(hl7("X"), "first X"));
  watched.hold();
  const blocker = store.put(entryOf(hl7("W")));
  await until(() => watched.commits.length === 2, "the held commit");
  // Y three times (each copy with its own ACK, as a receiver builds one per
  // arrival), Z once, and a resend of X, which is already stored.
  const group = [
    store.put(entryOf(hl7("Y"), "first Y")),
    store.put(entryOf(hl7("Y"), "second Y")),
    store.put(entryOf(hl7("Z"), "only Z")),
    store.put(entryOf(hl7("Y"), "third Y")),
    store.put(entryOf(hl7("X"), "second X")),
  ];
  watched.release();
  await blocker;
  const [y1, y2, z, y3, x2] = await Promise.all(group);
  const ackText = (result: StorePutResult) =>
    result.duplicate ? Ack.parse(result.ack).text : "stored";
  assertEquals(
    [y1, y2, z, y3, x2].map((r) => [r.duplicate, ackText(r)]),
    [
      [false, "stored"],
      [true, "first Y"],
      [false, "stored"],
      [true, "first Y"],
      [true, "first X"],
    ],
  );
  assertEquals([y2.id, y3.id, x2.id], [y1.id, y1.id, x.id]);
  const stats = await store.stats();
  assertEquals([stats.stored, stats.duplicates], [4, 3]);
  const records = await Array.fromAsync(store.list());
  assertEquals(records.map((r) => r.controlId).sort(), ["W", "X", "Y", "Z"]);
});

Deno.test("group commit: a group stays inside Deno KV's limits on one commit (count, checks, bytes)", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv);
  watched.hold();
  const blocker = store.put(entryOf(hl7("HOLD")));
  await until(() => watched.commits.length === 1, "the held commit");
  // 150 messages of 20 KiB (3 MB, 150 duplicate checks), one of 500 KiB
  // (written with its record) and one of 700 KiB (written ahead in chunks).
  const texts = [
    ...Array.from({ length: 150 }, (_, i) => hl7(`L-${i}`, 20 * 1024)),
    hl7("L-500K", 500 * 1024),
    hl7("L-700K", 700 * 1024),
  ];
  const puts = texts.map((text) => store.put(entryOf(text)));
  await tick();
  watched.release();
  await blocker;
  const results = await Promise.all(puts);
  assert(results.every((r) => !r.duplicate));
  for (const [i, result] of results.entries()) {
    assertEquals(
      new TextDecoder().decode(await store.read(result.id)),
      texts[i],
    );
  }
  const groups = watched.setting(PREFIX, "chunk").slice(1);
  assert(groups.length < texts.length, "messages were grouped");
  for (const commit of groups) {
    assert(commit.sets.filter((k) => k[2] === "msg").length <= 100);
    assert(await commit.done, "no commit of a group was refused");
  }
  assertEquals((await store.stats()).stored, texts.length + 1);
});

Deno.test("group commit: the consumer goes on dispatching while a message's mark is committed, and the marks made meanwhile share the next commit", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv, {
    pollInterval: 10,
  });
  for (let i = 0; i < 34; i++) await store.put(entryOf(hl7(`M-${i}`)));
  const marks = (commit: { deletes: Deno.KvKey[] }) =>
    commit.deletes.filter((key) => key[2] === "ready").length;
  // Hold the first commit that takes a message out of the queue.
  watched.hold((commit) => marks(commit) > 0);
  const handled: string[] = [];
  const consumer = store.consume((message) => {
    handled.push(message.id);
    return Promise.resolve({ outcome: "done" });
  });
  try {
    // The consumer claims 32 at a time: all 32 are handled while the first
    // one's mark waits.
    await until(() => handled.length === 32, "32 handled during the held mark");
    watched.release();
    await until(() => handled.length === 34, "all 34 handled");
    let stats = await store.stats();
    for (const end = Date.now() + 5_000; stats.dispatched < 34;) {
      if (Date.now() > end) throw new Error("Not all marked dispatched");
      await tick();
      stats = await store.stats();
    }
  } finally {
    watched.release();
    await consumer.stop();
  }
  const marking = watched.commits.filter((c) => marks(c) > 0);
  assertEquals(marking.map(marks).slice(0, 2), [1, 31]);
  assertEquals(marking.map(marks).reduce((a, b) => a + b, 0), 34);
  assertEquals(new Set(handled).size, 34, "each handled once");
  const records = await Array.fromAsync(store.list({ state: "dispatched" }));
  assertEquals(records.length, 34);
});

Deno.test("group commit: after a shared commit the next group waits briefly for as many writers, so that concurrent callers stay in one group; a lone writer never waits", async () => {
  interface Item {
    resolve(): void;
    fail(error: unknown): void;
  }
  const groups: number[] = [];
  const committer = new GroupCommitter<Item>(async (group) => {
    groups.push(group.length);
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const item of group) item.resolve();
  });
  const cost = { bytes: 1, keyBytes: 1 };
  const add = () => {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    committer.add({ resolve, fail: reject }, cost);
    return promise;
  };
  // 16 callers at once: the first goes alone, the others share the next.
  await Promise.all(Array.from({ length: 16 }, add));
  assertEquals(groups, [1, 15]);
  // The same 16 again, as each gets its answer and sends the next one a
  // moment apart (as connections do): the first waits for the others.
  groups.length = 0;
  const round: Promise<void>[] = [];
  for (let i = 0; i < 16; i++) {
    round.push(add());
    await Promise.resolve();
  }
  await Promise.all(round);
  assertEquals(groups, [16]);
  // After a quiet spell, a lone caller's commit starts at once.
  await new Promise((resolve) => setTimeout(resolve, 50));
  groups.length = 0;
  const alone = add();
  assertEquals(groups, [1], "written without waiting");
  await alone;
  // And while callers come one at a time, none waits.
  // (A wait for company would be a timer of 1 ms or more: the write comes
  // before a 0 ms timer.)
  for (let i = 0; i < 3; i++) {
    const one = add();
    await new Promise((resolve) => setTimeout(resolve, 0));
    assertEquals(groups.length, 2 + i, "written without waiting");
    await one;
  }
});

Deno.test("group commit: the consumer reads the bytes of a claimed batch of small messages in one read, so their marks can share commits", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv, {
    pollInterval: 10,
  });
  for (let i = 0; i < 8; i++) await store.put(entryOf(hl7(`B-${i}`)));
  const handled: string[] = [];
  const consumer = store.consume((message) => {
    handled.push(message.id);
    return Promise.resolve({ outcome: "done" });
  });
  try {
    let stats = await store.stats();
    for (const end = Date.now() + 5_000; stats.dispatched < 8;) {
      if (Date.now() > end) throw new Error("Not all marked dispatched");
      await tick();
      stats = await store.stats();
    }
  } finally {
    await consumer.stop();
  }
  const chunkReads = watched.reads.filter((keys) =>
    keys.some((key) => key[2] === "chunk")
  );
  assertEquals(chunkReads.map((keys) => keys.length), [8]);
  assertEquals(new Set(handled).size, 8);
});

Deno.test("group commit: a consumer with a backlog claims up to 32 messages in one commit", async () => {
  using real = await Deno.openKv(":memory:");
  const watched = new WatchedKv(real);
  await using store = await KvMessageStore.open(watched.kv, {
    pollInterval: 10,
  });
  for (let i = 0; i < 40; i++) await store.put(entryOf(hl7(`C-${i}`)));
  const before = watched.commits.length;
  const consumer = store.consume(() => Promise.resolve({ outcome: "done" }));
  try {
    let stats = await store.stats();
    for (const end = Date.now() + 5_000; stats.dispatched < 40;) {
      if (Date.now() > end) throw new Error("Not all marked dispatched");
      await tick();
      stats = await store.stats();
    }
  } finally {
    await consumer.stop();
  }
  const claims = watched.commits.slice(before).filter((c) =>
    c.deletes.length === 0 && c.sets.some((key) => key[2] === "ready")
  ).map((c) => c.sets.filter((key) => key[2] === "ready").length);
  assertEquals(claims, [32, 8]);
});
