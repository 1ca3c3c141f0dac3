/**
 * The receiver's store (`KvMessageStore` and the `store` option): persist
 * before ACK, duplicates answered with the first ACK and never dispatched
 * twice, store failures answered with AE (never AA), large messages in
 * chunks, the consumer's retries, parking, claims and redelivery.
 *
 * KVs are `:memory:` or files under a temporary directory removed after.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client, type SendResult } from "../../src/client/client.ts";
import type { Dispatcher } from "../../src/dispatch/dispatcher.ts";
import type { Hl7Message } from "../../src/hl7/message.ts";
import { readMessage } from "../../src/hl7/message.ts";
import {
  type MessageStore,
  Receiver,
  type StoredDispatchContext,
} from "../../src/receiver/receiver.ts";
import {
  KvMessageStore,
  type StoreConsumer,
  type StoredMessageHandler,
  type StoreEntry,
} from "../../src/durable/kv_store.ts";
import { startConsumer } from "../../src/durable/kv_store_consumer.ts";
import { KvOutbox } from "../../src/durable/kv_outbox.ts";
import { Wakeup } from "../../src/durable/_wakeup.ts";
import { looks, TestClock } from "./_test_clock.ts";
import { accepted, replied } from "../_helpers.ts";

/** A small ADT^A01 from `app`/`fac` with the given control id. */
function hl7(controlId: string, app = "SND", fac = "SFAC"): string {
  return `MSH|^~\\&|${app}|${fac}|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** Waits until `check` holds, polling; fails after `ms`. */
async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 5_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The code of an HL7 send result, or its outcome. */
function codeOf(result: SendResult): string {
  return "code" in result ? result.code : result.outcome;
}

const FAST = { pollInterval: 10, retry: { initialDelay: 5, jitter: 0 } };

async function serve(
  store: MessageStore,
  dispatcher: Dispatcher,
  options: { dispatchTimeout?: number } = {},
) {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher,
    ...options,
  });
  const client = await Client.connect("127.0.0.1", receiver.port);
  return {
    receiver,
    client,
    async [Symbol.asyncDispose]() {
      await client.close();
      await receiver.stop();
    },
  };
}

Deno.test("store: a message is stored before its AA, and dispatched from the store", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  const seen: { id: string; attempt: number; messageId: string }[] = [];
  await using s = await serve(store, (message, ctx) => {
    const stored = ctx as StoredDispatchContext;
    if (message.kind === "hl7") {
      seen.push({
        id: message.header.controlId,
        attempt: stored.attempt,
        messageId: stored.messageId,
      });
    }
    return Ack.forMessage(message, "AA", { text: "ignored" });
  });
  const result = accepted(await s.client.send(hl7("S1")));
  assertEquals(result.ack.text, "Stored");
  // The ACK went out after the commit: the record is there with that ACK.
  const id = (await store.lookup("SND", "SFAC", "S1"))!;
  assert(id);
  const record = await store.get(id);
  assertEquals(new TextDecoder().decode(record?.ack), result.ack.toString());
  assertEquals(record?.peer.hostname, "127.0.0.1");
  await until(() => seen.length === 1, "the dispatch");
  assertEquals(seen, [{ id: "S1", attempt: 1, messageId: id }]);
  await until(
    async () => (await store.get(id))?.state === "dispatched",
    "the mark",
  );
  const stats = await store.stats();
  assertEquals([stats.stored, stats.pending, stats.dispatched], [1, 0, 1]);
});

Deno.test("store: a resend gets the ACK stored the first time and is not dispatched again", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  let dispatched = 0;
  await using s = await serve(store, () => {
    dispatched++;
  });
  const first = accepted(await s.client.send(hl7("DUP-1")));
  const again = accepted(await s.client.send(hl7("DUP-1")));
  assertEquals(again.ack.toString(), first.ack.toString());
  // Another facility's DUP-1 is another message.
  const other = accepted(await s.client.send(hl7("DUP-1", "SND", "OTHER")));
  assertNotEquals(other.ack.toString(), first.ack.toString());
  await until(() => dispatched === 2, "two dispatches");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assertEquals(dispatched, 2);
  const stats = await store.stats();
  assertEquals([stats.stored, stats.duplicates], [2, 1]);
});

Deno.test("store: messages with an empty MSH-10 are never taken for duplicates", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  await using s = await serve(store, () => {});
  accepted(await s.client.send(hl7("")));
  accepted(await s.client.send(hl7("")));
  assertEquals((await store.stats()).stored, 2);
});

Deno.test("store: the same message on two connections at once is stored once; both get its ACK", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  let dispatched = 0;
  await using s = await serve(store, () => {
    dispatched++;
  });
  await using other = await Client.connect("127.0.0.1", s.receiver.port);
  for (let i = 0; i < 20; i++) {
    const [a, b] = await Promise.all([
      s.client.send(hl7(`RACE-${i}`)),
      other.send(hl7(`RACE-${i}`)),
    ]);
    assertEquals(accepted(a).ack.toString(), accepted(b).ack.toString());
  }
  await until(() => dispatched === 20, "20 dispatches");
  const stats = await store.stats();
  assertEquals([stats.stored, stats.duplicates], [20, 20]);
});

Deno.test("store: non-HL7 payloads go to the dispatcher at once and are not stored", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  await using s = await serve(store, (message) => `got ${message.size}`);
  assertEquals(replied(await s.client.send("Hip hip hurray")).text, "got 14");
  assertEquals((await store.stats()).stored, 0);
});

Deno.test("store failure: a store that throws gets AE, never AA, and nothing is dispatched", async () => {
  let puts = 0;
  const failing: MessageStore = {
    put() {
      puts++;
      return Promise.reject(new Error("disk full\rMSH|injected"));
    },
    consume() {
      return { stop: () => Promise.resolve() };
    },
  };
  let dispatched = 0;
  await using s = await serve(failing, () => {
    dispatched++;
  });
  const result = await s.client.send(hl7("F1"));
  assertEquals(codeOf(result), "AE");
  if (result.outcome !== "error") throw new Error("Expected AE");
  assertStringIncludes(result.ack.text, "Cannot store message: disk full");
  assertEquals([puts, dispatched], [1, 0]);
});

Deno.test("store failure: a closed KV gets AE, never AA", async () => {
  const kv = await Deno.openKv(":memory:");
  await using store = await KvMessageStore.open(kv, FAST);
  await using s = await serve(store, () => {});
  accepted(await s.client.send(hl7("BEFORE")));
  kv.close();
  for (const id of ["C1", "C2", "C3"]) {
    assertEquals(codeOf(await s.client.send(hl7(id))), "AE");
  }
});

Deno.test("store failure: with commits failing at random, every AA'd message is stored and no AE'd one is", async () => {
  await using real = await KvMessageStore.open(":memory:", FAST);
  let n = 0;
  const flaky: MessageStore = {
    async put(entry) {
      // Fail a third of the commits, before or after the real one.
      const roll = n++ % 3;
      if (roll === 1) throw new Error("injected failure before commit");
      const result = await real.put(entry);
      if (roll === 2 && !result.duplicate) {
        // Committed, but the caller hears of a failure (a lost reply from
        // a remote KV): the sender gets AE and will resend.
        throw new Error("injected failure after commit");
      }
      return result;
    },
    consume: (handler) => real.consume(handler),
  };
  await using s = await serve(flaky, () => {});
  const codes = new Map<string, string>();
  for (let i = 0; i < 60; i++) {
    const id = `R-${i}`;
    codes.set(id, codeOf(await s.client.send(hl7(id))));
  }
  for (const [id, code] of codes) {
    assert(code === "AA" || code === "AE", `${id}: ${code}`);
    if (code === "AA") assert(await real.lookup("SND", "SFAC", id), id);
  }
  // Resending the AE'd ones until accepted stores each exactly once.
  for (const [id, code] of codes) {
    if (code === "AA") continue;
    for (let tries = 0; tries < 5; tries++) {
      if (codeOf(await s.client.send(hl7(id))) === "AA") break;
    }
  }
  const records = await Array.fromAsync(real.list());
  assertEquals(records.length, 60);
  assertEquals(new Set(records.map((r) => r.controlId)).size, 60);
});

Deno.test("store: a 4 MiB message is stored in chunks and read back exactly", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  const got: Uint8Array[] = [];
  await using s = await serve(store, (message) => {
    got.push(message.raw);
  });
  const header = new TextEncoder().encode(hl7("BIG-1"));
  const big = new Uint8Array(4 * 1024 * 1024);
  big.set(header);
  for (let i = header.length; i < big.length; i++) {
    // Printable bytes, with a segment break now and then.
    big[i] = i % 997 === 0 ? 0x0d : 0x20 + (i * 7919) % 95;
  }
  accepted(await s.client.send(big));
  const id = (await store.lookup("SND", "SFAC", "BIG-1"))!;
  assert(id);
  assertEquals(await store.read(id), big);
  await until(() => got.length === 1, "the dispatch");
  assertEquals(got[0], big);
  // A resend of the big message: no second copy, and its chunks are gone.
  accepted(await s.client.send(big));
  assertEquals((await store.stats()).stored, 1);
});

Deno.test("store: chunks of a large message whose commit failed are deleted; partial writes are swept at open", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.sqlite`;
  try {
    const big = new TextEncoder().encode(hl7("LARGE") + "X".repeat(700_000));
    const message = readMessage(big) as Hl7Message;
    const address = { hostname: "127.0.0.1", port: 1 };
    const entry = {
      message,
      ack: new Uint8Array([0x41]),
      peer: address,
      local: address,
      receivedAt: new Date(),
    };
    {
      await using store = await KvMessageStore.open(path);
      assertEquals((await store.put(entry)).duplicate, false);
      assertEquals((await store.put(entry)).duplicate, true);
    }
    using kv = await Deno.openKv(path);
    const chunkKeys = async () =>
      (await Array.fromAsync(kv.list({ prefix: ["mllp", "store", "chunk"] })))
        .map((e) => e.key[3]);
    // Only the first copy's chunks are left.
    assertEquals(new Set(await chunkKeys()).size, 1);
    // A writer that died between its chunks and its record.
    await kv.atomic()
      .set(["mllp", "store", "partial", "dead"], { at: 0, chunks: 2 })
      .set(["mllp", "store", "chunk", "dead", 0], new Uint8Array(10))
      .set(["mllp", "store", "chunk", "dead", 1], new Uint8Array(10))
      .commit();
    assertEquals(new Set(await chunkKeys()).size, 2);
    await (await KvMessageStore.open(path)).close();
    assertEquals(new Set(await chunkKeys()).size, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("consumer: a failing dispatcher is retried with backoff, then parked; requeue sends it again", async () => {
  await using store = await KvMessageStore.open(":memory:", {
    ...FAST,
    maxAttempts: 3,
  });
  let fail = true;
  const attempts: number[] = [];
  await using s = await serve(store, (_message, ctx) => {
    attempts.push((ctx as StoredDispatchContext).attempt);
    if (fail) throw new Error("downstream is down");
  });
  // The sender's ACK does not wait for the failing dispatcher.
  accepted(await s.client.send(hl7("P1")));
  const id = (await store.lookup("SND", "SFAC", "P1"))!;
  await until(
    async () => (await store.get(id))?.state === "parked",
    "parking",
  );
  assertEquals(attempts, [1, 2, 3]);
  const parked = await store.get(id);
  assertStringIncludes(parked?.lastError ?? "", "Gave up after 3 attempts");
  assertEquals((await store.stats()).parked, 1);
  fail = false;
  assert(await store.requeue(id));
  await until(
    async () => (await store.get(id))?.state === "dispatched",
    "the dispatch after requeue",
  );
  const stats = await store.stats();
  assertEquals([stats.parked, stats.pending, stats.dispatched], [0, 0, 1]);
});

Deno.test("consumer: AR from the dispatcher parks at once; AE is retried; a timeout is retried", async () => {
  await using store = await KvMessageStore.open(":memory:", {
    ...FAST,
    maxAttempts: 2,
  });
  const calls = new Map<string, number>();
  await using s = await serve(store, (message) => {
    if (message.kind !== "hl7") return;
    const id = message.header.controlId;
    calls.set(id, (calls.get(id) ?? 0) + 1);
    if (id === "AR") return Ack.forMessage(message, "AR", { text: "bad" });
    if (id === "AE") return Ack.forMessage(message, "AE");
    if (id === "SLOW") return new Promise(() => {}); // never answers
    // The timeout bounds the store's put on the connection too: long enough
    // that a busy machine never answers a stored message AE; SLOW still
    // runs into it, twice.
  }, { dispatchTimeout: 1_000 });
  for (const id of ["AR", "AE", "SLOW", "OK"]) {
    accepted(await s.client.send(hl7(id)));
  }
  await until(async () => (await store.stats()).pending === 0, "all settled");
  assertEquals(Object.fromEntries(calls), { AR: 1, AE: 2, SLOW: 2, OK: 1 });
  const states = Object.fromEntries(
    (await Array.fromAsync(store.list())).map((r) => [r.controlId, r.state]),
  );
  assertEquals(states, {
    AR: "parked",
    AE: "parked",
    SLOW: "parked",
    OK: "dispatched",
  });
  const ar = (await Array.fromAsync(store.list({ state: "parked" })))
    .find((r) => r.controlId === "AR");
  assertEquals(ar?.lastError, "Dispatcher answered AR: bad");
});

Deno.test("consumer: messages are dispatched in arrival order, and a slow dispatcher does not hold up ACKs", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  const order: string[] = [];
  const { promise: gate, resolve: open } = Promise.withResolvers<void>();
  await using s = await serve(store, async (message) => {
    await gate;
    if (message.kind === "hl7") order.push(message.header.controlId);
  });
  const ids = Array.from({ length: 30 }, (_, i) => `O-${i}`);
  // All 30 are acknowledged while the dispatcher is blocked.
  for (const id of ids) accepted(await s.client.send(hl7(id)));
  assertEquals(order, []);
  open();
  await until(() => order.length === 30, "30 dispatches");
  assertEquals(order, ids);
});

/** A store entry for the message with this control id. */
function entryFor(controlId: string): StoreEntry {
  const address = { hostname: "127.0.0.1", port: 1 };
  return {
    message: readMessage(hl7(controlId)) as Hl7Message,
    ack: new Uint8Array([0x41]),
    peer: address,
    local: address,
    receivedAt: new Date(),
  };
}

/**
 * A consumer of the store under `["mllp", "store"]` in `kv`, as
 * `KvMessageStore.consume` starts one, with the claims measured on `clock`.
 */
function consumerOn(
  kv: Deno.Kv,
  owner: string,
  clock: TestClock,
  leaseMs: number,
  handler: StoredMessageHandler,
): StoreConsumer {
  return startConsumer({
    kv,
    prefix: ["mllp", "store"],
    owner,
    maxAttempts: 10,
    retry: FAST.retry,
    leaseMs,
    pollInterval: FAST.pollInterval,
    wakeup: new Wakeup(),
    closing: () => false,
    now: clock.now,
  }, handler);
}

Deno.test("consumer: two consumers on one KV never dispatch the same message while their claims hold", async () => {
  using kv = await Deno.openKv(":memory:");
  await using store = await KvMessageStore.open(kv, FAST);
  for (let i = 0; i < 40; i++) await store.put(entryFor(`TWO-${i}`));
  // The claims cannot run out: the clock stands still.
  const clock = new TestClock();
  const calls: string[] = [];
  const handler = (who: string) => async (m: { id: string }) => {
    calls.push(`${who}:${m.id}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
    return { outcome: "done" as const };
  };
  const ca = consumerOn(kv, "a", clock, 300, handler("a"));
  const cb = consumerOn(kv, "b", clock, 300, handler("b"));
  await until(
    async () => (await store.stats()).pending === 0,
    "all dispatched",
  );
  await ca.stop();
  await cb.stop();
  const ids = calls.map((c) => c.split(":")[1]);
  assertEquals(ids.length, 40);
  assertEquals(new Set(ids).size, 40);
});

Deno.test("consumer: a dead consumer's claim is taken once its lease runs out, not before, as attempt 2", async () => {
  using kv = await Deno.openKv(":memory:");
  await using store = await KvMessageStore.open(kv, FAST);
  const clock = new TestClock();
  const { id } = await store.put(entryFor("ORPHAN"));
  // What a consumer that died while holding the message leaves behind.
  const key = ["mllp", "store", "ready", id];
  const entry = await kv.get<Record<string, unknown>>(key);
  const leaseUntil = clock.now() + 200;
  await kv.set(key, {
    ...entry.value,
    attempts: 1,
    leaseOwner: "dead",
    leaseUntil,
  });
  const seen: number[] = [];
  const consumer = consumerOn(kv, "b", clock, 300, (m) => {
    seen.push(m.attempt);
    return Promise.resolve({ outcome: "done" });
  });
  await looks(clock, 3, "three looks at the claimed message");
  clock.advance(199);
  await looks(clock, 3, "three looks 1 ms before the lease runs out");
  assertEquals(seen, [], "not before the lease ran out");
  clock.advance(1);
  await until(() => seen.length === 1, "the takeover");
  await consumer.stop();
  assertEquals(seen, [2]);
  assertEquals((await store.get(id))?.state, "dispatched");
});

Deno.test("consumer: a claim that runs out mid-dispatch (a consumer stalled past its lease) lets another consumer dispatch the message again, as the next attempt with the same id; it is marked dispatched once", async () => {
  using kv = await Deno.openKv(":memory:");
  await using store = await KvMessageStore.open(kv, FAST);
  const clock = new TestClock();
  // A lease whose renewal (every third of it) cannot come during the test.
  const LEASE = 60_000;
  const { id } = await store.put(entryFor("STALLED"));
  const calls: [string, string, number][] = [];
  const inHand = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const a = consumerOn(kv, "a", clock, LEASE, async (m) => {
    calls.push(["a", m.id, m.attempt]);
    inHand.resolve();
    await release.promise;
    return { outcome: "done" };
  });
  await inHand.promise;
  // a stalls (a paused process, a KV it cannot commit to) past its lease.
  clock.advance(LEASE + 1);
  const b = consumerOn(kv, "b", clock, LEASE, (m) => {
    calls.push(["b", m.id, m.attempt]);
    return Promise.resolve({ outcome: "done" });
  });
  await until(
    async () => (await store.get(id))?.state === "dispatched",
    "the second consumer's dispatch",
  );
  // a wakes up and finishes: its claim is gone, so its mark fails.
  release.resolve();
  await a.stop();
  await b.stop();
  assertEquals(calls, [["a", id, 1], ["b", id, 2]]);
  const record = await store.get(id);
  assertEquals([record?.state, record?.attempts], ["dispatched", 2]);
  const stats = await store.stats();
  assertEquals([stats.dispatched, stats.pending], [1, 0]);
});

/** `kv`, whose commits fail while `fail()` says so. */
function withFailingCommits(kv: Deno.Kv, fail: () => boolean): Deno.Kv {
  return new Proxy(kv, {
    get(target, property) {
      if (property === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () =>
            fail()
              ? Promise.reject(new Error("Cannot commit: injected failure"))
              : commit();
          return op;
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("consumer: when the commit that marks a message dispatched fails, it is dispatched again once its claim runs out, as the next attempt with the same id", async () => {
  using kv = await Deno.openKv(":memory:");
  await using store = await KvMessageStore.open(kv, FAST);
  const clock = new TestClock();
  const LEASE = 60_000;
  const { id } = await store.put(entryFor("UNMARKED"));
  let failNext = false;
  const flaky = withFailingCommits(kv, () => {
    const fail = failNext;
    failNext = false;
    return fail;
  });
  const calls: [string, number][] = [];
  const consumer = consumerOn(flaky, "c", clock, LEASE, (m) => {
    calls.push([m.id, m.attempt]);
    // The consumer's next commit is the one that marks it dispatched.
    if (m.attempt === 1) failNext = true;
    return Promise.resolve({ outcome: "done" });
  });
  await until(() => calls.length === 1 && !failNext, "the failed mark");
  // While the claim holds, nobody dispatches it again.
  await looks(clock, 3, "three looks at the claimed message");
  assertEquals(calls, [[id, 1]]);
  assertEquals((await store.get(id))?.state, "pending");
  clock.advance(LEASE);
  await until(
    async () => (await store.get(id))?.state === "dispatched",
    "the dispatch after the claim ran out",
  );
  await consumer.stop();
  assertEquals(calls, [[id, 1], [id, 2]]);
  assertEquals((await store.stats()).dispatched, 1);
});

Deno.test("consumer: stopping the receiver waits for the dispatch in hand, up to its deadline", async () => {
  await using store = await KvMessageStore.open(":memory:", FAST);
  let finished = false;
  let aborted = false;
  let started = false;
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: (_message, ctx) =>
      new Promise<void>((resolve) => {
        started = true;
        ctx.signal.addEventListener("abort", () => {
          aborted = true;
          resolve();
        });
      }),
  });
  {
    await using client = await Client.connect("127.0.0.1", receiver.port);
    accepted(await client.send(hl7("HANG")));
  }
  await until(async () => {
    const id = await store.lookup("SND", "SFAC", "HANG");
    return started && (await store.get(id ?? ""))?.attempts === 1;
  }, "the dispatch in hand");
  await receiver.stop({ deadline: 50 });
  finished = true;
  assert(aborted && finished);
  // Let go of, not parked: the next consumer takes it at once.
  const id = (await store.lookup("SND", "SFAC", "HANG"))!;
  const record = await store.get(id);
  assertEquals([record?.state, record?.leaseOwner], ["pending", undefined]);
});

// --- Without permission --------------------------------------------------------

Deno.test({
  name:
    "open: KvMessageStore and KvOutbox on a file without read and write permission throw NotCapable in one line naming both flags",
  permissions: { read: false, write: false, net: false },
  async fn() {
    const path = "./no-permission-test.sqlite";
    const expected =
      `Cannot open Deno KV "${path}": no read and write permission for "${path}"; run Deno with --allow-read=${path} --allow-write=${path} (or -A for every permission, or -P for the permission set in deno.json)`;
    const store = await assertRejects(() => KvMessageStore.open(path));
    assertInstanceOf(store, Deno.errors.NotCapable);
    assertEquals(store.message, expected);
    const outbox = await assertRejects(() =>
      KvOutbox.open(path, {
        destination: { hostname: "127.0.0.1", port: 2575 },
      })
    );
    assertInstanceOf(outbox, Deno.errors.NotCapable);
    assertEquals(outbox.message, expected);
    // ":memory:" needs no permission.
    await using memory = await KvMessageStore.open(":memory:");
    assertEquals((await memory.stats()).pending, 0);
  },
});

Deno.test({
  name:
    "open: read permission alone is not enough for a KV file, and the message names the write flag it lacks",
  permissions: { read: true, write: false, net: false },
  async fn() {
    const error = await assertRejects(() =>
      KvMessageStore.open("./no-permission-test.sqlite")
    );
    assertInstanceOf(error, Deno.errors.NotCapable);
    assertEquals(
      error.message,
      'Cannot open Deno KV "./no-permission-test.sqlite": no write permission for "./no-permission-test.sqlite"; run Deno with --allow-write=./no-permission-test.sqlite (or -A for every permission, or -P for the permission set in deno.json)',
    );
  },
});
