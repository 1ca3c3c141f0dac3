/**
 * The `mllp` command line: run a receiver, or send HL7 files and
 * directories to one and print the ACK each message gets.
 *
 * ```sh
 * deno run -A jsr:@x/mllp/cli listen --port 2575 --save ./inbox
 * deno run -A jsr:@x/mllp/cli send --host 127.0.0.1 --port 2575 adt_a01.hl7 ./outbox/
 * ```
 *
 * `send` reads files, directories (recursively, in sorted order) and stdin;
 * a file may hold many messages (each line starting with `MSH` starts one,
 * a blank line ends one; batch `FHS`/`BHS`/`BTS`/`FTS` segments are
 * dropped). It reads and checks everything before it sends anything, and
 * names each file it cannot send with the reason (not HL7, a header or
 * charset it cannot send, ...): then it sends nothing, unless
 * `--keep-going`. `--raw` sends payloads that are not HL7 too. It prints
 * one line per message on stdout, such as `01052901 AA 3.2 ms` (or one
 * JSON object with `--json`), above a progress bar with rate and ETA on
 * stderr when stderr is a terminal, and ends with a summary: messages
 * written, answered and accepted, ACK codes, timeouts, round-trip p50 and
 * p99. `--rate N` sends at most N messages per second. It exits with 0
 * when every message was accepted, 1 when one was not, and 2 on bad
 * flags, files it cannot send, a transport error or a failed TLS
 * handshake. Logs go to stderr; message bodies only with `--verbose`.
 * Hints name the command as it was run (`Run "deno run -A src/cli.ts send
 * --help" for usage`), and a mistyped flag or command gets a "did you
 * mean".
 *
 * `listen` answers every message: `AA` by default, or `--reply ae|ar`;
 * `--save DIR` writes each message to `DIR/<control id>.hl7` before
 * answering it.
 *
 * The protocol's modes have flags too: `--mllp-release 2`, `--charset
 * NAME`, `--charset-override NAME`, `--strict-charset` and `--allow-wide`
 * on both commands; `listen --batches each|whole`,
 * `--batch-acks errors|all` and `--original-mode`; `send --batch` (a batch
 * file as one frame) and `--wait-app-ack` (print the enhanced-mode
 * application ACK too).
 *
 * `bench` measures receivers with a lean load generator (messages/s,
 * round trips, CPU and RSS, against a bare TCP responder), or clients
 * against a minimal ACK responder (`--clients lean,client`); see `mllp
 * bench --help` and `@x/mllp/unstable-bench`:
 *
 * ```sh
 * deno run -A jsr:@x/mllp/cli bench --target raw,floor,self --connections 64
 * deno run -A jsr:@x/mllp/cli bench --clients lean,client --mode enhanced
 * ```
 *
 * Both `listen` and `send` speak TLS when given certificates: `listen
 * --cert FILE --key FILE` (and `--ca FILE --verify-peer` to require client
 * certificates), `send --ca FILE` (and `--cert FILE --key FILE` to present
 * one). `listen --allowed-clients LIST` restricts who may connect.
 *
 * `deno task compile`, in a clone of the repository, builds the command
 * line into a single `mllp` executable with `deno compile`.
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

import { describeError, type Io, UsageError, write } from "./cli/common.ts";
import { listen } from "./cli/listen.ts";
import { commandName } from "./cli/program.ts";
import { send } from "./cli/send.ts";
import { closest } from "./cli/suggest.ts";

/** The commands, for "did you mean". */
const COMMANDS = ["listen", "send", "bench"];

/**
 * A synchronous byte sink, such as `Deno.stdout` or `Deno.stderr`.
 *
 * @example Collect what the command line prints
 * ```ts
 * import { main, type SyncWriter } from "@x/mllp/cli";
 * import { assertStringIncludes } from "@std/assert";
 *
 * let text = "";
 * const stdout: SyncWriter = {
 *   writeSync(data) {
 *     text += new TextDecoder().decode(data);
 *     return data.length;
 *   },
 * };
 * await main(["--help"], { stdout });
 * assertStringIncludes(text, "mllp listen");
 * ```
 */
export interface SyncWriter {
  /**
   * Writes some of the bytes.
   *
   * @param data The bytes to write.
   * @returns How many bytes were written.
   */
  writeSync(data: Uint8Array): number;
}

/**
 * Options for {@linkcode main}, to run the command line in-process.
 *
 * @example Run a receiver in-process and stop it with a signal
 * ```ts
 * import { main, type MainOptions } from "@x/mllp/cli";
 * import { assertEquals } from "@std/assert";
 *
 * const stop = new AbortController();
 * const options: MainOptions = {
 *   signal: stop.signal,
 *   configureLogging: false,
 *   stderr: {
 *     writeSync(data) {
 *       // "listening on 127.0.0.1:PORT": stop at once.
 *       if (new TextDecoder().decode(data).startsWith("listening")) {
 *         stop.abort();
 *       }
 *       return data.length;
 *     },
 *   },
 * };
 * const args = ["listen", "--port", "0", "--hostname", "127.0.0.1"];
 * assertEquals(await main(args, options), 0);
 * ```
 */
export interface MainOptions {
  /**
   * Where `send -` reads its messages from.
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
   * How the command line is run, as hints name it: `Run "PROGRAM send
   * --help" for usage`. Run as a program (`deno run -A src/cli.ts`, from
   * JSR, or compiled), it is the command that was run.
   *
   * @default {"mllp"}
   */
  program?: string;
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
  mllp send [options] FILE|DIR... | -
                                      Send messages and print their ACKs
  mllp bench [options]                Measure a receiver: messages/s and
                                      round trips, against a raw baseline

Options:
  -h, --help   Show this help; "mllp <command> --help" shows a command's

Run as: deno run -A jsr:@x/mllp/cli <command> [options], or as the
binary that "deno task compile" builds: mllp <command> [options]

Exit status: 0 success, 1 a message was not accepted (send), 2 usage,
start-up, transport or TLS handshake error.
`;

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
  const stdout = options.stdout ?? Deno.stdout;
  const stderr = options.stderr ?? Deno.stderr;
  const stderrIsTerminal = stderr === Deno.stderr && Deno.stderr.isTerminal();
  const program = options.program ?? "mllp";
  const io: Io = {
    program,
    stdout,
    stderr,
    stdin: () => options.stdin ?? Deno.stdin.readable,
    stdoutIsTerminal: stdout === Deno.stdout && Deno.stdout.isTerminal(),
    stderrIsTerminal,
    columns: stderrIsTerminal ? terminalColumns() : undefined,
  };
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "listen":
        return await listen(rest, io, options);
      case "send":
        return await send(rest, io, options);
      case "bench":
        // Loaded when asked for: `send` and `listen` never load the
        // load generator.
        return await (await import("./cli/bench.ts")).bench(rest, io, options);
      case "-h":
      case "--help":
        write(io.stdout, USAGE);
        return 0;
      case undefined:
        write(io.stderr, USAGE);
        return 2;
      default: {
        const flag = command.startsWith("-");
        const meant = closest(
          command.replace(/^-+/, ""),
          flag ? ["help"] : COMMANDS,
        );
        const guess = meant === undefined
          ? ""
          : `: did you mean "${flag ? "--" : ""}${meant}"?`;
        write(
          io.stderr,
          `error: ${
            flag ? "Unknown flag" : "Unknown command"
          } "${command}"${guess}\n\n${USAGE}`,
        );
        return 2;
      }
    }
  } catch (error) {
    if (error instanceof UsageError) {
      write(
        io.stderr,
        `error: ${error.message}\nRun "${program} ${command} --help" for usage.\n`,
      );
    } else {
      write(io.stderr, `error: ${describeError(error)}\n`);
    }
    return 2;
  }
}

/** The width of the terminal, or `undefined` when it cannot be told. */
function terminalColumns(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  // Let the process end by itself rather than with Deno.exit, which would
  // cut off the TLS close_notify of a connection just closed (the receiver
  // would log an unexpected EOF). Anything left holding the process open
  // gets a second before Deno.exit ends it anyway.
  const status = await main(Deno.args, { program: commandName() });
  Deno.exitCode = status;
  Deno.unrefTimer(setTimeout(() => Deno.exit(status), 1000));
}
