/**
 * One suite, every outbox: the cases a durable outbound queue must pass
 * whatever it is built on (Deno KV, NATS JetStream), run as steps of one
 * test per backend (so that a server the outbox needs lives as long as the
 * test). Each backend's test file gives an {@linkcode OutboxBackend}: how
 * to open an outbox on a fresh, empty queue.
 *
 * Cases: enqueue returns each message's place and the worker delivers in
 * order, recording each ACK; AR parks a message, later ones still go, and
 * requeue delivers it; while the receiver is down the worker retries, in
 * order, without duplicates; a 4 MiB message is delivered exactly; what
 * cannot be sent is refused at enqueue and nothing is queued.
 *
 * What differs is left to each backend's own tests: KV parks `AE` at once
 * and keeps a requeued message at its old place; JetStream retries `AE`
 * (nak with a delay) up to its limit and puts a requeued message at the
 * end of the queue.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { HeaderError } from "../../src/errors.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import type {
  Enqueued,
  OutboxDestination,
  OutboxEventMap,
  OutboxRecord,
  OutboxRetryDetail,
  OutboxState,
  OutboxStats,
} from "../../src/durable/kv_outbox_types.ts";
import type { BackoffOptions } from "../../src/net/backoff.ts";

/** What the suite uses of an outbox: what `KvOutbox` offers. */
export interface ConformingOutbox extends AsyncDisposable {
  readonly destination: string;
  enqueue(payload: string | Uint8Array): Promise<Enqueued>;
  get(seq: number): Promise<OutboxRecord | undefined>;
  read(seq: number): Promise<Uint8Array>;
  list(options?: { state?: OutboxState }): AsyncIterableIterator<OutboxRecord>;
  waitFor(
    seq: number,
    options?: { signal?: AbortSignal },
  ): Promise<OutboxRecord>;
  stats(): Promise<OutboxStats>;
  requeue(seq: number): Promise<boolean>;
  purge(seq: number): Promise<boolean>;
  start(): void;
  stop(): Promise<void>;
  close(): Promise<void>;
  addEventListener<K extends keyof OutboxEventMap>(
    type: K,
    listener: (event: OutboxEventMap[K]) => void,
  ): void;
}

/** What every backend's outbox is opened with. */
export interface OutboxHandleOptions {
  destination: OutboxDestination;
  retry?: BackoffOptions;
}

/** One queue the suite runs against (fresh for each case). */
export interface OutboxBackend {
  /** A name for the step titles. */
  name: string;
  /** Opens an outbox on a fresh, empty queue. */
  open(options: OutboxHandleOptions): Promise<ConformingOutbox>;
}

/** An HL7 message with this MSH-10. */
export function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

const FAST_RETRY = { initialDelay: 20, maxDelay: 100, jitter: 0 };

/** A receiver that records the control ids it gets, in order. */
export async function recordingReceiver(
  port = 0,
  answer?: (id: string) => string,
): Promise<{ receiver: Receiver; arrivals: string[] }> {
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

/** Runs every case against one backend, as steps of `t`. */
export async function runOutboxConformance(
  t: Deno.TestContext,
  backend: OutboxBackend,
): Promise<void> {
  const step = (name: string, fn: () => Promise<void>) =>
    t.step(`${backend.name}: ${name}`, fn);

  await step(
    "enqueue returns places in order; delivered in order, each ACK recorded",
    async () => {
      const { receiver, arrivals } = await recordingReceiver();
      await using _r = receiver;
      await using outbox = await backend.open({
        destination: { hostname: "127.0.0.1", port: receiver.port },
      });
      const ids = Array.from({ length: 20 }, (_, i) => `IN-${i}`);
      const queued: Enqueued[] = [];
      for (const id of ids) queued.push(await outbox.enqueue(hl7(id)));
      assertEquals(queued.map((q) => q.controlId), ids);
      const seqs = queued.map((q) => q.seq);
      assertEquals(seqs, [...seqs].sort((a, b) => a - b));
      assertEquals(new Set(seqs).size, ids.length);
      const before = await outbox.stats();
      assertEquals([before.depth, before.parked, before.enqueued], [20, 0, 20]);
      assertEquals((await outbox.get(seqs[0]))?.state, "pending");
      outbox.start();
      const last = await outbox.waitFor(seqs.at(-1)!);
      assertEquals([last.state, last.ackCode], ["acked", "AA"]);
      assertEquals(arrivals, ids);
      const records = await Array.fromAsync(outbox.list());
      assertEquals(records.map((r) => r.controlId), ids);
      assert(records.every((r) => r.state === "acked" && r.ackCode === "AA"));
      assert(records.every((r) => !r.possibleDuplicate && r.attempts === 1));
      assertEquals(records[3].ackText, "AA for IN-3");
      const after = await outbox.stats();
      assertEquals([after.depth, after.oldestAgeMs, after.parked], [0, 0, 0]);
    },
  );

  await step(
    "AR parks a message, later ones still go; requeue delivers it",
    async () => {
      let reject = true;
      const { receiver, arrivals } = await recordingReceiver(
        0,
        (id) => id === "BAD-AR" && reject ? "AR" : "AA",
      );
      await using _r = receiver;
      await using outbox = await backend.open({
        destination: { hostname: "127.0.0.1", port: receiver.port },
      });
      const parked: string[] = [];
      outbox.addEventListener(
        "parked",
        (e) => parked.push(e.detail.controlId!),
      );
      const seqs: number[] = [];
      for (const id of ["OK-1", "BAD-AR", "OK-2"]) {
        seqs.push((await outbox.enqueue(hl7(id))).seq);
      }
      outbox.start();
      assertEquals((await outbox.waitFor(seqs[2])).state, "acked");
      assertEquals(parked, ["BAD-AR"]);
      const bad = await outbox.waitFor(seqs[1]);
      assertEquals([bad.state, bad.reason], ["parked", "AR: AR for BAD-AR"]);
      assertEquals(
        (await Array.fromAsync(outbox.list({ state: "parked" }))).map((r) =>
          r.controlId
        ),
        ["BAD-AR"],
      );
      assertEquals((await outbox.stats()).parked, 1);
      reject = false;
      assert(await outbox.requeue(seqs[1]));
      assert(
        !await outbox.requeue(seqs[0]),
        "an acked message is not requeued",
      );
      const again = await outbox.waitFor(seqs[1]);
      assertEquals([again.state, again.ackCode], ["acked", "AA"]);
      assertEquals(arrivals, ["OK-1", "BAD-AR", "OK-2", "BAD-AR"]);
      const stats = await outbox.stats();
      assertEquals([stats.depth, stats.parked, stats.enqueued], [0, 0, 3]);
    },
  );

  await step(
    "a parked message stays until purged; purge counts it, and cannot take a queued one",
    async () => {
      const { receiver } = await recordingReceiver(
        0,
        (id) => id === "BAD-AR" ? "AR" : "AA",
      );
      await using _r = receiver;
      await using outbox = await backend.open({
        destination: { hostname: "127.0.0.1", port: receiver.port },
      });
      const bad = (await outbox.enqueue(hl7("BAD-AR"))).seq;
      const good = (await outbox.enqueue(hl7("OK-1"))).seq;
      outbox.start();
      assertEquals((await outbox.waitFor(good)).state, "acked");
      await outbox.stop();
      const before = await outbox.stats();
      assertEquals([before.parked, before.purged], [1, 0]);
      const waiting = (await outbox.enqueue(hl7("OK-2"))).seq;
      assert(!await outbox.purge(waiting), "a queued message is not purged");
      assert(await outbox.purge(bad));
      assert(!await outbox.purge(bad), "purged once");
      assertEquals(await outbox.get(bad), undefined);
      const after = await outbox.stats();
      assertEquals([after.parked, after.purged, after.depth], [0, 1, 1]);
      assertEquals(
        await Array.fromAsync(outbox.list({ state: "parked" })),
        [],
      );
    },
  );

  await step(
    "while the receiver is down it retries, in order, without duplicates",
    async () => {
      const port = freePort();
      await using outbox = await backend.open({
        destination: { hostname: "127.0.0.1", port, connectTimeout: 500 },
        retry: FAST_RETRY,
      });
      const retries: OutboxRetryDetail[] = [];
      outbox.addEventListener("retrying", (e) => retries.push(e.detail));
      const seqs: number[] = [];
      for (let i = 0; i < 5; i++) {
        seqs.push((await outbox.enqueue(hl7(`DOWN-${i}`))).seq);
      }
      outbox.start();
      while (retries.length < 3) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert(
        retries.every((r) => !r.written && r.record.controlId === "DOWN-0"),
      );
      assertEquals((await outbox.get(seqs[0]))?.possibleDuplicate, false);
      const { receiver, arrivals } = await recordingReceiver(port);
      await using _r = receiver;
      assertEquals((await outbox.waitFor(seqs[4])).state, "acked");
      assertEquals(arrivals, [0, 1, 2, 3, 4].map((i) => `DOWN-${i}`));
      const stats = await outbox.stats();
      assertEquals([stats.depth, stats.parked], [0, 0]);
    },
  );

  await step("a 4 MiB message is delivered exactly", async () => {
    let got: Uint8Array | undefined;
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: (message) => {
        got = message.raw;
        return Ack.forMessage(message, "AA");
      },
    });
    await using outbox = await backend.open({
      destination: { hostname: "127.0.0.1", port: receiver.port },
    });
    const header = new TextEncoder().encode(hl7("BIG"));
    const big = new Uint8Array(4 * 1024 * 1024).fill(0x41);
    big.set(header);
    const { seq } = await outbox.enqueue(big);
    assertEquals(await outbox.read(seq), big);
    assertEquals((await outbox.get(seq))?.size, big.length);
    outbox.start();
    assertEquals((await outbox.waitFor(seq)).state, "acked");
    assertEquals(got, big);
  });

  await step(
    "what cannot be sent is refused at enqueue, and nothing is queued",
    async () => {
      await using outbox = await backend.open({
        destination: { hostname: "127.0.0.1", port: 9 },
      });
      const error = await assertRejects(() =>
        outbox.enqueue(hl7("X").replace("PID", "\x0bPID"))
      );
      assertInstanceOf(error, TypeError);
      await assertRejects(() => outbox.enqueue("MSH|"), HeaderError);
      assertEquals((await outbox.stats()).enqueued, 0);
    },
  );
}
