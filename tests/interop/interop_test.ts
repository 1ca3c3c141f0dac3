/**
 * Interop with an independent MLLP implementation: python-hl7 0.4.5 from
 * the Debian package `python3-hl7`.
 *
 * - Its `mllp_send` tool sends to our receiver.
 * - Its asyncio client (`hl7.mllp.open_hl7_connection`) pipelines to our
 *   receiver.
 * - Our client talks to its asyncio server (`hl7.mllp.start_hl7_server`),
 *   which answers with `Message.create_ack()`.
 *
 * The system Python is used on purpose (`/usr/bin/python3`): a `python3`
 * earlier on PATH (pyenv, venv) usually lacks the `hl7` module. When the
 * tools are missing the tests are ignored with a line saying why, except
 * in CI (`CI=true`), which installs them: there a missing tool fails.
 *
 * @module
 */

import { assertEquals, assertStringIncludes } from "@std/assert";
import type { AckAccepted } from "../../src/hl7/ack.ts";
import { Client, type SendResult } from "../../src/client/client.ts";
import { ECHO_TEXT, EchoDispatcher } from "../../src/dispatch/dispatcher.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { bytes, fixtureText } from "../_helpers.ts";

const PYTHON = "/usr/bin/python3";
const MLLP_SEND = "/usr/bin/mllp_send";
const IN_CI = Deno.env.get("CI") === "true";
/** Bounds every child process and every send. */
const TIMEOUT = 10_000;

/** Why python-hl7's module cannot be used, or `undefined` when it can. */
async function probePython(): Promise<string | undefined> {
  try {
    const { success, stderr } = await new Deno.Command(PYTHON, {
      args: ["-c", "import hl7, hl7.mllp; hl7.mllp.start_hl7_server"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (success) return undefined;
    const reason = new TextDecoder().decode(stderr).trim().split("\n").at(-1);
    return `${PYTHON} cannot import hl7.mllp (${reason})`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return `${PYTHON} is missing`;
    throw error;
  }
}

/** Why `mllp_send` cannot be used, or `undefined` when it can. */
async function probeMllpSend(
  python: string | undefined,
): Promise<string | undefined> {
  try {
    const info = await Deno.stat(MLLP_SEND);
    if (!info.isFile) return `${MLLP_SEND} is not a file`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return `${MLLP_SEND} is missing`;
    throw error;
  }
  return python;
}

const pythonMissing = await probePython();
const mllpSendMissing = await probeMllpSend(pythonMissing);

/**
 * Registers an interop test: ignored (with a line saying why) when its
 * tool is missing, failing instead when running in CI.
 */
function interopTest(
  name: string,
  missing: string | undefined,
  fn: () => Promise<void>,
) {
  const ignore = missing !== undefined && !IN_CI;
  if (ignore) {
    console.log(
      `Skipping interop test "${name}": ${missing}. Install the Debian package python3-hl7 to run it.`,
    );
  }
  Deno.test({
    name,
    ignore,
    fn: missing === undefined ? fn : () => {
      throw new Error(
        `${missing}, but CI=true: CI installs python3-hl7, so this is a failure`,
      );
    },
  });
}

/** Frames a payload: VT, payload, FS, CR. */
function frame(payload: string): Uint8Array {
  return bytes([0x0b], payload, [0x1c, 0x0d]);
}

/** Narrows a send result to an accepted ACK, or fails with what it was. */
function accepted(result: SendResult): AckAccepted {
  if (result.outcome !== "accept") {
    throw new Error(`Expected an accepted ACK, got ${JSON.stringify(result)}`);
  }
  return result;
}

/** The MSH-10 of an HL7 text. */
function controlId(hl7: string): string {
  return hl7.split("\r")[0].split("|")[9];
}

/** Runs a command to completion, killed if it takes longer than TIMEOUT. */
async function run(
  command: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT);
  try {
    const output = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Writes `content` to a temporary file for the test's duration. */
async function tempFile(content: Uint8Array): Promise<
  AsyncDisposable & {
    path: string;
  }
> {
  const path = await Deno.makeTempFile({ prefix: "mllp-interop-" });
  await Deno.writeFile(path, content);
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path);
    },
  };
}

/** The path of a fixture file. */
function fixturePath(name: string): string {
  return decodeURIComponent(
    new URL(`../fixtures/${name}`, import.meta.url).pathname,
  );
}

// --- mllp_send (python-hl7) → our receiver -------------------------------

interopTest(
  "interop: mllp_send sends the wikipedia sample to our EchoDispatcher receiver",
  mllpSendMissing,
  async () => {
    const sample = await fixtureText("adt_a01_wikipedia.hl7");
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: EchoDispatcher,
    });
    // mllp_send -f reads MLLP-framed messages from the file.
    await using file = await tempFile(frame(sample));
    const { code, stdout, stderr } = await run(MLLP_SEND, [
      "--port",
      String(receiver.port),
      "-f",
      file.path,
      "127.0.0.1",
    ]);
    assertEquals(code, 0, `mllp_send failed: ${stderr}`);
    assertStringIncludes(stdout, "MSA|AA|01052901");
    assertStringIncludes(stdout, `MSA|AA|01052901|${ECHO_TEXT}`);
    assertStringIncludes(stdout, "|SuperOE|XYZImgCtr|MegaReg|XYZHospC|");
  },
);

interopTest(
  "interop: mllp_send sends two framed messages over one connection",
  mllpSendMissing,
  async () => {
    const sample = await fixtureText("adt_a01_wikipedia.hl7");
    const oru = await fixtureText("oru_r01_lab.hl7");
    const peers = new Set<number>();
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: (message, ctx) => {
        peers.add(ctx.peer.port);
        return EchoDispatcher.dispatch(message, ctx);
      },
    });
    // Junk between the frames, as files written by other tools often have.
    await using file = await tempFile(bytes(frame(sample), "\n", frame(oru)));
    const { code, stdout, stderr } = await run(MLLP_SEND, [
      "--port",
      String(receiver.port),
      "-f",
      file.path,
      "127.0.0.1",
    ]);
    assertEquals(code, 0, `mllp_send failed: ${stderr}`);
    const msas = stdout.split("\r").filter((s) => s.startsWith("MSA|"));
    // The ORU asks for enhanced mode (MSH-15 AL, MSH-16 NE): a commit
    // ACK, and no application ACK.
    assertEquals(msas.map((s) => s.split("|").slice(1, 3)), [
      ["AA", "01052901"],
      ["CA", "LAB000917"],
    ]);
    assertEquals(peers.size, 1);
  },
);

interopTest(
  "interop: mllp_send --loose sends the plain fixture file",
  mllpSendMissing,
  async () => {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: EchoDispatcher,
    });
    const { code, stdout, stderr } = await run(MLLP_SEND, [
      "--loose",
      "--port",
      String(receiver.port),
      "-f",
      fixturePath("adt_a01_wikipedia.hl7"),
      "127.0.0.1",
    ]);
    assertEquals(code, 0, `mllp_send failed: ${stderr}`);
    assertStringIncludes(stdout, "MSA|AA|01052901");
  },
);

// --- python-hl7's asyncio client → our receiver ------------------------------

const PIPELINING_CLIENT = `
import asyncio, sys
from hl7.mllp import open_hl7_connection

async def main(port, paths):
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    try:
        # Every message first, in back-to-back writes; then every ACK.
        for path in paths:
            with open(path, "rb") as f:
                writer.writeblock(f.read())
        await writer.drain()
        for _ in paths:
            ack = await asyncio.wait_for(reader.readmessage(), 10)
            print(str(ack.segment("MSA")), flush=True)
    finally:
        writer.close()
        await writer.wait_closed()

asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
`;

interopTest(
  "interop: python-hl7's asyncio client pipelines to our receiver",
  pythonMissing,
  async () => {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: EchoDispatcher,
    });
    const files = [
      "adt_a01_wikipedia.hl7",
      "oru_r01_lab.hl7",
      "adt_a08_custom_delims.hl7",
    ];
    const { code, stdout, stderr } = await run(PYTHON, [
      "-c",
      PIPELINING_CLIENT,
      String(receiver.port),
      ...files.map(fixturePath),
    ]);
    assertEquals(code, 0, `python client failed: ${stderr}`);
    assertEquals(
      stdout.trim().split("\n").map((line) => line.split("|").slice(0, 3)),
      [
        ["MSA", "AA", "01052901"],
        ["MSA", "CA", "LAB000917"], // enhanced mode: MSH-15 AL, MSH-16 NE
        ["MSA", "AA", "CTRL-A08-0007"],
      ],
    );
  },
);

// --- our client → python-hl7's asyncio server ----------------------------------

const ACK_SERVER = `
import asyncio
from hl7.mllp import start_hl7_server

async def handle(reader, writer):
    try:
        while True:
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await start_hl7_server(handle, "127.0.0.1", 0, encoding="utf-8")
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
`;

/**
 * python-hl7's asyncio MLLP server as a child process. Disposing it kills
 * the child and waits for it to exit.
 */
class PythonServer implements AsyncDisposable {
  readonly port: number;
  #child: Deno.ChildProcess;
  #stderr: Promise<string>;

  private constructor(
    child: Deno.ChildProcess,
    port: number,
    stderr: Promise<string>,
  ) {
    this.#child = child;
    this.port = port;
    this.#stderr = stderr;
  }

  /** Starts the server and reads the port it prints. */
  static async start(): Promise<PythonServer> {
    const child = new Deno.Command(PYTHON, {
      args: ["-c", ACK_SERVER],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const timer = setTimeout(() => kill(child), TIMEOUT);
    let line = "";
    const reader = child.stdout.getReader();
    try {
      const decoder = new TextDecoder();
      while (!line.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        line += decoder.decode(value, { stream: true });
      }
    } finally {
      clearTimeout(timer);
      reader.releaseLock();
    }
    const port = Number(line.trim());
    if (!line.includes("\n") || !Number.isInteger(port) || port <= 0) {
      kill(child);
      await child.stdout.cancel();
      await child.status;
      throw new Error(
        `python-hl7 server did not print its port (got ${
          JSON.stringify(line)
        }): ${await stderr}`,
      );
    }
    return new PythonServer(child, port, stderr);
  }

  async [Symbol.asyncDispose]() {
    kill(this.#child);
    await this.#child.stdout.cancel();
    await this.#child.status;
    await this.#stderr;
  }
}

/** Sends SIGTERM to a child that may already have exited. */
function kill(child: Deno.ChildProcess) {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
}

interopTest(
  "interop: our client gets verified ACKs from python-hl7's asyncio server",
  pythonMissing,
  async () => {
    const sample = await fixtureText("adt_a01_wikipedia.hl7");
    const oru = await fixtureText("oru_r01_lab.hl7");
    await using server = await PythonServer.start();
    await using client = await Client.connect("127.0.0.1", server.port, {
      replyTimeout: TIMEOUT,
      connectTimeout: TIMEOUT,
    });
    for (const message of [sample, oru]) {
      const result = accepted(await client.send(message));
      assertEquals(result.ok, true);
      assertEquals(result.code, "AA");
      assertEquals(result.ack.messageControlId, controlId(message));
      assertEquals(result.ack.header.messageCode, "ACK");
    }
    // Concurrent sends queue on the one connection and still match.
    const results = await Promise.all(
      [sample, oru, sample].map((m) => client.send(m)),
    );
    assertEquals(
      results.map((r) => accepted(r).ack.messageControlId),
      ["01052901", "LAB000917", "01052901"],
    );
  },
);
