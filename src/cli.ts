/**
 * The `mllp` command line: run an echo receiver, or send HL7 files to a
 * receiver and print the ACK each one gets.
 *
 * ```sh
 * deno run -A jsr:@x/mllp/cli listen --port 2575
 * deno run -A jsr:@x/mllp/cli send --host 127.0.0.1 --port 2575 adt_a01.hl7
 * ```
 *
 * `send` prints one line per message on stdout, such as
 * `01052901 AA 3.2 ms`, and exits with 0 when every message was accepted,
 * 1 when one was not, and 2 on bad flags, unreadable files or a transport
 * error. Logs go to stderr; message bodies only with `--verbose`.
 *
 * @example Print the usage text
 * ```ts
 * import { main } from "@x/mllp/cli";
 * import { assertEquals, assertStringIncludes } from "@std/assert";
 *
 * let output = "";
 * const stdout = {
 *   writeSync(data: Uint8Array): number {
 *     output += new TextDecoder().decode(data);
 *     return data.length;
 *   },
 * };
 * assertEquals(await main(["send", "--help"], { stdout }), 0);
 * assertStringIncludes(output, "Usage: mllp send");
 * ```
 *
 * @module
 */

import {
  configureSync,
  getLogger,
  getTextFormatter,
  resetSync,
} from "@logtape/logtape";
import { parseArgs as untypedParseArgs } from "@std/cli/parse-args";
import {
  Client,
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_REPLY_TIMEOUT,
  type SendResult,
} from "./client.ts";
import { EchoDispatcher, formatAddress, NAK } from "./dispatcher.ts";
import { isWrapped, unwrap } from "./envelope.ts";
import { ClientError, HeaderError } from "./errors.ts";
import { isHl7, readHeader } from "./hl7.ts";
import { Receiver } from "./receiver.ts";

const logger = getLogger(["mllp", "cli"]);

/** A synchronous byte sink, such as `Deno.stdout` or `Deno.stderr`. */
export interface SyncWriter {
  /**
   * Writes some of the bytes.
   *
   * @param data The bytes to write.
   * @returns How many bytes were written.
   */
  writeSync(data: Uint8Array): number;
}

/** Options for {@linkcode main}, to run the command line in-process. */
export interface MainOptions {
  /**
   * Where `send -` reads its message from.
   *
   * @default {Deno.stdin.readable}
   */
  stdin?: ReadableStream<Uint8Array>;
  /**
   * Where results and help go.
   *
   * @default {Deno.stdout}
   */
  stdout?: SyncWriter;
  /**
   * Where errors and logs go.
   *
   * @default {Deno.stderr}
   */
  stderr?: SyncWriter;
  /** Stops `listen` when aborted, as SIGINT and SIGTERM do. */
  signal?: AbortSignal;
  /**
   * Whether `listen` and `send` configure LogTape (a stderr sink for the
   * `["mllp"]` category) for the time they run, and reset it after. Turn
   * it off when the host application configures LogTape itself.
   *
   * @default {true}
   */
  configureLogging?: boolean;
}

const USAGE = `mllp: send and receive HL7 v2 messages over MLLP

Usage:
  mllp listen [options]               Run a receiver that ACKs every message
  mllp send [options] FILE... | -     Send messages and print their ACKs

Options:
  -h, --help   Show this help; "mllp <command> --help" shows a command's

Run as: deno run -A jsr:@x/mllp/cli <command> [options]

Exit status: 0 success, 1 a message was not accepted (send), 2 usage or
transport error.
`;

const LISTEN_USAGE = `Usage: mllp listen [options]

Run an MLLP receiver with the EchoDispatcher: it answers HL7 messages with AA
and anything else with "mllp_unknown", and logs one line per message to
stderr. Once listening it prints "listening on HOST:PORT" to stderr, then
runs until SIGINT (Ctrl-C) or SIGTERM.

Options:
  --port PORT          Port to listen on; 0 picks a free one  [default: 2575]
  --hostname ADDRESS   Address to listen on                [default: 0.0.0.0]
  -v, --verbose        Log at debug level (includes message bodies)
  -h, --help           Show this help

Exit status:
  0  stopped by SIGINT or SIGTERM
  2  bad flags, or the address cannot be listened on
`;

const SEND_USAGE = `Usage: mllp send --port PORT [options] FILE... | -

Send each FILE ("-" reads stdin) as one message, in order, on one connection.
Segments may be separated by CR, LF or CRLF; they are sent ended by CR, with
trailing blank lines removed. Files are read and checked before anything is
sent.

Options:
  --host HOST      Receiver host name or IP address   [default: 127.0.0.1]
  --port PORT      Receiver port                      (required)
  --timeout MS     How long to wait for each reply, in milliseconds; also
                   caps the connect timeout (10000)   [default: 60000]
  -v, --verbose    Log at debug level to stderr (includes message bodies)
  -h, --help       Show this help

Output: one line per message on stdout:
  CONTROL_ID CODE TIME ms ["MSA-3 text"]     01052901 AA 3.2 ms
  CONTROL_ID mismatch TIME ms ACK CODE names control id "ID"
  CONTROL_ID not-an-ack TIME ms REASON
  - reply TIME ms "REPLY"                    for a payload that is not HL7
  - NAK TIME ms                              a one-byte NAK (0x15) reply

Exit status:
  0  every message got AA or CA (or, if not HL7, a reply other than NAK)
  1  a message got AE, AR, CE or CR, an ACK for another message, a reply
     that is not an ACK, or a NAK
  2  bad flags, an unreadable file or header, or a transport error or
     timeout (sending stops at the first one)
`;

/** A command-line mistake: reported with a hint to `--help`, exit 2. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

interface Io {
  stdout: SyncWriter;
  stderr: SyncWriter;
  stdin: () => ReadableStream<Uint8Array>;
}

/**
 * Runs the `mllp` command line and returns its exit status. It never
 * throws and never exits the process: errors are printed to `stderr` as one
 * line, without a stack trace.
 *
 * @param args The arguments after the program name, such as
 *   `["send", "--port", "2575", "a.hl7"]`.
 * @param options Streams to use instead of the process's, an abort signal
 *   for `listen`, and whether to configure logging.
 * @returns The exit status: 0, 1 or 2 (see `--help`).
 *
 * @example A bad flag is exit status 2
 * ```ts
 * import { main } from "@x/mllp/cli";
 * import { assertEquals, assertStringIncludes } from "@std/assert";
 *
 * let errors = "";
 * const stderr = {
 *   writeSync(data: Uint8Array): number {
 *     errors += new TextDecoder().decode(data);
 *     return data.length;
 *   },
 * };
 * assertEquals(await main(["send", "--port", "x", "a.hl7"], { stderr }), 2);
 * assertStringIncludes(errors, 'Invalid --port "x"');
 * ```
 */
export async function main(
  args: string[],
  options: MainOptions = {},
): Promise<number> {
  const io: Io = {
    stdout: options.stdout ?? Deno.stdout,
    stderr: options.stderr ?? Deno.stderr,
    stdin: () => options.stdin ?? Deno.stdin.readable,
  };
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "listen":
        return await listen(rest, io, options);
      case "send":
        return await send(rest, io, options);
      case "-h":
      case "--help":
        write(io.stdout, USAGE);
        return 0;
      case undefined:
        write(io.stderr, USAGE);
        return 2;
      default:
        write(
          io.stderr,
          `error: ${
            command.startsWith("-") ? "Unknown flag" : "Unknown command"
          } "${command}"\n\n${USAGE}`,
        );
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      write(
        io.stderr,
        `error: ${error.message}\nRun "mllp ${command} --help" for usage.\n`,
      );
    } else {
      write(io.stderr, `error: ${describeError(error)}\n`);
    }
    return 2;
  }
}

async function listen(
  args: string[],
  io: Io,
  options: MainOptions,
): Promise<number> {
  const flags = parseFlags(args, {
    boolean: ["help", "verbose"],
    string: ["port", "hostname"],
  });
  if (flags.help) {
    write(io.stdout, LISTEN_USAGE);
    return 0;
  }
  if (flags._.length > 0) {
    throw new UsageError(`Unexpected argument "${flags._[0]}"`);
  }
  const port = portFlag(flags, "port", 0) ?? 2575;
  const hostname = stringFlag(flags, "hostname") ?? "0.0.0.0";
  using _logging = setupLogging(io.stderr, flags.verbose === true, options);
  let receiver: Receiver;
  try {
    receiver = await Receiver.start({
      port,
      hostname,
      dispatcher: EchoDispatcher,
    });
  } catch (error) {
    write(
      io.stderr,
      `error: Cannot listen on ${formatAddress({ hostname, port })}: ${
        describeError(error)
      }\n`,
    );
    return 2;
  }
  try {
    write(io.stderr, `listening on ${formatAddress(receiver.address)}\n`);
    const reason = await untilStopped(options.signal);
    logger.info("Received {reason}; stopping", { reason });
  } finally {
    await receiver.stop();
  }
  return 0;
}

/** Resolves on SIGINT, SIGTERM or abort; removes its listeners after. */
async function untilStopped(signal?: AbortSignal): Promise<string> {
  const { promise, resolve } = Promise.withResolvers<string>();
  const installed: [Deno.Signal, () => void][] = [];
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    const handler = () => resolve(name);
    try {
      Deno.addSignalListener(name, handler);
      installed.push([name, handler]);
    } catch {
      // Not supported on this platform (SIGTERM on Windows).
    }
  }
  const onAbort = () => resolve("abort");
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await promise;
  } finally {
    for (const [name, handler] of installed) {
      Deno.removeSignalListener(name, handler);
    }
    signal?.removeEventListener("abort", onAbort);
  }
}

interface Outgoing {
  label: string;
  payload: Uint8Array;
  controlId: string | undefined;
}

async function send(
  args: string[],
  io: Io,
  options: MainOptions,
): Promise<number> {
  const flags = parseFlags(args, {
    boolean: ["help", "verbose"],
    string: ["host", "port", "timeout"],
  });
  if (flags.help) {
    write(io.stdout, SEND_USAGE);
    return 0;
  }
  const host = stringFlag(flags, "host") ?? "127.0.0.1";
  const port = portFlag(flags, "port", 1);
  if (port === undefined) throw new UsageError("Missing required flag --port");
  const timeout = timeoutFlag(flags) ?? DEFAULT_REPLY_TIMEOUT;
  const files = flags._;
  if (files.length === 0) {
    throw new UsageError('No message files given (use "-" for stdin)');
  }
  if (files.filter((file) => file === "-").length > 1) {
    throw new UsageError('Stdin ("-") can be given only once');
  }

  const messages: Outgoing[] = [];
  for (const file of files) {
    const label = file === "-" ? "<stdin>" : file;
    let bytes: Uint8Array;
    try {
      bytes = file === "-"
        ? await new Response(io.stdin()).bytes()
        : await Deno.readFile(file);
    } catch (error) {
      write(
        io.stderr,
        `error: ${label}: Cannot read file: ${describeError(error)}\n`,
      );
      return 2;
    }
    const payload = normalize(bytes);
    if (payload.length === 0) {
      write(io.stderr, `error: ${label}: Message is empty\n`);
      return 2;
    }
    let controlId: string | undefined;
    if (isHl7(payload)) {
      try {
        controlId = readHeader(payload).controlId;
      } catch (error) {
        if (!(error instanceof HeaderError)) throw error;
        write(io.stderr, `error: ${label}: ${error.message}\n`);
        return 2;
      }
    }
    messages.push({ label, payload, controlId });
  }

  using _logging = setupLogging(io.stderr, flags.verbose === true, options);
  let client: Client;
  try {
    client = await Client.connect(host, port, {
      replyTimeout: timeout,
      connectTimeout: Math.min(timeout, DEFAULT_CONNECT_TIMEOUT),
    });
  } catch (error) {
    write(io.stderr, `error: ${messages[0].label}: ${describeError(error)}\n`);
    return 2;
  }
  let status = 0;
  try {
    for (const message of messages) {
      const started = performance.now();
      let result: SendResult;
      try {
        result = await client.send(message.payload);
      } catch (error) {
        write(io.stderr, `error: ${message.label}: ${describeError(error)}\n`);
        return 2;
      }
      const [line, code] = describeResult(
        message,
        result,
        performance.now() - started,
      );
      write(io.stdout, line + "\n");
      status = Math.max(status, code);
    }
  } finally {
    await client.close();
  }
  return status;
}

/** The result line for one message, and its exit status (0 or 1). */
function describeResult(
  message: Outgoing,
  result: SendResult,
  ms: number,
): [string, number] {
  const id = message.controlId || "-";
  const time = `${ms.toFixed(1)} ms`;
  switch (result.outcome) {
    case "accept":
      return [`${id} ${result.code} ${time}`, 0];
    case "error":
    case "reject": {
      const text = result.ack.text ? ` ${JSON.stringify(result.ack.text)}` : "";
      return [`${id} ${result.code} ${time}${text}`, 1];
    }
    case "mismatch":
      return [
        `${id} mismatch ${time} ACK ${result.code} names control id ${
          JSON.stringify(result.ack.messageControlId)
        }`,
        1,
      ];
    case "not_ack":
      return [`${id} not-an-ack ${time} ${result.reason}`, 1];
    case "reply":
      if (result.reply.length === 1 && result.reply[0] === NAK) {
        return [`- NAK ${time}`, 1];
      }
      return [`- reply ${time} ${JSON.stringify(result.text)}`, 0];
  }
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * Prepares a file's bytes for sending: drops a UTF-8 BOM and an MLLP frame,
 * trims trailing blank lines, and for HL7 ends every segment with CR
 * (whatever line endings the file used). Other payloads keep their bytes.
 */
function normalize(bytes: Uint8Array): Uint8Array {
  let data = bytes;
  if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) {
    data = data.subarray(3);
  }
  if (isWrapped(data)) data = unwrap(data);
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= data.length; i++) {
    if (i < data.length && data[i] !== CR && data[i] !== LF) continue;
    lines.push(data.subarray(start, i));
    if (data[i] === CR && data[i + 1] === LF) i++;
    start = i + 1;
  }
  while (lines.length > 0 && isBlank(lines[lines.length - 1])) lines.pop();
  if (lines.length === 0) return new Uint8Array(0);
  if (!isHl7(data)) {
    const last = lines[lines.length - 1];
    return data.subarray(0, last.byteOffset - data.byteOffset + last.length);
  }
  const out = new Uint8Array(
    lines.reduce((n, line) => n + line.length + 1, 0),
  );
  let offset = 0;
  for (const line of lines) {
    out.set(line, offset);
    offset += line.length;
    out[offset++] = CR;
  }
  return out;
}

function isBlank(line: Uint8Array): boolean {
  return line.every((byte) => byte === 0x20 || byte === 0x09);
}

/** Configures LogTape to write to stderr until the result is disposed. */
function setupLogging(
  stderr: SyncWriter,
  verbose: boolean,
  options: MainOptions,
): Disposable {
  if (options.configureLogging === false) return { [Symbol.dispose]() {} };
  const format = getTextFormatter({ timestamp: "rfc3339", value: "bare" });
  configureSync({
    reset: true,
    sinks: {
      stderr(record) {
        try {
          write(stderr, format(record));
        } catch {
          // Nowhere left to report it.
        }
      },
    },
    loggers: [
      {
        category: ["mllp"],
        lowestLevel: verbose ? "debug" : "info",
        sinks: ["stderr"],
      },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return { [Symbol.dispose]: () => resetSync() };
}

// @std/cli/parse-args points at a JavaScript file without declarations,
// so the slice of its API used here is typed by hand.
interface ParseOptions {
  boolean: string[];
  string: string[];
  alias: Record<string, string>;
  unknown: (arg: string, key?: string, value?: unknown) => boolean;
}

interface Flags {
  _: string[];
  [flag: string]: unknown;
}

const parseArgs = untypedParseArgs as (
  args: string[],
  options: ParseOptions,
) => Flags;

function parseFlags(
  args: string[],
  spec: { boolean: string[]; string: string[] },
): Flags {
  const unknown: string[] = [];
  const flags = parseArgs(args, {
    boolean: spec.boolean,
    // "_" keeps positional arguments as strings (file names like "0101").
    string: ["_", ...spec.string],
    alias: { h: "help", v: "verbose" },
    unknown: (arg, key) => {
      if (key === undefined) return true;
      unknown.push(arg);
      return false;
    },
  });
  if (unknown.length > 0 && flags.help !== true) {
    throw new UsageError(`Unknown flag "${unknown[0]}"`);
  }
  flags._ = flags._.map(String);
  return flags;
}

function stringFlag(flags: Flags, name: string): string | undefined {
  let value = flags[name];
  if (Array.isArray(value)) value = value[value.length - 1];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") {
    throw new UsageError(`Missing value for --${name}`);
  }
  return value;
}

function portFlag(flags: Flags, name: string, min: number): number | undefined {
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

function timeoutFlag(flags: Flags): number | undefined {
  const value = stringFlag(flags, "timeout");
  if (value === undefined) return undefined;
  const timeout = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(timeout > 0)) {
    throw new UsageError(
      `Invalid --timeout "${value}": expected a positive number of milliseconds`,
    );
  }
  return timeout;
}

function describeError(error: unknown): string {
  if (error instanceof ClientError) return `${error.message} [${error.reason}]`;
  return error instanceof Error ? error.message : String(error);
}

const encoder = new TextEncoder();

function write(writer: SyncWriter, text: string): void {
  const data = encoder.encode(text);
  let offset = 0;
  while (offset < data.length) {
    offset += writer.writeSync(data.subarray(offset));
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
