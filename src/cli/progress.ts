/**
 * `mllp send`'s progress bar and end-of-run summary.
 *
 * The bar is one line on a terminal, redrawn in place (`\r` and an erase
 * to the end of the line), at most every `interval` ms:
 *
 * ```
 * [████████░░░░░░░░░░░░] 412/1000  41%  183 msg/s  ETA 0:03  2 not accepted
 * ```
 *
 * @module
 */

import type { AckCode } from "../hl7/ack.ts";

/** Options for {@linkcode ProgressBar}. */
export interface ProgressOptions {
  /** How many messages there are. */
  total: number;
  /** Writes text to the terminal (stderr). */
  write: (text: string) => void;
  /** The clock, in ms (`performance.now` by default). */
  now?: () => number;
  /** The terminal's width; the line is cut to fit. */
  columns?: number;
  /** The least time between two redraws, in ms (100 by default). */
  interval?: number;
  /** The bar's width in characters (20 by default). */
  width?: number;
  /**
   * With `--rate N`, the time each message is given, in ms (1000 / N):
   * the rate shown counts each finished message's whole slot, so that it
   * never shows more than N (see {@linkcode SendStats}).
   */
  slot?: number;
}

/** Moves to the start of the line and erases it. */
export const CLEAR_LINE = "\r\x1b[2K";

/** A progress bar redrawn in place on a terminal. */
export class ProgressBar {
  #total: number;
  #write: (text: string) => void;
  #now: () => number;
  #columns: number | undefined;
  #interval: number;
  #width: number;
  #slot: number;
  #start: number;
  #done = 0;
  #notAccepted = 0;
  #lastDraw = -Infinity;
  #shown = false;
  #finished = false;
  #begun = false;
  #endedAt: number | undefined;

  constructor(options: ProgressOptions) {
    this.#total = options.total;
    this.#write = options.write;
    this.#now = options.now ?? (() => performance.now());
    this.#columns = options.columns;
    this.#interval = options.interval ?? 100;
    this.#width = options.width ?? 20;
    this.#slot = options.slot ?? 0;
    this.#start = this.#now();
  }

  /**
   * Notes that a message's send starts: the rate is counted from the
   * first one (as the summary's is), not from connecting.
   */
  started(): void {
    if (this.#begun) return;
    this.#begun = true;
    this.#start = this.#now();
  }

  /** Messages finished so far. */
  get done(): number {
    return this.#done;
  }

  /**
   * Counts one finished message and redraws, unless the last redraw was
   * under `interval` ms ago (the last message always redraws).
   */
  tick(accepted: boolean): void {
    this.#done++;
    if (!accepted) this.#notAccepted++;
    const now = this.#now();
    // The rate stops when the last message is done, not at the summary.
    if (this.#done === this.#total) this.#endedAt = now;
    if (now - this.#lastDraw >= this.#interval || this.#done === this.#total) {
      this.#draw(now);
    }
  }

  /** Draws the bar now (the first draw, or after {@linkcode clear}). */
  redraw(): void {
    if (!this.#finished) this.#draw(this.#now());
  }

  /** Erases the bar, so that a line can be printed in its place. */
  clear(): void {
    if (this.#shown) this.#write(CLEAR_LINE);
    this.#shown = false;
  }

  /** Draws the final state and ends the line; the bar stays on screen. */
  finish(): void {
    if (this.#finished) return;
    this.#draw(this.#now());
    this.#write("\n");
    this.#finished = true;
  }

  /** The bar's line at time `now`. */
  line(now: number = this.#now()): string {
    const total = Math.max(this.#total, 0);
    const done = Math.min(this.#done, total);
    const fraction = total === 0 ? 1 : done / total;
    const filled = Math.round(fraction * this.#width);
    const bar = "█".repeat(filled) + "░".repeat(this.#width - filled);
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    const count = `${String(done).padStart(String(total).length)}/${total}`;
    const end = this.#endedAt ?? now;
    const seconds = Math.max(0, end - this.#start, this.#done * this.#slot) /
      1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const parts = [`[${bar}] ${count}`, percent, `${formatRate(rate)} msg/s`];
    if (done >= total) {
      parts.push(`in ${formatDuration(seconds)}`);
    } else {
      parts.push(
        `ETA ${
          rate > 0 && done > 0 ? formatDuration((total - done) / rate) : "--:--"
        }`,
      );
    }
    if (this.#notAccepted > 0) parts.push(`${this.#notAccepted} not accepted`);
    const text = parts.join("  ");
    const columns = this.#columns;
    return columns !== undefined && columns > 1 && text.length > columns - 1
      ? text.slice(0, columns - 1)
      : text;
  }

  #draw(now: number) {
    this.#write(CLEAR_LINE + this.line(now));
    this.#lastDraw = now;
    this.#shown = true;
  }
}

/** A rate with sensible precision: `0.50`, `8.3`, `183`. */
export function formatRate(rate: number): string {
  if (rate >= 100) return rate.toFixed(0);
  if (rate >= 10) return rate.toFixed(1);
  return rate.toFixed(2);
}

/** Seconds as `m:ss`, or `h:mm:ss` from an hour. */
export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** How one message ended, for the summary. */
export type Ending =
  /** An ACK for the message (answered). */
  | { kind: "ack"; code: AckCode; ms: number }
  /** A reply to a payload that is not HL7 (answered). */
  | { kind: "reply"; ms: number }
  /**
   * An ACK for another message, a reply that is not an ACK, a NAK, the
   * receiver's answer to a payload it does not know (answered).
   */
  | { kind: "other"; ms: number }
  /** No acknowledgment, as the message's MSH-15 and MSH-16 allow. */
  | { kind: "silent" }
  /** Written, and no reply in time. */
  | { kind: "timeout" }
  /**
   * A transport error after the message was written (`written`: the
   * connection dropped while the reply was awaited) or before (`written:
   * false`: the write failed, the TLS handshake failed).
   */
  | { kind: "error"; written: boolean }
  /** A failure before the message could be sent (connecting). */
  | { kind: "unsent" };

/** The summary as `--json` prints it, last. */
export interface SummaryJson {
  summary: true;
  /** Messages read from the input (of the files that can be sent). */
  total: number;
  /**
   * Messages written on the connection: the receiver may have them. Not
   * those whose connection, TLS handshake or write failed.
   */
  written: number;
  /** Messages that got a reply (an ACK, a NAK, any other reply). */
  answered: number;
  /**
   * Messages accepted: an `AA` or `CA` (and, with `--wait-app-ack`, an
   * application `AA` or none), a reply to a payload that is not HL7 other
   * than a NAK or `mllp_unknown`, or silence that means accepted.
   */
  accepted: number;
  /** The same as `written` (its older name). */
  sent: number;
  /** ACKs by code, for messages that got an ACK for themselves. */
  codes: Record<AckCode, number>;
  /** ACKs for another message, replies that are not ACKs, NAKs. */
  other: number;
  /** Replies to payloads that are not HL7 (other than a NAK). */
  replies: number;
  timeouts: number;
  /**
   * Enhanced-mode messages that got no acknowledgment, as their MSH-15 and
   * MSH-16 allow; only when there were some.
   */
  silent?: number;
  /** Other transport errors, failing to connect included. */
  errors: number;
  /** Files left out because they cannot be sent (`--keep-going`). */
  skippedFiles: number;
  /**
   * The time from the first message's send to the end of the last one's:
   * its reply or failure, or with `--rate N`, 1/N s after it started if
   * that is later (each message is given its 1/N s).
   */
  elapsedMs: number;
  /** Messages written per second of `elapsedMs`: with `--rate N`, <= N. */
  ratePerSecond: number;
  /** Round-trip percentiles of the messages that got a reply, or null. */
  p50Ms: number | null;
  p99Ms: number | null;
  /**
   * Application ACKs waited for (`send --wait-app-ack`), by code, `none`
   * for those that did not come; only when some were waited for.
   */
  applicationAcks?: Record<"AA" | "AE" | "AR" | "none", number>;
}

/** Counts what happened to each message of a run. */
export class SendStats {
  #total: number;
  #now: () => number;
  #slot: number;
  #created: number;
  #firstStart: number | undefined;
  #lastStart = 0;
  #lastEnd: number | undefined;
  #codes: Record<AckCode, number> = {
    AA: 0,
    AE: 0,
    AR: 0,
    CA: 0,
    CE: 0,
    CR: 0,
  };
  #other = 0;
  #replies = 0;
  #timeouts = 0;
  #silent = 0;
  #errors = 0;
  #unwritten = 0;
  #accepted = 0;
  #skippedFiles = 0;
  #roundTrips: number[] = [];
  #appAcks: Record<"AA" | "AE" | "AR" | "none", number> | undefined;

  /**
   * @param total How many messages there are.
   * @param now The clock, in ms.
   * @param slot With `--rate N`, 1000 / N: the least time a message takes.
   */
  constructor(
    total: number,
    now: () => number = () => performance.now(),
    slot = 0,
  ) {
    this.#total = total;
    this.#now = now;
    this.#slot = slot;
    this.#created = now();
  }

  /** Notes that a message's send starts now. */
  start(): void {
    const now = this.#now();
    this.#firstStart ??= now;
    this.#lastStart = now;
  }

  /**
   * Counts one message.
   *
   * @param ending How it ended.
   * @param accepted Whether it was accepted (exit status 0 for it).
   */
  add(ending: Ending, accepted = false): void {
    this.#lastEnd = this.#now();
    if (accepted) this.#accepted++;
    switch (ending.kind) {
      case "ack":
        this.#codes[ending.code]++;
        break;
      case "reply":
        this.#replies++;
        break;
      case "other":
        this.#other++;
        break;
      case "timeout":
        this.#timeouts++;
        return;
      case "silent":
        this.#silent++;
        return;
      case "error":
        this.#errors++;
        if (!ending.written) this.#unwritten++;
        return;
      case "unsent":
        this.#errors++;
        this.#unwritten++;
        return;
    }
    this.#roundTrips.push(ending.ms);
  }

  /** Counts files left out because they cannot be sent. */
  skipFiles(count: number): void {
    this.#skippedFiles += count;
  }

  /** Counts one application ACK waited for (`undefined`: none came). */
  addApplicationAck(code: AckCode | undefined): void {
    this.#appAcks ??= { AA: 0, AE: 0, AR: 0, none: 0 };
    const key = code === "AA" || code === "AE" || code === "AR" ? code : "none";
    this.#appAcks[key]++;
  }

  /**
   * The time the run's messages took: from the first send to the end of
   * the last message's slot (its end, or with a rate, its start plus the
   * slot, whichever is later). Without {@linkcode start}, from the
   * construction to now.
   */
  #elapsed(): number {
    if (this.#firstStart === undefined) return this.#now() - this.#created;
    const end = Math.max(
      this.#lastEnd ?? this.#lastStart,
      this.#lastStart + this.#slot,
    );
    return end - this.#firstStart;
  }

  /** The summary now. */
  summary(): SummaryJson {
    const elapsedMs = this.#elapsed();
    const answered = Object.values(this.#codes).reduce((a, b) => a + b, 0) +
      this.#other + this.#replies;
    const written = answered + this.#timeouts + this.#silent + this.#errors -
      this.#unwritten;
    return {
      summary: true,
      total: this.#total,
      written,
      answered,
      accepted: this.#accepted,
      sent: written,
      codes: { ...this.#codes },
      other: this.#other,
      replies: this.#replies,
      timeouts: this.#timeouts,
      ...(this.#silent ? { silent: this.#silent } : {}),
      errors: this.#errors,
      skippedFiles: this.#skippedFiles,
      elapsedMs: round(elapsedMs),
      ratePerSecond: elapsedMs > 0 ? round(written / (elapsedMs / 1000)) : 0,
      p50Ms: percentile(this.#roundTrips, 50),
      p99Ms: percentile(this.#roundTrips, 99),
      ...(this.#appAcks ? { applicationAcks: { ...this.#appAcks } } : {}),
    };
  }
}

/**
 * The summary as text, two lines:
 *
 * ```
 * written 3 of 3, answered 3, accepted 2 in 0.05 s (60.0 msg/s): AA 2, AE 0, AR 1, CA 0, CE 0, CR 0, timeouts 0
 * round trip: p50 2.3 ms, p99 4.1 ms
 * ```
 *
 * `silent N`, `other N`, `replies N` and `errors N` follow the timeouts
 * when not zero, then `app AA N, app AE N, app AR N, app none N` when
 * application ACKs were waited for, and `files skipped N` when files were
 * left out.
 */
export function formatSummary(summary: SummaryJson): string {
  const codes = (Object.entries(summary.codes) as [AckCode, number][])
    .map(([code, n]) => `${code} ${n}`);
  const extra = [`timeouts ${summary.timeouts}`];
  if (summary.silent) extra.push(`silent ${summary.silent}`);
  if (summary.other > 0) extra.push(`other ${summary.other}`);
  if (summary.replies > 0) extra.push(`replies ${summary.replies}`);
  if (summary.errors > 0) extra.push(`errors ${summary.errors}`);
  for (const [code, n] of Object.entries(summary.applicationAcks ?? {})) {
    extra.push(`app ${code} ${n}`);
  }
  if (summary.skippedFiles > 0) {
    extra.push(`files skipped ${summary.skippedFiles}`);
  }
  const seconds = (summary.elapsedMs / 1000).toFixed(2);
  const first =
    `written ${summary.written} of ${summary.total}, answered ${summary.answered}, accepted ${summary.accepted} in ${seconds} s (${
      formatRate(summary.ratePerSecond)
    } msg/s): ${[...codes, ...extra].join(", ")}`;
  const second = summary.p50Ms === null || summary.p99Ms === null
    ? "round trip: no replies"
    : `round trip: p50 ${summary.p50Ms.toFixed(1)} ms, p99 ${
      summary.p99Ms.toFixed(1)
    } ms`;
  return `${first}\n${second}\n`;
}

/** The nearest-rank percentile, rounded to 0.01, or null when empty. */
export function percentile(
  values: readonly number[],
  p: number,
): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return round(sorted[rank - 1]);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
