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
  ClientError,
  ConnectionClosedError,
  InvalidReplyError,
  ReplyTimeoutError,
} from "../client/errors.ts";
import type { CharsetOptions } from "../hl7/charset.ts";
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
import { type Outgoing, readInputs } from "./input.ts";
import {
  charsetFlags,
  commitTimeoutFlag,
  mllpReleaseFlag,
  SEND_MODE_FLAGS,
} from "./modes.ts";
import {
  type Ending,
  formatSummary,
  ProgressBar,
  SendStats,
} from "./progress.ts";
import { isNatsUrl, NATS_FLAGS, natsOptions } from "./nats_options.ts";

import {
  appAckJson,
  batchItemJson,
  describeBatchItem,
  describeResult,
  errorJson,
  problemJson,
  resultJson,
  sendErrorText,
} from "./send_output.ts";
import { SEND_USAGE } from "./send_usage.ts";

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
      "raw",
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
  const raw = flags.raw === true;
  const charset = charsetFlags(flags);
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

  // Everything is read and checked first; each bad file is named.
  const inputs = await readInputs(
    paths,
    io.stdin,
    (line) => write(io.stderr, `warning: ${line}\n`),
    { batch, raw, charset },
  );
  const { messages, problems } = inputs;
  if (problems.length > 0) {
    for (const problem of problems) {
      write(io.stderr, `error: ${problem.message}\n`);
      if (json) write(io.stdout, JSON.stringify(problemJson(problem)) + "\n");
    }
    const good = inputs.files - problems.length;
    const goOn = keepGoing && good > 0;
    if (inputs.files > 1) {
      write(
        io.stderr,
        `error: ${filesLine(problems.length, inputs.files, goOn)}\n`,
      );
    }
    if (!goOn) return 2;
  }

  const progress = (flags.progress as boolean | undefined) ??
    io.stderrIsTerminal;
  const bar = progress && queue === undefined
    ? new ProgressBar({
      total: countMessages(messages),
      write: (text) => write(io.stderr, text),
      columns: io.columns,
      slot: rate === undefined ? 0 : 1000 / rate,
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
      charset,
      messages,
      stdout: io.stdout,
      stderr: io.stderr,
      program: io.program,
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
    charset,
    skippedFiles: problems.length,
    rate,
    json,
    keepGoing,
    bar,
    mllpRelease,
    commitTimeout,
    waitAppAck,
  });
}

/**
 * The line after the bad files' lines, when several files were read: how
 * many cannot be sent, and what happens (nothing is sent, or the rest
 * are, with --keep-going).
 */
function filesLine(bad: number, files: number, goOn: boolean): string {
  const good = files - bad;
  if (good === 0) {
    return `None of the ${files} files can be sent, so nothing was sent`;
  }
  return goOn
    ? `${bad} of ${files} files cannot be sent; --keep-going sends the other ${good}`
    : `${bad} of ${files} files cannot be sent, so nothing was sent: fix them, or give --keep-going to send the other ${good}`;
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
  charset: CharsetOptions | undefined;
  /** Files left out because they cannot be sent (--keep-going). */
  skippedFiles: number;
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
  const interval = run.rate === undefined ? 0 : 1000 / run.rate;
  const stats = new SendStats(countMessages(messages), undefined, interval);
  stats.skipFiles(run.skippedFiles);
  /**
   * Writes around the bar: clears it first, draws it again after, so that
   * on a terminal the lines scroll above the bar.
   */
  const print = (writer: Writer, text: string, sharesTerminal: boolean) => {
    if (sharesTerminal) bar?.clear();
    write(writer, text);
    if (sharesTerminal) bar?.redraw();
  };
  const out = (text: string) => print(io.stdout, text, io.stdoutIsTerminal);
  const err = (text: string) => print(io.stderr, text, true);
  const failed = (message: Outgoing, error: unknown, unsent = false) => {
    const timedOut = error instanceof ReplyTimeoutError;
    const ending: Ending = unsent
      ? { kind: "unsent" }
      : timedOut
      ? { kind: "timeout" }
      : { kind: "error", written: wasWritten(error) };
    // Every message of a batch shares its frame's fate.
    const count = message.batch?.entries.length ?? 1;
    for (let i = 0; i < count; i++) {
      stats.add(ending);
      bar?.tick(false);
    }
    err(sendErrorText(message.label, error, host, tls, unsent));
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
        charset: run.charset,
        mllpRelease: run.mllpRelease,
        commitTimeout: run.commitTimeout,
      });
    } catch (error) {
      failed(messages[0], error, true);
      return status = 2;
    }
    let next = performance.now();
    for (const message of messages) {
      if (interval > 0) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
        next = Math.max(next, performance.now()) + interval;
      }
      stats.start();
      bar?.started();
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
          stats.add(ending, code === 0);
          status = Math.max(status, code);
          bar?.tick(code === 0);
          if (run.json) {
            out(
              JSON.stringify(batchItemJson(message, i, item, batchResult, ms)) +
                "\n",
            );
          } else {
            out(line + "\n");
          }
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
      stats.add(ending, code === 0);
      status = Math.max(status, code);
      // The bar counts the message first, so that it shows it when drawn
      // again below the line.
      bar?.tick(code === 0);
      if (run.json) {
        const object = resultJson(message, result, ms);
        if (appAck !== null) object.applicationAck = appAckJson(appAck);
        out(JSON.stringify(object) + "\n");
      } else {
        out(line + "\n");
      }
    }
    // Files left out (--keep-going) make it 2 too.
    return status = run.skippedFiles > 0 ? 2 : status;
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
 * Whether a message whose send failed was written on the connection (so
 * the receiver may have it): the error came while its reply was awaited.
 * A failure to connect, a failed TLS handshake or write, or a message the
 * client refused, was not.
 */
function wasWritten(error: unknown): boolean {
  return error instanceof ClientError && error.context === "receiving";
}

/**
 * Whether `--keep-going` may go on after this error: the client closed the
 * connection and reconnects for the next message, or it refused the
 * message itself (the connection is fine). Failures to connect stop the
 * run either way.
 */
function canGoOn(error: unknown): boolean {
  return !(error instanceof ClientError) ||
    error instanceof ReplyTimeoutError ||
    error instanceof InvalidReplyError ||
    (error instanceof ConnectionClosedError && error.context !== "connecting");
}
