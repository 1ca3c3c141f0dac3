// Every ```ts block of README.md and docs/*.md, run as a reader would paste
// it: alone, in a file of its own, with `deno run -A` from the repository
// root. It must end by itself, throw nothing, write nothing to stderr, and
// print what the page shows (_blocks.ts says what counts as shown). An
// output block the page attributes to a command (`deno task demo`, ...) is
// checked against that command's output too. `deno test --doc` type-checks
// the same blocks; this runs them as they stand, with nothing around them.

import { assertEquals } from "@std/assert";
import { tsBlocks } from "./_blocks.ts";
import { checkBlock, checkCommand, ROOT } from "./_check.ts";

function pages(): string[] {
  const docs = [...Deno.readDirSync(new URL("docs/", ROOT))]
    .filter((entry) => entry.isFile && entry.name.endsWith(".md"))
    .map((entry) => `docs/${entry.name}`)
    .sort();
  return ["README.md", ...docs];
}

for (const file of pages()) {
  const markdown = await Deno.readTextFile(new URL(file, ROOT));
  for (const block of tsBlocks(file, markdown)) {
    Deno.test(`docs: ${file}:${block.line} runs as pasted and prints what it shows`, async () => {
      assertEquals(await checkBlock(block), []);
    });
    const output = block.output;
    if (output?.command) {
      const where = `${file}:${output.line}`;
      Deno.test(`docs: ${where} shows what \`deno ${output.command.join(" ")}\` prints`, async () => {
        assertEquals(await checkCommand(output, where), []);
      });
    }
  }
}
