/**
 * The targets of issue 14, checked against one `deno task bench` run:
 * each is met, missed, or not measured in this run; the figures the issue
 * asks to report without a bar are listed as "report".
 *
 * @module
 */

import type { BenchReport } from "../../src/bench/bench.ts";
import { type Results, target } from "./_results.ts";

/** One line of the verdict. */
export interface Goal {
  status: "met" | "MISSED" | "not measured" | "report";
  text: string;
}

const x = (value: number) => `${value.toFixed(2)}x`;

/** `a`'s messages/s over `b`'s, in one report. */
function rateRatio(
  report: BenchReport | undefined,
  a: string,
  b: string,
): number | undefined {
  const ta = target(report, a)?.summary.messagesPerSecond;
  const tb = target(report, b)?.summary.messagesPerSecond;
  return ta !== undefined && tb ? ta / tb : undefined;
}

/** A goal `value >= bar` (or `<=`, with `atMost`). */
function bar(
  text: string,
  value: number | undefined,
  limit: number,
  shown: string | undefined,
  atMost = false,
): Goal {
  if (value === undefined) return { status: "not measured", text };
  const met = atMost ? value <= limit : value >= limit;
  return { status: met ? "met" : "MISSED", text: `${text}: ${shown}` };
}

/**
 * Checks the run against issue 14's targets. With a baseline (an earlier
 * run's results), TLS ratios are checked for regressions (a fall of more
 * than 10 %, this machine's noise between runs); without one they are
 * only reported.
 */
export function checkGoals(results: Results, baseline?: Results): Goal[] {
  const goals: Goal[] = [];
  const counts = Object.keys(results.receivers);
  const [one, many] = [counts[0], counts[counts.length - 1]];
  const receivers = (c: string) => results.receivers[c];
  const original = (c: string) => results.clients.original?.[c];

  // Receiver vs raw, lean load.
  for (const [c, limit] of [[one, 0.85], [many, 0.75]] as const) {
    const ratio = target(receivers(c), "self")?.ratio;
    goals.push(bar(
      `receiver >= ${limit}x raw, ${c} connection(s)`,
      ratio,
      limit,
      ratio !== undefined ? x(ratio) : undefined,
    ));
  }
  for (const c of [one, many]) {
    const cpu = target(receivers(c), "self")?.cpuRatio;
    goals.push(bar(
      `receiver server CPU per message <= 1.5x raw's, ${c} connection(s)`,
      cpu,
      1.5,
      cpu !== undefined ? x(cpu) : undefined,
      true,
    ));
  }
  // The floor: what answering with an AA costs without the receiver.
  for (const c of [one, many]) {
    const floor = target(receivers(c), "floor");
    const self = rateRatio(receivers(c), "self", "floor");
    if (floor?.ratio !== undefined && self !== undefined) {
      goals.push({
        status: "report",
        text: `floor / raw, ${c} connection(s): ${x(floor.ratio)}${
          floor.cpuRatio !== undefined ? ` (CPU ${x(floor.cpuRatio)})` : ""
        }; receiver / floor: ${x(self)}`,
      });
    }
  }
  // listen vs self.
  for (const c of [one, many]) {
    const ratio = rateRatio(receivers(c), "listen", "self");
    goals.push(bar(
      `listen (default logging) >= 0.9x receiver, ${c} connection(s)`,
      ratio,
      0.9,
      ratio !== undefined ? x(ratio) : undefined,
    ));
  }
  // Memory under load, where it matters: the most connections.
  const rawGrowth = target(receivers(many), "raw")?.summary.rssGrowth;
  for (const name of ["self", "listen"]) {
    const growth = target(receivers(many), name)?.summary.rssGrowth;
    const ratio = growth !== undefined && rawGrowth
      ? growth / rawGrowth
      : undefined;
    goals.push(bar(
      `${name} RSS growth under load <= 2x raw's, ${many} connection(s)`,
      ratio,
      2,
      ratio !== undefined
        ? `${x(ratio)} (+${(growth! / 2 ** 20).toFixed(1)} vs +${
          (rawGrowth! / 2 ** 20).toFixed(1)
        } MiB)`
        : undefined,
      true,
    ));
  }
  // Client vs lean, original mode.
  for (const [c, limit] of [[one, 0.85], [many, 0.75]] as const) {
    const ratio = target(original(c), "client")?.ratio;
    goals.push(bar(
      `Client >= ${limit}x lean, ${c} connection(s)`,
      ratio,
      limit,
      ratio !== undefined ? x(ratio) : undefined,
    ));
  }
  for (const c of [one, many]) {
    const floor = target(original(c), "client floor")?.ratio;
    const client = rateRatio(original(c), "client", "client floor");
    if (floor !== undefined && client !== undefined) {
      goals.push({
        status: "report",
        text: `client floor / lean, ${c} connection(s): ${
          x(floor)
        }; Client / client floor: ${x(client)}`,
      });
    }
  }
  for (const mode of ["enhanced", "release2"]) {
    for (const c of [one, many]) {
      const ratio = target(results.clients[mode]?.[c], "client")?.ratio;
      if (ratio !== undefined) {
        goals.push({
          status: "report",
          text: `Client / lean, ${mode}, ${c} connection(s): ${x(ratio)}`,
        });
      }
    }
  }
  // Keep what is good.
  const framer = results.framer;
  goals.push(bar(
    "framer >= 1 GB/s on 1 KiB frames in 64 KiB chunks",
    framer?.smallFramesMBps,
    1000,
    framer ? `${Math.round(framer.smallFramesMBps)} MB/s` : undefined,
  ));
  goals.push(bar(
    "framer: one 64 MiB frame < 0.2 s",
    framer?.bigFrameSeconds,
    0.2,
    framer
      ? `${framer.bigFrameSeconds.toFixed(3)} s${
        framer.bigFrameFloorSeconds
          ? ` (${x(framer.bigFrameSeconds / framer.bigFrameFloorSeconds)} the ${
            framer.bigFrameFloorSeconds.toFixed(3)
          } s that copying and joining its chunks takes here)`
          : ""
      }`
      : undefined,
    true,
  ));
  const idle = results.idle?.targets.find((t) => t.name === "self")?.median;
  goals.push(bar(
    `${
      results.idle?.connections ?? 1000
    } idle connections cost the receiver < 32 MiB`,
    idle ? idle.rssGrowth / 2 ** 20 : undefined,
    32,
    idle ? `+${(idle.rssGrowth / 2 ** 20).toFixed(1)} MiB` : undefined,
    true,
  ));
  // TLS: no regression (needs a baseline to say so).
  const tls: [string, (r: Results, c: string) => number | undefined][] = [
    [
      "receiver / raw over TLS",
      (r, c) => target(r.tls.receivers[c], "self")?.ratio,
    ],
    [
      "Client / lean over TLS",
      (r, c) => target(r.tls.clients[c], "client")?.ratio,
    ],
  ];
  for (const [what, of] of tls) {
    for (const c of Object.keys(results.tls.receivers)) {
      const now = of(results, c);
      const before = baseline ? of(baseline, c) : undefined;
      const text = `${what}, ${c} connection(s)`;
      if (now === undefined) {
        goals.push({ status: "not measured", text });
      } else if (before === undefined) {
        goals.push({
          status: "report",
          text: `${text}: ${x(now)} (no regression check without --baseline)`,
        });
      } else {
        goals.push({
          status: now >= before * 0.9 ? "met" : "MISSED",
          text: `${text} no regression: ${x(now)}, baseline ${x(before)}`,
        });
      }
    }
  }
  return goals;
}
