/**
 * The sample message from Wikipedia's HL7 article (also elixir-mllp's): an
 * ADT^A01 in HL7 2.5 with `\r` between segments, and LogTape set up to
 * print the library's log lines to stderr.
 *
 * @module
 */

import {
  configure,
  getTextFormatter,
  type LogLevel,
  type Sink,
} from "@logtape/logtape";

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
 * Sends the library's log lines (category `["mllp"]`) to stderr, as the
 * `mllp` command does: each line waits for the next turn of the event
 * loop and the lines of one turn go out in one write, so that logging
 * never costs a message its round trip; what waits is written when the
 * program exits.
 *
 * @param level The lowest level to print.
 */
export async function setupLogging(level: LogLevel = "debug"): Promise<void> {
  const format = getTextFormatter({ timestamp: "rfc3339", value: "bare" });
  const encoder = new TextEncoder();
  let lines: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (lines.length === 0) return;
    const data = encoder.encode(lines.join(""));
    lines = [];
    for (let n = 0; n < data.length;) {
      n += Deno.stderr.writeSync(data.subarray(n));
    }
  };
  const stderr: Sink = (record) => {
    lines.push(format(record));
    if (timer !== undefined) return;
    timer = setTimeout(flush, 0);
    Deno.unrefTimer(timer);
  };
  globalThis.addEventListener("unload", flush);
  await configure({
    sinks: { stderr },
    loggers: [
      { category: ["mllp"], lowestLevel: level, sinks: ["stderr"] },
      {
        category: ["logtape", "meta"],
        lowestLevel: "warning",
        sinks: ["stderr"],
      },
    ],
  });
}
