/**
 * TLS interop with independent TLS peers, on loopback with the committed
 * test PKI (`tls/`):
 *
 * - `openssl s_client` sends the framed wikipedia sample to the receiver,
 *   with and without `verifyPeer` (then with client-1's certificate).
 * - Python's `ssl` module does the same with client-1's certificate
 *   against the `verifyPeer` receiver.
 *
 * Neither peer uses this library, so these tests catch a TLS setup that
 * only this library's own client accepts. When a tool is missing the test
 * is ignored with a line saying why, except in CI (`CI=true`), where a
 * missing tool fails.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { fileURLToPath } from "node:url";
import { EchoDispatcher } from "../../src/dispatch/dispatcher.ts";
import {
  type ConnectionDetail,
  Receiver,
  type ReceiverTlsOptions,
} from "../../src/receiver/receiver.ts";
import {
  bytes,
  findTool,
  fixtureText,
  text,
  withCapturedLogs,
} from "../_helpers.ts";

const TLS_DIR = new URL("../../tls/", import.meta.url);

/** The file path of a file under `tls/`. */
function tlsPath(relative: string): string {
  return fileURLToPath(new URL(relative, TLS_DIR));
}

const ROOT_CA = tlsPath("root-ca/ca_certificate.pem");
const CLIENT_CERT = tlsPath("client/client_certificate.pem");
const CLIENT_KEY = tlsPath("client/private_key.pem");

const SAMPLE = await fixtureText("adt_a01_wikipedia.hl7");
const FRAMED_SAMPLE = bytes([0x0b], SAMPLE, [0x1c, 0x0d]);

const IN_CI = Deno.env.get("CI") === "true";
/** Bounds every child process. */
const TIMEOUT = 10_000;

const openssl = await findTool(["/usr/bin/openssl", "openssl"], ["version"]);
const python = await findTool(["/usr/bin/python3", "python3"], [
  "-c",
  "import ssl",
]);

/**
 * Registers an interop test: ignored (with a line saying why) when its
 * tool is missing, failing instead when running in CI. Logs are captured
 * so the output stays quiet.
 */
function interopTest(
  name: string,
  tool: { command: string } | { missing: string },
  fn: (command: string) => Promise<void>,
): void {
  if ("missing" in tool) {
    const missing = tool.missing;
    if (!IN_CI) console.log(`Skipping interop test "${name}": ${missing}.`);
    Deno.test({
      name,
      ignore: !IN_CI,
      fn() {
        throw new Error(`${missing}, but CI=true: the tool must exist`);
      },
    });
    return;
  }
  const command = tool.command;
  // The logs are captured, so that they are not printed.
  Deno.test(name, () => withCapturedLogs(() => fn(command)));
}

/** Starts a TLS receiver with the EchoDispatcher; records connections. */
async function startReceiver(verifyPeer: boolean): Promise<
  AsyncDisposable & { port: number; opened: ConnectionDetail[] }
> {
  const tls: ReceiverTlsOptions = {
    cert: tlsPath("server/server_certificate.pem"),
    key: tlsPath("server/private_key.pem"),
    ca: ROOT_CA,
    verifyPeer,
    handshakeTimeout: TIMEOUT,
  };
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    tls,
  });
  const opened: ConnectionDetail[] = [];
  receiver.addEventListener("connectionopen", (event) => {
    opened.push(event.detail);
  });
  return {
    port: receiver.port,
    opened,
    [Symbol.asyncDispose]: () => receiver.stop(),
  };
}

/** The MSA segment of an HL7 text whose segments end in CR or LF. */
function msa(hl7: string): string {
  const segment = hl7.split(/\r\n|\r|\n/).find((s) => s.startsWith("MSA|"));
  if (segment === undefined) {
    throw new Error(`No MSA segment in ${JSON.stringify(hl7)}`);
  }
  return segment;
}

/**
 * Reads a child's stdout until a whole MLLP frame has arrived and returns
 * its payload. Fails if the stream ends first.
 */
async function readFrame(
  stdout: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const reader = stdout.getReader();
  let buffer: Uint8Array = new Uint8Array(0);
  try {
    while (true) {
      const start = buffer.indexOf(0x0b);
      if (start !== -1) {
        for (let i = start + 1; i + 1 < buffer.length; i++) {
          if (buffer[i] === 0x1c && buffer[i + 1] === 0x0d) {
            return buffer.slice(start + 1, i);
          }
        }
      }
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(
          `stdout ended before a whole frame arrived: ${
            JSON.stringify(text(buffer))
          }`,
        );
      }
      buffer = bytes(buffer, value);
    }
  } finally {
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/**
 * Runs `openssl s_client -quiet` with the framed sample on stdin, reads
 * the ACK frame from its stdout, then kills it. `-quiet` implies
 * `-ign_eof`: the connection stays open after stdin ends, until the child
 * is killed.
 */
async function opensslExchange(
  command: string,
  port: number,
  extraArgs: string[],
): Promise<string> {
  const child = new Deno.Command(command, {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      ROOT_CA,
      "-servername",
      "localhost",
      "-verify_return_error",
      "-quiet",
      ...extraArgs,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT);
  try {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(FRAMED_SAMPLE);
    } finally {
      await writer.close().catch(() => {});
    }
    let frame: Uint8Array;
    try {
      frame = await readFrame(child.stdout);
    } catch (error) {
      child.kill("SIGKILL");
      throw new Error(`openssl s_client: ${await stderr}`, { cause: error });
    }
    return text(frame);
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited already.
    }
    await child.status;
    await stderr;
  }
}

interopTest(
  "openssl s_client sends the wikipedia sample over TLS and gets AA",
  openssl,
  async (command) => {
    await using receiver = await startReceiver(false);
    const ack = await opensslExchange(command, receiver.port, []);
    assertEquals(
      msa(ack),
      "MSA|AA|01052901|A real MLLP message dispatcher was not provided",
    );
    assertEquals(receiver.opened.length, 1);
    assertEquals(receiver.opened[0].certificateName, undefined);
  },
);

interopTest(
  "openssl s_client with client-1's certificate gets AA from a verifyPeer receiver",
  openssl,
  async (command) => {
    await using receiver = await startReceiver(true);
    const ack = await opensslExchange(command, receiver.port, [
      "-cert",
      CLIENT_CERT,
      "-key",
      CLIENT_KEY,
    ]);
    assertStringIncludes(msa(ack), "MSA|AA|01052901");
    assertEquals(receiver.opened.map((open) => open.certificateName), [
      "client-1",
    ]);
  },
);

/**
 * Connects with Python's `ssl` (TLS 1.2 at least, the receiver verified
 * against the root CA as "localhost", client-1's certificate presented),
 * sends the framed message read from stdin, and prints the TLS version and
 * the reply frame's payload with its segments on lines.
 */
const PYTHON_CLIENT = `
import socket, ssl, sys
port, cafile, certfile, keyfile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
context.minimum_version = ssl.TLSVersion.TLSv1_2
context.load_cert_chain(certfile, keyfile)
framed = sys.stdin.buffer.read()
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(framed)
        reply = b""
        while b"\\x1c\\x0d" not in reply:
            chunk = tls.recv(65536)
            if not chunk:
                sys.exit("connection closed before the reply: %r" % reply)
            reply += chunk
        print(tls.version())
        payload = reply[reply.index(b"\\x0b") + 1:reply.index(b"\\x1c\\x0d")]
        print(payload.decode("utf-8").replace("\\r", "\\n"))
`;

interopTest(
  "Python ssl with client-1's certificate gets AA from a verifyPeer receiver",
  python,
  async (command) => {
    await using receiver = await startReceiver(true);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT);
    let output: Deno.CommandOutput;
    try {
      const child = new Deno.Command(command, {
        args: [
          "-c",
          PYTHON_CLIENT,
          String(receiver.port),
          ROOT_CA,
          CLIENT_CERT,
          CLIENT_KEY,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        signal: controller.signal,
      }).spawn();
      const writer = child.stdin.getWriter();
      try {
        await writer.write(FRAMED_SAMPLE);
      } finally {
        await writer.close().catch(() => {});
      }
      output = await child.output();
    } finally {
      clearTimeout(timer);
    }
    const stdout = text(output.stdout);
    assertEquals(output.code, 0, text(output.stderr));
    const [version] = stdout.split("\n");
    assert(
      version === "TLSv1.2" || version === "TLSv1.3",
      `unexpected TLS version ${version}`,
    );
    assertStringIncludes(msa(stdout), "MSA|AA|01052901");
    assertEquals(receiver.opened.map((open) => open.certificateName), [
      "client-1",
    ]);
  },
);
