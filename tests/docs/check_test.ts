// The docs checker catches what issue 15 saw in the README's snippets: a
// name used but not defined, a receiver left running, and output shown as
// a string where the code prints bytes. And it reads the page's shown
// output where the docs put it.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { commentOutput, matches, namedCommand, tsBlocks } from "./_blocks.ts";
import { checkBlock } from "./_check.ts";

const FENCE = "```";

function page(...parts: string[]): string {
  return parts.join("\n");
}

const NON_HL7 = [
  'import { Client, Receiver } from "jsr:@x/mllp";',
  "",
  "await using receiver = await Receiver.start({",
  "  port: 0,",
  '  hostname: "127.0.0.1",',
  '  dispatcher: () => "Got the BLOB",',
  "});",
  'await using client = await Client.connect("127.0.0.1", receiver.port);',
  'const result = await client.send("Hip hip hurray");',
  'if (result.outcome === "reply") {',
];

Deno.test("docs check: a right block has no problems", async () => {
  const [block] = tsBlocks(
    "right.md",
    page(
      `${FENCE}ts`,
      ...NON_HL7,
      "  console.log({ ok: result.ok, reply: result.text });",
      "}",
      FENCE,
      "",
      "prints:",
      "",
      FENCE,
      '{ ok: true, reply: "Got the BLOB" }',
      FENCE,
    ),
  );
  assertEquals(await checkBlock(block), []);
});

Deno.test("docs check: bytes shown as a string are a mismatch", async () => {
  const [block] = tsBlocks(
    "reply.md",
    page(
      `${FENCE}ts`,
      ...NON_HL7,
      "  console.log({ ok: result.ok, reply: result.reply });",
      "}",
      FENCE,
      "",
      FENCE,
      '{ ok: true, reply: "Got the BLOB" }',
      FENCE,
    ),
  );
  const problems = await checkBlock(block);
  assertEquals(problems.length, 1);
  assertStringIncludes(problems[0], "The block at reply.md:1 printed:");
  assertStringIncludes(problems[0], "Uint8Array");
});

Deno.test("docs check: a name the block does not define fails it", async () => {
  const [block] = tsBlocks(
    "undefined.md",
    page(
      `${FENCE}ts`,
      'import { Client, EchoDispatcher, Receiver } from "jsr:@x/mllp";',
      "",
      "await using receiver = await Receiver.start({",
      "  port: 0,",
      '  hostname: "127.0.0.1",',
      "  dispatcher: EchoDispatcher,",
      "});",
      'await using client = await Client.connect("127.0.0.1", receiver.port);',
      "// @ts-ignore: the mistake under test",
      "const result = await client.send(message);",
      "console.log(result.outcome); // accept",
      FENCE,
    ),
  );
  const problems = await checkBlock(block);
  assertEquals(problems.length, 1);
  assertMatch(problems[0], /^The block at undefined\.md:1 exited with 1:/);
  assertStringIncludes(problems[0], "ReferenceError: message is not defined");
});

Deno.test("docs check: a receiver left running fails the block", async () => {
  const [block] = tsBlocks(
    "running.md",
    page(
      `${FENCE}ts`,
      'import { EchoDispatcher, Receiver } from "jsr:@x/mllp";',
      "",
      "const receiver = await Receiver.start({",
      "  port: 0,",
      '  hostname: "127.0.0.1",',
      "  dispatcher: EchoDispatcher,",
      "});",
      "console.log(receiver.port > 0); // true",
      FENCE,
    ),
  );
  const problems = await checkBlock(block, 3_000);
  assertEquals(problems, [
    "The block at running.md:1 did not end by itself within 3000 ms (a receiver, a client or a timer left running?)",
  ]);
});

Deno.test("docs check: output comments, in the order the block prints them", () => {
  assertEquals(
    commentOutput([
      "const a = 1; // not output",
      "console.log(a); // 1",
      "for (const x of [2, 3]) {",
      "  console.log(x);",
      "}",
      "// prints:",
      "// 2",
      "// 3",
      "",
    ]),
    ["1", "2", "3"],
  );
  assertEquals(commentOutput(["// A comment first", "run();"]), []);
});

Deno.test("docs check: an output block belongs to the block before it, or to the command the prose names", () => {
  const blocks = tsBlocks(
    "pairs.md",
    page(
      `${FENCE}ts`,
      'console.log("a");',
      FENCE,
      "",
      "`deno run -A examples/a.ts` runs this and prints:",
      "",
      FENCE,
      "a",
      FENCE,
      "",
      `${FENCE}ts`,
      'console.log("b");',
      FENCE,
      "",
      "## Another section",
      "",
      FENCE,
      "not b's",
      FENCE,
      "",
      "- In a list:",
      "",
      `  ${FENCE}ts`,
      '  console.log("c"); // c',
      `  ${FENCE}`,
    ),
  );
  assertEquals(blocks.map((b) => [b.line, b.shown]), [
    [1, ["a"]],
    [11, []],
    [23, ["c"]],
  ]);
  assertEquals(blocks[0].output?.command, ["run", "-A", "examples/a.ts"]);
  assertEquals(blocks[1].output, undefined);
  assertEquals(blocks[2].code, 'console.log("c"); // c\n');
  assertEquals(namedCommand(["`deno task demo` runs the same"]), [
    "task",
    "demo",
  ]);
});

Deno.test("docs check: times, ports, durations and shortened lines match", () => {
  assert(matches(
    "2026-12-04T15:23:55.119Z [INF] mllp·client: Connected to localhost:35959",
    "2027-01-01T00:00:00.001Z [INF] mllp·client: Connected to localhost:41000",
  ));
  assert(matches(
    "Closed connection from 127.0.0.1:53432 after 15 ms, messages: 1",
    "Closed connection from 127.0.0.1:40000 after 7 ms, messages: 1",
  ));
  assert(
    matches("Receiver on port 35959 stopped", "Receiver on port 1 stopped"),
  );
  assert(matches("body: MSH|^~\\&|…", "body: MSH|^~\\&|MegaReg|XYZ"));
  assert(!matches("accept AA", "accept AE"));
  assert(
    !matches('{ reply: "Got the BLOB" }', "{ reply: Uint8Array(12) [ 71 ] }"),
  );
});
