// The framer and the envelope helpers run unchanged under Node: bundle
// src/wire/framer.ts and src/wire/envelope.ts to JavaScript with `deno bundle` (as a
// browser or Node user of the JSR package would get them), check that the
// bundles never name `Deno`, and run tests/interop/node/framer_in_node.mjs on them
// with Node's own test runner.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { findTool } from "../_helpers.ts";

const ROOT = new URL("../..", import.meta.url);
const LIMIT = 60_000;
const MODULES = ["framer", "envelope"] as const;

async function run(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(LIMIT),
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    output: decoder.decode(stdout) + decoder.decode(stderr),
  };
}

const node = await findTool(["node"], ["--version"]);
const ignore = "missing" in node && Deno.env.get("CI") !== "true";
if (ignore) {
  console.warn(`node_framer_test: skipped, Node is not here (${node.missing})`);
}

Deno.test({
  name: "the framer and envelope bundles run under Node's test runner",
  ignore,
  async fn() {
    if (!("command" in node)) {
      throw new Error(`Node is needed: ${node.missing}`);
    }
    const dir = await Deno.makeTempDir({ prefix: "mllp_node_" });
    try {
      const bundles: Record<string, string> = {};
      for (const name of MODULES) {
        const out = `${dir}/${name}.mjs`;
        const bundled = await run(Deno.execPath(), [
          "bundle",
          "--platform",
          "browser",
          "--output",
          out,
          `src/wire/${name}.ts`,
        ]);
        assertEquals(bundled.code, 0, bundled.output);
        const code = await Deno.readTextFile(out);
        // A use of Deno.* anywhere in the module graph, reached by the
        // tests or not, fails here.
        const uses = code.split("\n").filter((line) => /\bDeno\b/.test(line));
        assertEquals(uses, [], `src/${name}.ts must not use Deno.*`);
        bundles[`MLLP_${name.toUpperCase()}`] = new URL(`file://${out}`).href;
      }
      const tested = await run(node.command, [
        "--test",
        "--test-reporter=tap",
        "tests/interop/node/framer_in_node.mjs",
      ], bundles);
      assertEquals(tested.code, 0, tested.output);
      assertMatch(tested.output, /^# fail 0$/m);
      const passed = Number(tested.output.match(/^# pass (\d+)$/m)?.[1]);
      assert(passed >= 10, tested.output);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
