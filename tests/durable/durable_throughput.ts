/**
 * Messages per second with and without durable delivery, for
 * docs/durable.md:
 *
 * - receiver without a store (EchoDispatcher), as the baseline;
 * - receiver with a `KvMessageStore` on a SQLite file (every ACK after a
 *   commit), and the rate at which its consumer then dispatches;
 * - the same on `:memory:`;
 * - a `KvOutbox`: how fast `enqueue` commits, and how fast the worker
 *   delivers to a receiver without a store.
 *
 * Each message has its own control id (so the store stores every one),
 * from 1 and 16 connections, stop-and-wait, 1 KiB ADT^A01. Receiver and
 * senders share this process (2 cores here): compare the rows with each
 * other, not with the Performance table, which runs the receiver apart.
 *
 * ```sh
 * deno run -A tests/durable/durable_throughput.ts [MESSAGES_PER_CONNECTION]
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

const PER_CONNECTION = Number(Deno.args[0] ?? 2000);
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
  store: KvMessageStore | undefined,
  connections: number,
): Promise<{ acks: number; dispatch?: number }> {
  let dispatched = 0;
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store: store as MessageStore | undefined,
    dispatcher: (m, ctx) => {
      dispatched++;
      return EchoDispatcher.dispatch(m, ctx);
    },
  });
  try {
    const before = dispatched;
    const started = performance.now();
    const acks = await load(receiver.port, connections);
    if (!store) return { acks };
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

async function outboxRate(path: string): Promise<[number, number]> {
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
    let last = 0;
    for (let i = 0; i < PER_CONNECTION; i++) {
      last = (await outbox.enqueue(message())).seq;
    }
    const enqueue = PER_CONNECTION / ((performance.now() - started) / 1000);
    started = performance.now();
    outbox.start();
    await outbox.waitFor(last);
    const deliver = PER_CONNECTION / ((performance.now() - started) / 1000);
    return [enqueue, deliver];
  } finally {
    await receiver.stop();
  }
}

const dir = await Deno.makeTempDir({ prefix: "mllp-throughput-" });
const rows: string[] = [];
const fmt = (n: number | undefined) =>
  n === undefined ? "-" : Math.round(n).toLocaleString("en-US");
try {
  for (const connections of [1, 16]) {
    const none = await receiverRate(undefined, connections);
    const file = await KvMessageStore.open(
      `${dir}/store-${connections}.sqlite`,
    );
    const onFile = await receiverRate(file, connections);
    await file.close();
    const memory = await KvMessageStore.open(":memory:");
    const inMemory = await receiverRate(memory, connections);
    await memory.close();
    rows.push(
      `| receiver, ${connections} conn | ${fmt(none.acks)} | ${
        fmt(onFile.acks)
      } (${(onFile.acks / none.acks).toFixed(2)}x) | ${
        fmt(onFile.dispatch)
      } | ${fmt(inMemory.acks)} (${
        (inMemory.acks / none.acks).toFixed(2)
      }x) | ${fmt(inMemory.dispatch)} |`,
    );
  }
  const [enqueue, deliver] = await outboxRate(`${dir}/outbox.sqlite`);
  console.log(
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ${PER_CONNECTION} messages per connection (+100 warm-up), 1 KiB ADT^A01, unique control ids`,
  );
  console.log(
    "| run | no store: ACKs/s | store on file: ACKs/s | then dispatched/s | store in memory: ACKs/s | then dispatched/s |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const row of rows) console.log(row);
  console.log(
    `\noutbox on file, 1 destination: enqueue ${fmt(enqueue)}/s; delivered ${
      fmt(deliver)
    }/s (stop-and-wait, one message in flight)`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
