/**
 * The examples as their users run them: real `deno run` children, no
 * terminal, from the root of the clone.
 *
 * - Without permission flags each ends with one line that names the flag
 *   (and the example's `-P` command), exit status non-zero, no stack.
 * - With `-P` (the permission set in deno.json) each runs.
 * - Logging: log lines go to stderr, all in the command line's format;
 *   stdout holds results only.
 * - The command shown in each example's header and in the README is the
 *   one that works.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";

const ROOT = new URL("../..", import.meta.url);
/** The longest one child may take. */
const LIMIT = 30_000;

/** A log line as the `mllp` command writes it (RFC 3339 UTC time, level, category). */
const LOG_LINE =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z \[(TRC|DBG|INF|WRN|ERR|FTL)\] [\w-]+(·[\w-]+)*: /;
/** Anything that looks like a log line, in whatever format. */
const LOG_LIKE =
  /\[(TRC|DBG|INF|WRN|ERR|FTL)\]|\b(DEBUG|INFO|WARN(ING)?)\b|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;
const STACK_TRACE = /^\s+at /m;

/** Every example, and the `deno run -P` command its header shows. */
const EXAMPLES = [
  "receiver",
  "client",
  "custom_dispatcher",
  "non_hl7",
  "demo",
  "ack_modes",
  "tls_receiver",
  "tls_client",
  "http_bridge",
];

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

function command(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs a child to its end (killed after {@linkcode LIMIT}). */
async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<Output> {
  const child = command(args, env).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), LIMIT);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** A long-running child, read until a line matches. */
interface Running {
  /** The first match of the pattern, on stdout or stderr. */
  match: RegExpMatchArray;
  /** Sends `signal` and returns the exit status and all output. */
  stop(signal?: Deno.Signal): Promise<Output>;
}

async function start(
  args: string[],
  pattern: RegExp,
  env: Record<string, string> = {},
): Promise<Running> {
  const child = command(args, env).spawn();
  const output = { stdout: "", stderr: "" };
  const found = Promise.withResolvers<RegExpMatchArray | undefined>();
  const drain = async (
    stream: ReadableStream<Uint8Array>,
    key: "stdout" | "stderr",
  ) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output[key] += text;
      const match = (output.stdout + "\n" + output.stderr).match(pattern);
      if (match) found.resolve(match);
    }
  };
  const drained = Promise.all([
    drain(child.stdout, "stdout"),
    drain(child.stderr, "stderr"),
  ]);
  drained.then(() => found.resolve(undefined));
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // Exited already.
    }
  };
  const timer = setTimeout(() => kill("SIGKILL"), LIMIT);
  const match = await found.promise;
  clearTimeout(timer);
  const stop = async (signal: Deno.Signal = "SIGINT") => {
    kill(signal);
    const timer = setTimeout(() => kill("SIGKILL"), LIMIT);
    try {
      const { code } = await child.status;
      await drained;
      return { code, ...output };
    } finally {
      clearTimeout(timer);
    }
  };
  if (match === undefined) {
    const end = await stop("SIGKILL");
    throw new Error(
      `${
        args.join(" ")
      } did not print ${pattern}:\n${end.stdout}\n${end.stderr}`,
    );
  }
  return { match, stop };
}

/** The port a receiver example's start-up line names. */
const LISTENING = /Receiver listening on [\d.]+:(\d+)/;

// --- Without permissions ---------------------------------------------------------

Deno.test("examples: without permission flags each ends with one line naming the flag and its -P command, exit non-zero, no stack trace", async () => {
  const outputs = await Promise.all(
    EXAMPLES.map((name) => run(["run", `examples/${name}.ts`])),
  );
  for (const [i, output] of outputs.entries()) {
    const name = EXAMPLES[i];
    const context = `examples/${name}.ts:\n${output.stderr}`;
    assert(output.code !== 0, context);
    assertNotMatch(output.stderr, STACK_TRACE, context);
    assertEquals(output.stdout, "", context);
    // Log lines may come first; then one line says what to do.
    const other = lines(output.stderr).filter((line) => !LOG_LINE.test(line));
    assertEquals(other.length, 1, context);
    assertMatch(other[0], /^error: .*--allow-(net|read|env)\b/, context);
    assertStringIncludes(
      other[0],
      `deno run -P examples/${name}.ts`,
      context,
    );
  }
});

// --- With -P -------------------------------------------------------------------

Deno.test("examples: `deno run -P` runs the receiver and client pair, the TLS pair and the HTTP bridge with deno.json's permission set", async () => {
  const receiver = await start(
    ["run", "-P", "examples/receiver.ts", "--port", "0"],
    LISTENING,
  );
  const tlsReceiver = await start(
    ["run", "-P", "examples/tls_receiver.ts", "--port", "0"],
    LISTENING,
  );
  try {
    const port = receiver.match[1];
    const tlsPort = tlsReceiver.match[1];
    const [client, tlsClient] = await Promise.all([
      run(["run", "-P", "examples/client.ts", "--port", port]),
      run(["run", "-P", "examples/tls_client.ts", "--port", tlsPort]),
    ]);
    for (const output of [client, tlsClient]) {
      assertEquals(output.code, 0, output.stderr);
      assertEquals(
        output.stdout,
        "accept AA A real MLLP message dispatcher was not provided\n",
      );
    }
    const bridge = await start(
      ["run", "-P", "examples/http_bridge.ts"],
      /HTTP bridge on (http:\/\/127\.0\.0\.1:\d+\/)/,
      {
        MLLP_HOST: "127.0.0.1",
        MLLP_PORT: port,
        PORT: "0",
        BRIDGE_HOSTNAME: "127.0.0.1",
      },
    );
    try {
      const response = await fetch(bridge.match[1], {
        method: "POST",
        body: await Deno.readTextFile(
          new URL("tests/fixtures/adt_a01_wikipedia.hl7", ROOT),
        ),
      });
      const body = await response.json();
      assertEquals([response.status, body.code], [200, "AA"]);
    } finally {
      const stopped = await bridge.stop("SIGTERM");
      assertEquals(stopped.code, 0, stopped.stderr);
    }
  } finally {
    for (const running of [receiver, tlsReceiver]) {
      const stopped = await running.stop();
      assertEquals(stopped.code, 0, stopped.stderr);
    }
  }
});

Deno.test("examples: `deno run -P` runs the ones that run on their own", async () => {
  const names = ["demo", "custom_dispatcher", "non_hl7", "ack_modes"];
  const outputs = await Promise.all(
    names.map((name) => run(["run", "-P", `examples/${name}.ts`])),
  );
  for (const [i, output] of outputs.entries()) {
    assertEquals(output.code, 0, `${names[i]}: ${output.stderr}`);
    assertNotMatch(output.stderr, /NotCapable|Requires \w+ access/);
  }
});

// --- Logging -------------------------------------------------------------------

/** Every stderr line is a log line in the one format; stdout has none. */
function assertLoggingRule(output: Output, context: string) {
  for (const line of lines(output.stderr)) {
    assertMatch(line, LOG_LINE, `${context}: stderr line`);
  }
  for (const line of lines(output.stdout)) {
    assertNotMatch(line, LOG_LIKE, `${context}: stdout line`);
  }
}

Deno.test("examples: log lines go to stderr in the command line's format, results alone to stdout (demo, receiver, client, mllp send)", async () => {
  const demo = await run(["run", "-A", "examples/demo.ts"]);
  assertEquals(demo.code, 0, demo.stderr);
  assertLoggingRule(demo, "demo");
  assertStringIncludes(demo.stdout, 'outcome: "accept"');
  assert(lines(demo.stderr).length >= 5, demo.stderr);

  const receiver = await start(
    ["run", "-A", "examples/receiver.ts", "--port", "0"],
    /press Ctrl-C/,
  );
  let stopped: Output;
  try {
    const port = LISTENING.exec(receiver.match.input ?? "")?.[1];
    if (port === undefined) throw new Error(receiver.match.input);
    const client = await run([
      "run",
      "-A",
      "examples/client.ts",
      "--port",
      port,
    ]);
    assertEquals(client.code, 0, client.stderr);
    assertLoggingRule(client, "client");
    assertEquals(
      client.stdout,
      "accept AA A real MLLP message dispatcher was not provided\n",
    );
    // The command line writes its log lines in the same format.
    const send = await run([
      "run",
      "-A",
      "src/cli.ts",
      "send",
      "--port",
      port,
      "--verbose",
      "tests/fixtures/adt_a01_wikipedia.hl7",
    ]);
    assertEquals(send.code, 0, send.stderr);
    const sendLogs = lines(send.stderr).filter((line) =>
      /\[(TRC|DBG|INF|WRN|ERR|FTL)\]/.test(line)
    );
    assert(sendLogs.length > 0, send.stderr);
    for (const line of sendLogs) assertMatch(line, LOG_LINE);
  } finally {
    stopped = await receiver.stop();
  }
  assertEquals(stopped.code, 0, stopped.stderr);
  // A receiver has no results: everything it says is a log line.
  assertEquals(stopped.stdout, "");
  assertLoggingRule(stopped, "receiver");
  assertStringIncludes(stopped.stderr, "The EchoDispatcher simply logs");
});

// --- The commands shown -----------------------------------------------------------

Deno.test("examples: each example's header and the README show the -P command", async () => {
  for (const name of EXAMPLES) {
    const source = await Deno.readTextFile(
      new URL(`examples/${name}.ts`, ROOT),
    );
    const header = source.slice(0, source.indexOf("*/"));
    assertStringIncludes(header, `deno run -P examples/${name}.ts`, name);
    assertNotMatch(header, /deno (run|serve) -A examples\//, name);
  }
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  for (
    const name of ["receiver", "client", "custom_dispatcher", "non_hl7"]
  ) {
    assertStringIncludes(readme, `deno run -P examples/${name}.ts`, name);
  }
  assertNotMatch(readme, /deno run -A examples\//);
});
