// The command line's batched log sink: lines wait a few milliseconds and go
// out together; a direct write goes after the lines
// logged before it; disposing writes what waits; nothing is dropped, even
// past the pending limit.

import { assertEquals } from "@std/assert";
import {
  configureSync,
  getTextFormatter,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";
import {
  BatchedLines,
  lineFormatter,
  LOG_FLUSH_MS,
  logInfo,
  MAX_PENDING_LOG_BYTES,
  setupLogging,
  write,
} from "../../src/cli/common.ts";
import { getLogger } from "@logtape/logtape";

/** A writer that keeps each write. */
function recorder() {
  const writes: string[] = [];
  const decoder = new TextDecoder();
  return {
    writes,
    writeSync(data: Uint8Array): number {
      writes.push(decoder.decode(data));
      return data.length;
    },
  };
}

const record = (text: string) => ({ message: [text] }) as unknown as LogRecord;
const format = (r: LogRecord) => `${r.message.join("")}\n`;
const later = () =>
  new Promise((resolve) => setTimeout(resolve, LOG_FLUSH_MS + 20));

Deno.test("log sink: lines logged together go out together, a little later", async () => {
  const out = recorder();
  using lines = new BatchedLines(out, format);
  lines.sink(record("one"));
  lines.sink(record("two"));
  assertEquals(out.writes, []); // nothing written while the message is handled
  await later();
  assertEquals(out.writes, ["one\ntwo\n"]);
  lines.sink(record("three"));
  await later();
  assertEquals(out.writes, ["one\ntwo\n", "three\n"]);
});

Deno.test("log sink: disposing writes what waits", () => {
  const out = recorder();
  {
    using lines = new BatchedLines(out, format);
    lines.sink(record("last words"));
  }
  assertEquals(out.writes, ["last words\n"]);
});

Deno.test("log sink: past the pending limit, lines are written at once and none is dropped", () => {
  const out = recorder();
  using lines = new BatchedLines(out, format);
  const line = "x".repeat(999); // 1,000 bytes with its newline
  const count = Math.ceil(MAX_PENDING_LOG_BYTES / 1000) + 10;
  for (let i = 0; i < count; i++) lines.sink(record(line));
  assertEquals(out.writes.length, 1);
  lines.flush();
  assertEquals(out.writes.join("").split("\n").length - 1, count);
});

Deno.test("log sink: a direct write goes after the log lines logged before it", () => {
  const out = recorder();
  const logging = setupLogging(out, false, {});
  try {
    getLogger(["mllp", "test"]).info("logged first");
    write(out, "written second\n");
  } finally {
    logging[Symbol.dispose]();
  }
  assertEquals(out.writes.length, 2);
  assertEquals(out.writes[0].endsWith("logged first\n"), true);
  assertEquals(out.writes[1], "written second\n");
});

Deno.test("log line format: the same line as LogTape's text formatter, built faster", () => {
  const reference = getTextFormatter({ timestamp: "rfc3339", value: "bare" });
  const ours = lineFormatter();
  const records = [
    ["Message {id} ({size} bytes) ok: {ok}", [
      "Message ",
      "X1",
      " (",
      1027,
      " bytes) ok: ",
      true,
      "",
    ]],
    ["odd values {a} {b} {c}", [
      "odd values ",
      -0,
      " ",
      { x: 1 },
      " ",
      null,
      "",
    ]],
    ["no values", ["no values"]],
  ] as const;
  for (const level of ["debug", "info", "warning", "error"] as const) {
    for (const [rawMessage, message] of records) {
      const record = {
        category: ["mllp", "receiver"],
        level,
        timestamp: Date.now(),
        rawMessage,
        message,
        properties: {},
      } as unknown as LogRecord;
      assertEquals(ours(record), reference(record));
    }
  }
});

Deno.test("logInfo writes the line logger.info writes, and goes through LogTape without the command's sink", () => {
  const out = recorder();
  const logger = getLogger(["mllp", "cli"]);
  const template =
    "Answering {code} to {messageType} control id {controlId} ({size} bytes)";
  const properties = {
    code: "AA",
    messageType: "ADT^A01",
    controlId: "X1",
    size: 714,
  };
  const logging = setupLogging(out, false, {});
  try {
    logger.info(template, properties);
    logInfo(logger, template, properties);
  } finally {
    logging[Symbol.dispose]();
  }
  const [slow, fast] = out.writes.join("").split("\n").map((line) =>
    line.slice(line.indexOf(" "))
  );
  assertEquals(fast, slow);
  assertEquals(
    fast,
    " [INF] mllp·cli: Answering AA to ADT^A01 control id X1 (714 bytes)",
  );
  // Without the command's own sink (configureLogging: false), LogTape.
  const seen: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { seen: (record) => seen.push(record) },
    loggers: [{ category: ["mllp"], lowestLevel: "info", sinks: ["seen"] }],
  });
  try {
    logInfo(logger, template, properties);
  } finally {
    resetSync();
  }
  assertEquals(seen.map((r) => r.properties), [properties]);
});
