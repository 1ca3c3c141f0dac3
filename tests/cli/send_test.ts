// `mllp send` with directories, files holding many messages, batches, MLLP
// captures, --json, --rate, --keep-going, the progress bar and the
// summary: the CLI runs as a child process against a receiver on loopback.

import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";
import {
  Ack,
  buildBatchResponse,
  type DispatchReply,
  type Message,
  Receiver,
} from "../../mod.ts";
import { CLEAR_LINE } from "../../src/cli/progress.ts";
import { assertCleanError, closedPort, lines, runCli } from "./_helpers.ts";

/** A message with control id `id` (and MSH-9 `type`). */
function hl7(id: string, type = "ADT^A01", eol = "\r"): string {
  return [
    `MSH|^~\\&|SEND|FAC|RECV|FAC|20240101120000||${type}|${id}|P|2.5`,
    `PID|1||${id}^^^FAC^MR||DOE^JANE`,
  ].join(eol) + eol;
}

/** A receiver on loopback that records the control ids it gets. */
async function recorder(
  reply: (message: Message) => DispatchReply | Promise<DispatchReply> = (
    message,
  ) => message.kind === "hl7" ? Ack.forMessage(message, "AA") : "ok",
) {
  const received: string[] = [];
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => {
      received.push(message.kind === "hl7" ? message.header.controlId : "-");
      return reply(message);
    },
  });
  return {
    receiver,
    received,
    port: String(receiver.port),
    [Symbol.asyncDispose]: () => receiver.stop(),
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mllp_send_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SUMMARY =
  /^written (\d+) of (\d+), answered (\d+), accepted (\d+) in \d+\.\d\d s \([\d.]+ msg\/s\): AA (\d+), AE (\d+), AR (\d+), CA (\d+), CE (\d+), CR (\d+), timeouts (\d+)(.*)$/m;
const ROUND_TRIP = /^round trip: p50 \d+\.\d ms, p99 \d+\.\d ms$/m;

Deno.test("cli send reads directories recursively in sorted order and splits files into messages", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/b_sub/deeper`, { recursive: true });
    await Deno.mkdir(`${dir}/.hidden_dir`);
    // Two messages with LF endings, separated by a blank line.
    await Deno.writeTextFile(
      `${dir}/a.hl7`,
      hl7("A1", "ADT^A01", "\n") + "\n" + hl7("A2", "ADT^A01", "\n"),
    );
    // Two messages back to back (CRLF), no blank line between them.
    await Deno.writeTextFile(
      `${dir}/b_sub/c.txt`,
      hl7("C1", "ADT^A01", "\r\n") + hl7("C2", "ADT^A08", "\r\n") + "\r\n",
    );
    await Deno.writeTextFile(`${dir}/b_sub/deeper/d.ER7`, hl7("D1"));
    await Deno.writeTextFile(`${dir}/b.hl7`, hl7("B1"));
    // Not read: other endings, hidden files and directories.
    await Deno.writeTextFile(`${dir}/notes.md`, hl7("NOTES"));
    await Deno.writeTextFile(`${dir}/.hidden.hl7`, hl7("HIDDEN"));
    await Deno.writeTextFile(`${dir}/.hidden_dir/e.hl7`, hl7("HIDDEN2"));
    await using r = await recorder();
    const output = await runCli(["send", "--port", r.port, dir]);
    assertEquals(output.code, 0, output.stderr);
    // "a.hl7" < "b.hl7" < "b_sub" in code-unit order.
    const order = ["A1", "A2", "B1", "C1", "C2", "D1"];
    assertEquals(r.received, order);
    assertEquals(
      lines(output.stdout).map((line) => line.split(" ")[0]),
      order,
    );
    const summary = output.stderr.match(SUMMARY);
    if (!summary) throw new Error(`No summary in:\n${output.stderr}`);
    assertEquals(
      summary.slice(1, 12).map(Number),
      [6, 6, 6, 6, 6, 0, 0, 0, 0, 0, 0],
    );
    assertEquals(summary[12], "");
    assertMatch(output.stderr, ROUND_TRIP);
  });
});

Deno.test("cli send sends each message of an FHS/BHS batch on its own and checks BTS-1", async () => {
  await withDir(async (dir) => {
    const batch = [
      "FHS|^~\\&|BATCHSYS|SITE1|HUB|REGION|20261127130000||||FILE-0001",
      "BHS|^~\\&|BATCHSYS|SITE1|HUB|REGION|20261127130000||||BATCH-0001",
      hl7("B-1").trimEnd(),
      hl7("B-2").trimEnd(),
      "BTS|3",
      "FTS|1",
    ].join("\r") + "\r";
    await Deno.writeTextFile(`${dir}/batch.hl7`, batch);
    await using r = await recorder();
    const [fixture, counted] = await Promise.all([
      runCli(["send", "--port", r.port, "tests/fixtures/batch_fhs_bhs.hl7"]),
      runCli(["send", "--port", r.port, `${dir}/batch.hl7`]),
    ]);
    assertEquals(fixture.code, 0, fixture.stderr);
    assertEquals(lines(fixture.stdout).map((l) => l.split(" ")[0]), [
      "B-0001",
      "B-0002",
    ]);
    assertNotMatch(fixture.stderr, /warning/);
    assertEquals(counted.code, 0, counted.stderr);
    assertStringIncludes(
      counted.stderr,
      `warning: ${dir}/batch.hl7: line 7: BTS-1 says 3 messages; the batch holds 2`,
    );
    assertEquals(r.received.toSorted(), ["B-0001", "B-0002", "B-1", "B-2"]);
  });
});

Deno.test("cli send reads a capture of MLLP frames and many messages from stdin", async () => {
  await withDir(async (dir) => {
    const frames = `\x0b${hl7("F1")}\x1c\r\n\x0b${hl7("F2")}\x1c\r\n`;
    await Deno.writeTextFile(`${dir}/capture.hl7`, frames);
    await using r = await recorder();
    const capture = await runCli([
      "send",
      "--port",
      r.port,
      `${dir}/capture.hl7`,
    ]);
    assertEquals(capture.code, 0, capture.stderr);
    const stdin = await runCli(
      ["send", "--port", r.port, "-"],
      hl7("S1", "ADT^A01", "\n") + "\n\n" + hl7("S2", "ADT^A01", "\n"),
    );
    assertEquals(stdin.code, 0, stdin.stderr);
    assertEquals(r.received, ["F1", "F2", "S1", "S2"]);
  });
});

Deno.test("cli send refuses bad input before sending anything", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/empty`);
    await Deno.writeTextFile(`${dir}/empty/readme.md`, "not a message");
    await Deno.writeTextFile(
      `${dir}/stray.hl7`,
      hl7("OK1") + "\rPID|1||2^^^FAC^MR\r",
    );
    await Deno.writeTextFile(`${dir}/open.hl7`, `\x0b${hl7("X")}`);
    await Deno.writeTextFile(`${dir}/vt.txt`, "MSH|^~\\&|A|B|\x0b in it\r");
    await using r = await recorder();
    const cases: [string, string][] = [
      [
        `${dir}/empty`,
        `${dir}/empty: No message files in the directory (.hl7, .er7, .txt)`,
      ],
      [
        `${dir}/stray.hl7`,
        `${dir}/stray.hl7: line 4: Segment "PID" is outside a message`,
      ],
      [
        `${dir}/open.hl7`,
        `${dir}/open.hl7: The MLLP frame at byte 0 has no end block (FS)`,
      ],
      [`${dir}/vt.txt`, `${dir}/vt.txt: Contains a VT byte at offset 13`],
    ];
    const outputs = await Promise.all(
      cases.map(([path]) =>
        runCli([
          "send",
          "--port",
          r.port,
          "tests/fixtures/oru_r01_lab.hl7",
          path,
        ])
      ),
    );
    for (const [i, output] of outputs.entries()) {
      assertCleanError(output, 2, cases[i][1]);
    }
    assertEquals(r.received, []);
  });
});

Deno.test("cli send --json prints one object per message and the summary last", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/mixed.hl7`,
      hl7("OK1") + hl7("BAD1") + hl7("OK2"),
    );
    await using r = await recorder((message) => {
      if (message.kind !== "hl7") return "Got it";
      const id = message.header.controlId;
      return Ack.forMessage(message, id.startsWith("BAD") ? "AR" : "AA", {
        text: id.startsWith("BAD") ? "No thanks" : undefined,
      });
    });
    const output = await runCli([
      "send",
      "--port",
      r.port,
      "--json",
      "--raw",
      `${dir}/mixed.hl7`,
      "tests/fixtures/not_hl7.txt",
    ]);
    assertEquals(output.code, 1, output.stderr);
    const objects = lines(output.stdout).map((line) => JSON.parse(line));
    assertEquals(objects.length, 5);
    const [ok1, bad1, ok2, reply, summary] = objects;
    assertEquals(
      { ...ok1, ms: 0 },
      {
        file: `${dir}/mixed.hl7`,
        index: 1,
        controlId: "OK1",
        ok: true,
        outcome: "accept",
        code: "AA",
        ms: 0,
        text: "",
      },
    );
    assert(typeof ok1.ms === "number" && ok1.ms >= 0);
    assertEquals(
      [bad1.index, bad1.outcome, bad1.code, bad1.text, bad1.ok],
      [2, "reject", "AR", "No thanks", false],
    );
    assertEquals([ok2.index, ok2.code], [3, "AA"]);
    assertEquals(
      [reply.file, reply.controlId, reply.outcome, reply.reply],
      ["tests/fixtures/not_hl7.txt", null, "reply", "Got it"],
    );
    assertEquals(summary.summary, true);
    assertEquals(summary.total, 4);
    assertEquals(summary.sent, 4);
    assertEquals(summary.codes, { AA: 2, AE: 0, AR: 1, CA: 0, CE: 0, CR: 0 });
    assertEquals([summary.replies, summary.other, summary.timeouts], [1, 0, 0]);
    assert(summary.p50Ms > 0 && summary.p99Ms >= summary.p50Ms, output.stdout);
    // The text summary is not printed with --json.
    assertNotMatch(output.stderr, SUMMARY);
  });
});

Deno.test("cli send --rate throttles to N messages per second", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/five.hl7`,
      ["R1", "R2", "R3", "R4", "R5"].map((id) => hl7(id)).join(""),
    );
    await using r = await recorder();
    const arrivals: number[] = [];
    r.receiver.addEventListener("dispatch", () => arrivals.push(Date.now()));
    const output = await runCli([
      "send",
      "--port",
      r.port,
      "--rate",
      "20",
      "--json",
      `${dir}/five.hl7`,
    ]);
    assertEquals(output.code, 0, output.stderr);
    const summary = JSON.parse(lines(output.stdout).at(-1)!);
    assertEquals(summary.sent, 5);
    // Four gaps of 50 ms at least (timers may fire a little early).
    assert(summary.elapsedMs >= 190, `elapsed ${summary.elapsedMs} ms`);
    assertEquals(arrivals.length, 5);
    assert(arrivals[4] - arrivals[0] >= 180, `${arrivals}`);
    for (
      const [args, message] of [
        [["--rate", "0"], 'Invalid --rate "0"'],
        [["--rate", "fast"], 'Invalid --rate "fast"'],
        [
          ["--rate", "2", "--queue", `${dir}/q`],
          "--rate cannot be used with --queue",
        ],
        [
          ["--json", "--queue", `${dir}/q`],
          "--json cannot be used with --queue",
        ],
      ] as const
    ) {
      assertCleanError(
        await runCli(["send", "--port", r.port, ...args, `${dir}/five.hl7`]),
        2,
        message,
      );
    }
  });
});

Deno.test("cli send stops at a reply timeout unless --keep-going", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/three.hl7`,
      hl7("K1") + hl7("SLOW") + hl7("K2"),
    );
    const pending: (() => void)[] = [];
    await using r = await recorder((message) => {
      if (message.kind === "hl7" && message.header.controlId === "SLOW") {
        const { promise, resolve } = Promise.withResolvers<DispatchReply>();
        pending.push(() => resolve(undefined));
        return promise;
      }
      return Ack.forMessage(message, "AA");
    });
    try {
      const args = ["send", "--port", r.port, "--timeout", "300"];
      const stopped = await runCli([...args, `${dir}/three.hl7`]);
      assertEquals(stopped.code, 2, stopped.stderr);
      assertEquals(lines(stopped.stdout).map((l) => l.split(" ")[0]), ["K1"]);
      assertStringIncludes(stopped.stderr, `error: ${dir}/three.hl7#2: `);
      assertStringIncludes(stopped.stderr, "[timeout]");
      assertMatch(
        stopped.stderr,
        /^written 2 of 3, answered 1, accepted 1 in .*AA 1, .*timeouts 1$/m,
      );
      const going = await runCli([
        ...args,
        "--keep-going",
        `${dir}/three.hl7`,
      ]);
      assertEquals(going.code, 2, going.stderr);
      assertEquals(lines(going.stdout).map((l) => l.split(" ")[0]), [
        "K1",
        "K2",
      ]);
      assertMatch(
        going.stderr,
        /^written 3 of 3, answered 2, accepted 2 in .*AA 2, .*timeouts 1$/m,
      );
      const json = await runCli([
        ...args,
        "--keep-going",
        "--json",
        `${dir}/three.hl7`,
      ]);
      const objects = lines(json.stdout).map((line) => JSON.parse(line));
      assertEquals(
        [objects[1].controlId, objects[1].outcome, objects[1].reason],
        ["SLOW", "timeout", "timeout"],
      );
      assertEquals(objects[3].timeouts, 1);
    } finally {
      for (const release of pending) release();
    }
  });
});

Deno.test("cli send prints a summary after a refused connection", async () => {
  const output = await runCli([
    "send",
    "--port",
    String(closedPort()),
    "tests/fixtures/batch_fhs_bhs.hl7",
  ]);
  assertCleanError(output, 2, "tests/fixtures/batch_fhs_bhs.hl7#1: ");
  assertMatch(
    output.stderr,
    /^written 0 of 2, answered 0, accepted 0 in .*timeouts 0, errors 1$/m,
  );
  assertMatch(output.stderr, /^round trip: no replies$/m);
});

Deno.test("cli send --progress draws a bar on stderr; --no-progress does not", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/three.hl7`,
      hl7("P1") + hl7("P2") + hl7("P3"),
    );
    await using r = await recorder();
    const [bar, none, plain] = await Promise.all([
      runCli(["send", "--port", r.port, "--progress", `${dir}/three.hl7`]),
      runCli(["send", "--port", r.port, "--no-progress", `${dir}/three.hl7`]),
      runCli(["send", "--port", r.port, `${dir}/three.hl7`]),
    ]);
    for (const output of [bar, none, plain]) {
      assertEquals(output.code, 0, output.stderr);
      // stdout is not a terminal: every line is printed.
      assertEquals(lines(output.stdout).length, 3);
    }
    assertStringIncludes(
      bar.stderr,
      `${CLEAR_LINE}[${"░".repeat(20)}] 0/3    0%`,
    );
    assertStringIncludes(
      bar.stderr,
      `${CLEAR_LINE}[${"█".repeat(20)}] 3/3  100%`,
    );
    assertMatch(bar.stderr, /3\/3 {2}100% {2}[\d.]+ msg\/s {2}in 0:00\n/);
    assertMatch(bar.stderr, SUMMARY);
    for (const output of [none, plain]) {
      assert(!output.stderr.includes(CLEAR_LINE), output.stderr);
      assert(!output.stderr.includes("█"), output.stderr);
    }
  });
});

// The protocol's modes: --mllp-release 2, --batch and --wait-app-ack.

Deno.test("cli send --mllp-release 2 talks to a release 2 receiver", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    dispatcher: (message) => Ack.forMessage(message, "AA"),
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    "--mllp-release",
    "2",
    "--commit-timeout",
    "2000",
    "tests/fixtures/adt_a01_wikipedia.hl7",
    "tests/fixtures/oru_r01_lab.hl7",
  ]);
  assertEquals(output.code, 0, output.stderr);
  assertEquals(lines(output.stdout).map((l) => l.split(" ", 2).join(" ")), [
    "01052901 AA",
    "LAB000917 CA",
  ]);
  const usage = await runCli([
    "send",
    "--port",
    "1",
    "--commit-timeout",
    "100",
    "a.hl7",
  ]);
  assertCleanError(usage, 2, "--commit-timeout needs --mllp-release 2");
});

Deno.test("cli send --batch sends a batch file as one frame, one line per message", async () => {
  const frames: string[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    batches: "whole",
    // The batch arrives whole, in one frame; B-0002 is refused.
    dispatcher: (message) => {
      if (message.kind !== "batch") return "not a batch";
      frames.push(message.messages.map((m) => m.header.controlId).join(","));
      return buildBatchResponse(
        message,
        message.messages.map((m) =>
          m.header.controlId === "B-0002"
            ? Ack.forMessage(m, "AE", { text: "Unknown patient" })
            : undefined
        ),
      ).raw;
    },
  });
  const port = String(receiver.port);
  const fixture = "tests/fixtures/batch_fhs_bhs.hl7";
  const output = await runCli(["send", "--port", port, "--batch", fixture]);
  assertEquals(output.code, 1, output.stderr);
  assertEquals(frames, ["B-0001,B-0002"]);
  const [first, second] = lines(output.stdout);
  assertMatch(first, /^B-0001 AA \d+\.\d ms$/);
  assertMatch(second, /^B-0002 AE \d+\.\d ms "Unknown patient"$/);
  const summary = output.stderr.match(SUMMARY);
  if (!summary) throw new Error(`No summary in:\n${output.stderr}`);
  // written, total, answered, accepted, AA, AE
  assertEquals(summary.slice(1, 7).map(Number), [2, 2, 2, 1, 1, 1]);
  // --json: one object per message, naming the batch.
  const json = await runCli([
    "send",
    "--port",
    port,
    "--batch",
    "--json",
    fixture,
  ]);
  assertEquals(json.code, 1, json.stderr);
  const objects = lines(json.stdout).map((line) => JSON.parse(line));
  assertEquals(
    objects.slice(0, 2).map((
      o,
    ) => [o.batch, o.batchIndex, o.controlId, o.code]),
    [["BATCH-0001", 1, "B-0001", "AA"], ["BATCH-0001", 2, "B-0002", "AE"]],
  );
  assertEquals([objects[2].total, objects[2].codes.AE], [2, 1]);
});

Deno.test("cli send --wait-app-ack prints the application ACK after the commit ACK", async () => {
  await withDir(async (dir) => {
    const enhanced = (id: string) =>
      `MSH|^~\\&|SEND|FAC|RECV|FAC|20240101120000||ADT^A01|${id}|P|2.5|||AL|AL\r`;
    await Deno.writeTextFile(
      `${dir}/enhanced.hl7`,
      enhanced("EN-1") + enhanced("EN-BAD"),
    );
    await using r = await recorder((message) =>
      message.kind === "hl7" && message.header.controlId === "EN-BAD"
        ? Ack.forMessage(message, "AE", { text: "Unknown patient" })
        : Ack.forMessage(message, "AA")
    );
    const file = `${dir}/enhanced.hl7`;
    const [plain, waited, json] = await Promise.all([
      runCli(["send", "--port", r.port, file]),
      runCli(["send", "--port", r.port, "--wait-app-ack", file]),
      runCli(["send", "--port", r.port, "--wait-app-ack", "--json", file]),
    ]);
    // Without the flag: the commit ACKs only, all accepted.
    assertEquals(plain.code, 0, plain.stderr);
    assertEquals(lines(plain.stdout).map((l) => l.split(" ")[1]), ["CA", "CA"]);
    assertEquals(waited.code, 1, waited.stderr);
    const [first, second] = lines(waited.stdout);
    assertMatch(first, /^EN-1 CA \d+\.\d ms, app AA$/);
    assertMatch(second, /^EN-BAD CA \d+\.\d ms, app AE "Unknown patient"$/);
    assertStringIncludes(
      waited.stderr,
      "app AA 1, app AE 1, app AR 0, app none 0",
    );
    const objects = lines(json.stdout).map((line) => JSON.parse(line));
    assertEquals(objects.slice(0, 2).map((o) => o.applicationAck), [
      { code: "AA", text: "" },
      { code: "AE", text: "Unknown patient" },
    ]);
    assertEquals(objects[2].applicationAcks, { AA: 1, AE: 1, AR: 0, none: 0 });
  });
});

Deno.test("cli send reports silence that MSH-15/16 allow, and counts it", async () => {
  await withDir(async (dir) => {
    const message = (id: string, ack: string) =>
      `MSH|^~\\&|SEND|FAC|RECV|FAC|20240101120000||ADT^A01|${id}|P|2.5|||${ack}\r`;
    // ER/ER: only errors are acknowledged, so silence is success.
    await Deno.writeTextFile(`${dir}/er.hl7`, message("SI-1", "ER|ER"));
    // NE/SU: only successes are, and this dispatcher fails: silence.
    await Deno.writeTextFile(`${dir}/su.hl7`, message("SI-2", "NE|SU"));
    await using r = await recorder((m) =>
      m.kind === "hl7" && m.header.controlId === "SI-2"
        ? Ack.forMessage(m, "AE")
        : Ack.forMessage(m, "AA")
    );
    const [er, su] = await Promise.all([
      runCli(["send", "--port", r.port, "--timeout", "300", `${dir}/er.hl7`]),
      runCli(["send", "--port", r.port, "--timeout", "300", `${dir}/su.hl7`]),
    ]);
    assertEquals(er.code, 0, er.stderr);
    assertMatch(
      lines(er.stdout)[0],
      /^SI-1 silent \d+\.\d ms \(no acknowledgment, which means accepted/,
    );
    assertStringIncludes(er.stderr, "timeouts 0, silent 1");
    assertEquals(su.code, 1, su.stderr);
    assertStringIncludes(lines(su.stdout)[0], "means not accepted");
  });
});
