/**
 * What the examples share: the sample message from Wikipedia's HL7 article
 * (also elixir-mllp's), an ADT^A01 in HL7 2.5 with `\r` between segments;
 * LogTape set up to print log lines to stderr in the `mllp` command's
 * format (results go to stdout); and a one-line report, instead of a stack
 * trace, when an example is run without the permissions it needs.
 *
 * @module
 */

import {
  configureSync,
  getLogger,
  type Logger,
  type LogLevel,
} from "@logtape/logtape";
import { getStderrSink } from "../src/observe/log_lines.ts";

/** The sample ADT^A01 message, control id `01052901`. */
export const SAMPLE_ADT_A01: string = [
  "MSH|^~\\&|MegaReg|XYZHospC|SuperOE|XYZImgCtr|20060529090131-0500||ADT^A01^ADT_A01|01052901|P|2.5",
  "EVN||200605290901||||200605290900",
  "PID|||56782445^^^UAReg^PI||KLEINSAMPLE^BARRY^Q^JR||19620910|M||2028-9^^HL70005^RA99113^^XYZ|260 GOODWIN CREST DRIVE^^BIRMINGHAM^AL^35209^^M~NICKELL’S PICKLES^10000 W 100TH AVE^BIRMINGHAM^AL^35200^^O|||||||0105I30001^^^99DEF^AN",
  "PV1||I|W^389^1^UABH^^^^3||||12345^MORGAN^REX^J^^^MD^0010^UAMC^L||67890^GRAINGER^LUCY^X^^^MD^0010^UAMC^L|MED|||||A0||13579^POTTER^SHERMAN^T^^^MD^0010^UAMC^L|||||||||||||||||||||||||||200605290900",
  "OBX|1|N^K&M|^Body Height||1.80|m^Meter^ISO+|||||F",
  "OBX|2|NM|^Body Weight||79|kg^Kilogram^ISO+|||||F",
  "AL1|1||^ASPIRIN",
  "DG1|1||786.50^CHEST PAIN, UNSPECIFIED^I9|||A",
].join("\r");

/**
 * The examples' own log lines (category `["example"]`): what is not a
 * result, such as "press Ctrl-C to stop", goes to stderr with the
 * library's lines.
 */
export const log: Logger = getLogger(["example"]);

/**
 * Sends the library's log lines (category `["mllp"]`) and the examples'
 * (`["example"]`) to stderr in the `mllp` command's format
 * (`2026-12-04T14:09:53.063Z [INF] mllp·client: ...`), through the
 * command's own sink: lines wait a few milliseconds and go out together, so
 * that logging never costs a message its round trip, and what waits is
 * written when the program exits.
 *
 * @param level The lowest level to print.
 */
export function setupLogging(level: LogLevel = "debug"): void {
  const stderr = getStderrSink();
  sink = stderr;
  // Synchronous, so that LogTape writes what waits when the program exits.
  configureSync({
    sinks: { stderr },
    loggers: [
      { category: ["mllp"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["example"], lowestLevel: "info", sinks: ["stderr"] },
      {
        category: ["logtape", "meta"],
        lowestLevel: "warning",
        sinks: ["stderr"],
      },
    ],
  });
}

/** The sink {@linkcode setupLogging} set up, if it ran. */
let sink: Disposable | undefined;

/** Writes the log lines that wait. */
function flushLogs(): void {
  sink?.[Symbol.dispose]();
}

/**
 * Ends the example with one line on stderr and exit status 1 when Deno
 * refuses it a permission (it was run without the flags it needs): the
 * library's or Deno's message, which names the flag, and the command that
 * runs the example with the permission set in deno.json. Without a
 * terminal Deno cannot ask, and would end with a stack trace instead.
 * Other errors are left to Deno.
 */
export function reportMissingPermission(): void {
  const script = new URL(Deno.mainModule).pathname.split("/").slice(-2)
    .join("/");
  const report = (event: Event, error: unknown) => {
    const denied = error instanceof Deno.errors.NotCapable ? error : (
      error instanceof Error &&
        error.cause instanceof Deno.errors.NotCapable
        ? error
        : undefined
    );
    if (denied === undefined) return;
    event.preventDefault();
    flushLogs();
    const line =
      `error: ${denied.message} (or, for this example: deno run -P ${script})\n`;
    Deno.stderr.writeSync(new TextEncoder().encode(line));
    Deno.exit(1);
  };
  globalThis.addEventListener(
    "unhandledrejection",
    (event) => report(event, event.reason),
  );
  globalThis.addEventListener("error", (event) => report(event, event.error));
}
