/**
 * `mllp send`: read files, directories or stdin, send each message they
 * hold on one connection, and print what each got, with a progress bar on
 * a terminal and a summary at the end.
 *
 * @module
 */

import type { Ack } from "../hl7/ack.ts";
import type { BatchResult } from "../hl7/batch.ts";
import {
  Client,
  type ClientTlsOptions,
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_REPLY_TIMEOUT,
  type SendResult,
} from "../client/client.ts";
import {
  ConnectionClosedError,
  InvalidReplyError,
  ReplyTimeoutError,
} from "../client/errors.ts";
import {
  type CommandOptions,
  type Io,
  parseFlags,
  portFlag,
  positiveFlag,
  sendTlsFlags,
  setupLogging,
  stringFlag,
  timeoutFlag,
  UsageError,
  write,
  type Writer,
} from "./common.ts";
import {
  InputError,
  MESSAGE_EXTENSIONS,
  type Outgoing,
  readInputs,
} from "./input.ts";
import {
  commitTimeoutFlag,
  mllpReleaseFlag,
  SEND_MODE_FLAGS,
} from "./modes.ts";
import { formatSummary, ProgressBar, SendStats } from "./progress.ts";
import {
  isNatsUrl,
  NATS_FLAGS,
  NATS_USAGE,
  natsOptions,
} from "./nats_options.ts";

import {
  appAckJson,
  batchItemJson,
  describeBatchItem,
  describeResult,
  errorJson,
  resultJson,
  sendErrorText,
} from "./send_output.ts";

/** The NATS flags' help, with `send --queue`'s defaults. */
const SEND_NATS_USAGE = NATS_USAGE
  .replace(
    "The JetStream stream                [default: HL7_IN]",
    "The JetStream stream               [default: HL7_OUT]",
  )
  .replace(
    "The durable consumer receivers share [default: mllp]",
    "How each destination's consumer is\n                       named (then the destination)\n                                                       [default: mllp-out]",
  );

/** `mllp send --help`. */
export const SEND_USAGE =
  `Usage: mllp send --port PORT [options] FILE|DIR... | -

Send the messages in each FILE, each DIR and stdin ("-"), in order, on one
connection, stop-and-wait. A DIR is read recursively, names in sorted
order, taking files ending ${
    MESSAGE_EXTENSIONS.join(", ")
  } (any case) whose names do not
start with ".". Everything is read and checked before anything is sent.

A file may hold many messages: every line starting with MSH starts one, and
a blank line ends one. Batch segments (FHS, BHS, BTS, FTS) are not sent:
each message of a batch is sent on its own (unless --batch). A file that
starts with VT (0x0b) is read as MLLP frames, one message each. A file
that is not HL7 is sent whole, as one payload. Segments may be separated
by CR, LF or CRLF; they are sent ended by CR.

Options:
  --host HOST      Receiver host name or IP address   [default: 127.0.0.1]
  --port PORT      Receiver port                      (required)
  --timeout MS     How long to wait for each reply, in milliseconds; also
                   caps the connect timeout (10000)   [default: 60000]
  --rate N         Send at most N messages per second (decimals allowed:
                   0.5 is one every 2 s)              [default: no limit]
  --keep-going     After a reply timeout, a dropped connection or an
                   invalid reply, go on with the next message (the client
                   reconnects) instead of stopping; exit status still 2
  --json           Print one JSON object per message on stdout, then the
                   summary as a JSON object with "summary": true
  --progress       Draw a progress bar on stderr even when it is not a
                   terminal; --no-progress never draws one
                   [default: when stderr is a terminal]
  -v, --verbose    Log at debug level to stderr (includes message bodies)
  -h, --help       Show this help

Protocol (see docs/protocol.md: MLLP release 2, batches, enhanced
acknowledgment mode):
  --mllp-release N   1, or 2: wait for the receiver's commit frame (0x06)
                     after each write, writing the frame again after a
                     timeout or a NAK (0x15), 3 times at most [default: 1]
  --commit-timeout MS
                     With --mllp-release 2: how long to wait for the
                     commit frame                        [default: 5000]
  --batch          Send a file that holds an FHS/BHS batch (or a frame of
                   a capture that does) as ONE frame, the batch, and
                   print one line per message from the response batch (a
                   message it does not name was accepted: AA). Only
                   batch files change; other files are sent as without
                   it. --rate counts a batch as one send
  --wait-app-ack   For a message in enhanced mode (MSH-15 or MSH-16
                   valued), also wait for the application ACK after the
                   commit ACK and print it: "ID CA 1.2 ms, app AA" ("app
                   none" when none comes); an AE or AR is exit status 1

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

Durable delivery (a PATH needs Deno KV: run Deno with --unstable-kv):
  --queue PATH     Queue the messages in a Deno KV file (or a KV Connect
                   URL) first, then deliver the queue in order, retrying
                   while the receiver cannot be reached; what is left is
                   sent by the next run (FILEs may then be omitted).
                   Messages that get AE/AR or no reply in time are
                   parked, not resent: "CONTROL_ID parked REASON"
                   (not with --rate, --keep-going, --json, --batch,
                   --wait-app-ack or --mllp-release)
  --queue nats://HOST:PORT[,HOST:PORT...]
                   Queue in a NATS JetStream stream instead (a quorum of
                   its replicas has each message before it is sent);
                   messages that get AE or no reply in time are sent
                   again later, and this run stops there, exit 2, as on
                   a transport failure; AR/CR parks. Workers given the
                   same servers, stream and destination share the queue
${SEND_NATS_USAGE}
Output: one line per message on stdout:
  CONTROL_ID CODE TIME ms ["MSA-3 text"]     01052901 AA 3.2 ms
  ... , app CODE ["text"] | , app none       with --wait-app-ack
  CONTROL_ID unknown TIME ms REASON          --batch: the reply names
                                             nothing certain
  CONTROL_ID mismatch TIME ms ACK CODE names control id "ID"
  CONTROL_ID not-an-ack TIME ms REASON
  - reply TIME ms "REPLY"                    for a payload that is not HL7
  - NAK TIME ms                              a one-byte NAK (0x15) reply
With a progress bar and stdout on the same terminal, only the lines of
messages that were not accepted are printed. At the end a summary goes to
stderr:
  sent 3 of 3 in 0.05 s (60.0 msg/s): AA 2, AE 0, AR 1, CA 0, CE 0, CR 0, timeouts 0
  (with --wait-app-ack, then: app AA N, app AE N, app AR N, app none N)
  round trip: p50 2.3 ms, p99 4.1 ms

Exit status:
  0  every message got AA or CA (or, if not HL7, a reply other than NAK)
  1  a message got AE, AR, CE or CR (or, with --wait-app-ack, an
     application ACK AE or AR), an ACK for another message, a reply that
     is not an ACK, or a NAK
  2  bad flags, an unreadable file or header, or a transport error,
     timeout or TLS handshake failure, with the reason on stderr (sending
     stops at the first one, unless --keep-going)
`;

/** Runs `mllp send`. */
export async function send(
  args: string[],
  io: Io,
  options: CommandOptions,
): Promise<number> {
  const flags = parseFlags(args, {
    boolean: [
      "help",
      "verbose",
      "json",
      "keep-going",
      "progress",
      ...SEND_MODE_FLAGS.boolean,
    ],
    negatable: ["progress"],
    string: [
      "host",
      "port",
      "timeout",
      "cert",
      "key",
      "servername",
      "queue",
      "rate",
      ...NATS_FLAGS,
      ...SEND_MODE_FLAGS.string,
    ],
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
  const rate = positiveFlag(flags, "rate", "messages per second");
  const tls = sendTlsFlags(flags);
  const paths = flags._;
  const queue = stringFlag(flags, "queue");
  const json = flags.json === true;
  const keepGoing = flags["keep-going"] === true;
  const mllpRelease = mllpReleaseFlag(flags);
  const commitTimeout = commitTimeoutFlag(flags, mllpRelease);
  const batch = flags.batch === true;
  const waitAppAck = flags["wait-app-ack"] === true;
  if (paths.length === 0 && queue === undefined) {
    throw new UsageError('No message files given (use "-" for stdin)');
  }
  if (paths.filter((path) => path === "-").length > 1) {
    throw new UsageError('Stdin ("-") can be given only once');
  }
  if (queue !== undefined) {
    const other = rate !== undefined
      ? "--rate"
      : keepGoing
      ? "--keep-going"
      : json
      ? "--json"
      : batch
      ? "--batch"
      : waitAppAck
      ? "--wait-app-ack"
      : mllpRelease !== undefined
      ? "--mllp-release"
      : undefined;
    if (other) throw new UsageError(`${other} cannot be used with --queue`);
  }
  const nats = queue !== undefined && isNatsUrl(queue)
    ? natsOptions(queue, flags, "--queue")
    : undefined;
  const strayNatsFlag = NATS_FLAGS.find((name) => flags[name] !== undefined);
  if (nats === undefined && strayNatsFlag !== undefined) {
    throw new UsageError(`--${strayNatsFlag} needs --queue nats://host:port`);
  }

  let messages: Outgoing[];
  try {
    messages = await readInputs(
      paths,
      io.stdin,
      (line) => write(io.stderr, `warning: ${line}\n`),
      { batch },
    );
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    write(io.stderr, `error: ${error.message}\n`);
    return 2;
  }

  const progress = (flags.progress as boolean | undefined) ??
    io.stderrIsTerminal;
  const bar = progress && queue === undefined
    ? new ProgressBar({
      total: countMessages(messages),
      write: (text) => write(io.stderr, text),
      columns: io.columns,
    })
    : undefined;
  // Log lines go around the bar: it is erased first and drawn again after.
  const logTo: Writer = bar === undefined ? io.stderr : {
    writeSync(data) {
      bar.clear();
      const written = io.stderr.writeSync(data);
      bar.redraw();
      return written;
    },
  };
  using _logging = setupLogging(logTo, flags.verbose === true, options);
  const connectTimeout = Math.min(timeout, DEFAULT_CONNECT_TIMEOUT);
  if (queue !== undefined) {
    const queued = {
      // Never a URL's credentials: the servers only.
      path: nats ? nats.servers.join(",") : queue,
      host,
      port,
      timeout,
      connectTimeout,
      tls,
      messages,
      stdout: io.stdout,
      stderr: io.stderr,
    };
    return nats
      ? await (await import("./nats_queue.ts")).sendQueuedNats(queued, nats)
      : await (await import("./durable.ts")).sendQueued(queued);
  }
  return await sendAll(messages, {
    io,
    host,
    port,
    timeout,
    connectTimeout,
    tls,
    rate,
    json,
    keepGoing,
    bar,
    mllpRelease,
    commitTimeout,
    waitAppAck,
  });
}

/** How many messages there are, each message of a batch counted. */
function countMessages(messages: readonly Outgoing[]): number {
  return messages.reduce((n, m) => n + (m.batch?.entries.length ?? 1), 0);
}

interface Run {
  io: Io;
  host: string;
  port: number;
  timeout: number;
  connectTimeout: number;
  tls: ClientTlsOptions | undefined;
  rate: number | undefined;
  json: boolean;
  keepGoing: boolean;
  bar: ProgressBar | undefined;
  mllpRelease: 1 | 2 | undefined;
  commitTimeout: number | undefined;
  waitAppAck: boolean;
}

/** Sends the messages in order and reports; returns the exit status. */
async function sendAll(messages: Outgoing[], run: Run): Promise<number> {
  const { io, host, tls, bar } = run;
  const stats = new SendStats(countMessages(messages));
  // With the bar and the results on one terminal, accepted messages only
  // move the bar.
  const quiet = bar !== undefined && io.stdoutIsTerminal && !run.json;
  /** Writes around the bar: clears it first, draws it again after. */
  const print = (writer: Writer, text: string, sharesTerminal: boolean) => {
    if (sharesTerminal) bar?.clear();
    write(writer, text);
    if (sharesTerminal) bar?.redraw();
  };
  const out = (text: string) => print(io.stdout, text, io.stdoutIsTerminal);
  const err = (text: string) => print(io.stderr, text, true);
  const failed = (message: Outgoing, error: unknown, unsent = false) => {
    const timedOut = error instanceof ReplyTimeoutError;
    // Every message of a batch shares its frame's fate.
    const count = message.batch?.entries.length ?? 1;
    for (let i = 0; i < count; i++) {
      stats.add({ kind: unsent ? "unsent" : timedOut ? "timeout" : "error" });
      bar?.tick(false);
    }
    err(sendErrorText(message.label, error, host, tls));
    if (run.json) {
      out(JSON.stringify(errorJson(message, error, timedOut)) + "\n");
    }
  };
  bar?.redraw();

  let status = 0;
  let client: Client | undefined;
  try {
    try {
      client = await Client.connect(host, run.port, {
        replyTimeout: run.timeout,
        connectTimeout: run.connectTimeout,
        tls,
        mllpRelease: run.mllpRelease,
        commitTimeout: run.commitTimeout,
      });
    } catch (error) {
      failed(messages[0], error, true);
      return status = 2;
    }
    const interval = run.rate === undefined ? 0 : 1000 / run.rate;
    let next = performance.now();
    for (const message of messages) {
      if (interval > 0) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
        next = Math.max(next, performance.now()) + interval;
      }
      const started = performance.now();
      let result: SendResult;
      let batchResult: BatchResult | undefined;
      try {
        if (message.batch) {
          batchResult = await client.sendBatch(message.batch);
        } else {
          result = await client.send(message.payload);
        }
      } catch (error) {
        failed(message, error);
        status = 2;
        if (run.keepGoing && canGoOn(error)) continue;
        return status;
      }
      const ms = performance.now() - started;
      if (batchResult !== undefined) {
        // One line (or JSON object) per message of the batch.
        for (const [i, item] of batchResult.results.entries()) {
          const [line, code, ending] = describeBatchItem(item, batchResult, ms);
          stats.add(ending);
          status = Math.max(status, code);
          if (run.json) {
            out(
              JSON.stringify(batchItemJson(message, i, item, batchResult, ms)) +
                "\n",
            );
          } else if (!quiet || code !== 0) {
            out(line + "\n");
          }
          bar?.tick(code === 0);
        }
        continue;
      }
      result = result!;
      let [line, code, ending] = describeResult(message, result, ms);
      let appAck: Ack | undefined | null = null;
      if (run.waitAppAck && "applicationAck" in result) {
        // The commit ACK came; the application ACK follows (or not).
        appAck = await result.applicationAck;
        stats.addApplicationAck(appAck?.code);
        const refused = appAck !== undefined && appAck.code !== "AA";
        line += appAck === undefined
          ? ", app none"
          : `, app ${appAck.code}${
            refused && appAck.text ? ` ${JSON.stringify(appAck.text)}` : ""
          }`;
        if (refused) code = Math.max(code, 1);
      }
      stats.add(ending);
      status = Math.max(status, code);
      if (run.json) {
        const object = resultJson(message, result, ms);
        if (appAck !== null) object.applicationAck = appAckJson(appAck);
        out(JSON.stringify(object) + "\n");
      } else if (!quiet || code !== 0) {
        out(line + "\n");
      }
      bar?.tick(code === 0);
    }
    return status;
  } finally {
    await client?.close();
    bar?.finish();
    const summary = stats.summary();
    if (run.json) {
      write(io.stdout, JSON.stringify(summary) + "\n");
    } else {
      write(io.stderr, formatSummary(summary));
    }
  }
}

/**
 * Whether `--keep-going` may go on after this error: the client closed the
 * connection and reconnects for the next message. Failures to connect
 * stop the run either way.
 */
function canGoOn(error: unknown): boolean {
  return error instanceof ReplyTimeoutError ||
    error instanceof InvalidReplyError ||
    (error instanceof ConnectionClosedError && error.context !== "connecting");
}
