/**
 * Durability across SIGKILL, with child processes on a KV file under a
 * temporary directory:
 *
 * - a receiver with a `KvMessageStore` (tests/durable/_durable_receiver.ts) killed
 *   at seeded-random points while 2,000 messages arrive from senders that
 *   resend whatever was not acknowledged: every message the senders saw
 *   acknowledged is stored exactly once, and no dispatch has its effect
 *   twice (a message handed to the dispatcher again after a crash gets a
 *   higher attempt number, never the same one);
 * - a sender with a `KvOutbox` (tests/durable/_durable_sender.ts) killed while it
 *   queues and delivers 2,000 messages, and started again: every message
 *   is delivered, in order, and a message that arrived twice is flagged
 *   `possibleDuplicate`;
 * - scale-out without a server: two receiver processes sharing one KV
 *   file, each message sent to both: stored once, its effect once (it can
 *   be dispatched again after a failed attempt, as a higher attempt).
 *
 * Set `DURABILITY_SEED` to replay another kill schedule.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import { ClientError } from "../../src/errors.ts";
import { KvOutbox } from "../../src/durable/kv_outbox.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { seededRandom } from "../_fault_peer.ts";

const SEED = Number(Deno.env.get("DURABILITY_SEED") ?? 20240611);
const ROOT = new URL("../..", import.meta.url).pathname;
const TOTAL = 2_000;

const delay = (ms: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

function ids(prefix: string, n: number): string[] {
  return Array.from(
    { length: n },
    (_, i) => `${prefix}-${String(i).padStart(4, "0")}`,
  );
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A child Deno process whose output is collected. */
class ChildProcess {
  readonly process: Deno.ChildProcess;
  output = "";
  errors = "";
  #drained: Promise<void>;
  #lines: ((line: string) => void)[] = [];

  constructor(script: string, args: string[]) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", "deno.json", script, ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const decoder = new TextDecoder();
    this.#drained = Promise.all([
      this.process.stdout.pipeTo(
        new WritableStream({
          write: (chunk) => {
            this.output += decoder.decode(chunk, { stream: true });
            const lines = this.output.split("\n");
            if (lines.length > 1) {
              for (const waiter of this.#lines.splice(0)) waiter(lines[0]);
            }
          },
        }),
      ),
      this.process.stderr.pipeTo(
        new WritableStream({
          write: (chunk) => {
            this.errors += decoder.decode(chunk, { stream: true });
          },
        }),
      ),
    ]).then(() => {});
  }

  /** The first line on stdout; fails if the child exits first. */
  firstLine(ms = 20_000): Promise<string> {
    const lines = this.output.split("\n");
    if (lines.length > 1) return Promise.resolve(lines[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`No output within ${ms} ms: ${this.errors}`)),
        ms,
      );
      this.#lines.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
      this.process.status.then((status) => {
        clearTimeout(timer);
        if (this.output.split("\n").length <= 1) {
          reject(
            new Error(
              `The child exited (${status.code}) before any output: ${this.errors}`,
            ),
          );
        }
      });
    });
  }

  /** Kills the child with a signal and waits for it and its output. */
  async kill(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    try {
      this.process.kill(signal);
    } catch {
      // Already exited.
    }
    return await this.wait();
  }

  /** Waits for the child to exit and its output to be read. */
  async wait(): Promise<Deno.CommandStatus> {
    const status = await this.process.status;
    await this.#drained;
    return status;
  }
}

async function startReceiver(
  path: string,
  port: number,
  tag: string,
): Promise<ChildProcess> {
  const child = new ChildProcess("tests/durable/_durable_receiver.ts", [
    path,
    String(port),
    tag,
  ]);
  const line = await child.firstLine();
  assertEquals(JSON.parse(line).port, port, child.errors);
  return child;
}

/** Sends `id` until it is accepted; returns the ACK and the extra sends. */
async function sendUntilAccepted(
  client: Client,
  id: string,
): Promise<{ ack: string; resends: number; errors: number }> {
  let errors = 0;
  for (let resends = 0;; resends++) {
    try {
      const result = await client.send(hl7(id));
      if (result.outcome === "accept") {
        return { ack: result.ack.toString(), resends, errors };
      }
      // AE is "not acknowledged": resend, as a real sender would.
      assertEquals(result.outcome, "error", `${id}: ${result.outcome}`);
      errors++;
    } catch (error) {
      if (!(error instanceof ClientError)) throw error;
    }
    await delay(10);
  }
}

async function withTempDir(run: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "mllp-durability-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface Call {
  attempt: number;
  tag: string;
}

/** The dispatcher's calls and effects, from the KV the children share. */
async function dispatchLog(path: string) {
  using kv = await Deno.openKv(path);
  const calls = new Map<string, Call[]>();
  for await (const entry of kv.list<Call>({ prefix: ["test", "call"] })) {
    const id = entry.key[2] as string;
    calls.set(id, [...calls.get(id) ?? [], entry.value]);
  }
  const effects = new Map<string, { controlId: string; tag: string }>();
  for await (
    const entry of kv.list<{ controlId: string; tag: string }>({
      prefix: ["test", "effect"],
    })
  ) effects.set(entry.key[2] as string, entry.value);
  return { calls, effects };
}

/** Checks the store: each id stored once, all dispatched, effects once. */
async function checkStore(path: string, expected: string[]) {
  const store = await KvMessageStore.open(path);
  try {
    const records = await Array.fromAsync(store.list());
    const byControlId = new Map<string, number>();
    for (const r of records) {
      byControlId.set(r.controlId, (byControlId.get(r.controlId) ?? 0) + 1);
    }
    for (const id of expected) {
      assertEquals(byControlId.get(id), 1, `${id} stored once`);
    }
    assertEquals(records.length, expected.length);
    assert(records.every((r) => r.state === "dispatched"));
    const { calls, effects } = await dispatchLog(path);
    assertEquals(effects.size, expected.length, "one effect per message");
    let redelivered = 0;
    for (const r of records) {
      assertEquals(effects.get(r.id)?.controlId, r.controlId);
      const attempts = (calls.get(r.id) ?? []).map((c) => c.attempt);
      assert(attempts.length >= 1, `${r.controlId} was dispatched`);
      // Never handed out twice under the same claim.
      assertEquals(new Set(attempts).size, attempts.length, r.controlId);
      if (attempts.length > 1) redelivered++;
    }
    return { records, calls, stats: await store.stats(), redelivered };
  } finally {
    await store.close();
  }
}

/** Waits until a store has nothing pending. */
async function untilDispatched(path: string, ms = 30_000) {
  const store = await KvMessageStore.open(path);
  try {
    const end = Date.now() + ms;
    while ((await store.stats()).pending > 0) {
      if (Date.now() > end) throw new Error("Messages left undispatched");
      await delay(20);
    }
  } finally {
    await store.close();
  }
}

Deno.test("durability: a receiver SIGKILLed at random points during 2,000 messages loses none, stores each once, and never repeats a dispatch's effect", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/receiver.sqlite`;
    const random = seededRandom(SEED);
    const port = freePort();
    let child = await startReceiver(path, port, "r");
    const all = ids("R", TOTAL);
    const acked = new Set<string>();
    let resends = 0;
    let errorAcks = 0;
    let kills = 0;
    const LANES = 4;
    const clients = Array.from(
      { length: LANES },
      () =>
        new Client("127.0.0.1", port, {
          replyTimeout: 3_000,
          connectTimeout: 1_000,
          reconnect: { initialDelay: 20, maxDelay: 200, jitter: 0 },
        }),
    );
    try {
      const lanes = clients.map(async (client, lane) => {
        for (let i = lane; i < all.length; i += LANES) {
          const sent = await sendUntilAccepted(client, all[i]);
          resends += sent.resends;
          errorAcks += sent.errors;
          acked.add(all[i]);
        }
      });
      let done = false;
      const allDone = Promise.all(lanes).finally(() => done = true);
      // A kill every 250 to 400 acknowledgments, at a random moment.
      let nextKill = 250 + Math.floor(random() * 150);
      while (!done) {
        if (acked.size >= nextKill && acked.size < TOTAL - 50) {
          await delay(random() * 10);
          await child.kill("SIGKILL");
          kills++;
          child = await startReceiver(path, port, "r");
          nextKill = acked.size + 250 + Math.floor(random() * 150);
        }
        await delay(1);
      }
      await allDone;
      assertEquals(acked.size, TOTAL);
      await untilDispatched(path);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await child.kill("SIGTERM");
    }
    const { stats, redelivered, calls } = await checkStore(path, all);
    assert(kills >= 5, `only ${kills} kills`);
    const dispatchCalls = [...calls.values()].reduce((n, c) => n + c.length, 0);
    console.log(
      `durability (receiver): seed=${SEED} messages=${TOTAL} kills=${kills} resends=${resends} (after AE: ${errorAcks}) duplicates answered from the store=${stats.duplicates} stored=${stats.stored} dispatched=${stats.dispatched} dispatch calls=${dispatchCalls} handed out again after a crash=${redelivered} effects=${TOTAL} (each once)`,
    );
  });
});

Deno.test("durability: a sender SIGKILLed mid-queue and restarted delivers every message, in order; only flagged messages arrive twice", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/outbox.sqlite`;
    const random = seededRandom(SEED + 1);
    const arrivals: string[] = [];
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: async (message) => {
        if (message.kind !== "hl7") return;
        arrivals.push(message.header.controlId);
        // Now and then a slower reply, so kills land between write and ACK.
        if (random() < 0.05) await delay(3);
        return Ack.forMessage(message, "AA");
      },
    });
    const args = [path, String(receiver.port), String(TOTAL)];
    let kills = 0;
    let runs = 0;
    // Kill every 250 to 400 arrivals, at a random moment.
    let nextKill = 150 + Math.floor(random() * 150);
    for (;;) {
      runs++;
      const child = new ChildProcess("tests/durable/_durable_sender.ts", args);
      let finished = false;
      const exited = child.wait().then((status) => {
        finished = true;
        return status;
      });
      while (!finished && arrivals.length < nextKill) await delay(1);
      if (finished) {
        const status = await exited;
        assertEquals(status.code, 0, child.errors);
        assertEquals(child.output.trim(), "done");
        break;
      }
      await delay(random() * 10);
      await child.kill("SIGKILL");
      kills++;
      nextKill = arrivals.length + 250 + Math.floor(random() * 150);
      assert(runs < 40, "too many runs");
    }

    using kv = await Deno.openKv(path);
    await using outbox = await KvOutbox.open(kv, {
      destination: { hostname: "127.0.0.1", port: receiver.port },
    });
    const records = await Array.fromAsync(outbox.list());
    const expected = ids("S", TOTAL);
    assertEquals(records.map((r) => r.controlId), expected);
    assert(records.every((r) => r.state === "acked"), "all acknowledged");
    // In order: arrivals never go back, and the first arrivals are the queue.
    const index = (id: string) => Number(id.slice(2));
    for (let i = 1; i < arrivals.length; i++) {
      assert(
        index(arrivals[i]) >= index(arrivals[i - 1]),
        `${arrivals[i]} after ${arrivals[i - 1]}`,
      );
    }
    assertEquals([...new Set(arrivals)], expected);
    // Duplicates only where flagged.
    const counts = new Map<string, number>();
    for (const id of arrivals) counts.set(id, (counts.get(id) ?? 0) + 1);
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const flagged = records.filter((r) => r.possibleDuplicate);
    for (const id of duplicated) {
      assert(records[index(id)].possibleDuplicate, `${id} arrived twice`);
    }
    assert(kills >= 5, `only ${kills} kills`);
    console.log(
      `durability (sender): seed=${
        SEED + 1
      } messages=${TOTAL} kills=${kills} runs=${runs} arrivals=${arrivals.length} arrived twice=${duplicated.length} flagged possible duplicates=${flagged.length} (every one that arrived twice is flagged)`,
    );
  });
});

Deno.test("scale-out: two receiver processes sharing one KV file store each message once, and each dispatch's effect happens once", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/shared.sqlite`;
    const [portA, portB] = [freePort(), freePort()];
    const a = await startReceiver(path, portA, "a");
    const b = await startReceiver(path, portB, "b");
    const N = 300;
    let errorAcks = 0;
    const all = ids("X", N);
    const options = { replyTimeout: 5_000 };
    const toA = await Client.connect("127.0.0.1", portA, options);
    const toB = await Client.connect("127.0.0.1", portB, options);
    try {
      // Each message to both receivers at once: a sender that failed over
      // or resent through a load balancer.
      for (const id of all) {
        const [ra, rb] = await Promise.all([
          sendUntilAccepted(toA, id),
          sendUntilAccepted(toB, id),
        ]);
        assertEquals(ra.ack, rb.ack, id);
        errorAcks += ra.errors + rb.errors;
      }
      await untilDispatched(path);
    } finally {
      await toA.close();
      await toB.close();
      await a.kill("SIGTERM");
      await b.kill("SIGTERM");
    }
    const { stats, calls } = await checkStore(path, all);
    assertEquals(stats.stored, N);
    // Each message once from each receiver, and resends after an AE.
    assert(stats.duplicates >= N, `${stats.duplicates} duplicates`);
    const byTag = { a: 0, b: 0 } as Record<string, number>;
    for (const list of calls.values()) {
      for (const call of list) byTag[call.tag]++;
    }
    // More calls than messages only for attempts after a failure (the
    // dispatcher's own writes can meet a locked database): checkStore saw
    // one effect per message and no attempt number twice.
    assert(byTag.a + byTag.b >= N);
    console.log(
      `scale-out (shared KV file): messages=${N} sent to both receivers; AE answers (commit contention, resent)=${errorAcks} stored=${stats.stored} duplicates answered=${stats.duplicates} dispatch calls by a=${byTag.a} b=${byTag.b} (retries after a failed attempt: ${
        byTag.a + byTag.b - N
      }) effects=${N} (each once)`,
    );
  });
});
