// `mllp listen --reply aa|ae|ar` and `--save DIR`: the CLI runs as a child
// process on loopback; the save dispatcher is also driven in-process to
// show that the file exists before the reply is made.

import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import {
  Ack,
  Client,
  ECHO_TEXT,
  type Message,
  readMessage,
  Receiver,
  UNKNOWN_REPLY,
} from "../../mod.ts";
import {
  MessageSaver,
  REPLY_TEXTS,
  saveName,
  savingDispatcher,
} from "../../src/cli/save.ts";
import {
  assertCleanError,
  cliCommand,
  FIXTURE,
  lines,
  ROOT,
  RUN_LIMIT,
  runCli,
  SERVER_TLS,
  STACK_TRACE,
  startListen,
} from "./_helpers.ts";
import { fixtureBytes } from "../_helpers.ts";
import { RawConn } from "../_raw_frames.ts";

function hl7(id: string): string {
  return `MSH|^~\\&|SEND|FAC|RECV|FAC|20240101120000||ADT^A01|${id}|P|2.5\rPID|1||7^^^FAC^MR\r`;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mllp_listen_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("cli listen --reply ae and ar answer that code, and a NAK to other payloads", async () => {
  for (const code of ["ae", "ar"] as const) {
    await using listening = await startListen(["--reply", code]);
    const port = String(listening.port);
    const [hl7Output, other] = await Promise.all([
      runCli(["send", "--port", port, FIXTURE]),
      runCli(["send", "--port", port, "--raw", "tests/fixtures/not_hl7.txt"]),
    ]);
    assertEquals(hl7Output.code, 1, hl7Output.stderr);
    assertMatch(
      hl7Output.stdout,
      new RegExp(
        `^01052901 ${code.toUpperCase()} \\d+\\.\\d ms "${
          REPLY_TEXTS[code].replace(/[()]/g, "\\$&")
        }"\\n$`,
      ),
    );
    assertEquals(other.code, 1, other.stderr);
    assertMatch(other.stdout, /^- NAK \d+\.\d ms\n$/);
    const stopped = await listening.stop();
    assertEquals(stopped.code, 0, stopped.stderr);
    assertStringIncludes(
      stopped.stderr,
      `Answering ${code.toUpperCase()} (--reply ${code}) to ADT^A01^ADT_A01 control id 01052901`,
    );
  }
  // aa answers as the EchoDispatcher does, as without the flag, and logs
  // the same line as ae and ar.
  await using aa = await startListen(["--reply", "AA"]);
  const port = String(aa.port);
  const [output, other] = await Promise.all([
    runCli(["send", "--port", port, "--json", FIXTURE]),
    runCli(["send", "--port", port, "--raw", "tests/fixtures/not_hl7.txt"]),
  ]);
  assertEquals(output.code, 0, output.stderr);
  const [result] = lines(output.stdout).map((line) => JSON.parse(line));
  assertEquals([result.code, result.text], ["AA", ECHO_TEXT]);
  assertStringIncludes(other.stdout, UNKNOWN_REPLY);
  const stopped = (await aa.stop()).stderr;
  assertStringIncludes(
    stopped,
    "Answering AA (--reply aa) to ADT^A01^ADT_A01 control id 01052901",
  );
  assertStringIncludes(
    stopped,
    "Answering mllp_unknown (--reply aa) to a 14 byte payload that is not HL7",
  );
});

Deno.test("cli listen --save writes each message before answering, never overwriting", async () => {
  await withDir(async (dir) => {
    const inbox = `${dir}/in/box`; // created by listen
    await Deno.writeTextFile(
      `${dir}/odd.hl7`,
      hl7("a/b:c\\..") + "\n" + hl7("") + "\n" + hl7("../up"),
    );
    await using listening = await startListen(["--save", inbox]);
    const port = String(listening.port);
    const sent = await runCli([
      "send",
      "--port",
      port,
      FIXTURE,
      FIXTURE,
      FIXTURE,
      `${dir}/odd.hl7`,
      "--raw",
      "tests/fixtures/not_hl7.txt",
      "tests/fixtures/adt_a04_latin1.hl7",
    ]);
    // The payload that is not HL7 gets "mllp_unknown": not accepted.
    assertEquals(sent.code, 1, sent.stderr);
    assertEquals(lines(sent.stdout).length, 8);
    assertMatch(
      lines(sent.stdout)[6],
      /^- reply \d+\.\d ms "mllp_unknown" \(not accepted: /,
    );
    assertEquals(await listDir(inbox), [
      "01052901-2.hl7",
      "01052901-3.hl7",
      "01052901.hl7",
      "LAT1-0001.hl7",
      "_._up.hl7",
      "a_b_c_...hl7",
      "no-control-id.hl7",
      "not-hl7.bin",
    ]);
    // The bytes as sent: segments ended by CR, the charset untouched.
    for (
      const [file, fixture] of [
        ["01052901-3.hl7", "adt_a01_wikipedia.hl7"],
        ["LAT1-0001.hl7", "adt_a04_latin1.hl7"],
      ]
    ) {
      const bytes = await fixtureBytes(fixture);
      const expected = bytes.at(-1) === 0x0d
        ? bytes
        : new Uint8Array([...bytes, 0x0d]);
      assertEquals(await Deno.readFile(`${inbox}/${file}`), expected);
    }
    assertEquals(
      await Deno.readTextFile(`${inbox}/not-hl7.bin`),
      (await Deno.readTextFile("tests/fixtures/not_hl7.txt")).trimEnd(),
    );
    const stopped = await listening.stop();
    assertStringIncludes(
      stopped.stderr,
      `Saved message 01052901 as ${inbox}/01052901-2.hl7`,
    );
  });
});

Deno.test("cli listen --save answers AE when the message cannot be written", async () => {
  await withDir(async (dir) => {
    await using listening = await startListen(["--save", `${dir}/inbox`]);
    // The directory goes away: the write fails (it is not made again).
    await Deno.remove(`${dir}/inbox`);
    const port = String(listening.port);
    const [hl7Output, other] = await Promise.all([
      runCli(["send", "--port", port, FIXTURE]),
      runCli(["send", "--port", port, "--raw", "tests/fixtures/not_hl7.txt"]),
    ]);
    assertEquals(hl7Output.code, 1, hl7Output.stderr);
    assertMatch(
      hl7Output.stdout,
      /^01052901 AE \d+\.\d ms "Cannot save message: No such file or directory/,
    );
    assertMatch(other.stdout, /^- NAK /);
    const stopped = await listening.stop();
    assertStringIncludes(stopped.stderr, "Cannot save message 01052901");
    assert(!stopped.stderr.includes("The EchoDispatcher"), stopped.stderr);
  });
});

Deno.test("cli listen refuses --save and --reply it cannot honour", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    const base = ["listen", "--port", "0", "--hostname", "127.0.0.1"];
    const cases: [string[], string][] = [
      [["--reply", "ok"], 'Invalid --reply "ok": expected aa, ae or ar'],
      [["--reply"], "Missing value for --reply"],
      [["--save"], "Missing value for --save"],
      [
        ["--save", `${dir}/file/inbox`],
        `Cannot create --save directory "${dir}/file/inbox"`,
      ],
      [
        ["--save", `${dir}/x`, "--store", `${dir}/kv`],
        "--save cannot be used with --store",
      ],
      [
        ["--reply", "ar", "--store", `${dir}/kv`],
        "--reply cannot be used with --store",
      ],
    ];
    const outputs = await Promise.all(
      cases.map(([args]) => runCli([...base, ...args])),
    );
    for (const [i, output] of outputs.entries()) {
      assertCleanError(output, 2, cases[i][1]);
    }
  });
});

Deno.test("saveName keeps file names inside the directory and readable", () => {
  const name = (id: string) => saveName(readMessage(hl7(id)));
  assertEquals(name("01052901"), ["01052901", ".hl7"]);
  assertEquals(name("../../etc/passwd"), ["_._.._etc_passwd", ".hl7"]);
  assertEquals(name(".hidden"), ["_hidden", ".hl7"]);
  assertEquals(name("A B\\C"), ["A_B_C", ".hl7"]);
  assertEquals(name(""), ["no-control-id", ".hl7"]);
  assertEquals(name("CON"), ["_CON", ".hl7"]);
  assertEquals(name("x".repeat(300))[0].length, 100);
  assertEquals(saveName(readMessage("Hip hip hurray")), ["not-hl7", ".bin"]);
});

Deno.test("savingDispatcher writes the file before the dispatcher answers", async () => {
  await withDir(async (dir) => {
    const seen: string[][] = [];
    const inner = {
      async dispatch(message: Message) {
        seen.push(await listDir(dir));
        return message.kind === "hl7"
          ? Ack.forMessage(message, "AA")
          : undefined;
      },
    };
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: savingDispatcher(new MessageSaver(dir), inner),
    });
    await using client = await Client.connect("127.0.0.1", receiver.port);
    assertEquals((await client.send(hl7("ONE"))).ok, true);
    assertEquals((await client.send(hl7("ONE"))).ok, true);
    assertEquals(seen, [["ONE.hl7"], ["ONE-2.hl7", "ONE.hl7"]]);
  });
});

Deno.test("MessageSaver leaves nothing behind when a write fails", async () => {
  await withDir(async (dir) => {
    const saver = new MessageSaver(`${dir}/missing`);
    await assertRejects(
      () => saver.save(readMessage(hl7("X"))),
      Deno.errors.NotFound,
    );
    assertEquals(await listDir(dir), []);
  });
});

// The protocol's modes: --mllp-release, --charset*, --batches and
// --batch-acks, checked on the wire with a raw peer (tests/_raw_frames.ts).

/** A message with MSH-3 `app` and MSH-18 `charset`, as bytes. */
function latin1(app: number[], charset = ""): Uint8Array {
  const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));
  return new Uint8Array([
    ...ascii("MSH|^~\\&|"),
    ...app,
    ...ascii(
      `|FAC|RECV|FAC|20240101120000||ADT^A01|CS-1|P|2.5||||||${charset}\r`,
    ),
  ]);
}

/** The next frame's payload; throws when the peer closed. */
async function nextFrame(raw: RawConn): Promise<Uint8Array> {
  const frame = await raw.next();
  if (frame === null) throw new Error("The receiver closed the connection");
  return frame;
}

Deno.test("cli listen --mllp-release 2 commits each frame with 0x06 before the ACK", async () => {
  await using listening = await startListen(["--mllp-release", "2"]);
  await using raw = await RawConn.connect(listening.port);
  await raw.send(hl7("R2-1"));
  assertEquals(await raw.until((frame) => frame.startsWith("AA")), [
    "ACK",
    "AA R2-1",
  ]);
});

Deno.test("cli listen --original-mode answers an enhanced-mode message with one AA", async () => {
  const enhanced = hl7("EN-1").replace("|P|2.5\r", "|P|2.5|||AL|AL\r");
  {
    await using listening = await startListen([]);
    await using raw = await RawConn.connect(listening.port);
    await raw.send(enhanced);
    assertEquals(await raw.until((frame) => frame.startsWith("AA")), [
      "CA EN-1",
      "AA EN-1",
    ]);
  }
  await using listening = await startListen(["--original-mode"]);
  await using raw = await RawConn.connect(listening.port);
  await raw.send(enhanced);
  assertEquals(await raw.until(() => true), ["AA EN-1"]);
});

Deno.test("cli listen --charset-override reads every message in that charset; --strict-charset refuses bad bytes", async () => {
  // "CAFÉ" in ISO 8859-1, in a message whose MSH-18 says UTF-8.
  const message = latin1([0x43, 0x41, 0x46, 0xc9], "UNICODE UTF-8");
  {
    await using listening = await startListen([
      "--charset-override",
      "8859/1",
    ]);
    await using raw = await RawConn.connect(listening.port);
    await raw.send(message);
    const ack = await nextFrame(raw);
    // The ACK names the sender (MSH-5, from MSH-3) as read: É, which goes
    // back as the one byte 0xC9 (read as UTF-8 it would be U+FFFD, and go
    // back as EF BF BD).
    assertStringIncludes(new TextDecoder("latin1").decode(ack), "|CAFÉ|");
  }
  await using strict = await startListen(["--strict-charset"]);
  await using raw = await RawConn.connect(strict.port);
  // 0xFF is never UTF-8: the offset is its own.
  await raw.send(latin1([0x43, 0x41, 0x46, 0xff]));
  const ack = await nextFrame(raw);
  assertMatch(
    new TextDecoder().decode(ack),
    /\rMSA\|AR\|CS-1\|Cannot decode message: bytes are not valid "[^"]*" at offset 12\r/,
  );
});

Deno.test("cli listen --batch-acks all answers a batch with one ACK per message; --save writes each message", async () => {
  await withDir(async (dir) => {
    await using listening = await startListen([
      "--batch-acks",
      "all",
      "--save",
      dir,
    ]);
    const batch = (await Deno.readTextFile("tests/fixtures/batch_fhs_bhs.hl7"))
      .replace(/\r?\n/g, "\r");
    await using raw = await RawConn.connect(listening.port);
    await raw.send(batch);
    const reply = await nextFrame(raw);
    const segments = new TextDecoder().decode(reply).split("\r");
    assertEquals(
      segments.filter((s) => /^(FHS|BHS|MSA|BTS|FTS)\|/.test(s))
        .map((s) =>
          s.startsWith("MSA") ? s.split("|", 3).join("|") : s.slice(0, 3)
        ),
      ["FHS", "BHS", "MSA|AA|B-0001", "MSA|AA|B-0002", "BTS", "FTS"],
    );
    assertEquals(await listDir(dir), ["B-0001.hl7", "B-0002.hl7"]);
  });
});

Deno.test("cli listen --batches whole saves a batch as one file and --reply answers each of its messages", async () => {
  await withDir(async (dir) => {
    await using listening = await startListen([
      "--batches",
      "whole",
      "--reply",
      "ae",
      "--save",
      dir,
    ]);
    const output = await runCli([
      "send",
      "--port",
      String(listening.port),
      "--batch",
      "tests/fixtures/batch_fhs_bhs.hl7",
    ]);
    assertEquals(output.code, 1, output.stderr);
    assertEquals(lines(output.stdout).map((l) => l.split(" ", 2).join(" ")), [
      "B-0001 AE",
      "B-0002 AE",
    ]);
    assertEquals(await listDir(dir), ["BATCH-0001.hl7"]);
  });
});

Deno.test("cli listen refuses bad protocol flags before listening", async () => {
  const cases: [string[], string][] = [
    [["--mllp-release", "3"], 'Invalid --mllp-release "3": expected 1 or 2'],
    [["--charset", "LATIN-7"], 'Invalid --charset "LATIN-7": not a charset'],
    [
      ["--charset-override", "UNICODE"],
      'Invalid --charset-override "UNICODE": is UTF-16 or UTF-32: give --allow-wide',
    ],
    [["--batches", "some"], 'Invalid --batches "some": expected each or whole'],
    [["--batch-acks", "none"], "expected errors or all"],
    [
      ["--batches", "whole", "--store", "x.kv"],
      "--batches whole cannot be used with --store",
    ],
  ];
  const outputs = await Promise.all(
    cases.map(([args]) => runCli(["listen", "--port", "0", ...args])),
  );
  for (const [i, output] of outputs.entries()) {
    assertCleanError(output, 2, cases[i][1]);
    assertStringIncludes(
      output.stderr,
      'Run "deno run -A src/cli.ts listen --help"',
    );
  }
});

// --- Where it listens ---------------------------------------------------------

/**
 * Starts `mllp listen --port 0 ...args` (no `--hostname` unless given)
 * and waits for its "listening on" line.
 */
async function listenLine(args: string[]) {
  const child = cliCommand(["listen", "--port", "0", ...args]).spawn();
  const stdout = new Response(child.stdout).text();
  const reader = child.stderr.pipeThrough(new TextDecoderStream())
    .getReader();
  let stderr = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_LIMIT);
  try {
    let line: string | undefined;
    while (line === undefined) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`listen ended before listening:\n${stderr}`);
      stderr += value;
      line = lines(stderr).find((l) => l.startsWith("listening on "));
    }
    const port = Number(/:(\d+)/.exec(line)![1]);
    return {
      line,
      port,
      stderr,
      async stop() {
        child.kill("SIGTERM");
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          stderr += value;
        }
        return {
          code: (await child.status).code,
          stdout: await stdout,
          stderr,
        };
      },
    };
  } catch (error) {
    child.kill("SIGKILL");
    await child.status;
    await stdout;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a TCP connection to `hostname:port` is accepted. */
async function accepts(hostname: string, port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname, port })).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
}

Deno.test("cli listen without --hostname and without TLS listens on 127.0.0.1 only, and says how to accept other hosts", async () => {
  const listening = await listenLine([]);
  try {
    assertEquals(
      listening.line,
      `listening on 127.0.0.1:${listening.port} (this machine only; --hostname 0.0.0.0 accepts other hosts)`,
    );
    assertEquals(await accepts("127.0.0.1", listening.port), true);
    assertEquals(await accepts("127.0.0.2", listening.port), false);
  } finally {
    const stopped = await listening.stop();
    assertEquals(stopped.code, 0, stopped.stderr);
  }
});

Deno.test("cli listen --hostname 0.0.0.0 (named) and listen with TLS (by default) listen on every interface", async () => {
  for (const args of [["--hostname", "0.0.0.0"], SERVER_TLS]) {
    const listening = await listenLine(args);
    try {
      assertEquals(listening.line, `listening on 0.0.0.0:${listening.port}`);
      assertEquals(await accepts("127.0.0.2", listening.port), true);
    } finally {
      const stopped = await listening.stop();
      assertEquals(stopped.code, 0, stopped.stderr);
    }
  }
});

Deno.test("cli listen --help gives the default address of each transport", async () => {
  const output = await runCli(["listen", "--help"]);
  assertEquals(output.code, 0);
  assertMatch(
    output.stdout,
    /--hostname ADDRESS +Address to listen on; 0\.0\.0\.0 accepts other\n +hosts +\[default: 127\.0\.0\.1; 0\.0\.0\.0 with TLS\]/,
  );
});

Deno.test("cli listen without net permission: one line naming --allow-net, exit 2 (plain TCP and TLS)", async () => {
  for (const tls of [[], SERVER_TLS]) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "src/cli.ts",
        "listen",
        "--port",
        "0",
        ...tls,
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 2, stderr);
    const address = `${tls.length > 0 ? "0.0.0.0" : "127.0.0.1"}:0`;
    assertEquals(
      stderr,
      `error: Cannot listen on ${address}: no net permission for "${address}"; run Deno with --allow-net=${address} (or -A for every permission, or -P for the permission set in deno.json)\n`,
    );
    assertNotMatch(stderr, STACK_TRACE);
  }
});
