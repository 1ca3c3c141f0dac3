// The command line's batched log sink: lines wait a few milliseconds and go
// out together; a direct write goes after the lines
// logged before it; disposing writes what waits; nothing is dropped, even
// past the pending limit.

import { assertEquals, assertMatch } from "@std/assert";
import {
  configureSync,
  getTextFormatter,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";
import { logInfo, setupLogging, write } from "../../src/cli/common.ts";
import {
  BatchedLines,
  getStderrSink,
  lineFormatter,
  LOG_FLUSH_MS,
  MAX_PENDING_LOG_BYTES,
} from "../../src/observe/log_lines.ts";
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
    ["body: {body}", ["body: ", "MSH|^~\\&|A\rPID|1\n\x1b[31mred\x1b[0m", ""]],
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

Deno.test("getStderrSink: LogTape's configure gets the command's line format, and reset writes what waits", async () => {
  const { configure, reset } = await import("@logtape/logtape");
  const out = recorder();
  await configure({
    reset: true,
    sinks: { stderr: getStderrSink(out) },
    loggers: [
      { category: ["mllp"], lowestLevel: "info", sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  getLogger(["mllp", "receiver"]).info("Listening on {address}", {
    address: "127.0.0.1:2575",
  });
  getLogger(["mllp", "receiver"]).debug("not at info");
  assertEquals(out.writes, []); // batched
  await reset();
  assertEquals(out.writes.length, 1);
  assertMatch(
    out.writes[0],
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[INF\] mllp·receiver: Listening on 127\.0\.0\.1:2575\n$/,
  );
});
