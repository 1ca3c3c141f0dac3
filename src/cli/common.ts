/**
 * What the command line's commands share: output, flag parsing, error
 * text and logging set-up.
 *
 * @module
 */

import {
  configureSync,
  type Logger,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";
import { parseArgs as untypedParseArgs } from "@std/cli/parse-args";
import type { ClientTlsOptions } from "../client/client.ts";
import { ClientError, TlsHandshakeError } from "../client/errors.ts";
import { BatchedLines, lineFormatter } from "../observe/log_lines.ts";
import { closest } from "./suggest.ts";

/** A synchronous byte sink, such as `Deno.stdout` or `Deno.stderr`. */
export interface Writer {
  writeSync(data: Uint8Array): number;
}

/** The streams a command uses. */
export interface Io {
  /**
   * How the command line is run, for hints: `mllp`, or the command that
   * was run, such as `deno run -A src/cli.ts`.
   */
  program: string;
  stdout: Writer;
  stderr: Writer;
  stdin: () => ReadableStream<Uint8Array>;
  /** Whether stdout is a terminal. */
  stdoutIsTerminal: boolean;
  /** Whether stderr is a terminal (a progress bar may be drawn there). */
  stderrIsTerminal: boolean;
  /** The width of the stderr terminal, when known. */
  columns: number | undefined;
}

/** What a command needs of `main`'s options. */
export interface CommandOptions {
  signal?: AbortSignal;
  configureLogging?: boolean;
}

/** A command-line mistake: reported with a hint to `--help`, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const encoder = new TextEncoder();

/** Writes all of `text`, however many calls it takes. */
export function write(writer: Writer, text: string): void {
  // Log lines logged before go first, wherever they go: on a terminal
  // showing both stdout and stderr, lines keep their order.
  batched?.flush();
  const data = encoder.encode(text);
  let offset = 0;
  while (offset < data.length) {
    offset += writer.writeSync(data.subarray(offset));
  }
}

/** An error as one line: its message and, for a client error, its reason. */
export function describeError(error: unknown): string {
  if (error instanceof TlsHandshakeError) {
    return `${error.message} [${error.reason}, refused by: ${error.refusedBy}, failure: ${error.failure}]`;
  }
  if (error instanceof ClientError) return `${error.message} [${error.reason}]`;
  return error instanceof Error ? error.message : String(error);
}

/** The batched log lines of the running command, if it logs. */
let batched: BatchedLines | undefined;

/** Message templates split into literal parts and property names. */
const templates = new Map<string, readonly string[]>();

/** `"a {x} b"` as `["a ", "x", " b"]`: literals at even indexes. */
function splitTemplate(template: string): readonly string[] {
  let parts = templates.get(template);
  if (parts === undefined) {
    parts = template.split(/\{([^{}]*)\}/);
    templates.set(template, parts);
  }
  return parts;
}

/**
 * Logs an info line of the command, as `logger.info(template, properties)`
 * does, for a line written for every message: straight into the command's
 * own log sink when it has one, which writes the same line without
 * LogTape's parsing of the template on every call (a receiver's log line
 * would cost more than answering its message); through LogTape otherwise
 * (`main` called with `configureLogging: false`).
 *
 * @param logger The logger of the line's category.
 * @param template The message, with `{name}` for each property.
 * @param properties The values of the properties.
 */
export function logInfo(
  logger: Logger,
  template: string,
  properties: Record<string, unknown>,
): void {
  if (batched === undefined) {
    logger.info(template, properties);
    return;
  }
  const split = splitTemplate(template);
  const message: unknown[] = new Array(split.length);
  for (let i = 0; i < split.length; i++) {
    message[i] = i % 2 === 0 ? split[i] : properties[split[i]];
  }
  batched.sink({
    category: logger.category,
    level: "info",
    timestamp: Date.now(),
    message,
    rawMessage: template,
    properties,
  } as LogRecord);
}

/**
 * Configures LogTape to write to stderr until the result is disposed, at
 * `level` when given (else debug when verbose, info otherwise). Lines are
 * written in batches (see {@linkcode BatchedLines}); disposing writes the
 * last of them.
 */
export function setupLogging(
  stderr: Writer,
  verbose: boolean,
  options: CommandOptions,
  level?: "info" | "warning",
): Disposable {
  if (options.configureLogging === false) return { [Symbol.dispose]() {} };
  const lines = new BatchedLines(stderr, lineFormatter());
  batched = lines;
  configureSync({
    reset: true,
    sinks: { stderr: lines.sink },
    loggers: [
      {
        category: ["mllp"],
        lowestLevel: level ?? (verbose ? "debug" : "info"),
        sinks: ["stderr"],
      },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return {
    [Symbol.dispose]: () => {
      resetSync();
      lines.flush();
      if (batched === lines) batched = undefined;
    },
  };
}

// @std/cli/parse-args points at a JavaScript file without declarations,
// so the slice of its API used here is typed by hand.
interface ParseOptions {
  boolean: string[];
  string: string[];
  collect: string[];
  negatable: string[];
  default: Record<string, unknown>;
  alias: Record<string, string>;
  unknown: (arg: string, key?: string, value?: unknown) => boolean;
}

/** Parsed flags: positional arguments in `_`, flags by name. */
export interface Flags {
  _: string[];
  [flag: string]: unknown;
}

const parseArgs = untypedParseArgs as (
  args: string[],
  options: ParseOptions,
) => Flags;

/** What a command accepts. */
export interface FlagSpec {
  boolean: string[];
  string: string[];
  collect?: string[];
  /**
   * Booleans that also take a `--no-` form. They are `undefined` when
   * neither form is given.
   */
  negatable?: string[];
}

/**
 * Parses a command's flags.
 *
 * @throws {UsageError} On an unknown flag (unless `--help` is given).
 */
export function parseFlags(args: string[], spec: FlagSpec): Flags {
  const unknown: string[] = [];
  const collect = spec.collect ?? [];
  const flags = parseArgs(args, {
    boolean: spec.boolean,
    // "_" keeps positional arguments as strings (file names like "0101").
    string: ["_", ...spec.string, ...collect],
    collect,
    negatable: spec.negatable ?? [],
    default: Object.fromEntries(
      (spec.negatable ?? []).map((name) => [name, undefined]),
    ),
    alias: { h: "help", v: "verbose" },
    unknown: (arg, key) => {
      if (key === undefined) return true;
      unknown.push(arg);
      return false;
    },
  });
  if (unknown.length > 0 && flags.help !== true) {
    const typed = unknown[0].replace(/^-+/, "").split("=")[0];
    const meant = typed.length < 3 ? undefined : closest(typed, [
      ...spec.boolean,
      ...spec.string,
      ...collect,
      ...(spec.negatable ?? []).map((name) => `no-${name}`),
    ]);
    throw new UsageError(
      `Unknown flag "${unknown[0]}"${
        meant === undefined ? "" : `: did you mean "--${meant}"?`
      }`,
    );
  }
  flags._ = flags._.map(String);
  return flags;
}

/** The last value of a string flag, or `undefined` when absent. */
export function stringFlag(flags: Flags, name: string): string | undefined {
  let value = flags[name];
  if (Array.isArray(value)) value = value[value.length - 1];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") {
    throw new UsageError(`Missing value for --${name}`);
  }
  return value;
}

/** Every value of a flag that may be repeated. */
export function listFlag(flags: Flags, name: string): string[] {
  const value = flags[name];
  const values = Array.isArray(value)
    ? value
    : value === undefined
    ? []
    : [value];
  for (const item of values) {
    if (typeof item !== "string" || item === "") {
      throw new UsageError(`Missing value for --${name}`);
    }
  }
  return values as string[];
}

/** A port flag from `min` to 65535, or `undefined` when absent. */
export function portFlag(
  flags: Flags,
  name: string,
  min: number,
): number | undefined {
  const value = stringFlag(flags, name);
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!/^\d{1,5}$/.test(value) || port < min || port > 65535) {
    throw new UsageError(
      `Invalid --${name} "${value}": expected a number from ${min} to 65535`,
    );
  }
  return port;
}

/** A whole-number flag of at least `min`, or `undefined` when absent. */
export function numberFlag(
  flags: Flags,
  name: string,
  min: number,
): number | undefined {
  const value = stringFlag(flags, name);
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^\d+$/.test(value) || !(number >= min)) {
    throw new UsageError(
      `Invalid --${name} "${value}": expected a whole number >= ${min}`,
    );
  }
  return number;
}

/** A positive decimal flag (`--timeout`, `--rate`), or `undefined`. */
export function positiveFlag(
  flags: Flags,
  name: string,
  unit: string,
): number | undefined {
  const value = stringFlag(flags, name);
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(number > 0)) {
    throw new UsageError(
      `Invalid --${name} "${value}": expected a positive number of ${unit}`,
    );
  }
  return number;
}

/** `--timeout MS`, or `undefined` when absent. */
export function timeoutFlag(flags: Flags): number | undefined {
  return positiveFlag(flags, "timeout", "milliseconds");
}

/**
 * The client's TLS settings from `--ca`, `--cert`, `--key` and
 * `--servername`: TLS is on when any of them is given.
 */
export function sendTlsFlags(flags: Flags): ClientTlsOptions | undefined {
  const caCerts = listFlag(flags, "ca");
  const cert = stringFlag(flags, "cert");
  const key = stringFlag(flags, "key");
  const serverName = stringFlag(flags, "servername");
  if (cert !== undefined && key === undefined) {
    throw new UsageError("--cert needs --key");
  }
  if (key !== undefined && cert === undefined) {
    throw new UsageError("--key needs --cert");
  }
  if (
    caCerts.length === 0 && cert === undefined && serverName === undefined
  ) {
    return undefined;
  }
  return {
    caCerts: caCerts.length > 0 ? caCerts : undefined,
    cert,
    key,
    serverName,
  };
}
