import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";
import { Ack, type DispatchReply, Receiver } from "../mod.ts";
import { fixtureText } from "./_helpers.ts";

const ROOT = new URL("..", import.meta.url);
const FIXTURE = "tests/fixtures/adt_a01_wikipedia.hl7";
const AA_LINE = /^01052901 AA \d+\.\d ms$/;
const STACK_TRACE = /^\s+at /m;

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

function cliCommand(args: string[], stdin: "piped" | "null" = "null") {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/cli.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin,
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs the CLI to completion, feeding `input` to its stdin when given. */
async function runCli(args: string[], input?: string): Promise<Output> {
  let output: Deno.CommandOutput;
  if (input === undefined) {
    output = await cliCommand(args).output();
  } else {
    const child = cliCommand(args, "piped").spawn();
    const writer = child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(input));
    } finally {
      await writer.close();
    }
    output = await child.output();
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function assertCleanError(output: Output, code: number, ...parts: string[]) {
  assertEquals(output.code, code, output.stderr);
  assertEquals(output.stdout, "");
  assertMatch(output.stderr, /^error: /m);
  for (const part of parts) assertStringIncludes(output.stderr, part);
  assertNotMatch(output.stderr, STACK_TRACE);
}

Deno.test("cli listen answers send, logs each message, and stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_cli_test_" });
  const child = cliCommand(["listen", "--port", "0", "--hostname", "127.0.0.1"])
    .spawn();
  const stdout = new Response(child.stdout).text();
  const reader = child.stderr.pipeThrough(new TextDecoderStream())
    .getReader();
  let stderr = "";
  let terminated = false;
  try {
    let port: number | undefined;
    while (port === undefined) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`listen ended before listening:\n${stderr}`);
      stderr += value;
      const match = stderr.match(/^listening on 127\.0\.0\.1:(\d+)$/m);
      if (match) port = Number(match[1]);
    }

    const lfFile = `${dir}/adt_a01_lf.hl7`;
    const crText = await fixtureText("adt_a01_wikipedia.hl7");
    await Deno.writeTextFile(lfFile, crText.replaceAll("\r", "\n") + "\n\n");
    const sent = await runCli([
      "send",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      FIXTURE,
      lfFile,
    ]);
    assertEquals(sent.code, 0, sent.stderr);
    const results = lines(sent.stdout);
    assertEquals(results.length, 2);
    for (const line of results) assertMatch(line, AA_LINE);

    child.kill("SIGTERM");
    terminated = true;
    const status = await child.status;
    assertEquals(status.code, 0);
  } finally {
    if (!terminated) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      stderr += value;
    }
    await child.status;
    await stdout;
    await Deno.remove(dir, { recursive: true });
  }
  assertEquals(await stdout, "");
  assertEquals(
    lines(stderr).filter((line) => line.includes("01052901")).length,
    2,
    stderr,
  );
  assertNotMatch(stderr, /error/i);
});

Deno.test("cli send reads one message from stdin", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AA"),
  });
  const crText = await fixtureText("adt_a01_wikipedia.hl7");
  const output = await runCli(
    ["send", "--port", String(receiver.port), "-"],
    crText.replaceAll("\r", "\r\n") + "\r\n",
  );
  assertEquals(output.code, 0, output.stderr);
  assertEquals(lines(output.stdout).length, 1);
  assertMatch(lines(output.stdout)[0], AA_LINE);
});

Deno.test("cli send prints the reply to a non-HL7 payload", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => `Got ${message.size} bytes`,
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    "tests/fixtures/not_hl7.txt",
  ]);
  assertEquals(output.code, 0, output.stderr);
  assertMatch(output.stdout, /^- reply \d+\.\d ms "Got 14 bytes"\n$/);
});

Deno.test("cli send exits 1 when a message is rejected", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) =>
      Ack.forMessage(message, "AR", { text: "Rejected by test" }),
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    FIXTURE,
  ]);
  assertEquals(output.code, 1, output.stderr);
  assertMatch(
    output.stdout,
    /^01052901 AR \d+\.\d ms "Rejected by test"\n$/,
  );
});

Deno.test("cli send exits 1 on an ACK for another message", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: () =>
      Ack.forMessage(
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|OTHER|P|2.5\r",
        "AA",
      ),
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    FIXTURE,
  ]);
  assertEquals(output.code, 1, output.stderr);
  assertMatch(
    output.stdout,
    /^01052901 mismatch \d+\.\d ms ACK AA names control id "OTHER"\n$/,
  );
});

Deno.test("cli send exits 2 when the port is closed", async () => {
  const output = await runCli([
    "send",
    "--port",
    String(closedPort()),
    FIXTURE,
  ]);
  assertCleanError(output, 2, FIXTURE, "[refused]");
});

Deno.test("cli send exits 2 when no reply arrives in time", async () => {
  const pending: (() => void)[] = [];
  let released = false;
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: () => {
      if (released) return undefined;
      const { promise, resolve } = Promise.withResolvers<DispatchReply>();
      pending.push(() => resolve(undefined));
      return promise;
    },
  });
  try {
    const output = await runCli([
      "send",
      "--port",
      String(receiver.port),
      "--timeout",
      "200",
      FIXTURE,
    ]);
    assertCleanError(output, 2, FIXTURE, "[timeout]");
  } finally {
    released = true;
    for (const release of pending) release();
    await receiver.stop();
  }
});

Deno.test("cli send exits 2 on a missing file without sending", async () => {
  const output = await runCli([
    "send",
    "--port",
    String(closedPort()),
    FIXTURE,
    "tests/fixtures/does_not_exist.hl7",
  ]);
  assertCleanError(
    output,
    2,
    "tests/fixtures/does_not_exist.hl7: Cannot read file",
  );
});

Deno.test("cli send exits 2 on an unreadable header or an empty file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_cli_test_" });
  try {
    await Deno.writeTextFile(`${dir}/bad.hl7`, "MSH|\r");
    await Deno.writeTextFile(`${dir}/empty.hl7`, "\n\r\n");
    const port = String(closedPort());
    const [bad, empty] = await Promise.all([
      runCli(["send", "--port", port, `${dir}/bad.hl7`]),
      runCli(["send", "--port", port, `${dir}/empty.hl7`]),
    ]);
    assertCleanError(bad, 2, "bad.hl7: Cannot read header");
    assertCleanError(empty, 2, "empty.hl7: Message is empty");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli exits 2 with a clear message on bad flags", async () => {
  const cases: [string[], string][] = [
    [["send", "--bogus", "--port", "2575", FIXTURE], 'Unknown flag "--bogus"'],
    [["send", FIXTURE], "Missing required flag --port"],
    [["send", "--port", "abc", FIXTURE], 'Invalid --port "abc"'],
    [["send", "--port", "0", FIXTURE], 'Invalid --port "0"'],
    [["send", "--port", "2575", "--timeout", "soon", FIXTURE], "--timeout"],
    [["send", "--port", "2575"], "No message files given"],
    [["send", "--port", "2575", "-", "-"], "only once"],
    [["listen", "--port", "70000"], 'Invalid --port "70000"'],
    [["listen", "--port"], "Missing value for --port"],
    [["listen", "extra"], 'Unexpected argument "extra"'],
    [["listen", "-x"], 'Unknown flag "-x"'],
    [["--bogus"], 'Unknown flag "--bogus"'],
    [["bogus"], 'Unknown command "bogus"'],
  ];
  const outputs = await Promise.all(cases.map(([args]) => runCli(args)));
  for (const [i, output] of outputs.entries()) {
    assertCleanError(output, 2, cases[i][1]);
  }
});

Deno.test("cli prints usage to stderr and exits 2 without a command", async () => {
  const output = await runCli([]);
  assertEquals(output.code, 2);
  assertEquals(output.stdout, "");
  assertStringIncludes(output.stderr, "mllp send");
  assertStringIncludes(output.stderr, "mllp listen");
});

Deno.test("cli --help exits 0 for the top level and each command", async () => {
  const cases: [string[], string][] = [
    [["--help"], "mllp listen [options]"],
    [["-h"], "mllp send [options]"],
    [["listen", "--help"], "Usage: mllp listen"],
    [["listen", "-h"], "[default: 2575]"],
    [["send", "--help"], "Usage: mllp send"],
    [["send", "-h", "--bogus"], "Exit status"],
  ];
  const outputs = await Promise.all(cases.map(([args]) => runCli(args)));
  for (const [i, output] of outputs.entries()) {
    assertEquals(output.code, 0, output.stderr);
    assertStringIncludes(output.stdout, cases[i][1]);
    assertEquals(output.stderr, "");
  }
  assert(outputs[4].stdout.includes("--timeout MS"));
});
