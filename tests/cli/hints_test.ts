// What the command line tells a user to run next: hints name the command
// as it was run (`deno run -A src/cli.ts` from a clone), and an unknown
// flag or command gets "did you mean ...?".

import { assertEquals, assertStringIncludes } from "@std/assert";
import { main } from "../../src/cli.ts";
import { assertCleanError, closedPort, FIXTURE, runCli } from "./_helpers.ts";

Deno.test("cli hints name the command that was run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_hints_" });
  try {
    const port = String(closedPort());
    const [usage, queued] = await Promise.all([
      runCli(["send", "--port", port]),
      runCli(["send", "--port", port, "--queue", `${dir}/q.sqlite`, FIXTURE]),
    ]);
    assertCleanError(
      usage,
      2,
      'Run "deno run -A src/cli.ts send --help" for usage.',
    );
    assertEquals(queued.code, 2, queued.stderr);
    assertStringIncludes(
      queued.stderr,
      `run "deno run -A src/cli.ts send --queue ${dir}/q.sqlite --port ${port}" again to deliver them`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli main() names the program it is given, mllp by default", async () => {
  const run = async (options: { program?: string }) => {
    let errors = "";
    const stderr = {
      writeSync(data: Uint8Array): number {
        errors += new TextDecoder().decode(data);
        return data.length;
      },
    };
    assertEquals(
      await main(["send", "--port", "1"], { stderr, ...options }),
      2,
    );
    return errors;
  };
  assertStringIncludes(await run({}), 'Run "mllp send --help" for usage.');
  assertStringIncludes(
    await run({ program: "./my-mllp" }),
    'Run "./my-mllp send --help" for usage.',
  );
});

Deno.test("cli suggests the flag or command meant, for every command", async () => {
  const cases: [string[], string][] = [
    [
      ["send", "--prot", "2575", FIXTURE],
      'Unknown flag "--prot": did you mean "--port"?',
    ],
    [
      ["send", "--port", "2575", "--keepgoing", FIXTURE],
      'Unknown flag "--keepgoing": did you mean "--keep-going"?',
    ],
    [
      ["send", "--port", "2575", "-port", FIXTURE],
      'Unknown flag "-port": did you mean "--port"?',
    ],
    [
      ["listen", "--hostnme", "127.0.0.1"],
      'Unknown flag "--hostnme": did you mean "--hostname"?',
    ],
    [
      ["bench", "--conections", "2"],
      'Unknown flag "--conections": did you mean "--connections"?',
    ],
    [
      ["sned", "--port", "2575"],
      'Unknown command "sned": did you mean "send"?',
    ],
    [["--hepl"], 'Unknown flag "--hepl": did you mean "--help"?'],
  ];
  const outputs = await Promise.all(cases.map(([args]) => runCli(args)));
  for (const [i, output] of outputs.entries()) {
    assertCleanError(output, 2, cases[i][1]);
  }
  // Nothing close: no guess.
  const far = await runCli(["send", "--bogus", "--port", "2575", FIXTURE]);
  assertCleanError(far, 2, 'Unknown flag "--bogus"\n');
});
