/**
 * `mllp bench`: measure MLLP receivers and clients (see
 * `@x/mllp/unstable-bench`).
 *
 * @module
 */

import {
  type BenchReport,
  type ClientSpec,
  type CommandTarget,
  compare,
  compareClients,
  formatReport,
  makeAdtMessage,
  RESPONDER_MODES,
  type ResponderMode,
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
  `Usage: mllp bench --target raw,floor,self,listen | --port PORT [options]
       mllp bench --clients lean,client [--mode MODE] [options]

Measure MLLP receivers, or clients. Receivers: open --connections
connections, send --warmup messages on each (not counted), then --messages
more on each, stop-and-wait (one message in flight per connection), and
print messages/s and round-trip times (p50, p90, p99, max) per target. The
load is the lean generator (Deno.connect, write, read: no library code in
its loop), or with --load client this library's client (end to end). With
--idle N, open N idle connections instead and print what they cost the
receiver in RSS. Clients: run each client, in a process of its own, against
the minimal responder, with the same load.

Targets (receivers; give one or more, they are measured in turn, in one
run):
  --target LIST    Start receivers in child processes and measure them; a
                   comma-separated list, or repeat the flag:
                     raw     a bare TCP responder that answers a fixed ACK
                             for each FS CR it reads (no framing library,
                             no HL7): the reference
                     floor   a bare loop that reads each message and
                             answers its AA with this library's parts
                             (no receiver): the least an HL7 answer costs
                     self    this library's receiver with the
                             EchoDispatcher, no logging
                     listen  "mllp listen" with its default logging, its
                             stderr going to a file (--listen-log)
  --host HOST      A running receiver to measure      [default: 127.0.0.1]
  --port PORT      Its port (measures it as a target)
  --pid PID        Its process id, to read its RSS and CPU time (Linux)
  --load KIND      lean: the lean generator; client: this library's
                   client, one per connection              [default: lean]
  --listen-log FILE
                   Where "listen" writes its log   [default: a temporary
                   file, removed after the run]
With raw among the targets, each line also gives its ratios to raw.

Clients (instead of targets):
  --clients LIST   Measure these clients against the minimal responder (a
                   child process that answers each frame with an ACK whose
                   MSA-2 is the frame's MSH-10, no library code); a
                   comma-separated list, or repeat the flag:
                     lean    the lean generator: the reference
                     client  this library's Client, one per connection,
                             send() stop-and-wait
                   Each runs in a child process of its own.
  --mode MODE      What is exchanged: original (MSA|AA), enhanced (MSH-15
                   AL, MSH-16 NE: MSA|CA), release2 (MLLP release 2: a
                   commit frame, then the ACK; clients only)
                                                       [default: original]

Load:
  --connections N  Connections sending at once               [default: 1]
  --messages N     Measured messages per connection       [default: 1000]
  --warmup N       Warm-up messages per connection         [default: 100]
  --size BYTES     Send an ADT^A01 padded to BYTES (at least 982)
                                                          [default: 1024]
  --file FILE      Send the message in FILE instead (as "send" reads it)
  --rounds N       Measure each target N times, alternating; print the
                   medians                                    [default: 1]
  --timeout MS     Reply timeout of each message         [default: 60000]
  --idle N         Measure N idle connections instead of load
  --in-process     Start raw, self and the responder (and with --clients,
                   lean and client) in this process, not in children (for
                   "deno run --cpu-prof"); they then share a thread with
                   the load, and no CPU times are known
  --json           Print the report as JSON on stdout
  -v, --verbose    Log at info level to stderr (warnings only otherwise)
  -h, --help       Show this help

TLS (as for "send"; on when any of these is given):
  --ca FILE, --cert FILE, --key FILE, --servername NAME
                   (the lean generator presents no client certificate:
                   --cert needs --load client)
  --server-cert FILE, --server-key FILE
                   Serve raw, self and the responder with TLS, with this
                   certificate chain and key (PEM); needs --ca

Output: the machine, the load (which generator, or which responder), and
one line per target: messages/s; round-trip p50, p90, p99 and max in ms;
the CPU time per message of the process measured (the server, or the
client), in microseconds, and its ratio to the reference's; the load's
(receivers) or the responder's (clients) CPU time per message; the RSS of
the process measured before the load, its peak under load and the growth,
in MiB (Linux; CPU and RSS for children or --pid); errors; and the ratio
to the reference's messages/s (raw for receivers, lean for clients),
measured in the same run. Progress lines go to stderr.

Exit status:
  0  every measured message was answered (with --load client or a client
     that checks: accepted)
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
      "load",
      "mode",
      "listen-log",
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
    collect: ["ca", "target", "clients"],
  });
  if (flags.help) {
    write(io.stdout, BENCH_USAGE);
    return 0;
  }
  if (flags._.length > 0) {
    throw new UsageError(`Unexpected argument "${flags._[0]}"`);
  }
  const names = (flag: string) =>
    listFlag(flags, flag).flatMap((v) => v.split(",")).map((v) => v.trim());
  const clients: ClientSpec[] = [];
  for (const client of names("clients")) {
    if (client !== "lean" && client !== "client") {
      throw new UsageError(
        `Invalid --clients "${client}": expected lean or client`,
      );
    }
    clients.push(client);
  }
  const listenLog = stringFlag(flags, "listen-log");
  const targets: TargetSpec[] = [];
  let listen: CommandTarget | undefined;
  for (const target of names("target")) {
    if (target === "raw" || target === "floor" || target === "self") {
      targets.push(target);
    } else if (target === "listen") {
      targets.push(listen ??= listenTarget());
    } else {
      throw new UsageError(
        `Invalid --target "${target}": expected raw, floor, self or listen`,
      );
    }
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
  if (targets.length === 0 && clients.length === 0) {
    throw new UsageError(
      "Missing --target, --port or --clients: what to measure",
    );
  }
  if (targets.length > 0 && clients.length > 0) {
    throw new UsageError(
      "Give --clients or receivers (--target, --port), not both",
    );
  }
  const load = stringFlag(flags, "load");
  if (load !== undefined && load !== "lean" && load !== "client") {
    throw new UsageError(`Invalid --load "${load}": expected lean or client`);
  }
  if (load !== undefined && clients.length > 0) {
    throw new UsageError("--load is for receivers; --clients names the load");
  }
  const mode = stringFlag(flags, "mode") ?? "original";
  if (!(RESPONDER_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(
      `Invalid --mode "${mode}": expected ${RESPONDER_MODES.join(", ")}`,
    );
  }
  if (mode === "release2" && clients.length === 0) {
    throw new UsageError(
      "--mode release2 is for --clients (raw answers in release 1)",
    );
  }
  if (listenLog !== undefined && listen === undefined) {
    throw new UsageError("--listen-log needs --target listen");
  }
  const idle = numberFlag(flags, "idle", 1);
  if (idle !== undefined && clients.length > 0) {
    throw new UsageError("--idle measures receivers, not --clients");
  }
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
  if (tls?.cert !== undefined && (load ?? "lean") === "lean") {
    throw new UsageError(
      "--cert needs --load client: the lean generator presents no client certificate",
    );
  }
  let payload: Uint8Array | string = makeAdtMessage(size, {
    ackMode: mode === "enhanced" ? "enhanced" : "original",
  });
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
    payload,
    tls,
    inProcess: flags["in-process"] === true,
    serverTls: serverCert !== undefined && serverKey !== undefined
      ? { cert: serverCert, key: serverKey }
      : undefined,
    onProgress: (line: string) => write(io.stderr, line + "\n"),
  };
  using _logging = setupLogging(
    io.stderr,
    flags.verbose === true,
    options,
    flags.verbose === true ? "info" : "warning",
  );
  let report: BenchReport;
  let temporaryLog: string | undefined;
  try {
    if (listen) {
      listen.stderr = listenLog ??
        (temporaryLog = await Deno.makeTempFile({ prefix: "mllp-listen-" }));
    }
    report = clients.length > 0
      ? await compareClients({
        ...settings,
        clients,
        mode: mode as ResponderMode,
      })
      : await compare({
        ...settings,
        targets,
        load: load as "lean" | "client" | undefined,
        idle,
      });
  } catch (error) {
    write(io.stderr, `error: ${describeError(error)}\n`);
    return 2;
  } finally {
    if (temporaryLog) await Deno.remove(temporaryLog).catch(() => {});
  }
  write(
    io.stdout,
    flags.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report),
  );
  return report.targets.some((target) => target.summary.errors > 0) ? 1 : 0;
}

/**
 * The `listen` target: `mllp listen` on a free port of 127.0.0.1, with its
 * default logging, run by the Deno running this (its `stderr` file is set
 * before it starts).
 */
function listenTarget(): CommandTarget {
  const cli = new URL("../cli.ts", import.meta.url);
  return {
    name: "listen",
    command: [
      Deno.execPath(),
      "run",
      "-A",
      cli.href,
      "listen",
      "--port",
      "{port}",
      "--hostname",
      "127.0.0.1",
    ],
    // From a checkout, run it with the project's deno.json.
    cwd: cli.protocol === "file:" ? new URL("../../", cli) : undefined,
    ready: "listen",
  };
}
