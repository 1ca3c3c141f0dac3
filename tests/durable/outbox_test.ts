/**
 * The durable outbound queue (`KvOutbox`): committed before `enqueue`
 * returns, delivered in order, retried with backoff while the receiver is
 * down, parked on AE/AR and unknown outcomes, resent with the same control
 * id (flagged) after a crash mid-send, one worker per destination, 4 MiB
 * messages, and the stats behind the gauges.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { HeaderError } from "../../src/errors.ts";
import {
  KvOutbox,
  type OutboxDestination,
  type OutboxRecord,
  type OutboxRetryDetail,
} from "../../src/durable/kv_outbox.ts";
import { OutboxWorker } from "../../src/durable/kv_outbox_worker.ts";
import { Wakeup } from "../../src/durable/_wakeup.ts";
import { TestClock } from "./_test_clock.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { FaultPeer } from "../_fault_peer.ts";

function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

const FAST_RETRY = { initialDelay: 20, maxDelay: 100, jitter: 0 };

/** A receiver that records the control ids it gets, in order. */
async function recordingReceiver(port = 0, answer?: (id: string) => string) {
  const arrivals: string[] = [];
  const receiver = await Receiver.start({
    port,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      if (message.kind !== "hl7") return;
      const id = message.header.controlId;
      arrivals.push(id);
      const code = (answer?.(id) ?? "AA") as "AA" | "AE" | "AR";
      return Ack.forMessage(message, code, { text: `${code} for ${id}` });
    },
  });
  return { receiver, arrivals };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

Deno.test("outbox: enqueue commits in order; the worker delivers in order and records each ACK", async () => {
  const { receiver, arrivals } = await recordingReceiver();
  await using _r = receiver;
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port: receiver.port },
  });
  const ids = Array.from({ length: 50 }, (_, i) => `IN-${i}`);
  const seqs = [];
  for (const id of ids) seqs.push((await outbox.enqueue(hl7(id))).seq);
  assertEquals(seqs, ids.map((_, i) => i + 1));
  const before = await outbox.stats();
  assertEquals([before.depth, before.parked, before.enqueued], [50, 0, 50]);
  assert(before.oldestAgeMs >= 0);
  outbox.start();
  const last = await outbox.waitFor(50);
  assertEquals(last.state, "acked");
  assertEquals(arrivals, ids);
  const records = await Array.fromAsync(outbox.list());
  assert(records.every((r) => r.state === "acked" && r.ackCode === "AA"));
  assert(records.every((r) => !r.possibleDuplicate && r.attempts === 1));
  assertEquals(records[3].ackText, "AA for IN-3");
  const after = await outbox.stats();
  assertEquals([after.depth, after.oldestAgeMs, after.parked], [0, 0, 0]);
});

Deno.test("outbox: AE and AR are parked, later messages still go; requeue sends a parked one again", async () => {
  let reject = true;
  const { receiver, arrivals } = await recordingReceiver(
    0,
    (id) =>
      id === "BAD-AR" && reject
        ? "AR"
        : id === "BAD-AE" && reject
        ? "AE"
        : "AA",
  );
  await using _r = receiver;
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port: receiver.port },
  });
  const parked: string[] = [];
  outbox.addEventListener("parked", (e) => parked.push(e.detail.controlId!));
  for (const id of ["OK-1", "BAD-AR", "BAD-AE", "OK-2"]) {
    await outbox.enqueue(hl7(id));
  }
  outbox.start();
  assertEquals((await outbox.waitFor(4)).state, "acked");
  assertEquals(parked, ["BAD-AR", "BAD-AE"]);
  assertEquals((await outbox.get(2))?.reason, "AR: AR for BAD-AR");
  assertEquals((await outbox.get(3))?.reason, "AE: AE for BAD-AE");
  assertEquals((await outbox.stats()).parked, 2);
  reject = false;
  assert(await outbox.requeue(2));
  assertEquals((await outbox.waitFor(2)).state, "acked");
  assertEquals(arrivals, ["OK-1", "BAD-AR", "BAD-AE", "OK-2", "BAD-AR"]);
  const stats = await outbox.stats();
  assertEquals([stats.depth, stats.parked], [0, 1]);
});

Deno.test("outbox: while the receiver is down it retries with backoff, in order, without duplicates", async () => {
  const port = freePort();
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port, connectTimeout: 500 },
    retry: FAST_RETRY,
  });
  const retries: OutboxRetryDetail[] = [];
  outbox.addEventListener("retrying", (e) => retries.push(e.detail));
  for (let i = 0; i < 5; i++) await outbox.enqueue(hl7(`DOWN-${i}`));
  outbox.start();
  while (retries.length < 3) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert(retries.every((r) => !r.written && r.record.controlId === "DOWN-0"));
  assertEquals(retries.map((r) => r.delayMs).slice(0, 3), [20, 40, 80]);
  assertEquals((await outbox.get(1))?.state, "pending");
  const { receiver, arrivals } = await recordingReceiver(port);
  await using _r = receiver;
  assertEquals((await outbox.waitFor(5)).state, "acked");
  assertEquals(arrivals, [0, 1, 2, 3, 4].map((i) => `DOWN-${i}`));
  const records = await Array.fromAsync(outbox.list());
  assert(records.every((r) => !r.possibleDuplicate));
});

Deno.test("outbox: no reply in time is an unknown outcome: parked, not resent", async () => {
  await using peer = await FaultPeer.start({
    decide: ({ controlId }) => controlId === "SILENT" ? "silent" : "none",
  });
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port: peer.port, replyTimeout: 100 },
    retry: FAST_RETRY,
  });
  await outbox.enqueue(hl7("SILENT"));
  await outbox.enqueue(hl7("AFTER"));
  outbox.start();
  assertEquals((await outbox.waitFor(2)).state, "acked");
  const silent = await outbox.get(1);
  assertEquals(silent?.state, "parked");
  assertStringIncludes(silent?.reason ?? "", "Outcome unknown");
  assertEquals(peer.count("SILENT"), 1);
});

Deno.test("outbox: with resendUnknown an unknown outcome is resent with the same control id, flagged, and a store receiver dedupes it", async () => {
  await using store = await KvMessageStore.open(":memory:", {
    pollInterval: 10,
  });
  let stall = true;
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: () => {},
  });
  await using _r = receiver;
  // A proxy that swallows the first reply: the message is stored, the
  // ACK lost.
  const proxy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const pipes: Promise<unknown>[] = [];
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of proxy) {
      const upstream = await Deno.connect({
        hostname: "127.0.0.1",
        port: receiver.port,
      });
      conns.push(conn, upstream);
      pipes.push(conn.readable.pipeTo(upstream.writable).catch(() => {}));
      pipes.push(
        upstream.readable.pipeTo(
          new WritableStream({
            async write(chunk) {
              if (stall) {
                stall = false;
                return;
              }
              const writer = conn.writable.getWriter();
              await writer.write(chunk);
              writer.releaseLock();
            },
          }),
        ).catch(() => {}),
      );
    }
  })();
  try {
    await using outbox = await KvOutbox.open(":memory:", {
      destination: {
        hostname: "127.0.0.1",
        port: proxy.addr.port,
        replyTimeout: 150,
      },
      retry: FAST_RETRY,
      resendUnknown: true,
    });
    const first = await outbox.enqueue(hl7("LOST-ACK"));
    outbox.start();
    const record = await outbox.waitFor(first.seq);
    assertEquals([record.state, record.ackCode], ["acked", "AA"]);
    assertEquals([record.attempts, record.possibleDuplicate], [2, true]);
    const stats = await store.stats();
    assertEquals([stats.stored, stats.duplicates], [1, 1]);
  } finally {
    proxy.close();
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await accepting;
    await Promise.all(pipes);
  }
});

Deno.test("outbox: a message left in flight by a crash is resent with the same control id and flagged", async () => {
  const { receiver, arrivals } = await recordingReceiver();
  await using _r = receiver;
  using kv = await Deno.openKv(":memory:");
  const destination = { hostname: "127.0.0.1", port: receiver.port };
  {
    await using outbox = await KvOutbox.open(kv, { destination });
    await outbox.enqueue(hl7("CRASH-1"));
    await outbox.enqueue(hl7("CRASH-2"));
  }
  // What a worker leaves when it dies after marking a message in flight.
  const key = ["mllp", "outbox", `127.0.0.1:${receiver.port}`, "item", 1];
  const entry = await kv.get<Record<string, unknown>>(key);
  await kv.set(key, { ...entry.value, state: "in_flight", attempts: 1 });
  await using outbox = await KvOutbox.open(kv, { destination });
  outbox.start();
  assertEquals((await outbox.waitFor(2)).state, "acked");
  const first = await outbox.get(1);
  assertEquals([first?.state, first?.possibleDuplicate], ["acked", true]);
  assertEquals((await outbox.get(2))?.possibleDuplicate, false);
  assertEquals(arrivals, ["CRASH-1", "CRASH-2"]);
});

/**
 * A delivery worker for `destination` in `kv`, as `KvOutbox.start` makes
 * one, with its lease measured on `clock`; it records what it finishes.
 * Runs until `stop()` (`KvOutbox.stop`, then `close`).
 */
function startWorker(
  kv: Deno.Kv,
  owner: string,
  clock: TestClock,
  destination: OutboxDestination,
  leaseMs: number,
  pollInterval = 10,
) {
  const name = `${destination.hostname}:${destination.port}`;
  const finished: OutboxRecord[] = [];
  const worker = new OutboxWorker({
    kv,
    base: ["mllp", "outbox", name],
    destination: name,
    target: destination,
    retry: FAST_RETRY,
    resendUnknown: false,
    maxAttempts: 5,
    leaseMs,
    pollInterval,
    owner,
    queued: new Wakeup(),
    refreshStats: () => Promise.resolve(),
    onFinished: (_state, record) => finished.push(record),
    onRetry: () => {},
    now: clock.now,
  });
  const stopping = new AbortController();
  const running = worker.run(stopping.signal);
  return {
    finished,
    async stop() {
      stopping.abort();
      await running;
      await worker.close();
    },
  };
}

/** Waits until `check` holds, polling; fails after `ms`. */
async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 30_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("outbox: two workers on one KV and destination: one sends at a time, in order, no duplicates", async () => {
  const arrivals: string[] = [];
  const atTwenty = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.kind !== "hl7") return;
      arrivals.push(message.header.controlId);
      if (message.header.controlId === "TWO-20") {
        // The reply to the 21st waits until the test lets it go.
        atTwenty.resolve();
        await release.promise;
      }
      return Ack.forMessage(message, "AA");
    },
  });
  using kv = await Deno.openKv(":memory:");
  const destination = { hostname: "127.0.0.1", port: receiver.port };
  await using a = await KvOutbox.open(kv, { destination });
  await using b = await KvOutbox.open(kv, { destination, pollInterval: 10 });
  const ids = Array.from({ length: 40 }, (_, i) => `TWO-${i}`);
  for (const [i, id] of ids.entries()) {
    await (i % 2 ? a : b).enqueue(hl7(id));
  }
  // The leases cannot run out: the clock stands still.
  const clock = new TestClock();
  const first = startWorker(kv, "a", clock, destination, 300);
  await until(() => first.finished.length > 0, "the first worker's send");
  const second = startWorker(kv, "b", clock, destination, 300);
  await atTwenty.promise;
  // The worker holding the queue stops after the send in hand; the other
  // takes over.
  const stopped = first.stop();
  release.resolve();
  await stopped;
  assertEquals(second.finished, [], "the second sent while the first held");
  await until(() => second.finished.length === 19, "the takeover");
  await second.stop();
  assertEquals(arrivals, ids);
  const seqs = (records: OutboxRecord[]) => records.map((r) => r.seq);
  assertEquals(seqs(first.finished), ids.slice(0, 21).map((_, i) => i + 1));
  assertEquals(seqs(second.finished), ids.slice(21).map((_, i) => i + 22));
});

Deno.test("outbox: a worker that stops releases the destination's lease, even with a renewal of it in flight", async () => {
  using kv = await Deno.openKv(":memory:");
  // Commits go through; the result of one the test picks is held back
  // until the test lets it go.
  let holdNext = false;
  const held = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const slow = new Proxy(kv, {
    get(target, property) {
      if (property === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            const hold = holdNext;
            holdNext = false;
            const result = await commit();
            if (hold) {
              held.resolve();
              await release.promise;
            }
            return result;
          };
          return op;
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const destination = { hostname: "127.0.0.1", port: 9 };
  const key = ["mllp", "outbox", "127.0.0.1:9", "lease"];
  // It finds the queue empty and waits for work: its next commit renews
  // its lease.
  const worker = startWorker(
    slow,
    "a",
    new TestClock(),
    destination,
    300,
    60_000,
  );
  await until(async () => (await kv.get(key)).value !== null, "the lease");
  holdNext = true;
  await held.promise;
  const stopped = worker.stop();
  release.resolve();
  await stopped;
  assertEquals((await kv.get(key)).value, null);
});

Deno.test("outbox: a worker stalled past its lease mid-send is taken over: the message is sent again with the same control id, flagged, and its result recorded once", async () => {
  const arrivals: string[] = [];
  const inHand = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (message) => {
      if (message.kind !== "hl7") return;
      arrivals.push(message.header.controlId);
      if (arrivals.length === 1) {
        // The first send's reply waits until the test lets it go.
        inHand.resolve();
        await release.promise;
      }
      return Ack.forMessage(message, "AA");
    },
  });
  using kv = await Deno.openKv(":memory:");
  const destination = { hostname: "127.0.0.1", port: receiver.port };
  await using outbox = await KvOutbox.open(kv, { destination });
  await outbox.enqueue(hl7("STALLED"));
  await outbox.enqueue(hl7("NEXT"));
  const clock = new TestClock();
  // A lease whose renewal (every third of it) cannot come during the test.
  const LEASE = 60_000;
  const first = startWorker(kv, "a", clock, destination, LEASE);
  await inHand.promise;
  // The first worker stalls (a paused process) past its lease.
  clock.advance(LEASE + 1);
  const second = startWorker(kv, "b", clock, destination, LEASE);
  await until(() => second.finished.length === 2, "the second's sends");
  // The first wakes up with its reply: the message changed, so its result
  // is not recorded.
  release.resolve();
  await first.stop();
  await second.stop();
  assertEquals(arrivals, ["STALLED", "STALLED", "NEXT"]);
  assertEquals(first.finished, []);
  const record = await outbox.get(1);
  assertEquals(
    [record?.state, record?.attempts, record?.possibleDuplicate],
    ["acked", 2, true],
  );
  assertEquals((await outbox.get(2))?.possibleDuplicate, false);
  const stats = await outbox.stats();
  assertEquals([stats.depth, stats.parked], [0, 0]);
});

Deno.test("outbox: a 4 MiB message is queued in chunks and delivered exactly", async () => {
  let got: Uint8Array | undefined;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      got = message.raw;
      return Ack.forMessage(message, "AA");
    },
  });
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port: receiver.port },
  });
  const header = new TextEncoder().encode(hl7("BIG"));
  const big = new Uint8Array(4 * 1024 * 1024).fill(0x41);
  big.set(header);
  const { seq } = await outbox.enqueue(big);
  assertEquals(await outbox.read(seq), big);
  outbox.start();
  assertEquals((await outbox.waitFor(seq)).state, "acked");
  assertEquals(got, big);
});

Deno.test("outbox: what cannot be sent is refused at enqueue, and nothing is queued", async () => {
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port: 9 },
  });
  const error = await assertRejects(() =>
    outbox.enqueue(hl7("X").replace("PID", "\x0bPID"))
  );
  assertInstanceOf(error, TypeError);
  await assertRejects(() => outbox.enqueue("MSH|"), HeaderError);
  assertEquals((await outbox.stats()).enqueued, 0);
});

Deno.test("outbox: non-HL7 payloads are acked on a reply and parked on a NAK", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      if (message.text === "boom") throw new Error("no");
      return "mllp_unknown";
    },
  });
  await using outbox = await KvOutbox.open(":memory:", {
    destination: { hostname: "127.0.0.1", port: receiver.port },
  });
  await outbox.enqueue("hello");
  await outbox.enqueue("boom");
  outbox.start();
  await outbox.waitFor(2);
  const [hello, boom] = [await outbox.get(1), await outbox.get(2)];
  assertEquals([hello?.state, hello?.reply], ["acked", "mllp_unknown"]);
  assertEquals([boom?.state, boom?.reason], ["parked", "NAK"]);
});

Deno.test("outbox: depth, oldest age and parked count reach an OTLP collector as gauges", async () => {
  const gauges = new Map<
    string,
    { value: number; address: string; receivedAt: number }
  >();
  const names = ["depth", "oldest_age", "parked"].map((n) =>
    `mllp.outbox.${n}`
  );
  // Every oldest age the collector gets, in order.
  const ages: number[] = [];
  // The child runs until the collector has all three gauges and has seen
  // the oldest age grow (the worker reads them again while it runs): the
  // test waits for that, however long a busy machine takes to get there.
  const allThere = Promise.withResolvers<void>();
  await using collector = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, async (request) => {
    const body = await request.json().catch(() => ({}));
    if (new URL(request.url).pathname !== "/v1/metrics") {
      return Response.json({});
    }
    for (const rm of body.resourceMetrics ?? []) {
      for (const sm of rm.scopeMetrics ?? []) {
        for (const metric of sm.metrics ?? []) {
          const point = metric.gauge?.dataPoints?.at(-1);
          if (!String(metric.name).startsWith("mllp.outbox.") || !point) {
            continue;
          }
          const value = Number(point.asInt ?? point.asDouble);
          gauges.set(metric.name, {
            value,
            address: point.attributes?.[0]?.value?.stringValue,
            receivedAt: Date.now(),
          });
          if (metric.name === "mllp.outbox.oldest_age") ages.push(value);
        }
      }
    }
    if (
      names.every((name) => gauges.has(name)) &&
      ages.some((age) => age > ages[0])
    ) allThere.resolve();
    return Response.json({});
  });
  // A worker whose destination refuses: three messages stay queued, the
  // oldest of them (as its queue entry says) queued ten minutes ago.
  const port = freePort();
  const AGE = 600_000;
  const code = `
    import { KvOutbox } from "${new URL(
    "../../src/durable/kv_outbox.ts",
    import.meta.url,
  )}";
    using kv = await Deno.openKv(":memory:");
    await using outbox = await KvOutbox.open(kv, {
      destination: { hostname: "127.0.0.1", port: ${port} },
      retry: { initialDelay: 200 },
    });
    for (let i = 0; i < 3; i++) {
      await outbox.enqueue("MSH|^~\\\\&|A|B|C|D|1||ADT^A01|G" + i + "|P|2.5\\r");
    }
    const pending = ["mllp", "outbox", outbox.destination, "pending"];
    for await (const entry of kv.list({ prefix: pending })) {
      await kv.set(entry.key, Date.now() - ${AGE});
    }
    outbox.start();
    // Until the test closes stdin.
    await Deno.stdin.readable.pipeTo(new WritableStream());
  `;
  const spawnedAt = Date.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", "deno.json", code],
    cwd: new URL("../..", import.meta.url),
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.addr.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_METRIC_EXPORT_INTERVAL: "300",
      OTEL_DENO_CONSOLE: "ignore",
    },
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const waited = await Promise.race([
    allThere.promise.then(() => "gauges"),
    child.status.then(() => "exited"),
    // Only a bound for a test that fails: never reached otherwise.
    new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve("not within 60 s"), 60_000);
    }),
  ]);
  clearTimeout(timer);
  await child.stdin.close();
  const { code: exitCode } = await child.status;
  assertEquals(exitCode, 0, await stderr);
  assertEquals(waited, "gauges", await stderr);
  assertEquals(gauges.get("mllp.outbox.depth")?.value, 3);
  assertEquals(gauges.get("mllp.outbox.parked")?.value, 0);
  // In ms: at least the ten minutes, at most that plus the time since the
  // child started; and growing while the worker runs.
  const age = gauges.get("mllp.outbox.oldest_age")!;
  assert(
    ages[0] >= AGE && age.value <= AGE + (age.receivedAt - spawnedAt),
    `oldest ages ${ages} ms`,
  );
  assert(age.value > ages[0], `oldest ages ${ages} ms`);
  assertEquals(
    gauges.get("mllp.outbox.depth")?.address,
    `127.0.0.1:${port}`,
  );
});
