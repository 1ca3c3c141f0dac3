// The progress bar and the summary of `mllp send`, driven with a fake
// clock: what is drawn, when it is redrawn, and how it is cleared.

import { assertEquals } from "@std/assert";
import {
  CLEAR_LINE,
  formatDuration,
  formatRate,
  formatSummary,
  percentile,
  ProgressBar,
  SendStats,
} from "../../src/cli/progress.ts";

function fakeBar(total: number, options: { columns?: number } = {}) {
  let now = 1000;
  const writes: string[] = [];
  const bar = new ProgressBar({
    total,
    write: (text) => writes.push(text),
    now: () => now,
    columns: options.columns,
    width: 10,
  });
  return {
    bar,
    writes,
    advance(ms: number) {
      now += ms;
    },
  };
}

Deno.test("ProgressBar draws count, percent, rate and ETA", () => {
  const { bar, writes, advance } = fakeBar(200);
  bar.redraw();
  assertEquals(writes, [
    `${CLEAR_LINE}[░░░░░░░░░░]   0/200    0%  0.00 msg/s  ETA --:--`,
  ]);
  advance(2000);
  for (let i = 0; i < 50; i++) bar.tick(i !== 7);
  assertEquals(writes.length, 2, "ticks within 100 ms draw once");
  bar.redraw();
  // 50 in 2 s: 25 msg/s, 150 left: 6 s.
  assertEquals(
    writes.at(-1),
    `${CLEAR_LINE}[███░░░░░░░]  50/200   25%  25.0 msg/s  ETA 0:06  1 not accepted`,
  );
});

Deno.test("ProgressBar redraws at most every interval, and always at the end", () => {
  const { bar, writes, advance } = fakeBar(3);
  bar.tick(true); // first draw
  assertEquals(writes.length, 1);
  advance(50);
  bar.tick(true); // 50 ms after the last draw: skipped
  assertEquals(writes.length, 1);
  advance(10);
  bar.tick(true); // the last message: drawn
  assertEquals(writes.length, 2);
  assertEquals(
    writes[1],
    `${CLEAR_LINE}[██████████] 3/3  100%  50.0 msg/s  in 0:00`,
  );
  bar.finish();
  assertEquals(writes.slice(2), [writes[1], "\n"]);
  bar.finish();
  bar.redraw();
  assertEquals(writes.length, 4, "nothing after finish");
});

Deno.test("ProgressBar clears itself for a line and fits the terminal", () => {
  const { bar, writes } = fakeBar(10, { columns: 30 });
  bar.clear();
  assertEquals(writes, [], "nothing to clear before the first draw");
  bar.redraw();
  assertEquals(writes[0], CLEAR_LINE + "[░░░░░░░░░░]  0/10    0%  0.0");
  assertEquals(writes[0].length - CLEAR_LINE.length, 29);
  bar.clear();
  bar.clear();
  assertEquals(writes.slice(1), [CLEAR_LINE]);
});

Deno.test("formatDuration, formatRate and percentile", () => {
  assertEquals(formatDuration(0), "0:00");
  assertEquals(formatDuration(61.4), "1:01");
  assertEquals(formatDuration(3600 * 2 + 5), "2:00:05");
  assertEquals([formatRate(0.5), formatRate(12.34), formatRate(183.7)], [
    "0.50",
    "12.3",
    "184",
  ]);
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assertEquals(percentile(values, 50), 50);
  assertEquals(percentile(values, 99), 99);
  assertEquals(percentile([7.123], 99), 7.12);
  assertEquals(percentile([], 50), null);
});

Deno.test("SendStats counts each ending and formats the summary", () => {
  let now = 0;
  const stats = new SendStats(8, () => now);
  stats.add({ kind: "ack", code: "AA", ms: 2 }, true);
  stats.add({ kind: "ack", code: "AA", ms: 4 }, true);
  stats.add({ kind: "ack", code: "AR", ms: 3 });
  stats.add({ kind: "ack", code: "CE", ms: 9 });
  stats.add({ kind: "other", ms: 1 });
  stats.add({ kind: "reply", ms: 5 }, true);
  stats.add({ kind: "timeout" });
  stats.add({ kind: "unsent" });
  now = 2000;
  const summary = stats.summary();
  assertEquals(summary, {
    summary: true,
    total: 8,
    written: 7,
    answered: 6,
    accepted: 3,
    sent: 7,
    codes: { AA: 2, AE: 0, AR: 1, CA: 0, CE: 1, CR: 0 },
    other: 1,
    replies: 1,
    timeouts: 1,
    errors: 1,
    skippedFiles: 0,
    elapsedMs: 2000,
    ratePerSecond: 3.5,
    p50Ms: 3,
    p99Ms: 9,
  });
  assertEquals(
    formatSummary(summary),
    "written 7 of 8, answered 6, accepted 3 in 2.00 s (3.50 msg/s): AA 2, AE 0, AR 1, CA 0, CE 1, CR 0, timeouts 1, other 1, replies 1, errors 1\n" +
      "round trip: p50 3.0 ms, p99 9.0 ms\n",
  );
  assertEquals(
    formatSummary(new SendStats(0, () => 0).summary()),
    "written 0 of 0, answered 0, accepted 0 in 0.00 s (0.00 msg/s): AA 0, AE 0, AR 0, CA 0, CE 0, CR 0, timeouts 0\n" +
      "round trip: no replies\n",
  );
});

Deno.test("SendStats tells written from answered, and counts files skipped", () => {
  const stats = new SendStats(3, () => 0);
  stats.add({ kind: "error", written: false }); // a failed TLS handshake
  stats.add({ kind: "error", written: true }); // closed while awaiting
  stats.add({ kind: "silent" }, true);
  stats.skipFiles(2);
  const summary = stats.summary();
  assertEquals(
    [summary.written, summary.answered, summary.accepted, summary.errors],
    [2, 0, 1, 2],
  );
  assertEquals(
    formatSummary(summary).split("\n")[0],
    "written 2 of 3, answered 0, accepted 1 in 0.00 s (0.00 msg/s): AA 0, AE 0, AR 0, CA 0, CE 0, CR 0, timeouts 0, silent 1, errors 2, files skipped 2",
  );
});

Deno.test("SendStats with a rate counts each message's slot: msg/s never exceeds it", () => {
  let now = 100;
  // --rate 2: a slot of 500 ms; each reply takes 10 ms.
  const stats = new SendStats(3, () => now, 500);
  for (let i = 0; i < 3; i++) {
    now = 1000 + 500 * i;
    stats.start();
    now += 10;
    stats.add({ kind: "ack", code: "AA", ms: 10 }, true);
  }
  now = 2600; // the summary is made later: it does not count
  const summary = stats.summary();
  assertEquals([summary.elapsedMs, summary.ratePerSecond], [1500, 2]);
  // A reply slower than the slot: the run ends with it.
  const slow = new SendStats(1, () => now, 500);
  now = 0;
  slow.start();
  now = 800;
  slow.add({ kind: "ack", code: "AA", ms: 800 }, true);
  assertEquals(slow.summary().elapsedMs, 800);
});

Deno.test("ProgressBar with a slot never shows more than its rate", () => {
  let now = 0;
  const writes: string[] = [];
  const bar = new ProgressBar({
    total: 4,
    write: (text) => writes.push(text),
    now: () => now,
    width: 4,
    slot: 500, // --rate 2
  });
  now = 300; // connecting
  bar.started();
  now = 310;
  bar.tick(true); // the first message: its slot counts, not 10 ms
  assertEquals(
    writes.at(-1),
    `${CLEAR_LINE}[█░░░] 1/4   25%  2.00 msg/s  ETA 0:02`,
  );
});
