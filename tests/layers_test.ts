/**
 * The source tree's shape: `.ci/layers.ts` finds import cycles and imports
 * that point up or sideways (checked on made-up graphs, then on the real
 * one), and what an entry point loads stays small: `./store` loads no
 * client code, `src/cli.ts` loads the load generator and the KV modules
 * only when a command needs them, and `./framer` is four files at most.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  type Edge,
  findProblems,
  layerOf,
  projectModules,
  readGraph,
} from "../.ci/layers.ts";

const ROOT = new URL("../", import.meta.url);

function edges(...pairs: [string, string, boolean?][]): Edge[] {
  return pairs.map(([from, to, dynamic]) => ({
    from,
    to,
    dynamic: dynamic ?? false,
  }));
}

Deno.test("layers: a cycle inside one layer is found, with the modules in it", () => {
  const problems = findProblems(edges(
    ["src/hl7/ack.ts", "src/hl7/batch.ts"],
    ["src/hl7/batch.ts", "src/hl7/message.ts"],
    ["src/hl7/message.ts", "src/hl7/ack.ts"],
    ["src/hl7/message.ts", "src/wire/framer.ts"],
  ));
  assertEquals(problems.map((p) => p.kind), ["cycle"]);
  assertStringIncludes(
    problems[0].text,
    "src/hl7/ack.ts → src/hl7/batch.ts → src/hl7/message.ts → src/hl7/ack.ts",
  );
});

Deno.test("layers: a module importing itself is a cycle", () => {
  const problems = findProblems(edges(["src/wire/a.ts", "src/wire/a.ts"]));
  assertEquals(problems.map((p) => p.kind), ["cycle"]);
});

Deno.test("layers: an import up or sideways is found; down is fine", () => {
  const problems = findProblems(edges(
    ["src/receiver/receiver.ts", "src/dispatch/stream.ts"], // down
    ["src/hl7/ack_modes.ts", "src/dispatch/dispatcher.ts"], // up
    ["src/receiver/receiver.ts", "src/client/link.ts"], // sideways
    ["src/cli.ts", "src/bench/bench.ts", true], // down, dynamic
  ));
  assertEquals(problems.map((p) => p.text), [
    "src/hl7/ack_modes.ts (hl7) imports src/dispatch/dispatcher.ts (dispatch): up; hl7 may import only wire",
    "src/receiver/receiver.ts (receiver) imports src/client/link.ts (client): sideways; receiver may import only wire, hl7, net, observe, dispatch",
  ]);
});

Deno.test("layers: a file outside the layer folders is named", () => {
  assertEquals(layerOf("src/stray.ts"), "");
  const problems = findProblems(edges(["src/stray.ts", "src/wire/framer.ts"]));
  assertEquals(problems.map((p) => p.kind), ["unplaced"]);
});

Deno.test("layers: the project's own tree has no cycle and no import up or sideways", async () => {
  const modules = await projectModules(ROOT);
  const problems = findProblems(await readGraph(ROOT, modules));
  assertEquals(problems.map((p) => p.text), []);
  assertEquals(modules.filter((m) => layerOf(m) === ""), []);
});

/** The project files an entry loads before any dynamic import runs. */
async function staticFiles(entry: string): Promise<string[]> {
  const graph = await readGraph(ROOT, [entry]);
  const seen = new Set([entry]);
  const queue = [entry];
  while (queue.length > 0) {
    const from = queue.shift()!;
    for (const edge of graph) {
      if (edge.from !== from || edge.dynamic || seen.has(edge.to)) continue;
      seen.add(edge.to);
      queue.push(edge.to);
    }
  }
  return [...seen].sort();
}

Deno.test("layers: ./store loads no client code", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  const files = await staticFiles(config.exports["./store"].slice(2));
  assert(files.length > 1);
  assertEquals(files.filter((f) => f.startsWith("src/client/")), []);
});

Deno.test("layers: the CLI loads the load generator, the KV and the NATS modules only when a command needs them", async () => {
  const files = await staticFiles("src/cli.ts");
  assert(files.includes("src/cli/send.ts"));
  assertEquals(
    files.filter((f) =>
      /^src\/(bench|durable)\/|^src\/cli\/bench\.ts$/.test(f)
    ),
    [],
  );
  // They are still reachable, by dynamic import.
  const all = (await readGraph(ROOT, ["src/cli.ts"])).map((e) => e.to);
  assert(all.includes("src/bench/bench.ts"));
  assert(all.includes("src/durable/kv_store.ts"));
  assert(all.includes("src/durable/jetstream.ts"));
  // The NATS flags are parsed without loading NATS.
  assert(files.includes("src/cli/nats_options.ts"));
});

Deno.test("layers: ./framer is four files at most, none of them Deno-specific", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  const files = await staticFiles(config.exports["./framer"].slice(2));
  assert(files.length <= 4, `./framer loads ${files.join(", ")}`);
  assertEquals(files.filter((f) => !f.startsWith("src/wire/")), []);
});
