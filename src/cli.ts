/**
 * The `mllp` command line: run an echo receiver, or send HL7 files to a
 * receiver and print the ACK each one gets.
 *
 * ```sh
 * deno run -A jsr:@x/mllp/cli listen --port 2575
 * deno run -A jsr:@x/mllp/cli send --host 127.0.0.1 --port 2575 adt_a01.hl7
 * ```
 *
 * `bench` measures receivers (messages/s, round trips, against a bare TCP
 * baseline; see `mllp bench --help` and `@x/mllp/bench`):
 *
 * ```sh
 * deno run -A jsr:@x/mllp/cli bench --target raw,self --connections 64
 * ```
 *
 * `send` prints one line per message on stdout, such as
 * `01052901 AA 3.2 ms`, and exits with 0 when every message was accepted,
 * 1 when one was not, and 2 on bad flags, unreadable files, a transport
 * error or a failed TLS handshake. Logs go to stderr; message bodies only
 * with `--verbose`.
 *
 * Both commands speak TLS when given certificates: `listen --cert FILE
 * --key FILE` (and `--ca FILE --verify-peer` to require client
 * certificates), `send --ca FILE` (and `--cert FILE --key FILE` to present
 * one). `listen --allowed-clients LIST` restricts who may connect.
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
  type ClientTlsOptions,
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_REPLY_TIMEOUT,
  type SendResult,
} from "./client.ts";
import { EchoDispatcher, formatAddress, NAK } from "./dispatcher.ts";
import { isWrapped, unwrap } from "./envelope.ts";
import {
  ClientError,
  ConnectionClosedError,
  ConnectTimeoutError,
  HeaderError,
  InvalidReplyError,
  TlsHandshakeError,
} from "./errors.ts";
import { isHl7, readHeader } from "./hl7.ts";
import {
  type MessageStore,
  Receiver,
  type ReceiverTlsOptions,
} from "./receiver.ts";
import {
  type BenchReport,
  compare,
  formatReport,
  makeAdtMessage,
  type TargetSpec,
} from "./bench.ts";

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
  mllp bench [options]                Measure a receiver: messages/s and
                                      round trips, against a raw baseline

Options:
  -h, --help   Show this help; "mllp <command> --help" shows a command's

Run as: deno run -A jsr:@x/mllp/cli <command> [options]

Exit status: 0 success, 1 a message was not accepted (send), 2 usage,
start-up, transport or TLS handshake error.
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

TLS (on when --cert and --key are given, which --ca and --verify-peer
need; TLS 1.2 or later):
  --cert FILE          Server certificate chain, PEM
  --key FILE           Its private key, PEM
  --ca FILE            CA certificate, PEM, that client certificates must
                       chain to; repeat the flag for several
  --verify-peer        Require a client certificate signed by a --ca CA
                       (mutual TLS); needs --ca

Client restrictions:
  --allowed-clients LIST
                       Only these clients may connect: a comma-separated
                       list; the flag may be repeated. Without
                       --verify-peer: IP addresses, CIDR ranges
                       (10.0.0.0/8) or host names (resolved at start and
                       every 60 s). With --verify-peer: certificate names
                       (subject CN or SAN DNS name, any case). Others are
                       closed and logged: "Failed to verify client ..."

Limits and timeouts (a connection past one is closed with a log line):
  --max-frame-bytes N  Largest message accepted, bytes  [default: 10485760]
  --max-connections N  Most connections open at once      [default: 1024]
                       (and at most 64 from one address)
  --idle-timeout MS    Close a connection silent this long between
                       messages; 0 never                [default: 3600000]
  --frame-timeout MS   Close a connection whose message takes longer to
                       arrive; 0 never                   [default: 120000]
  --stop-deadline MS   On SIGINT/SIGTERM, how long messages in flight get
                       to be answered before connections are closed
                                                           [default: 5000]

Durable delivery (needs Deno KV: run Deno with --unstable-kv):
  --store PATH         Store each HL7 message, with its ACK, in a Deno KV
                       file (or a KV Connect URL) before acknowledging it;
                       a resend gets the stored ACK and is not dispatched
                       again; the EchoDispatcher then runs from the store

Without --cert and --key the receiver speaks plain TCP and logs a warning.
It never starts weaker than asked: a setting it cannot enforce is exit 2.

Exit status:
  0  stopped by SIGINT or SIGTERM
  2  bad flags; the address cannot be listened on; or a certificate or key
     cannot be read, --verify-peer has no --ca, or no --allowed-clients
     entry can be used (every host name fails to resolve)
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

TLS (on when any of these is given; TLS 1.2 or later). The receiver's
certificate is always verified, and must name --servername or --host:
  --ca FILE          CA certificate, PEM, that the receiver's certificate
                     must chain to; repeat the flag for several
                     [default: the system's trusted roots]
  --cert FILE        Client certificate, PEM, for receivers that require
                     one (mutual TLS); needs --key
  --key FILE         Its private key, PEM; needs --cert
  --servername NAME  The name the receiver's certificate must carry, when
                     it is not --host (say --host is an IP address and the
                     certificate names "localhost")     [default: --host]

Durable delivery (needs Deno KV: run Deno with --unstable-kv):
  --queue PATH     Queue the messages in a Deno KV file (or a KV Connect
                   URL) first, then deliver the queue in order, retrying
                   while the receiver cannot be reached; what is left is
                   sent by the next run (FILEs may then be omitted).
                   Messages that get AE/AR or no reply in time are
                   parked, not resent: "CONTROL_ID parked REASON"

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
  2  bad flags, an unreadable file or header, or a transport error,
     timeout or TLS handshake failure, with the reason on stderr (sending
     stops at the first one)
`;

const BENCH_USAGE = `Usage: mllp bench --target raw,self | --port PORT [options]

Measure MLLP receivers with this library's client: open --connections
connections, send --warmup messages on each (not counted), then --messages
more on each, stop-and-wait (one message in flight per connection), and
print messages/s and round-trip times (p50, p90, p99, max) per target.
With --idle N, open N idle connections instead and print what they cost
the receiver in RSS.

Targets (give one or more; they are measured in turn, in one run):
  --target LIST    Start receivers in child processes and measure them; a
                   comma-separated list, or repeat the flag:
                     raw   a bare TCP responder that answers a fixed ACK
                           for each FS CR it reads (no framing library, no
                           HL7): the baseline
                     self  this library's receiver with the EchoDispatcher
  --host HOST      A running receiver to measure      [default: 127.0.0.1]
  --port PORT      Its port (measures it as a target)
  --pid PID        Its process id, to read its RSS for --idle (Linux)
With raw among the targets, each line also gives its ratio to raw's msg/s.

Load:
  --connections N  Connections sending at once               [default: 1]
  --messages N     Measured messages per connection       [default: 1000]
  --warmup N       Warm-up messages per connection         [default: 100]
  --size BYTES     Send an ADT^A01 padded to BYTES (at least 986)
                                                          [default: 1024]
  --file FILE      Send the message in FILE instead (as "send" reads it)
  --rounds N       Measure each target N times, alternating; print the
                   medians                                    [default: 1]
  --timeout MS     Reply timeout of each message         [default: 60000]
  --idle N         Measure N idle connections instead of load
  --in-process     Start raw and self in this process, not in children
                   (for "deno run --cpu-prof"); they then share a thread
                   with the load
  --json           Print the report as JSON on stdout
  -v, --verbose    Log at info level to stderr (warnings only otherwise)
  -h, --help       Show this help

TLS (as for "send"; on when any of these is given):
  --ca FILE, --cert FILE, --key FILE, --servername NAME
  --server-cert FILE, --server-key FILE
                   Serve raw and self with TLS, with this certificate
                   chain and key (PEM); needs --ca

Output: the machine, the load, and one line per target: messages/s;
round-trip p50, p90, p99 and max in ms; the CPU time the server used per
message in microseconds (Linux, servers in a child process or with
--pid; steadier than messages/s on a busy machine); errors; and the
ratio to raw's messages/s. Progress lines go to stderr.

Exit status:
  0  every measured message was accepted (or, if not HL7, answered)
  1  some were not: an error reply, a mismatched ACK, a timeout, ...
  2  bad flags, an unreadable file, or a target that cannot be started or
     connected to
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
      case "bench":
        return await bench(rest, io, options);
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
    boolean: ["help", "verbose", "verify-peer"],
    string: [
      "port",
      "hostname",
      "cert",
      "key",
      "max-frame-bytes",
      "max-connections",
      "idle-timeout",
      "frame-timeout",
      "stop-deadline",
      "store",
    ],
    collect: ["ca", "allowed-clients"],
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
  const tls = listenTlsFlags(flags);
  const allowedClients = allowedClientsFlag(flags);
  const maxFrameBytes = numberFlag(flags, "max-frame-bytes", 1);
  const maxConnections = numberFlag(flags, "max-connections", 1);
  const idleTimeout = numberFlag(flags, "idle-timeout", 0);
  const frameTimeout = numberFlag(flags, "frame-timeout", 0);
  const deadline = numberFlag(flags, "stop-deadline", 0);
  const storePath = stringFlag(flags, "store");
  using _logging = setupLogging(io.stderr, flags.verbose === true, options);
  let store: MessageStore & { close(): Promise<void> } | undefined;
  if (storePath !== undefined) {
    try {
      store = await (await import("./_cli_durable.ts")).openStore(storePath);
    } catch (error) {
      write(io.stderr, `error: ${describeError(error)}\n`);
      return 2;
    }
  }
  let receiver: Receiver;
  try {
    receiver = await Receiver.start({
      port,
      hostname,
      dispatcher: EchoDispatcher,
      tls,
      allowedClients,
      maxFrameBytes,
      maxConnections,
      idleTimeout,
      frameTimeout,
      store,
    });
  } catch (error) {
    await store?.close();
    // The library's start-up errors say what is wrong ("Cannot read the
    // TLS certificate ...", "Cannot use allowed clients ..."); a socket
    // error needs the address.
    const message = describeError(error);
    write(
      io.stderr,
      `error: ${
        message.startsWith("Cannot ")
          ? message
          : `Cannot listen on ${formatAddress({ hostname, port })}: ${message}`
      }\n`,
    );
    return 2;
  }
  try {
    write(io.stderr, `listening on ${formatAddress(receiver.address)}\n`);
    const reason = await untilStopped(options.signal);
    logger.info("Received {reason}; stopping", { reason });
  } finally {
    // In-flight messages get their replies, up to the deadline.
    await receiver.stop({ deadline });
    await store?.close();
  }
  return 0;
}

/**
 * The receiver's TLS settings from `--cert`, `--key`, `--ca` and
 * `--verify-peer`, or `undefined` for plain TCP. A TLS flag without a
 * certificate and key is a usage error rather than a silent plain-TCP
 * start; `--verify-peer` without `--ca` is left to the library to refuse.
 */
function listenTlsFlags(flags: Flags): ReceiverTlsOptions | undefined {
  const cert = stringFlag(flags, "cert");
  const key = stringFlag(flags, "key");
  const ca = listFlag(flags, "ca");
  const verifyPeer = flags["verify-peer"] === true;
  if (cert === undefined && key === undefined) {
    if (verifyPeer) {
      throw new UsageError("--verify-peer needs TLS: give --cert and --key");
    }
    if (ca.length > 0) {
      throw new UsageError("--ca needs TLS: give --cert and --key");
    }
    return undefined;
  }
  if (cert === undefined) throw new UsageError("--key needs --cert");
  if (key === undefined) throw new UsageError("--cert needs --key");
  return { cert, key, ca, verifyPeer };
}

/** The `--allowed-clients` entries, comma-separated and/or repeated. */
function allowedClientsFlag(flags: Flags): string[] | undefined {
  const values = listFlag(flags, "allowed-clients");
  if (values.length === 0) return undefined;
  const entries = values
    .flatMap((value) => value.split(","))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (entries.length === 0) {
    // An empty list would let every client in: refuse instead.
    throw new UsageError("Missing value for --allowed-clients");
  }
  return entries;
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
    string: ["host", "port", "timeout", "cert", "key", "servername", "queue"],
    collect: ["ca"],
  });
  if (flags.help) {
    write(io.stdout, SEND_USAGE);
    return 0;
  }
  const host = stringFlag(flags, "host") ?? "127.0.0.1";
  const port = portFlag(flags, "port", 1);
  if (port === undefined) throw new UsageError("Missing required flag --port");
  const timeout = timeoutFlag(flags) ?? DEFAULT_REPLY_TIMEOUT;
  const tls = sendTlsFlags(flags);
  const files = flags._;
  const queue = stringFlag(flags, "queue");
  if (files.length === 0 && queue === undefined) {
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
  if (queue !== undefined) {
    return await (await import("./_cli_durable.ts")).sendQueued({
      path: queue,
      host,
      port,
      timeout,
      connectTimeout: Math.min(timeout, DEFAULT_CONNECT_TIMEOUT),
      tls,
      messages,
      stdout: io.stdout,
      stderr: io.stderr,
    });
  }
  let client: Client;
  try {
    client = await Client.connect(host, port, {
      replyTimeout: timeout,
      connectTimeout: Math.min(timeout, DEFAULT_CONNECT_TIMEOUT),
      tls,
    });
  } catch (error) {
    writeSendError(io.stderr, messages[0].label, error, host, tls);
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
        writeSendError(io.stderr, message.label, error, host, tls);
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

/**
 * The client's TLS settings from `--ca`, `--cert`, `--key` and
 * `--servername`: TLS is on when any of them is given.
 */
function sendTlsFlags(flags: Flags): ClientTlsOptions | undefined {
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

/**
 * Prints a failed connect or send: one `error:` line, and for a TLS
 * problem a `hint:` line naming the flag that may fix it.
 */
function writeSendError(
  stderr: SyncWriter,
  label: string,
  error: unknown,
  host: string,
  tls: ClientTlsOptions | undefined,
): void {
  // A certificate that cannot be read is not about the message.
  const prefix = error instanceof ClientError ? `${label}: ` : "";
  write(stderr, `error: ${prefix}${describeError(error)}\n`);
  const hint = sendHint(error, host, tls);
  if (hint) write(stderr, `hint: ${hint}\n`);
}

function sendHint(
  error: unknown,
  host: string,
  tls: ClientTlsOptions | undefined,
): string | undefined {
  if (error instanceof ConnectTimeoutError && tls) {
    return "a receiver that does not speak TLS leaves the handshake waiting until the connect timeout";
  }
  if (error instanceof ConnectionClosedError && error.context !== undefined) {
    return tls
      ? "the receiver closed the connection without replying: it may allow only some clients (its log says which)"
      : "the receiver closed the connection without replying: it may allow only some clients (its log says which), or speak only TLS (then give --ca FILE)";
  }
  if (
    error instanceof InvalidReplyError && !tls &&
    error.message.includes("TLS record")
  ) {
    return "the receiver speaks TLS: give --ca FILE (or --servername NAME) to connect with TLS";
  }
  if (!(error instanceof TlsHandshakeError)) return undefined;
  if (error.refusedBy === "client") {
    switch (error.failure) {
      case "name_mismatch":
        return tls?.serverName === undefined
          ? `the receiver's certificate does not name "${host}"; give the name it carries with --servername NAME`
          : `the receiver's certificate does not name "${tls.serverName}"`;
      case "unknown_ca":
        return "give the CA that signed the receiver's certificate with --ca FILE";
      case "expired":
        return "the receiver's certificate has expired or is not valid yet";
    }
    return undefined;
  }
  switch (error.failure) {
    case "certificate_required":
      return "the receiver requires a client certificate: give one with --cert FILE --key FILE";
    case "refused":
    case "unknown_ca":
    case "expired":
    case "bad_certificate":
      return tls?.cert === undefined
        ? undefined
        : "the receiver did not accept the client certificate (--cert); its log may say more";
  }
  return undefined;
}

async function bench(
  args: string[],
  io: Io,
  options: MainOptions,
): Promise<number> {
  const flags = parseFlags(args, {
    boolean: ["help", "verbose", "json", "in-process"],
    string: [
      "host",
      "port",
      "pid",
      "connections",
      "messages",
      "warmup",
      "size",
      "file",
      "rounds",
      "timeout",
      "idle",
      "cert",
      "key",
      "servername",
      "server-cert",
      "server-key",
    ],
    collect: ["ca", "target"],
  });
  if (flags.help) {
    write(io.stdout, BENCH_USAGE);
    return 0;
  }
  if (flags._.length > 0) {
    throw new UsageError(`Unexpected argument "${flags._[0]}"`);
  }
  const targets: TargetSpec[] = [];
  for (const name of listFlag(flags, "target").flatMap((v) => v.split(","))) {
    const target = name.trim();
    if (target !== "raw" && target !== "self") {
      throw new UsageError(
        `Invalid --target "${target}": expected raw or self`,
      );
    }
    targets.push(target);
  }
  const host = stringFlag(flags, "host");
  const port = portFlag(flags, "port", 1);
  const pid = numberFlag(flags, "pid", 1);
  if (port !== undefined) {
    targets.push({ hostname: host ?? "127.0.0.1", port, pid });
  } else if (host !== undefined || pid !== undefined) {
    throw new UsageError(
      `--${host !== undefined ? "host" : "pid"} needs --port`,
    );
  }
  if (targets.length === 0) {
    throw new UsageError("Missing --target or --port: what to measure");
  }
  const idle = numberFlag(flags, "idle", 1);
  if (idle !== undefined && port !== undefined && pid === undefined) {
    throw new UsageError(
      "--idle needs --pid to read the RSS of the receiver at --port",
    );
  }
  const size = numberFlag(flags, "size", 1);
  const file = stringFlag(flags, "file");
  if (size !== undefined && file !== undefined) {
    throw new UsageError("Give --size or --file, not both");
  }
  const serverCert = stringFlag(flags, "server-cert");
  const serverKey = stringFlag(flags, "server-key");
  if ((serverCert === undefined) !== (serverKey === undefined)) {
    throw new UsageError(
      serverCert === undefined
        ? "--server-key needs --server-cert"
        : "--server-cert needs --server-key",
    );
  }
  const tls = sendTlsFlags(flags);
  if (serverCert !== undefined && tls?.caCerts === undefined) {
    throw new UsageError(
      "--server-cert needs --ca, the CA that signed it, for the client",
    );
  }
  let payload: Uint8Array | string = makeAdtMessage(size);
  if (file !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(file);
    } catch (error) {
      write(
        io.stderr,
        `error: ${file}: Cannot read file: ${describeError(error)}\n`,
      );
      return 2;
    }
    payload = normalize(bytes);
    if (payload.length === 0) {
      write(io.stderr, `error: ${file}: Message is empty\n`);
      return 2;
    }
    if (isHl7(payload)) {
      try {
        readHeader(payload);
      } catch (error) {
        if (!(error instanceof HeaderError)) throw error;
        write(io.stderr, `error: ${file}: ${error.message}\n`);
        return 2;
      }
    }
  }
  const settings = {
    connections: numberFlag(flags, "connections", 1),
    messages: numberFlag(flags, "messages", 1),
    warmup: numberFlag(flags, "warmup", 0),
    rounds: numberFlag(flags, "rounds", 1),
    replyTimeout: timeoutFlag(flags),
  };
  using _logging = setupLogging(
    io.stderr,
    flags.verbose === true,
    options,
    flags.verbose === true ? "info" : "warning",
  );
  let report: BenchReport;
  try {
    report = await compare({
      ...settings,
      targets,
      payload,
      idle,
      tls,
      inProcess: flags["in-process"] === true,
      serverTls: serverCert !== undefined && serverKey !== undefined
        ? { cert: serverCert, key: serverKey }
        : undefined,
      onProgress: (line) => write(io.stderr, line + "\n"),
    });
  } catch (error) {
    write(io.stderr, `error: ${describeError(error)}\n`);
    return 2;
  }
  write(
    io.stdout,
    flags.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report),
  );
  return report.targets.some((target) => target.summary.errors > 0) ? 1 : 0;
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

/**
 * Configures LogTape to write to stderr until the result is disposed, at
 * `level` when given (else debug when verbose, info otherwise).
 */
function setupLogging(
  stderr: SyncWriter,
  verbose: boolean,
  options: MainOptions,
  level?: "info" | "warning",
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
        lowestLevel: level ?? (verbose ? "debug" : "info"),
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
  collect: string[];
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
  spec: { boolean: string[]; string: string[]; collect?: string[] },
): Flags {
  const unknown: string[] = [];
  const collect = spec.collect ?? [];
  const flags = parseArgs(args, {
    boolean: spec.boolean,
    // "_" keeps positional arguments as strings (file names like "0101").
    string: ["_", ...spec.string, ...collect],
    collect,
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

/** Every value of a flag that may be repeated. */
function listFlag(flags: Flags, name: string): string[] {
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

/** A whole-number flag of at least `min`, or `undefined` when absent. */
function numberFlag(
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
  if (error instanceof TlsHandshakeError) {
    return `${error.message} [${error.reason}, refused by: ${error.refusedBy}, failure: ${error.failure}]`;
  }
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
  // Let the process end by itself rather than with Deno.exit, which would
  // cut off the TLS close_notify of a connection just closed (the receiver
  // would log an unexpected EOF). Anything left holding the process open
  // gets a second before Deno.exit ends it anyway.
  const status = await main(Deno.args);
  Deno.exitCode = status;
  Deno.unrefTimer(setTimeout(() => Deno.exit(status), 1000));
}
