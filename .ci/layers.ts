/**
 * The layering check `deno task ok` runs: every import under `src/` points
 * down the layers, and no module imports itself back through others.
 *
 * ```sh
 * deno run -A .ci/layers.ts          # exit 1 and a list of problems, if any
 * ```
 *
 * The graph comes from `deno info --json` (static, type-only and dynamic
 * imports alike). A file's layer is the folder under `src/` it sits in;
 * `src/cli.ts` is the command's entry and belongs to `cli`; `mod.ts` and
 * `src/errors.ts` only re-export and sit above everything. A layer may
 * import from its own folder and from layers of a lower rank; two layers
 * of the same rank (`hl7` and `net`, `receiver` and `client`) do not
 * import each other.
 *
 * @module
 */

/** The layers, bottom first; layers that share a rank are siblings. */
export const LAYERS: Readonly<Record<string, number>> = {
  wire: 0,
  hl7: 1,
  net: 1,
  observe: 1,
  dispatch: 2,
  receiver: 3,
  client: 3,
  durable: 4,
  bench: 5,
  cli: 6,
  entry: 7,
};

/** One import: from a module to another, as `deno info` reports it. */
export interface Edge {
  from: string;
  to: string;
  dynamic: boolean;
}

/** What is wrong with an import or a set of modules. */
export interface Problem {
  kind: "cycle" | "upward" | "unplaced";
  text: string;
}

/**
 * The layer of a module, by its path relative to the project root
 * (`src/hl7/ack.ts`); `undefined` for modules outside `src/` and `mod.ts`.
 */
export function layerOf(path: string): string | undefined {
  if (path === "mod.ts" || path === "src/errors.ts") return "entry";
  if (path === "src/cli.ts") return "cli";
  const match = /^src\/([^/]+)\/.+/.exec(path);
  if (match) return match[1];
  return path.startsWith("src/") ? "" : undefined;
}

/**
 * Finds import cycles (strongly connected modules) and imports that point
 * up or sideways between layers.
 *
 * @param edges The imports between project modules.
 * @param layer The layer of a module (see {@linkcode layerOf}).
 * @returns The problems, cycles first; empty when the graph is layered.
 */
export function findProblems(
  edges: readonly Edge[],
  layer: (path: string) => string | undefined = layerOf,
): Problem[] {
  const problems: Problem[] = [];
  const modules = new Set(edges.flatMap((e) => [e.from, e.to]));
  for (const path of [...modules].sort()) {
    const name = layer(path);
    if (name !== undefined && !(name in LAYERS)) {
      problems.push({
        kind: "unplaced",
        text: `${path} is in no layer: move it into one of src/${
          Object.keys(LAYERS).filter((l) => l !== "entry").join("/, src/")
        }/`,
      });
    }
  }
  for (const { members, path } of cycles(edges)) {
    const among = members.length > path.length
      ? ` (${members.length} modules import each other: ${members.join(", ")})`
      : "";
    problems.push({
      kind: "cycle",
      text: `import cycle: ${[...path, path[0]].join(" → ")}${among}`,
    });
  }
  for (const edge of edges) {
    const from = layer(edge.from);
    const to = layer(edge.to);
    if (from === undefined || to === undefined || from === to) continue;
    const rankFrom = LAYERS[from];
    const rankTo = LAYERS[to];
    if (rankFrom === undefined || rankTo === undefined) continue;
    if (rankTo < rankFrom) continue;
    const how = rankTo === rankFrom ? "sideways" : "up";
    problems.push({
      kind: "upward",
      text: `${edge.from} (${from}) imports ${edge.to} (${to}): ${how}${
        edge.dynamic ? " (dynamic import)" : ""
      }; ${from} may import only ${below(from)}`,
    });
  }
  return problems;
}

function below(layer: string): string {
  const rank = LAYERS[layer];
  const names = Object.keys(LAYERS).filter((l) => LAYERS[l] < rank);
  return names.length > 0 ? names.join(", ") : "nothing outside its folder";
}

/** A set of modules that import each other, and one path around it. */
export interface Cycle {
  /** The modules, sorted. */
  members: string[];
  /** One cycle through them, from the first member. */
  path: string[];
}

/**
 * The import cycles of a graph: each strongly connected set of two or more
 * modules (or a module importing itself).
 */
export function cycles(edges: readonly Edge[]): Cycle[] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) {
    if (!next.has(from)) next.set(from, []);
    if (!next.has(to)) next.set(to, []);
    next.get(from)!.push(to);
  }
  // Tarjan's algorithm, iterative so deep graphs cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const found: Cycle[] = [];
  let counter = 0;
  for (const root of [...next.keys()].sort()) {
    if (index.has(root)) continue;
    const work: { node: string; child: number }[] = [{ node: root, child: 0 }];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const children = next.get(frame.node)!;
      if (frame.child < children.length) {
        const child = children[frame.child++];
        if (!index.has(child)) {
          index.set(child, counter);
          low.set(child, counter++);
          stack.push(child);
          onStack.add(child);
          work.push({ node: child, child: 0 });
        } else if (onStack.has(child)) {
          low.set(
            frame.node,
            Math.min(low.get(frame.node)!, index.get(child)!),
          );
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) !== index.get(frame.node)) continue;
      const members: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        members.push(member);
      } while (member !== frame.node);
      const selfLoop = next.get(frame.node)!.includes(frame.node);
      if (members.length > 1 || selfLoop) {
        found.push({
          members: members.sort(),
          path: pathAround(new Set(members), next),
        });
      }
    }
  }
  return found;
}

/** One cycle through a strongly connected set, from its first module. */
function pathAround(
  members: Set<string>,
  next: Map<string, string[]>,
): string[] {
  const start = [...members].sort()[0];
  // Breadth-first from start back to start, inside the set.
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const child of next.get(node)!) {
      if (!members.has(child)) continue;
      if (child === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(previous.get(path[0])!);
        return path;
      }
      if (!previous.has(child)) {
        previous.set(child, node);
        queue.push(child);
      }
    }
  }
  return [start];
}

/** The `deno info --json` of a module, as far as this check reads it. */
interface DenoInfo {
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier: string };
      type?: { specifier: string };
      isDynamic?: boolean;
    }[];
  }[];
}

/**
 * The imports between the project's modules reachable from `entries`,
 * read with `deno info --json`, as paths relative to `root`.
 *
 * @param root The project's root folder, as a `file:` URL ending in `/`.
 * @param entries Paths of the modules to start from, relative to `root`.
 */
export async function readGraph(
  root: URL,
  entries: readonly string[],
): Promise<Edge[]> {
  const dir = await Deno.makeTempDir({ prefix: "mllp-layers-" });
  try {
    const entry = `${dir}/all.ts`;
    await Deno.writeTextFile(
      entry,
      entries.map((e) => `import "${new URL(e, root).href}";\n`).join(""),
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) {
      throw new Error(
        `Cannot read the module graph: deno info failed: ${
          new TextDecoder().decode(output.stderr)
        }`,
      );
    }
    const info: DenoInfo = JSON.parse(new TextDecoder().decode(output.stdout));
    const local = (specifier: string) =>
      specifier.startsWith(root.href)
        ? specifier.slice(root.href.length)
        : undefined;
    const edges: Edge[] = [];
    for (const module of info.modules) {
      const from = local(module.specifier);
      if (from === undefined) continue;
      for (const dep of module.dependencies ?? []) {
        const seen = new Set<string>();
        for (const target of [dep.code, dep.type]) {
          const to = target && local(target.specifier);
          if (to === undefined || seen.has(to)) continue;
          seen.add(to);
          edges.push({ from, to, dynamic: dep.isDynamic === true });
        }
      }
    }
    return edges;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every TypeScript module under `src/` (tests excluded), and `mod.ts`. */
export async function projectModules(root: URL): Promise<string[]> {
  const found = ["mod.ts"];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(new URL(dir, root))) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory) await walk(`${path}/`);
      else if (path.endsWith(".ts")) found.push(path);
    }
  };
  await walk("src/");
  return found.sort();
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const modules = await projectModules(root);
  const edges = await readGraph(root, modules);
  const problems = findProblems(edges);
  const counts = new Map<string, number>();
  for (const path of modules) {
    const layer = layerOf(path) ?? "";
    counts.set(layer, (counts.get(layer) ?? 0) + 1);
  }
  const summary = Object.keys(LAYERS)
    .filter((l) => counts.has(l))
    .map((l) => `${l} ${counts.get(l)}`)
    .join(", ");
  for (const problem of problems) console.error(problem.text);
  const cyclesFound = problems.filter((p) => p.kind === "cycle").length;
  const upward = problems.filter((p) => p.kind === "upward").length;
  console.log(
    `layers: ${modules.length} modules (${summary}), ${edges.length} imports; ${cyclesFound} cycles, ${upward} imports up or sideways`,
  );
  if (problems.length > 0) Deno.exit(1);
}
