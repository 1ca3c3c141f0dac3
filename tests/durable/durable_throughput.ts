/**
 * Messages per second with and without durable delivery, for
 * docs/performance.md ("Durable delivery"):
 *
 * - receiver without a store (EchoDispatcher), as the baseline;
 * - receiver with a `KvMessageStore` on a SQLite file (every ACK after a
 *   commit), and the rate at which its consumer then dispatches;
 * - the same on `:memory:`;
 * - receiver with a `JetStreamMessageStore` on a 1-node JetStream cluster
 *   (replicas 1) and on a 3-node one (replicas 3), started by this tool
 *   on free loopback ports (`tests/_nats.ts`) and stopped at the end; left
 *   out when `nats-server` is not installed, or with `--no-jetstream`;
 * - a `KvOutbox`: how fast `enqueue` commits, one caller at a time and
 *   from 16 callers at once, and how fast the worker delivers to a
 *   receiver without a store.
 *
 * Each message has its own control id (so the store stores every one),
 * from 1 and 16 connections, stop-and-wait, 1 KiB ADT^A01. Receiver and
 * senders share this process (2 cores here): compare the rows with each
 * other, not with the Performance table, which runs the receiver apart.
 *
 * Each run measures every row once, the no-store baseline right before
 * the stores at the same connection count, each store on a fresh file;
 * the table gives the median of the runs for each number, and for each
 * ratio the median of the runs' own ratios (a store's rate over the
 * no-store rate measured next to it), so that a run slowed by other work
 * on the machine moves both sides of its ratio. Each run's numbers go to
 * stderr as it ends.
 *
 * ```sh
 * deno run -A tests/durable/durable_throughput.ts [MESSAGES_PER_CONNECTION] [RUNS] [--no-jetstream]
 * ```
 *
 * @module
 */

import { Client } from "../../src/client/client.ts";
import { BENCH_CONTROL_ID, makeAdtMessage } from "../../src/bench/bench.ts";
import { EchoDispatcher } from "../../src/dispatch/dispatcher.ts";
import { KvOutbox } from "../../src/durable/kv_outbox.ts";
import { type MessageStore, Receiver } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import {
  type NatsCluster,
  natsServerPath,
  startNatsCluster,
} from "../_nats.ts";

const args = Deno.args.filter((a) => !a.startsWith("--"));
const PER_CONNECTION = Number(args[0] ?? 1000);
const RUNS = Number(args[1] ?? 3);
const JETSTREAM = !Deno.args.includes("--no-jetstream") &&
  (await natsServerPath()) !== undefined;
const CONCURRENT_ENQUEUERS = 16;
const TEMPLATE = makeAdtMessage(1024);

let next = 0;
/** The 1 KiB message with a fresh 10-character control id. */
function message(): string {
  const id = `T${String(next++).padStart(9, "0")}`;
  return TEMPLATE.replace(BENCH_CONTROL_ID, id);
}

async function load(port: number, connections: number): Promise<number> {
  const clients = await Promise.all(
    Array.from(
      { length: connections },
      () => Client.connect("127.0.0.1", port),
    ),
  );
  try {
    // Warm-up, not counted.
    await Promise.all(clients.map(async (c) => {
      for (let i = 0; i < 100; i++) await c.send(message());
    }));
    const started = performance.now();
    await Promise.all(clients.map(async (c) => {
      for (let i = 0; i < PER_CONNECTION; i++) {
        const result = await c.send(message());
        if (!result.ok) throw new Error(`Not accepted: ${result.outcome}`);
      }
    }));
    return connections * PER_CONNECTION /
      ((performance.now() - started) / 1000);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

async function receiverRate(
  store: MessageStore | undefined,
  connections: number,
): Promise<{ acks: number; dispatch: number }> {
  let dispatched = 0;
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: (m, ctx) => {
      dispatched++;
      return EchoDispatcher.dispatch(m, ctx);
    },
  });
  try {
    const before = dispatched;
    const started = performance.now();
    const acks = await load(receiver.port, connections);
    const total = connections * (PER_CONNECTION + 100);
    while (dispatched - before < total) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const dispatch = total / ((performance.now() - started) / 1000);
    return { acks, dispatch };
  } finally {
    await receiver.stop();
  }
}

interface OutboxRates {
  /** `enqueue` one at a time. */
  enqueue: number;
  /** `enqueue` from 16 callers at once. */
  concurrent: number;
  /** Calls of those that failed. */
  failed: number;
  /** Why the first of them failed. */
  failure?: string;
  /** Delivered by the worker. */
  deliver: number;
}

async function outboxRate(path: string): Promise<OutboxRates> {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  try {
    await using outbox = await KvOutbox.open(path, {
      destination: { hostname: "127.0.0.1", port: receiver.port },
    });
    let started = performance.now();
    for (let i = 0; i < PER_CONNECTION; i++) await outbox.enqueue(message());
    const enqueue = PER_CONNECTION / ((performance.now() - started) / 1000);
    started = performance.now();
    const each = Math.ceil(PER_CONNECTION / CONCURRENT_ENQUEUERS);
    let failed = 0;
    let failure: string | undefined;
    await Promise.all(
      Array.from({ length: CONCURRENT_ENQUEUERS }, async () => {
        for (let i = 0; i < each; i++) {
          try {
            await outbox.enqueue(message());
          } catch (error) {
            failed++;
            failure ??= error instanceof Error ? error.message : String(error);
          }
        }
      }),
    );
    // Only what was queued counts.
    const concurrent = (each * CONCURRENT_ENQUEUERS - failed) /
      ((performance.now() - started) / 1000);
    const { enqueued } = await outbox.stats();
    started = performance.now();
    outbox.start();
    await outbox.waitFor(enqueued);
    const deliver = enqueued / ((performance.now() - started) / 1000);
    return { enqueue, concurrent, failed, failure, deliver };
  } finally {
    await receiver.stop();
  }
}

/** One store's rates at one connection count, in one run. */
interface Rates {
  acks: number;
  /** Its ACK rate over the no-store rate measured beside it. */
  ratio: number;
  dispatch?: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const ratio = (n: number) => `${n.toFixed(2)}x`;

const dir = await Deno.makeTempDir({ prefix: "mllp-throughput-" });
const CONNECTIONS = [1, 16];
/** The rows, in the table's order, each opening a fresh store. */
const ROWS: {
  name: string;
  open?: (tag: string) => Promise<MessageStore & { close(): Promise<void> }>;
}[] = [
  { name: "no store" },
  {
    name: "KV, SQLite file",
    open: (tag) => KvMessageStore.open(`${dir}/store-${tag}.sqlite`),
  },
  { name: "KV, in memory", open: () => KvMessageStore.open(":memory:") },
];
const clusters: NatsCluster[] = [];
/** rates.get(row name).get(connections): one entry per run. */
const rates = new Map<string, Map<number, Rates[]>>();
const outboxes: OutboxRates[] = [];
try {
  if (JETSTREAM) {
    const r1 = await startNatsCluster({ nodes: 1 });
    clusters.push(r1);
    const r3 = await startNatsCluster({ nodes: 3 });
    clusters.push(r3);
    for (
      const [name, cluster, replicas] of [
        ["JetStream R1 (1 node)", r1, 1],
        ["JetStream R3 (3 nodes)", r3, 3],
      ] as const
    ) {
      ROWS.push({
        name,
        open: (tag) =>
          JetStreamMessageStore.open(cluster.servers, {
            stream: `BENCH_${tag.replaceAll("-", "_")}`,
            replicas,
          }),
      });
    }
  }
  for (const row of ROWS) {
    rates.set(row.name, new Map(CONNECTIONS.map((c) => [c, []])));
  }
  for (let run = 1; run <= RUNS; run++) {
    for (const connections of CONNECTIONS) {
      let none = 0;
      const line: string[] = [];
      for (const row of ROWS) {
        const store = await row.open?.(`${run}-${connections}`);
        let measured: { acks: number; dispatch: number };
        try {
          measured = await receiverRate(store, connections);
        } finally {
          await store?.close();
        }
        if (!store) none = measured.acks;
        const entry: Rates = {
          acks: measured.acks,
          ratio: measured.acks / none,
          dispatch: store ? measured.dispatch : undefined,
        };
        rates.get(row.name)!.get(connections)!.push(entry);
        line.push(
          store
            ? `${row.name} ${fmt(entry.acks)} (${
              ratio(entry.ratio)
            }), dispatched ${fmt(entry.dispatch!)}`
            : `${row.name} ${fmt(entry.acks)}`,
        );
      }
      console.error(`run ${run}, ${connections} conn: ${line.join("; ")}`);
    }
    const outbox = await outboxRate(`${dir}/outbox-${run}.sqlite`);
    outboxes.push(outbox);
    console.error(
      `run ${run}, outbox: enqueue ${
        fmt(outbox.enqueue)
      }/s, ${CONCURRENT_ENQUEUERS} at once ${
        fmt(outbox.concurrent)
      }/s, delivered ${fmt(outbox.deliver)}/s`,
    );
  }
  console.log(
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ${PER_CONNECTION} messages per connection (+100 warm-up), 1 KiB ADT^A01, unique control ids; medians of ${RUNS} run(s), ratios are the median of each run's ratio to the no-store rate measured beside it`,
  );
  console.log(
    `| store | ${
      CONNECTIONS.map((c) =>
        `${c} connection${c > 1 ? "s" : ""}: ACKs/s | then dispatched/s`
      ).join(" | ")
    } |`,
  );
  console.log(`| --- |${" ---: | ---: |".repeat(CONNECTIONS.length)}`);
  for (const row of ROWS) {
    const cells = CONNECTIONS.map((c) => {
      const runs = rates.get(row.name)!.get(c)!;
      const m = (pick: (r: Rates) => number) => median(runs.map(pick));
      return row.open
        ? `${fmt(m((r) => r.acks))} (${ratio(m((r) => r.ratio))}) | ${
          fmt(m((r) => r.dispatch!))
        }`
        : `${fmt(m((r) => r.acks))} | `;
    });
    console.log(`| ${row.name} | ${cells.join(" | ")} |`);
  }
  if (!JETSTREAM) {
    console.log(
      "\nJetStream rows left out (nats-server is not installed, or --no-jetstream)",
    );
  }
  const o = (pick: (rates: OutboxRates) => number) =>
    fmt(median(outboxes.map(pick)));
  console.log(
    `\noutbox on a file, 1 destination: enqueue ${
      o((r) => r.enqueue)
    }/s one at a time, ${
      o((r) => r.concurrent)
    }/s from ${CONCURRENT_ENQUEUERS} callers at once${
      outboxes.some((r) => r.failed > 0)
        ? ` (calls failed: ${
          outboxes.map((r) => r.failed).join(", ")
        } in the runs)`
        : ""
    }; delivered ${
      o((r) => r.deliver)
    }/s (stop-and-wait, one message in flight)`,
  );
} finally {
  for (const cluster of clusters) await cluster.close();
  await Deno.remove(dir, { recursive: true });
}
