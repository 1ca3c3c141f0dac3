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

import {
  BENCH_CONTROL_ID,
  makeAdtMessage,
  startAckResponder,
} from "../../src/bench/bench.ts";
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

const encoder = new TextEncoder();
/** The message framed once: VT, the bytes, FS CR. */
const FRAME = encoder.encode(`\x0b${TEMPLATE}\x1c\r`);
/** Where the control id's 10 bytes are in {@linkcode FRAME}. */
const ID_AT = 1 + encoder.encode(
  TEMPLATE.slice(0, TEMPLATE.indexOf(BENCH_CONTROL_ID)),
).length;
const ACCEPTED = encoder.encode("MSA|AA|");

/**
 * The lean load: per connection, `Deno.connect` and stop-and-wait with
 * no library code in the loop. Each message is the framed template with
 * a fresh control id written over the old one in place (so a store stores
 * every one); a reply is read up to its `FS CR` and must hold `MSA|AA|`.
 * The rate counts the measured messages of every connection.
 */
async function load(port: number, connections: number): Promise<number> {
  const conns = await Promise.all(
    Array.from(
      { length: connections },
      () => Deno.connect({ hostname: "127.0.0.1", port }),
    ),
  );
  const exchange = async (conn: Deno.TcpConn, count: number) => {
    conn.setNoDelay(true);
    const frame = FRAME.slice();
    const buffer = new Uint8Array(16 * 1024);
    for (let i = 0; i < count; i++) {
      encoder.encodeInto(
        `T${String(next++).padStart(9, "0")}`,
        frame.subarray(ID_AT, ID_AT + 10),
      );
      for (let sent = 0; sent < frame.length;) {
        sent += await conn.write(frame.subarray(sent));
      }
      let length = 0;
      while (
        length < 2 || buffer[length - 2] !== 0x1c || buffer[length - 1] !== 0x0d
      ) {
        const read = await conn.read(buffer.subarray(length));
        if (read === null) {
          throw new Error("The receiver closed the connection");
        }
        length += read;
      }
      if (!includes(buffer.subarray(0, length), ACCEPTED)) {
        throw new Error(
          `Not accepted: ${
            new TextDecoder().decode(buffer.subarray(0, length))
          }`,
        );
      }
    }
  };
  try {
    // Warm-up, not counted.
    await Promise.all(conns.map((conn) => exchange(conn, 100)));
    const started = performance.now();
    await Promise.all(conns.map((conn) => exchange(conn, PER_CONNECTION)));
    return connections * PER_CONNECTION /
      ((performance.now() - started) / 1000);
  } finally {
    for (const conn of conns) conn.close();
  }
}

/** Whether `bytes` holds `part`. */
function includes(bytes: Uint8Array, part: Uint8Array): boolean {
  for (
    let at = bytes.indexOf(part[0]);
    at !== -1;
    at = bytes.indexOf(part[0], at + 1)
  ) {
    if (part.every((b, k) => bytes[at + k] === b)) return true;
  }
  return false;
}

/** The lean load against the raw ACK responder: the floor. */
async function floorRate(connections: number): Promise<number> {
  await using responder = startAckResponder();
  return await load(responder.port, connections);
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
  // The destination is the raw ACK responder: what is measured is the
  // outbox and its client, not a receiver.
  const receiver = startAckResponder();
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
    await receiver[Symbol.asyncDispose]();
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
/** floors.get(connections): the lean load on the raw ACK responder, per run. */
const floors = new Map<number, number[]>(CONNECTIONS.map((c) => [c, []]));
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
      const floor = await floorRate(connections);
      floors.get(connections)!.push(floor);
      let none = 0;
      const line: string[] = [`floor ${fmt(floor)}`];
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
          // The no-store receiver against the floor; a store against the
          // no-store receiver.
          ratio: measured.acks / (store ? none : floor),
          dispatch: store ? measured.dispatch : undefined,
        };
        rates.get(row.name)!.get(connections)!.push(entry);
        line.push(
          store
            ? `${row.name} ${fmt(entry.acks)} (${
              ratio(entry.ratio)
            }), dispatched ${fmt(entry.dispatch!)}`
            : `${row.name} ${fmt(entry.acks)} (${ratio(entry.ratio)} of floor)`,
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
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ${PER_CONNECTION} messages per connection (+100 warm-up), 1 KiB ADT^A01, unique control ids, a lean load (Deno.connect, no library code); medians of ${RUNS} run(s); a ratio is the median of each run's ratio to the rate measured beside it: the floor's for "no store", the no-store receiver's for a store`,
  );
  console.log(
    `| store | ${
      CONNECTIONS.map((c) =>
        `${c} connection${c > 1 ? "s" : ""}: ACKs/s | then dispatched/s`
      ).join(" | ")
    } |`,
  );
  console.log(`| --- |${" ---: | ---: |".repeat(CONNECTIONS.length)}`);
  console.log(
    `| floor: raw ACK responder | ${
      CONNECTIONS.map((c) => `${fmt(median(floors.get(c)!))} | `).join(" | ")
    } |`,
  );
  for (const row of ROWS) {
    const cells = CONNECTIONS.map((c) => {
      const runs = rates.get(row.name)!.get(c)!;
      const m = (pick: (r: Rates) => number) => median(runs.map(pick));
      return row.open
        ? `${fmt(m((r) => r.acks))} (${ratio(m((r) => r.ratio))}) | ${
          fmt(m((r) => r.dispatch!))
        }`
        : `${fmt(m((r) => r.acks))} (${ratio(m((r) => r.ratio))} of floor) | `;
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
