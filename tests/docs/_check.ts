// Running the docs' blocks as a reader would paste them, and saying how
// what they do differs from what the page shows.

import {
  isLogLine,
  matches,
  normalise,
  type ShownOutput,
  type TsBlock,
} from "./_blocks.ts";

/** The repository root: where a reader runs the docs' commands. */
export const ROOT = new URL("../..", import.meta.url);
/** The longest a block or a command may run before it counts as hanging. */
export const RUN_LIMIT = 30_000;

/** What a child process did. */
export interface Run {
  code: number;
  stdout: string[];
  stderr: string[];
  timedOut: boolean;
}

function outputLines(bytes: Uint8Array): string[] {
  const lines = new TextDecoder().decode(bytes).split("\n");
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * Runs `deno ...args` in `cwd` (the repository root unless given), killed
 * after `limit` ms.
 */
export async function run(
  args: string[],
  limit = RUN_LIMIT,
  cwd: string | URL = ROOT,
): Promise<Run> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), limit);
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args,
      cwd,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: stop.signal,
    }).output();
    return {
      code: output.code,
      stdout: outputLines(output.stdout),
      // Deno's own lines when it fills an empty cache are not the code's.
      stderr: outputLines(output.stderr)
        .filter((line) => !/^Download https?:\/\//.test(line)),
      timedOut: stop.signal.aborted,
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs a block alone, from a file of its own outside the repository, with
 * the repository's deno.json (its import map) and its root as the working
 * directory.
 */
export async function runBlock(
  block: TsBlock,
  limit = RUN_LIMIT,
): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "mllp_doc_block_" });
  try {
    const file = `${dir}/block.ts`;
    await Deno.writeTextFile(file, block.code);
    const config = new URL("deno.json", ROOT).pathname;
    return await run(["run", "-A", "--config", config, file], limit);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function indented(lines: string[]): string {
  return lines.length === 0
    ? "  (nothing)"
    : lines.map((l) => `  ${l}`).join("\n");
}

/** Says how `actual` differs from `shown`, line by line, if it does. */
export function compareShown(
  actual: string[],
  shown: string[],
  what: string,
): string[] {
  const same = actual.length === shown.length &&
    actual.every((line, i) => matches(shown[i], line));
  if (same) return [];
  return [
    `${what}:\n${indented(actual.map(normalise))}\nbut the page shows:\n${
      indented(shown.map(normalise))
    }`,
  ];
}

function ended(result: Run, what: string, limit: number): string[] {
  if (result.timedOut) {
    return [
      `${what} did not end by itself within ${limit} ms (a receiver, a client or a timer left running?)`,
    ];
  }
  if (result.code !== 0) {
    return [
      `${what} exited with ${result.code}:\n${indented(result.stderr)}`,
    ];
  }
  return [];
}

/**
 * Runs a block as pasted and lists what is wrong with it: it does not end
 * by itself, throws, writes to stderr, or prints other lines than the page
 * shows. An empty list means the block is right.
 */
export async function checkBlock(
  block: TsBlock,
  limit = RUN_LIMIT,
): Promise<string[]> {
  const where = `The block at ${block.file}:${block.line}`;
  const result = await runBlock(block, limit);
  const problems = ended(result, where, limit);
  if (problems.length > 0) return problems;
  if (result.stderr.length > 0) {
    problems.push(`${where} wrote to stderr:\n${indented(result.stderr)}`);
  }
  problems.push(
    ...compareShown(result.stdout, block.shown, `${where} printed`),
  );
  return problems;
}

/**
 * Runs the command an output block is attributed to and lists how its
 * output differs from the block: results against stdout, and log lines (if
 * the block shows any) against stderr.
 */
export async function checkCommand(
  output: ShownOutput,
  where: string,
  limit = RUN_LIMIT,
): Promise<string[]> {
  const command = output.command ?? [];
  const name = `deno ${command.join(" ")}`;
  const result = await run(command, limit);
  const problems = ended(result, name, limit);
  if (problems.length > 0) return problems;
  problems.push(...compareShown(
    result.stdout,
    output.lines.filter((line) => !isLogLine(line)),
    `${name} printed (stdout), for ${where}`,
  ));
  const logs = output.lines.filter(isLogLine);
  if (logs.length > 0) {
    // `deno task` announces the task on stderr before it runs it.
    const stderr = result.stderr.filter((line) => !/^Task \S+ /.test(line));
    problems.push(
      ...compareShown(stderr, logs, `${name} logged (stderr), for ${where}`),
    );
  }
  return problems;
}
