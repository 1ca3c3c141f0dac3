// `mllp send` checks everything it read before it sends anything: input
// that is not HL7 (unless --raw), charsets it cannot send (the charset
// flags), headers; each bad file is named with its reason, then it stops
// or, with --keep-going, sends the rest. The CLI runs as a child process
// against a receiver on loopback.

import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";
import {
  Ack,
  type DispatchReply,
  EchoDispatcher,
  type Message,
  NAK,
  Receiver,
} from "../../mod.ts";
import { assertCleanError, lines, runCli, STACK_TRACE } from "./_helpers.ts";

/** A message with control id `id`. */
function hl7(id: string, eol = "\r"): string {
  return [
    `MSH|^~\\&|SEND|FAC|RECV|FAC|20240101120000||ADT^A01|${id}|P|2.5`,
    `PID|1||${id}^^^FAC^MR||DOE^JANE`,
  ].join(eol) + eol;
}

/**
 * A receiver on loopback that records what it gets (control ids, or the
 * payload's text when it is not HL7) and answers as the EchoDispatcher
 * does, unless `reply` says otherwise.
 */
async function recorder(
  options: {
    reply?: (message: Message) => DispatchReply | Promise<DispatchReply>;
    allowWide?: boolean;
  } = {},
) {
  const received: string[] = [];
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    charset: options.allowWide ? { allowWide: true } : undefined,
    dispatcher: (message, ctx) => {
      received.push(
        message.kind === "hl7" ? message.header.controlId : message.text,
      );
      return options.reply
        ? options.reply(message)
        : EchoDispatcher.dispatch(message, ctx);
    },
  });
  return {
    received,
    port: String(receiver.port),
    [Symbol.asyncDispose]: () => receiver.stop(),
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mllp_send_check_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const NOT_HL7 = "not MSH, FHS or BHS (give --raw to send it as it is)";

Deno.test("cli send refuses input that is not HL7, naming the file and why", async () => {
  await withDir(async (dir) => {
    const files: [string, string, string][] = [
      // [name, content, what the error says after "FILE: "]
      [
        "lower.hl7",
        hl7("L1").toLowerCase(),
        `Not HL7: it starts with "msh|^~\\\\&|send|fa", ${NOT_HL7}`,
      ],
      [
        "spaces.hl7",
        "  " + hl7("S1"),
        `Not HL7: it starts with "  MSH|^~\\\\&|SEND|", ${NOT_HL7}`,
      ],
      [
        "blank_first.hl7",
        "\n" + hl7("B1"),
        `Not HL7: it starts with a blank line, ${NOT_HL7}`,
      ],
      [
        "no_msh.hl7",
        "PID|1||X^^^FAC^MR||DOE^JANE\r",
        `Not HL7: it starts with "PID|1||X^^^FAC^M", ${NOT_HL7}`,
      ],
      [
        "capture.hl7",
        `\x0b${hl7("F1")}\x1c\r\x0bhello\x1c\r`,
        `Not HL7: it starts with "hello", ${NOT_HL7}`,
      ],
    ];
    for (const [name, content] of files) {
      await Deno.writeTextFile(`${dir}/${name}`, content);
    }
    await using r = await recorder();
    const outputs = await Promise.all([
      runCli(["send", "--port", r.port, "deno.json"]),
      ...files.map(([name]) =>
        runCli(["send", "--port", r.port, `${dir}/${name}`])
      ),
    ]);
    assertCleanError(
      outputs[0],
      2,
      `error: deno.json: Not HL7: it starts with "{", ${NOT_HL7}`,
    );
    for (const [i, [name, , reason]] of files.entries()) {
      const label = name === "capture.hl7" ? `${name}#2` : name;
      assertCleanError(outputs[i + 1], 2, `error: ${dir}/${label}: ${reason}`);
      assertNotMatch(outputs[i + 1].stderr, /^sent|^written/m);
    }
    assertEquals(r.received, []);
    // A UTF-8 byte order mark and an MLLP frame around HL7 are fine.
    const fine = `${dir}/fine.hl7`;
    await Deno.writeTextFile(fine, `\uFEFF${hl7("OK1")}`);
    await Deno.writeTextFile(`${dir}/framed.hl7`, `\x0b${hl7("OK2")}\x1c\r`);
    const ok = await runCli([
      "send",
      "--port",
      r.port,
      fine,
      `${dir}/framed.hl7`,
    ]);
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(r.received, ["OK1", "OK2"]);
  });
});

Deno.test("cli send --raw sends opaque payloads; NAK and mllp_unknown are not accepted", async () => {
  await using echo = await recorder();
  await using nak = await recorder({ reply: () => new Uint8Array([NAK]) });
  await using thanks = await recorder({
    reply: (message) =>
      message.kind === "hl7" ? Ack.forMessage(message, "AA") : "Got it",
  });
  const fixture = "tests/fixtures/not_hl7.txt";
  const [unknown, naked, accepted, json] = await Promise.all([
    runCli(["send", "--port", echo.port, "--raw", fixture]),
    runCli(["send", "--port", nak.port, "--raw", fixture]),
    runCli(["send", "--port", thanks.port, "--raw", fixture]),
    runCli(["send", "--port", echo.port, "--raw", "--json", fixture]),
  ]);
  assertEquals(unknown.code, 1, unknown.stderr);
  assertMatch(
    unknown.stdout,
    /^- reply \d+\.\d ms "mllp_unknown" \(not accepted: the receiver does not know this payload\)\n$/,
  );
  assertEquals(naked.code, 1, naked.stderr);
  assertMatch(naked.stdout, /^- NAK \d+\.\d ms\n$/);
  assertEquals(accepted.code, 0, accepted.stderr);
  assertMatch(accepted.stdout, /^- reply \d+\.\d ms "Got it"\n$/);
  assertEquals(json.code, 1, json.stderr);
  const [object, summary] = lines(json.stdout).map((line) => JSON.parse(line));
  assertEquals(
    [object.file, object.ok, object.outcome, object.reply],
    [fixture, false, "reply", "mllp_unknown"],
  );
  assertEquals([summary.accepted, summary.replies, summary.other], [0, 0, 1]);
  assertEquals(echo.received, ["Hip hip hurray", "Hip hip hurray"]);
});

Deno.test("cli send checks every input first and names each bad file", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/in`);
    await Deno.writeTextFile(`${dir}/in/a_good.hl7`, hl7("G1"));
    await Deno.writeTextFile(`${dir}/in/b_notes.txt`, "Call me back");
    await Deno.copyFile(
      "tests/fixtures/charsets/unicode.hl7",
      `${dir}/in/c_wide.hl7`,
    );
    await Deno.writeTextFile(`${dir}/in/d_header.hl7`, "MSH|\r");
    await Deno.writeTextFile(`${dir}/in/e_good.hl7`, hl7("G2"));
    await using r = await recorder();
    const stopped = await runCli(["send", "--port", r.port, `${dir}/in`]);
    assertEquals(stopped.code, 2, stopped.stderr);
    assertEquals(stopped.stdout, "");
    assertNotMatch(stopped.stderr, STACK_TRACE);
    assertEquals(
      lines(stopped.stderr),
      [
        `error: ${dir}/in/b_notes.txt: Not HL7: it starts with "Call me back", ${NOT_HL7}`,
        `error: ${dir}/in/c_wide.hl7: Charset "UNICODE" is UTF-16 or UTF-32, whose bytes can be MLLP framing bytes: give --allow-wide to send it (the receiver must allow it too)`,
        `error: ${dir}/in/d_header.hl7: Cannot read header: MSH segment is too short (4 characters)`,
        "error: 3 of 5 files cannot be sent, so nothing was sent: fix them, or give --keep-going to send the other 2",
      ],
    );
    assertEquals(r.received, []);

    // --json: one object per bad file, with its reason.
    const json = await runCli([
      "send",
      "--port",
      r.port,
      "--json",
      `${dir}/in`,
    ]);
    assertEquals(json.code, 2, json.stderr);
    const objects = lines(json.stdout).map((line) => JSON.parse(line));
    assertEquals(
      objects.map((o) => [o.file, o.ok, o.outcome, o.reason]),
      [
        [`${dir}/in/b_notes.txt`, false, "invalid", "not_hl7"],
        [`${dir}/in/c_wide.hl7`, false, "invalid", "charset"],
        [`${dir}/in/d_header.hl7`, false, "invalid", "header"],
      ],
    );
    for (const object of objects) assert(typeof object.error === "string");
    assertEquals(r.received, []);

    // --keep-going: the bad files are named and skipped, the rest go.
    const going = await runCli([
      "send",
      "--port",
      r.port,
      "--keep-going",
      `${dir}/in`,
    ]);
    assertEquals(going.code, 2, going.stderr);
    assertEquals(lines(going.stdout).map((l) => l.split(" ")[0]), [
      "G1",
      "G2",
    ]);
    assertStringIncludes(going.stderr, `error: ${dir}/in/b_notes.txt: `);
    assertStringIncludes(going.stderr, `error: ${dir}/in/c_wide.hl7: `);
    assertStringIncludes(going.stderr, `error: ${dir}/in/d_header.hl7: `);
    assertStringIncludes(
      going.stderr,
      "error: 3 of 5 files cannot be sent; --keep-going sends the other 2\n",
    );
    assertMatch(
      going.stderr,
      /^written 2 of 2, answered 2, accepted 2 in .*timeouts 0, files skipped 3$/m,
    );
    assertEquals(r.received, ["G1", "G2"]);
  });
});

Deno.test("cli send --json gives a reason for every failed send, never null", async () => {
  // MSH-15 and MSH-16 both NE: no acknowledgment would ever come.
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/ne.hl7`,
      "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|NE-1|P|2.5|||NE|NE\r",
    );
    await using r = await recorder();
    const output = await runCli([
      "send",
      "--port",
      r.port,
      "--json",
      `${dir}/ne.hl7`,
    ]);
    assertEquals(output.code, 2, output.stderr);
    const [object] = lines(output.stdout).map((line) => JSON.parse(line));
    assertEquals([object.outcome, object.reason], ["invalid", "no_ack"]);
    assertStringIncludes(
      output.stderr,
      `error: ${dir}/ne.hl7: MSH-15 and MSH-16 are both NE`,
    );
    assertEquals(r.received, []);
  });
});

Deno.test("cli send takes listen's charset flags and sends the UTF-16/UTF-32 fixtures", async () => {
  await using r = await recorder({ allowWide: true });
  const wide = [
    "tests/fixtures/charsets/unicode.hl7",
    "tests/fixtures/charsets/utf-16be.hl7",
    "tests/fixtures/charsets/utf-32.hl7",
  ];
  const output = await runCli([
    "send",
    "--port",
    r.port,
    "--allow-wide",
    ...wide,
  ]);
  assertEquals(output.code, 0, output.stderr);
  assertEquals(lines(output.stdout).map((l) => l.split(" ").slice(0, 2)), [
    ["CS-17", "AA"],
    ["CS-18", "AA"],
    ["CS-19", "AA"],
  ]);
  assertEquals(r.received, ["CS-17", "CS-18", "CS-19"]);
  await withDir(async (dir) => {
    // Latin-1 bytes under an empty MSH-18: invalid UTF-8.
    const latin1 = new Uint8Array([
      ...new TextEncoder().encode(
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|L-1|P|2.5\rPID|1||1||M",
      ),
      0xfc,
      ...new TextEncoder().encode("LLER\r"),
    ]);
    await Deno.writeFile(`${dir}/latin1.hl7`, latin1);
    const [strict, named, bad] = await Promise.all([
      runCli([
        "send",
        "--port",
        r.port,
        "--strict-charset",
        `${dir}/latin1.hl7`,
      ]),
      runCli([
        "send",
        "--port",
        r.port,
        "--strict-charset",
        "--charset",
        "8859/1",
        `${dir}/latin1.hl7`,
      ]),
      runCli(["send", "--port", r.port, "--charset", "NOPE", "a.hl7"]),
    ]);
    assertCleanError(
      strict,
      2,
      `error: ${dir}/latin1.hl7: Cannot decode message: bytes are not valid "UNICODE UTF-8" at offset 56 (--strict-charset)`,
    );
    assertEquals(named.code, 0, named.stderr);
    assertCleanError(
      bad,
      2,
      'Invalid --charset "NOPE": not a charset of HL7 table 0211',
    );
    assertEquals(r.received.slice(3), ["L-1"]);
  });
});

Deno.test("cli send tests/fixtures/ (the README's example) names the files it cannot send", async () => {
  await using r = await recorder();
  const wide = (name: string, charset: string) =>
    `error: tests/fixtures/charsets/${name}: Charset "${charset}" is UTF-16 or UTF-32, whose bytes can be MLLP framing bytes: give --allow-wide to send it (the receiver must allow it too)`;
  const output = await runCli(["send", "--port", r.port, "tests/fixtures/"]);
  assertEquals(output.code, 2, output.stderr);
  assertEquals(output.stdout, "");
  assertEquals(lines(output.stderr), [
    wide("unicode.hl7", "UNICODE"),
    wide("utf-16be.hl7", "UNICODE UTF-16"),
    wide("utf-32.hl7", "UNICODE UTF-32"),
    `error: tests/fixtures/not_hl7.txt: Not HL7: it starts with "Hip hip hurray", ${NOT_HL7}`,
    "error: 4 of 30 files cannot be sent, so nothing was sent: fix them, or give --keep-going to send the other 26",
  ]);
  assertEquals(r.received, []);
  const going = await runCli([
    "send",
    "--port",
    r.port,
    "--keep-going",
    "tests/fixtures/",
  ]);
  assertEquals(going.code, 2, going.stderr);
  assertEquals(lines(going.stdout).length, 27);
  assertMatch(
    going.stderr,
    /^written 27 of 27, answered 27, accepted 27 in .*files skipped 4$/m,
  );
  assertEquals(r.received.length, 27);
});
