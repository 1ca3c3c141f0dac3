/**
 * `mllp bench`: measure MLLP receivers (see `@x/mllp/unstable-bench`).
 *
 * @module
 */

import {
  type BenchReport,
  compare,
  formatReport,
  makeAdtMessage,
  type TargetSpec,
} from "../bench/bench.ts";
import { HeaderError } from "../hl7/errors.ts";
import { isHl7, readHeader } from "../hl7/message.ts";
import {
  type CommandOptions,
  describeError,
  type Io,
  listFlag,
  numberFlag,
  parseFlags,
  portFlag,
  sendTlsFlags,
  setupLogging,
  stringFlag,
  timeoutFlag,
  UsageError,
  write,
} from "./common.ts";
import { normalize } from "./input.ts";

/** `mllp bench --help`. */
export const BENCH_USAGE =
  `Usage: mllp bench --target raw,self | --port PORT [options]

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

/** Runs `mllp bench`. */
export async function bench(
  args: string[],
  io: Io,
  options: CommandOptions,
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
