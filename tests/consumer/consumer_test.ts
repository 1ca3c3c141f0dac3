// The package used from another project, as the README's "In your own
// project" says: a scratch project beside a directory named `mllp` (here a
// symbolic link to this repository), with the deno.json the README shows.
// Deno resolves `jsr:@x/mllp` to the linked clone, offline, with the
// clone's own import map; only npm is reached, for the clone's npm
// dependencies. A program there imports `@x/mllp` and a subpath, sends a
// message and checks the AA; the README's own blocks run there as pasted;
// and the `mllp` command runs from there, with Deno KV for `--queue`.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { EchoDispatcher, Receiver } from "../../mod.ts";
import { fences, tsBlocks } from "../docs/_blocks.ts";
import { compareShown, ROOT, type Run, run } from "../docs/_check.ts";

/** The longest one `deno` run in the scratch project may take. */
const RUN_LIMIT = 60_000;

/** The README's deno.json for a project beside the clone. */
async function readmeConfig(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const config = fences(readme).find((fence) =>
    fence.lang === "json" && fence.body.some((line) => line.includes('"links"'))
  );
  if (config === undefined) {
    throw new Error(
      'README.md shows no deno.json with "links" for a project beside the clone',
    );
  }
  return config.body.join("\n") + "\n";
}

/** A scratch project `app/` beside `mllp/`, a link to this repository. */
async function scratchProject(): Promise<{ dir: string; app: string }> {
  const config = await readmeConfig();
  const dir = await Deno.makeTempDir({ prefix: "mllp_consumer_" });
  try {
    await Deno.symlink(new URL(".", ROOT).pathname, `${dir}/mllp`);
    const app = `${dir}/app`;
    await Deno.mkdir(app);
    await Deno.writeTextFile(`${app}/deno.json`, config);
    return { dir, app };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

function failed(result: Run, what: string): string {
  return `${what} exited with ${result.code}${
    result.timedOut ? " (killed: it did not end by itself)" : ""
  }:\n${[...result.stdout, ...result.stderr].join("\n")}`;
}

const PROGRAM = `import { Ack, Client, Receiver } from "@x/mllp";
import { readMessage } from "@x/mllp/hl7";

await using receiver = await Receiver.start({
  port: 0,
  hostname: "127.0.0.1",
  dispatcher: (message) => Ack.forMessage(message, "AA", { text: "Filed" }),
});
await using client = await Client.connect("127.0.0.1", receiver.port);
const result = await client.send(
  "MSH|^~\\\\&|A|B|C|D|20240101||ADT^A01|01052901|P|2.5\\r",
);
if (result.outcome !== "accept") throw new Error(result.outcome);
const reply = readMessage(result.ack.toString());
console.log(result.code, result.ack.messageControlId, result.ack.text);
console.log(reply.kind, reply.header?.messageType);
`;

Deno.test("consumer: a project with the README's links type-checks and runs a program that imports @x/mllp and gets an AA", async () => {
  const { dir, app } = await scratchProject();
  try {
    await Deno.writeTextFile(`${app}/main.ts`, PROGRAM);
    const check = await run(["check", "main.ts"], RUN_LIMIT, app);
    assertEquals(check.code, 0, failed(check, "deno check main.ts"));
    const result = await run(["run", "-A", "main.ts"], RUN_LIMIT, app);
    assertEquals(result.code, 0, failed(result, "deno run -A main.ts"));
    assertEquals(result.stdout, ["AA 01052901 Filed", "hl7 ACK^A01^ACK"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("consumer: the README's blocks run as pasted in that project", async () => {
  const { dir, app } = await scratchProject();
  try {
    const readme = await Deno.readTextFile(new URL("README.md", ROOT));
    const blocks = tsBlocks("README.md", readme);
    assert(blocks.length > 0, "README.md has no TypeScript blocks");
    for (const block of blocks) {
      const where = `README.md:${block.line}`;
      await Deno.writeTextFile(`${app}/block.ts`, block.code);
      const result = await run(["run", "-A", "block.ts"], RUN_LIMIT, app);
      assertEquals(result.code, 0, failed(result, `The block at ${where}`));
      assertEquals(
        compareShown(result.stdout, block.shown, `The block at ${where}`),
        [],
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("consumer: the mllp command runs from that project, --queue included", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  const { dir, app } = await scratchProject();
  try {
    for (const entry of ["@x/mllp/cli", "jsr:@x/mllp/cli"]) {
      const help = await run(["run", "-A", entry, "--help"], RUN_LIMIT, app);
      assertEquals(help.code, 0, failed(help, `deno run -A ${entry} --help`));
      assertStringIncludes(
        help.stdout.join("\n"),
        "mllp: send and receive HL7 v2 messages over MLLP",
      );
    }
    await Deno.copyFile(
      new URL("tests/fixtures/adt_a01_wikipedia.hl7", ROOT),
      `${app}/adt_a01.hl7`,
    );
    // --queue keeps the messages in Deno KV: the project's deno.json must
    // turn KV on, as the README's does.
    const args = [
      "run",
      "-A",
      "@x/mllp/cli",
      "send",
      "--port",
      String(receiver.port),
      "--queue",
      "./outbound.sqlite",
      "adt_a01.hl7",
    ];
    const send = await run(args, RUN_LIMIT, app);
    assertEquals(send.code, 0, failed(send, `deno ${args.join(" ")}`));
    assertMatch(send.stdout.join("\n"), /^01052901 AA /m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
