// Helpers for the command-line tests: run `src/cli.ts` as a child
// process, start `mllp listen` children, and check their output.

import {
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";

export const ROOT = new URL("../..", import.meta.url);
export const FIXTURE = "tests/fixtures/adt_a01_wikipedia.hl7";
export const AA_LINE = /^01052901 AA \d+\.\d ms$/;
export const STACK_TRACE = /^\s+at /m;
/** The longest a CLI run may take in these tests. */
export const RUN_LIMIT = 20_000;

export const SERVER_TLS = [
  "--cert",
  "tls/server/server_certificate.pem",
  "--key",
  "tls/server/private_key.pem",
];
export const ROOT_CA = ["--ca", "tls/root-ca/ca_certificate.pem"];
export const CLIENT_1 = [
  "--cert",
  "tls/client/client_certificate.pem",
  "--key",
  "tls/client/private_key.pem",
];

export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

export function cliCommand(
  args: string[],
  stdin: "piped" | "null" = "null",
  signal?: AbortSignal,
) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/cli.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin,
    stdout: "piped",
    stderr: "piped",
    signal,
  });
}

/**
 * Runs the CLI to completion, feeding `input` to its stdin when given. A
 * run that takes longer than {@linkcode RUN_LIMIT} is sent SIGTERM.
 */
export async function runCli(args: string[], input?: string): Promise<Output> {
  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(), RUN_LIMIT);
  let output: Deno.CommandOutput;
  try {
    if (input === undefined) {
      output = await cliCommand(args, "null", limit.signal).output();
    } else {
      const child = cliCommand(args, "piped", limit.signal).spawn();
      const writer = child.stdin.getWriter();
      try {
        await writer.write(new TextEncoder().encode(input));
      } finally {
        await writer.close();
      }
      output = await child.output();
    }
  } finally {
    clearTimeout(timer);
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

export function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

/** A port nothing listens on. */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A `mllp listen` child process, listening on 127.0.0.1. */
export interface Listening extends AsyncDisposable {
  /** The port it listens on. */
  port: number;
  /** Its process id (to SIGKILL it; `stop()` still collects its output). */
  pid: number;
  /** Sends SIGTERM and returns the exit status and all output. */
  stop(): Promise<Output>;
}

/**
 * Starts `mllp listen --port 0 --hostname 127.0.0.1 ...args` and waits for
 * its "listening on" line. It is killed if that takes over
 * {@linkcode RUN_LIMIT}, or if it outlives SIGTERM by as long.
 */
export async function startListen(args: string[]): Promise<Listening> {
  const child = cliCommand([
    "listen",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    ...args,
  ]).spawn();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  };
  const stdout = new Response(child.stdout).text();
  const reader = child.stderr.pipeThrough(new TextDecoderStream())
    .getReader();
  let stderr = "";
  const drain = async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      stderr += value;
    }
  };
  let port: number | undefined;
  const timer = setTimeout(kill, RUN_LIMIT);
  try {
    while (port === undefined) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`listen ended before listening:\n${stderr}`);
      stderr += value;
      const match = stderr.match(/^listening on 127\.0\.0\.1:(\d+)$/m);
      if (match) port = Number(match[1]);
    }
  } catch (error) {
    kill();
    await drain();
    await child.status;
    await stdout;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const rest = drain();
  let stopping: Promise<Output> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      const timer = setTimeout(kill, RUN_LIMIT);
      try {
        const status = await child.status;
        await rest;
        return { code: status.code, stdout: await stdout, stderr };
      } finally {
        clearTimeout(timer);
      }
    })();
  return {
    port,
    pid: child.pid,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** Runs `mllp send --port PORT ...args FIXTURE`. */
export function sendFixture(port: number, args: string[]): Promise<Output> {
  return runCli(["send", "--port", String(port), ...args, FIXTURE]);
}

export function assertAccepted(output: Output) {
  assertEquals(output.code, 0, output.stderr);
  assertEquals(lines(output.stdout).length, 1, output.stdout);
  assertMatch(lines(output.stdout)[0], AA_LINE);
}

export function assertCleanError(
  output: Output,
  code: number,
  ...parts: string[]
) {
  assertEquals(output.code, code, output.stderr);
  assertEquals(output.stdout, "");
  assertMatch(output.stderr, /^error: /m);
  for (const part of parts) assertStringIncludes(output.stderr, part);
  assertNotMatch(output.stderr, STACK_TRACE);
}
