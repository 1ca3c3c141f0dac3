/**
 * Shared test helpers: fixtures and stream plumbing.
 *
 * @module
 */

import {
  configure,
  type LogLevel,
  type LogRecord,
  reset,
} from "@logtape/logtape";
import { concat as untypedConcat } from "@std/bytes";
import { deadline as untypedDeadline } from "@std/async/deadline";
import type { AckAccepted, AckErrored, AckRejected } from "../src/hl7/ack.ts";
import type {
  ApplicationAckField,
  ReplyResult,
  SendResult,
} from "../src/client/client.ts";

const concat: (buffers: Uint8Array[]) => Uint8Array = untypedConcat;

/** Reads a file from `tests/fixtures/` as bytes. */
export function fixtureBytes(name: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Reads a file from `tests/fixtures/` as UTF-8 text. */
export function fixtureText(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Concatenates byte arrays. */
export function bytes(
  ...parts: (Uint8Array | string | number[])[]
): Uint8Array {
  const arrays = parts.map((p) =>
    typeof p === "string"
      ? new TextEncoder().encode(p)
      : p instanceof Uint8Array
      ? p
      : new Uint8Array(p)
  );
  return concat(arrays);
}

/** Runs chunks through a transform stream and collects what comes out. */
export function collect<I, O>(
  chunks: I[],
  transform: TransformStream<I, O>,
): Promise<O[]> {
  return Array.fromAsync(ReadableStream.from(chunks).pipeThrough(transform));
}

/** Decodes UTF-8. */
export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

/** Narrows a send result to an accepted ACK, or fails with what it was. */
export function accepted(result: SendResult): AckAccepted {
  if (result.outcome !== "accept") {
    throw new Error(`Expected an accepted ACK, got ${JSON.stringify(result)}`);
  }
  return result;
}

/** Narrows a send result to a non-HL7 reply, or fails with what it was. */
export function replied(result: SendResult): ReplyResult {
  if (result.outcome !== "reply") {
    throw new Error(`Expected a plain reply, got ${result.outcome}`);
  }
  return result;
}

/** The first of these commands that runs, or why none does. */
export async function findTool(
  candidates: string[],
  args: string[],
): Promise<{ command: string } | { missing: string }> {
  const reasons: string[] = [];
  for (const command of candidates) {
    try {
      const { success } = await new Deno.Command(command, {
        args,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      if (success) return { command };
      reasons.push(`${command} ${args.join(" ")} failed`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      reasons.push(`${command} is missing`);
    }
  }
  return { missing: reasons.join("; ") };
}

/** Bounds a wait (the repack ships without types). */
export const deadline: <T>(promise: Promise<T>, ms: number) => Promise<T> =
  untypedDeadline;

/** A send's result that is an ACK: accept, error or reject. */
export type Acked =
  & (AckAccepted | AckErrored | AckRejected)
  & ApplicationAckField;

/** The result as an accept, error or reject; fails the test otherwise. */
export function acked(result: SendResult): Acked {
  if (
    result.outcome !== "accept" && result.outcome !== "error" &&
    result.outcome !== "reject"
  ) throw new Error(`Expected an ACK outcome, got ${result.outcome}`);
  return result;
}

/** A log line captured by {@linkcode withCapturedLogs}. */
export interface LogLine {
  level: LogLevel;
  category: readonly string[];
  text: string;
}

/** Renders a record's message: template parts with the values between. */
function render(record: LogRecord): string {
  return record.message
    .map((part, i) => i % 2 === 0 ? part as string : String(part))
    .join("");
}

/**
 * Runs `fn` with the `mllp` logs (debug and up) captured into the lines it
 * gets, instead of printed; logging is reset afterwards.
 */
export async function withCapturedLogs(
  fn: (logs: LogLine[]) => Promise<void>,
): Promise<void> {
  const logs: LogLine[] = [];
  await configure({
    reset: true,
    sinks: {
      buffer: (record: LogRecord) => {
        logs.push({
          level: record.level,
          category: record.category,
          text: render(record),
        });
      },
    },
    loggers: [
      { category: ["mllp"], sinks: ["buffer"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [] },
    ],
  });
  try {
    await fn(logs);
  } finally {
    await reset();
  }
}
