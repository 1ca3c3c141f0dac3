/**
 * Log lines on stderr, in one format, for everything this package runs:
 * the `mllp` command, the examples and the demo. Results go to stdout;
 * log lines go here. (An application gets the same lines from LogTape's
 * own `getTextFormatter({ timestamp: "rfc3339", value: "bare" })`, which
 * {@linkcode lineFormatter} matches: README, "Logging".)
 *
 * @module
 */

import {
  getTextFormatter,
  type LogRecord,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";

/** A synchronous byte sink, such as `Deno.stdout` or `Deno.stderr`. */
export interface LogWriter {
  /** Writes some of `data`, returning how many bytes it wrote. */
  writeSync(data: Uint8Array): number;
}

const encoder = new TextEncoder();

/**
 * How long a log line may wait to be written with the lines after it, in
 * milliseconds: long enough to batch a busy receiver's lines into a few
 * writes a second, short enough to read as live.
 */
export const LOG_FLUSH_MS = 10;

/** How many bytes of log lines may wait before they are written at once. */
export const MAX_PENDING_LOG_BYTES = 1024 * 1024;

/**
 * Log lines for a writer, written in batches: each line waits (formatted)
 * up to {@linkcode LOG_FLUSH_MS}, so that writing it never costs a message
 * its round trip, and the lines of those milliseconds go out in one write.
 * Nothing is dropped: a writer that falls behind by more than
 * {@linkcode MAX_PENDING_LOG_BYTES} is written to at once, which slows the
 * logging down rather than losing lines.
 */
export class BatchedLines implements Disposable {
  #writer: LogWriter;
  #format: TextFormatter;
  #lines: string[] = [];
  #pending = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flush = () => this.flush();

  /**
   * @param writer Where the lines go (stderr).
   * @param format How a record becomes a line.
   */
  constructor(writer: LogWriter, format: TextFormatter) {
    this.#writer = writer;
    this.#format = format;
  }

  /** The LogTape sink (it formats each record at once). */
  readonly sink: (record: LogRecord) => void = Object.defineProperty(
    (record: LogRecord): void => this.#take(record),
    IMMEDIATE_SINK,
    { value: true },
  );

  #take(record: LogRecord): void {
    const line = this.#format(record);
    this.#lines.push(line);
    this.#pending += line.length;
    if (this.#pending > MAX_PENDING_LOG_BYTES) {
      this.flush();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(this.#flush, LOG_FLUSH_MS);
      // Waiting lines do not keep an otherwise finished process alive:
      // disposing writes them.
      Deno.unrefTimer(this.#timer);
    }
  }

  /** Writes every waiting line now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    const data = encoder.encode(this.#lines.join(""));
    this.#lines.length = 0;
    this.#pending = 0;
    try {
      for (let offset = 0; offset < data.length;) {
        offset += this.#writer.writeSync(data.subarray(offset));
      }
    } catch {
      // Nowhere left to report it.
    }
  }

  /** Writes what waits. */
  [Symbol.dispose](): void {
    this.flush();
  }
}

/**
 * The key LogTape reads to know that a sink formats a record at once and
 * keeps nothing of it (as its own synchronous stream sink does), so that
 * it need not copy the record's properties first: a registered symbol,
 * shared by every copy of LogTape. Without it lines are the same, only
 * slower.
 */
const IMMEDIATE_SINK = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");

const LEVELS: Record<string, string> = {
  trace: "TRC",
  debug: "DBG",
  info: "INF",
  warning: "WRN",
  error: "ERR",
  fatal: "FTL",
};

/** A control character: a line break, an escape code, ... */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

/**
 * The one log line format of the `mllp` command, the examples and the
 * demo: LogTape's text format with RFC 3339 times and bare values
 * (`2026-12-04T16:57:44.449Z [INF] mllp·cli: ...`), built directly when
 * every value is a number, a boolean or a string without control
 * characters, the usual case, and by LogTape's formatter otherwise (which
 * escapes line breaks and escape codes in a value).
 *
 * @returns A LogTape text formatter.
 *
 * @example One line
 * ```ts
 * import { lineFormatter } from "./log_lines.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const line = lineFormatter()({
 *   category: ["mllp", "receiver"],
 *   level: "info",
 *   timestamp: Date.UTC(2026, 11, 4, 16, 57, 44, 449),
 *   message: ["Listening on ", "127.0.0.1:2575"],
 *   rawMessage: "Listening on {address}",
 *   properties: { address: "127.0.0.1:2575" },
 * });
 * assertEquals(
 *   line,
 *   "2026-12-04T16:57:44.449Z [INF] mllp·receiver: Listening on 127.0.0.1:2575\n",
 * );
 * ```
 */
export function lineFormatter(): TextFormatter {
  const full = getTextFormatter({ timestamp: "rfc3339", value: "bare" });
  let stampAt = NaN;
  let stamp = "";
  let category: readonly string[] = [];
  let categoryText = "";
  return (record) => {
    const parts = record.message;
    let text = "";
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (typeof part === "string") {
        // A value with a line break or an escape code: LogTape's formatter
        // neutralizes it, so that a value cannot forge or paint a line.
        if (i % 2 === 1 && CONTROL.test(part)) return full(record);
        text += part;
      } else if (typeof part === "number" && !Object.is(part, -0)) text += part;
      else if (typeof part === "boolean") text += part;
      else return full(record);
    }
    if (record.timestamp !== stampAt) {
      stampAt = record.timestamp;
      stamp = new Date(stampAt).toISOString();
    }
    if (record.category !== category) {
      category = record.category;
      categoryText = category.join("·");
    }
    return `${stamp} [${LEVELS[record.level]}] ${categoryText}: ${text}\n`;
  };
}

/**
 * A LogTape sink that writes log lines to stderr in the format of the
 * `mllp` command ({@linkcode lineFormatter}), in batches: a line waits at
 * most {@linkcode LOG_FLUSH_MS} milliseconds, so that logging never costs
 * a message its round trip. LogTape disposes it (writing what waits) when
 * its configuration is reset, and, when it was set up with
 * `configureSync`, when the program exits.
 *
 * @param writer Where the lines go: `Deno.stderr` unless given.
 * @returns The sink, disposable.
 *
 * @example Log the library's lines as the `mllp` command does
 * ```ts
 * import { configure, reset } from "@logtape/logtape";
 * import { getStderrSink } from "./log_lines.ts";
 *
 * await configure({
 *   sinks: { stderr: getStderrSink() },
 *   loggers: [
 *     { category: ["mllp"], lowestLevel: "info", sinks: ["stderr"] },
 *     { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
 *   ],
 * });
 * await reset();
 * ```
 */
export function getStderrSink(
  writer: LogWriter = Deno.stderr,
): Sink & Disposable {
  const lines = new BatchedLines(writer, lineFormatter());
  return Object.assign(lines.sink, {
    [Symbol.dispose]: () => lines.flush(),
  });
}
