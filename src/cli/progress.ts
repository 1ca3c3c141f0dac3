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
  #start: number;
  #done = 0;
  #notAccepted = 0;
  #lastDraw = -Infinity;
  #shown = false;
  #finished = false;

  constructor(options: ProgressOptions) {
    this.#total = options.total;
    this.#write = options.write;
    this.#now = options.now ?? (() => performance.now());
    this.#columns = options.columns;
    this.#interval = options.interval ?? 100;
    this.#width = options.width ?? 20;
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
    const seconds = Math.max(0, now - this.#start) / 1000;
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
  | { kind: "ack"; code: AckCode; ms: number }
  | { kind: "reply"; ms: number }
  | { kind: "other"; ms: number }
  /** No acknowledgment, as the message's MSH-15 and MSH-16 allow. */
  | { kind: "silent" }
  | { kind: "timeout" }
  | { kind: "error" }
  /** A failure before the message could be sent (connecting). */
  | { kind: "unsent" };

/** The summary as `--json` prints it, last. */
export interface SummaryJson {
  summary: true;
  /** Messages read from the input. */
  total: number;
  /**
   * Messages whose send was tried and ended (with a reply, a timeout or an
   * error); not the one whose connection could not be made.
   */
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
  elapsedMs: number;
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
  #start: number;
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
  #unsent = 0;
  #roundTrips: number[] = [];
  #appAcks: Record<"AA" | "AE" | "AR" | "none", number> | undefined;

  constructor(total: number, now: () => number = () => performance.now()) {
    this.#total = total;
    this.#now = now;
    this.#start = now();
  }

  /** Counts one message. */
  add(ending: Ending): void {
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
        return;
      case "unsent":
        this.#errors++;
        this.#unsent++;
        return;
    }
    this.#roundTrips.push(ending.ms);
  }

  /** Counts one application ACK waited for (`undefined`: none came). */
  addApplicationAck(code: AckCode | undefined): void {
    this.#appAcks ??= { AA: 0, AE: 0, AR: 0, none: 0 };
    const key = code === "AA" || code === "AE" || code === "AR" ? code : "none";
    this.#appAcks[key]++;
  }

  /** The summary now. */
  summary(): SummaryJson {
    const elapsedMs = this.#now() - this.#start;
    const sent = Object.values(this.#codes).reduce((a, b) => a + b, 0) +
      this.#other + this.#replies + this.#timeouts + this.#silent +
      this.#errors - this.#unsent;
    return {
      summary: true,
      total: this.#total,
      sent,
      codes: { ...this.#codes },
      other: this.#other,
      replies: this.#replies,
      timeouts: this.#timeouts,
      ...(this.#silent ? { silent: this.#silent } : {}),
      errors: this.#errors,
      elapsedMs: round(elapsedMs),
      ratePerSecond: elapsedMs > 0 ? round(sent / (elapsedMs / 1000)) : 0,
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
 * sent 3 of 3 in 0.05 s (60.0 msg/s): AA 2, AE 0, AR 1, CA 0, CE 0, CR 0, timeouts 0
 * round trip: p50 2.3 ms, p99 4.1 ms
 * ```
 *
 * `silent N`, `other N`, `replies N` and `errors N` follow the timeouts
 * when not zero,
 * and `app AA N, app AE N, app AR N, app none N` when application ACKs
 * were waited for.
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
  const seconds = (summary.elapsedMs / 1000).toFixed(2);
  const first = `sent ${summary.sent} of ${summary.total} in ${seconds} s (${
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
