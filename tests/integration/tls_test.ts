/**
 * Real-socket TLS tests on loopback with the committed test PKI (`tls/`):
 * the seed's "Using TLS", "Using Client Certificates" and "Using Client
 * Restrictions" walkthroughs, handshakes refused by either side, start-up
 * failures, a plain peer meeting a TLS one, TLS errors on open connections
 * and the TLS 1.2 minimum (with `openssl s_client`).
 *
 * The receiver has two TLS transports: `Deno.listenTls` (no client
 * certificates) and `node:tls` (`verifyPeer`). Where they can differ, both
 * are tested. Certificates and keys are given as file paths in some tests
 * and as PEM text in others, as both are accepted.
 *
 * Every test captures the `mllp` logs (LogTape) so it can check the lines
 * operators alert on, and keeps the test output quiet.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import type { LogLevel } from "@logtape/logtape";
import { fileURLToPath } from "node:url";
import { Ack } from "../../src/hl7/ack.ts";
import { AllowListError } from "../../src/net/allow.ts";
import {
  Client,
  type ClientOptions,
  type ClientTlsOptions,
  type SendResult,
} from "../../src/client/client.ts";
import {
  type DispatchContext,
  type DispatcherObject,
  EchoDispatcher,
} from "../../src/dispatch/dispatcher.ts";
import { formatAddress } from "../../src/net/address.ts";
import {
  ConnectionClosedError,
  InvalidReplyError,
  TlsHandshakeError,
} from "../../src/errors.ts";
import {
  Receiver,
  type ReceiverEventMap,
  type ReceiverOptions,
  type ReceiverTlsOptions,
} from "../../src/receiver/receiver.ts";
import {
  accepted,
  bytes,
  findTool,
  fixtureText,
  type LogLine,
  withCapturedLogs,
} from "../_helpers.ts";

// ---------------------------------------------------------------------------
// Fixtures

const TLS_DIR = new URL("../../tls/", import.meta.url);

/** The file path of a file under `tls/`. */
function tlsPath(relative: string): string {
  return fileURLToPath(new URL(relative, TLS_DIR));
}

/** The PEM text of a file under `tls/`. */
function tlsPem(relative: string): Promise<string> {
  return Deno.readTextFile(new URL(relative, TLS_DIR));
}

/** A certificate and its key, both as paths or both as PEM text. */
interface Pair {
  cert: string;
  key: string;
}

/** The certificate pairs of the test PKI, by folder. */
type PairName =
  | "server"
  | "server-name-only"
  | "client"
  | "mixed-case-client"
  | "expired-client"
  | "untrusted-client";

function certFile(name: PairName): string {
  return name === "server" || name === "server-name-only"
    ? `${name}/server_certificate.pem`
    : `${name}/client_certificate.pem`;
}

/** A pair as file paths. */
function pairPath(name: PairName): Pair {
  return {
    cert: tlsPath(certFile(name)),
    key: tlsPath(`${name}/private_key.pem`),
  };
}

/** A pair as PEM text. */
async function pairPem(name: PairName): Promise<Pair> {
  return {
    cert: await tlsPem(certFile(name)),
    key: await tlsPem(`${name}/private_key.pem`),
  };
}

const ROOT_CA_PATH = tlsPath("root-ca/ca_certificate.pem");
const ROOT_CA_PEM = await tlsPem("root-ca/ca_certificate.pem");
const UNTRUSTED_CA_PEM = await tlsPem("untrusted-ca/ca_certificate.pem");

/** The seed's `HL7.Examples.wikipedia_sample_hl7()`. */
const SAMPLE = await fixtureText("adt_a01_wikipedia.hl7");
const SAMPLE_CONTROL_ID = "01052901";

/** Bounds client connects and sends, so no test can hang on them. */
const CLIENT_LIMITS: ClientOptions = {
  connectTimeout: 5_000,
  replyTimeout: 5_000,
};
/** How long a test waits for a receiver event before failing. */
const EVENT_TIMEOUT = 5_000;
/** How long a raw socket read may wait before failing. */
const READ_TIMEOUT = 5_000;
/** How long a child process may run before it is killed. */
const CHILD_TIMEOUT = 10_000;
/** Bounds every receiver handshake in these tests. */
const HANDSHAKE_TIMEOUT = 5_000;

const IN_CI = Deno.env.get("CI") === "true";

// ---------------------------------------------------------------------------
// Logs

/**
 * Registers a test that runs with the `mllp` logs captured (debug and up)
 * instead of printed.
 */
function tlsTest(
  name: string,
  fn: (logs: LogLine[]) => Promise<void>,
  options: { ignore?: boolean } = {},
): void {
  Deno.test({
    name,
    ignore: options.ignore ?? false,
    fn: () => withCapturedLogs(fn),
  });
}

/** Asserts one log line with this exact text at this level. */
function assertLogLine(logs: LogLine[], level: LogLevel, text: string): void {
  const matching = logs.filter((line) => line.text === text);
  assert(
    matching.length > 0,
    `No log line "${text}"; got:\n${
      logs.map((l) => `  [${l.level}] ${l.text}`).join("\n")
    }`,
  );
  assertEquals(matching.map((line) => line.level), [level]);
}

// ---------------------------------------------------------------------------
// Receiver harness

type EventType = keyof ReceiverEventMap;
type Detail<K extends EventType> = ReceiverEventMap[K]["detail"];

const EVENT_TYPES: EventType[] = [
  "connectionopen",
  "connectionclose",
  "clientreject",
  "handshakeerror",
  "framingerror",
  "dispatch",
];

/** Records every event a receiver emits and lets a test wait for them. */
class EventLog {
  #seen = new Map<EventType, unknown[]>();
  #waiters = new Set<{ check(): void; cancel(): void }>();

  constructor(receiver: Receiver) {
    for (const type of EVENT_TYPES) {
      this.#seen.set(type, []);
      receiver.addEventListener(type, (event: Event) => {
        this.#seen.get(type)!.push((event as CustomEvent).detail);
        for (const waiter of [...this.#waiters]) waiter.check();
      });
    }
  }

  /** The details of every event of this type so far. */
  list<K extends EventType>(type: K): Detail<K>[] {
    return [...this.#seen.get(type)!] as Detail<K>[];
  }

  /** Waits until `count` events of this type have been seen in all. */
  wait<K extends EventType>(
    type: K,
    count = 1,
    ms = EVENT_TIMEOUT,
  ): Promise<Detail<K>[]> {
    if (this.list(type).length >= count) {
      return Promise.resolve(this.list(type));
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          if (this.list(type).length < count) return;
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(this.list(type));
        },
        cancel: () => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          reject(new Error(`Stopped waiting for "${type}" events`));
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `Expected ${count} "${type}" event(s) within ${ms} ms, got ${
              this.list(type).length
            }`,
          ),
        );
      }, ms);
      this.#waiters.add(waiter);
    });
  }

  /** Gives up every pending wait (their timers with them). */
  close(): void {
    for (const waiter of [...this.#waiters]) waiter.cancel();
  }
}

/** A running receiver, its events and the contexts of its dispatches. */
interface Harness extends AsyncDisposable {
  receiver: Receiver;
  port: number;
  events: EventLog;
  /** The context of every message the dispatcher was called with. */
  dispatched: DispatchContext[];
}

/** Starts a receiver with a dispatcher that records each call and echoes. */
async function startReceiver(
  options: Omit<ReceiverOptions, "port" | "dispatcher">,
): Promise<Harness> {
  const dispatched: DispatchContext[] = [];
  const dispatcher: DispatcherObject = {
    dispatch(message, ctx) {
      dispatched.push(ctx);
      return EchoDispatcher.dispatch(message, ctx);
    },
  };
  const receiver = await Receiver.start({
    hostname: "127.0.0.1",
    ...options,
    port: 0,
    dispatcher,
  });
  const events = new EventLog(receiver);
  return {
    receiver,
    port: receiver.port,
    events,
    dispatched,
    async [Symbol.asyncDispose]() {
      events.close();
      await receiver.stop();
    },
  };
}

/** TLS settings for a receiver: the test server pair and the root CA. */
function serverTls(
  form: "path" | "pem",
  extra: Partial<ReceiverTlsOptions> = {},
): Promise<ReceiverTlsOptions> | ReceiverTlsOptions {
  if (form === "path") {
    return {
      ...pairPath("server"),
      ca: ROOT_CA_PATH,
      handshakeTimeout: HANDSHAKE_TIMEOUT,
      ...extra,
    };
  }
  return pairPem("server").then((pair) => ({
    ...pair,
    ca: ROOT_CA_PEM,
    handshakeTimeout: HANDSHAKE_TIMEOUT,
    ...extra,
  }));
}

// ---------------------------------------------------------------------------
// Clients

/** Connects, sends the wikipedia sample, closes; throws what failed. */
async function exchange(
  hostname: string,
  port: number,
  tls?: ClientTlsOptions,
  limits: ClientOptions = CLIENT_LIMITS,
): Promise<SendResult> {
  await using client = await Client.connect(hostname, port, {
    ...limits,
    tls,
  });
  return await client.send(SAMPLE);
}

/** Like {@linkcode exchange}, but returns the error and fails without one. */
async function refusal(
  hostname: string,
  port: number,
  tls?: ClientTlsOptions,
  limits: ClientOptions = CLIENT_LIMITS,
): Promise<unknown> {
  let result: SendResult;
  try {
    result = await exchange(hostname, port, tls, limits);
  } catch (error) {
    return error;
  }
  throw new Error(`Expected the exchange to fail, got ${result.outcome}`);
}

/** Asserts an `AA` for the wikipedia sample. */
function assertAA(result: SendResult): void {
  const ack = accepted(result);
  assertEquals(ack.code, "AA");
  assertEquals(ack.ack.messageControlId, SAMPLE_CONTROL_ID);
}

/** Narrows an error to a {@linkcode TlsHandshakeError}. */
function handshakeError(error: unknown): TlsHandshakeError {
  assertInstanceOf(error, TlsHandshakeError);
  return error as TlsHandshakeError;
}

/** Asserts a TLS handshake error refused by `side` for `failure`. */
function assertTlsRefused(
  error: unknown,
  refusedBy: TlsHandshakeError["refusedBy"],
  failure: TlsHandshakeError["failure"],
): void {
  const tls = handshakeError(error);
  assertEquals(
    [tls.refusedBy, tls.failure, tls.reason],
    [refusedBy, failure, "tls_handshake"],
    tls.message,
  );
}

/** The client-1 certificate, as paths. */
const CLIENT_1 = pairPath("client");

// ---------------------------------------------------------------------------
// Raw sockets and processes

/** Closes a connection that may already be closed. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

/**
 * Reads from a raw connection until the peer closes it: the bytes received
 * and how it ended. Fails (closing the connection) after READ_TIMEOUT.
 */
async function readUntilClosed(
  conn: Deno.Conn,
): Promise<{ received: Uint8Array; end: "eof" | "reset" }> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, READ_TIMEOUT);
  let received: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(16 * 1024);
  try {
    while (true) {
      const n = await conn.read(chunk);
      if (n === null) return { received, end: "eof" };
      received = bytes(received, chunk.subarray(0, n));
    }
  } catch (error) {
    if (timedOut) {
      throw new Error("The receiver did not close the connection in time");
    }
    if (error instanceof Deno.errors.ConnectionReset) {
      return { received, end: "reset" };
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** A port that nothing listens on (it was free a moment ago). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** Asserts nothing accepts connections on a loopback port. */
async function assertNotListening(port: number): Promise<void> {
  await assertRejects(
    () => Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
  assertEquals(await Receiver.stop(port), false);
}

/**
 * A TCP relay between one client and a receiver. It lets a test write raw
 * bytes into the middle of a TLS connection, towards the receiver.
 */
class Relay implements AsyncDisposable {
  readonly port: number;
  /** The local address of the relay's connection to the receiver. */
  readonly upstream: Promise<Deno.TcpConn>;
  #listener: Deno.TcpListener;
  #done: Promise<void>;
  #conns: Deno.TcpConn[] = [];

  constructor(targetPort: number) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.port = listener.addr.port;
    const { promise, resolve, reject } = Promise.withResolvers<
      Deno.TcpConn
    >();
    promise.catch(() => {});
    this.upstream = promise;
    this.#done = (async () => {
      let down: Deno.TcpConn;
      let up: Deno.TcpConn;
      try {
        down = await listener.accept();
        this.#conns.push(down);
        up = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        this.#conns.push(up);
      } catch (error) {
        reject(error);
        return;
      }
      resolve(up);
      await Promise.all([pump(down, up), pump(up, down)]);
      closeQuietly(down);
      closeQuietly(up);
    })();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
    for (const conn of this.#conns) closeQuietly(conn);
    await this.#done;
  }
}

/** Copies bytes from one connection to another until the first ends. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const chunk = new Uint8Array(16 * 1024);
  try {
    while (true) {
      const n = await from.read(chunk);
      if (n === null) break;
      await to.write(chunk.subarray(0, n));
    }
    await to.closeWrite();
  } catch {
    // One side is gone: the other is closed by the relay.
    closeQuietly(to);
  }
}

const openssl = await findTool(["/usr/bin/openssl", "openssl"], ["version"]);

/** Registers a test that needs openssl: ignored without it, unless in CI. */
function opensslTest(
  name: string,
  fn: (command: string, logs: LogLine[]) => Promise<void>,
): void {
  if ("missing" in openssl) {
    if (!IN_CI) {
      console.log(`Skipping "${name}": ${openssl.missing}.`);
    }
    tlsTest(name, () => {
      throw new Error(`${openssl.missing}, but CI=true: openssl must exist`);
    }, { ignore: !IN_CI });
    return;
  }
  const command = openssl.command;
  tlsTest(name, (logs) => fn(command, logs));
}

/** Runs a command to completion; it is killed after CHILD_TIMEOUT. */
async function run(
  command: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), CHILD_TIMEOUT);
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

// ---------------------------------------------------------------------------
// Seed: Using TLS

for (const form of ["path", "pem"] as const) {
  tlsTest(
    `seed "Using TLS": the wikipedia sample over TLS is accepted (certificates as ${
      form === "path" ? "file paths" : "PEM text"
    })`,
    async (logs) => {
      await using server = await startReceiver({
        // The seed's client connects to "localhost": listening there too keeps
        // both sides on whichever loopback it resolves to.
        hostname: "localhost",
        tls: await serverTls(form, { verifyPeer: false }),
      });
      assert(server.receiver.secure);
      const caCerts = form === "path" ? ROOT_CA_PATH : ROOT_CA_PEM;
      await using client = await Client.connect("localhost", server.port, {
        ...CLIENT_LIMITS,
        tls: { caCerts },
      });
      assertAA(await client.send(SAMPLE));
      const [open] = await server.events.wait("connectionopen");
      assertEquals(open.secure, true);
      assertEquals(open.certificateName, undefined);
      assertEquals(open.local.port, server.port);
      assertEquals(server.dispatched.length, 1);
      assertEquals(server.dispatched[0].certificateName, undefined);
      const [dispatch] = await server.events.wait("dispatch");
      assertEquals([dispatch.controlId, dispatch.ackCode], [
        SAMPLE_CONTROL_ID,
        "AA",
      ]);
      assertEquals(server.events.list("handshakeerror"), []);
      assert(
        logs.some((line) =>
          line.level === "info" &&
          line.text ===
            `Receiver listening on ${
              formatAddress(server.receiver.address)
            } with TLS`
        ),
      );
      assert(!logs.some((line) => line.text.includes("without TLS")));
    },
  );
}

// ---------------------------------------------------------------------------
// Seed: Using Client Certificates

tlsTest(
  'seed "Using Client Certificates": client-1 is accepted and named (PEM text)',
  async (logs) => {
    await using server = await startReceiver({
      hostname: "localhost",
      tls: await serverTls("pem", { verifyPeer: true }),
    });
    const client1 = await pairPem("client");
    await using client = await Client.connect("localhost", server.port, {
      ...CLIENT_LIMITS,
      tls: { caCerts: ROOT_CA_PEM, ...client1 },
    });
    assertAA(await client.send(SAMPLE));
    assertEquals(server.dispatched.map((ctx) => ctx.certificateName), [
      "client-1",
    ]);
    const [open] = await server.events.wait("connectionopen");
    assertEquals(open.certificateName, "client-1");
    assertEquals(open.secure, true);
    assertEquals(open.peer.hostname, server.receiver.address.hostname);
    assertNotEquals(open.peer.port, server.port);
    assertLogLine(
      logs,
      "info",
      `Accepted connection from ${formatAddress(open.peer)} (client-1)`,
    );
    await client.close();
    const [closed] = await server.events.wait("connectionclose");
    assertEquals(
      [closed.certificateName, closed.messages, closed.peer],
      ["client-1", 1, open.peer],
    );
    assertEquals(server.events.list("handshakeerror"), []);
  },
);

tlsTest(
  'seed "Using Client Certificates": paths, and a CA list mixing paths and PEM text',
  async () => {
    await using server = await startReceiver({
      tls: {
        ...pairPath("server"),
        // The untrusted CA is trusted here on purpose: a list is honoured.
        ca: [ROOT_CA_PATH, UNTRUSTED_CA_PEM],
        verifyPeer: true,
        handshakeTimeout: HANDSHAKE_TIMEOUT,
      },
    });
    assertAA(
      await exchange("127.0.0.1", server.port, {
        caCerts: [ROOT_CA_PATH],
        ...CLIENT_1,
      }),
    );
    // Signed by the CA the list added, with the CN client-1.
    assertAA(
      await exchange("127.0.0.1", server.port, {
        caCerts: ROOT_CA_PATH,
        ...pairPath("untrusted-client"),
      }),
    );
    assertEquals(server.dispatched.map((ctx) => ctx.certificateName), [
      "client-1",
      "client-1",
    ]);
    assertEquals(server.events.list("handshakeerror"), []);
  },
);

// ---------------------------------------------------------------------------
// Seed: Using Client Restrictions, option 1 (IP/DNS)

/**
 * Checks one client refused by an address allow-list: the send fails with
 * ConnectionClosedError, the dispatcher never runs, and the receiver emits
 * `clientreject` and logs the seed's warning.
 */
async function assertAddressRejected(
  server: Harness,
  logs: LogLine[],
  tls?: ClientTlsOptions,
): Promise<void> {
  const error = await refusal("127.0.0.1", server.port, tls);
  if (tls) {
    // Refused before the handshake: the client sees the connection close
    // during its handshake.
    const named = handshakeError(error);
    assertEquals([named.refusedBy, named.failure], ["server", "refused"]);
  } else {
    assertInstanceOf(error, ConnectionClosedError);
  }
  const rejects = await server.events.wait("clientreject");
  for (const reject of rejects) {
    assertEquals(reject.reason, "client_ip_not_allowed");
    assertEquals(reject.peer.hostname, "127.0.0.1");
    assertEquals(reject.certificateNames, undefined);
    assertLogLine(
      logs,
      "warning",
      `Failed to verify client {127.0.0.1, ${reject.peer.port}}, error: client_ip_not_allowed`,
    );
  }
  // A raw socket that sends nothing, whose port is known: refused the same
  // way.
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const port = raw.localAddr.port;
    // Closed at once, before any handshake, with or without TLS.
    const { received } = await readUntilClosed(raw);
    assertEquals(received.length, 0);
    const all = await server.events.wait("clientreject", rejects.length + 1);
    assertEquals(all.at(-1), {
      peer: { hostname: "127.0.0.1", port },
      reason: "client_ip_not_allowed",
      certificateNames: undefined,
    });
    assertLogLine(
      logs,
      "warning",
      `Failed to verify client {127.0.0.1, ${port}}, error: client_ip_not_allowed`,
    );
  } finally {
    closeQuietly(raw);
  }
  assertEquals(server.dispatched, []);
  assertEquals(server.events.list("connectionopen"), []);
  assertEquals(server.events.list("handshakeerror"), []);
}

tlsTest(
  'seed "Using Client Restrictions" option 1: allowedClients ["localhost"] admits 127.0.0.1',
  async (logs) => {
    await using server = await startReceiver({ allowedClients: ["localhost"] });
    assertAA(await exchange("127.0.0.1", server.port));
    assertEquals(server.dispatched.length, 1);
    assertEquals(server.events.list("clientreject"), []);
    assert(
      logs.some((line) =>
        line.level === "warning" &&
        line.text.includes("without TLS: data will pass unencrypted")
      ),
    );
    assert(
      logs.some((line) => line.text.endsWith("allows only: localhost")),
      "the allow-list is logged at start",
    );
  },
);

tlsTest(
  'seed "Using Client Restrictions" option 1: allowedClients ["10.0.0.0/8"] denies 127.0.0.1',
  async (logs) => {
    await using server = await startReceiver({
      allowedClients: ["10.0.0.0/8"],
    });
    await assertAddressRejected(server, logs);
  },
);

tlsTest(
  "option 1 over TLS without peer verification: the address allow-list admits and denies",
  async (logs) => {
    const tls = await serverTls("path", { verifyPeer: false });
    {
      await using server = await startReceiver({
        tls,
        allowedClients: ["localhost"],
      });
      assertAA(
        await exchange("127.0.0.1", server.port, { caCerts: ROOT_CA_PATH }),
      );
      assertEquals(server.events.list("clientreject"), []);
    }
    await using server = await startReceiver({
      tls,
      allowedClients: ["10.0.0.0/8"],
    });
    // Refused on accept, before any byte of TLS is read by the receiver.
    await assertAddressRejected(server, logs, { caCerts: ROOT_CA_PATH });
  },
);

// ---------------------------------------------------------------------------
// Seed: Using Client Restrictions, option 2 (certificate names)

tlsTest(
  'seed "Using Client Restrictions" option 2: allowedClients ["client-1"] with verifyPeer',
  async (logs) => {
    await using server = await startReceiver({
      hostname: "localhost",
      tls: await serverTls("path", { verifyPeer: true }),
      allowedClients: ["client-1"],
    });
    const tls = { caCerts: ROOT_CA_PATH };
    assertAA(await exchange("localhost", server.port, { ...tls, ...CLIENT_1 }));
    assertEquals(server.dispatched.map((ctx) => ctx.certificateName), [
      "client-1",
    ]);

    // A valid certificate that is not on the list: with TLS 1.3 the client
    // has finished its handshake when the receiver closes, so the client
    // learns of it on its first send, as a refusal by the server.
    const error = await refusal("localhost", server.port, {
      ...tls,
      ...pairPath("mixed-case-client"),
    });
    assertTlsRefused(error, "server", "refused");
    const [reject] = await server.events.wait("clientreject");
    assertEquals(reject.reason, "fail_to_verify_client_cert");
    assertEquals(reject.certificateNames, [
      "MIXED-CASE-client-cert",
      "MIXED-CASE-client-cert",
    ]);
    assertEquals(reject.peer.hostname, server.receiver.address.hostname);
    assertLogLine(
      logs,
      "warning",
      `Failed to verify client {${reject.peer.hostname}, ${reject.peer.port}}, error: fail_to_verify_client_cert`,
    );

    // CN client-1 from the untrusted CA: refused in the handshake, never
    // reaching the name check.
    const untrusted = await refusal("localhost", server.port, {
      ...tls,
      ...pairPath("untrusted-client"),
    });
    assertTlsRefused(untrusted, "server", "refused");
    await server.events.wait("handshakeerror");
    assertEquals(server.events.list("clientreject").length, 1);

    assertEquals(server.dispatched.length, 1);
    assertEquals(
      server.events.list("connectionopen").map((open) => open.certificateName),
      ["client-1"],
    );
    assertAA(await exchange("localhost", server.port, { ...tls, ...CLIENT_1 }));
  },
);

tlsTest("option 2: certificate names match ignoring case", async () => {
  await using server = await startReceiver({
    tls: await serverTls("pem", { verifyPeer: true }),
    allowedClients: ["mixed-case-client-cert"],
  });
  const tls = { caCerts: ROOT_CA_PEM };
  assertAA(
    await exchange("127.0.0.1", server.port, {
      ...tls,
      ...await pairPem("mixed-case-client"),
    }),
  );
  assertEquals(server.dispatched.map((ctx) => ctx.certificateName), [
    "MIXED-CASE-client-cert",
  ]);
  assertTlsRefused(
    await refusal("127.0.0.1", server.port, { ...tls, ...CLIENT_1 }),
    "server",
    "refused",
  );
  const [reject] = await server.events.wait("clientreject");
  assertEquals(reject.reason, "fail_to_verify_client_cert");
  assertEquals(reject.certificateNames, ["client-1", "client-1"]);
  assertEquals(server.dispatched.length, 1);
});

// ---------------------------------------------------------------------------
// Client certificates refused in the handshake

/**
 * Refused client certificates: for each, the client's error, the
 * receiver's `handshakeerror` event and warning, and a good client served
 * right after on the same receiver.
 *
 * Deno's `node:tls` server does not say why it refused a certificate it
 * did not like (expired, untrusted, not for client authentication): it
 * drops the connection without an alert the client can read. The receiver
 * then reports failure "refused" ("socket hang up" is all it learns), and
 * the client, which finished its TLS 1.3 handshake before the receiver
 * judged its certificate, sees the connection close on its first send:
 * TlsHandshakeError, refused by "server", failure "refused". A missing
 * certificate is different: rustls sends the `certificate_required` alert.
 */
const REFUSED_CERTIFICATES: {
  name: string;
  pair: PairName | undefined;
  client: TlsHandshakeError["failure"];
  server: TlsHandshakeError["failure"];
}[] = [
  {
    name: "no client certificate",
    pair: undefined,
    client: "certificate_required",
    server: "certificate_required",
  },
  {
    name: "an expired client certificate",
    pair: "expired-client",
    client: "refused",
    server: "refused",
  },
  {
    name: "a client certificate from an untrusted CA",
    pair: "untrusted-client",
    client: "refused",
    server: "refused",
  },
  {
    name: "the server's own certificate (not for client authentication)",
    pair: "server",
    client: "refused",
    server: "refused",
  },
];

for (const refused of REFUSED_CERTIFICATES) {
  tlsTest(
    `verifyPeer refuses ${refused.name} in the handshake and keeps serving`,
    async (logs) => {
      await using server = await startReceiver({
        tls: await serverTls("path", { verifyPeer: true }),
      });
      const tls: ClientTlsOptions = {
        caCerts: ROOT_CA_PATH,
        ...(refused.pair ? pairPath(refused.pair) : {}),
      };
      for (let round = 1; round <= 2; round++) {
        const error = await refusal("127.0.0.1", server.port, tls);
        assertTlsRefused(error, "server", refused.client);
        const events = await server.events.wait("handshakeerror", round);
        const event = events[round - 1];
        assertEquals(event.failure, refused.server);
        assertEquals(event.peer.hostname, "127.0.0.1");
        assert(event.peer.port > 0);
        assertNotEquals(event.peer.port, server.port);
        assertLogLine(
          logs,
          "warning",
          `TLS handshake with 127.0.0.1:${event.peer.port} failed: ${event.detail}`,
        );
        assertEquals(server.dispatched.length, round - 1);
        // The listener keeps serving.
        assertAA(
          await exchange("127.0.0.1", server.port, {
            caCerts: ROOT_CA_PATH,
            ...CLIENT_1,
          }),
        );
        assertEquals(server.dispatched.length, round);
      }
      assertEquals(
        server.events.list("connectionopen").map((open) =>
          open.certificateName
        ),
        ["client-1", "client-1"],
      );
      assertEquals(server.events.list("clientreject"), []);
    },
  );
}

// ---------------------------------------------------------------------------
// Client-side verification of the receiver's certificate

for (const withCertificate of [false, true]) {
  const how = withCertificate
    ? "with a client certificate (node:tls when serverName differs)"
    : "without a client certificate (Deno.startTls when serverName differs)";
  tlsTest(
    `the client verifies the receiver's certificate, ${how}`,
    async () => {
      const clientCert = withCertificate ? await pairPem("client") : {};
      const receiverTls = (pair: PairName): ReceiverTlsOptions => ({
        ...pairPath(pair),
        ca: ROOT_CA_PATH,
        verifyPeer: withCertificate,
        handshakeTimeout: HANDSHAKE_TIMEOUT,
      });
      await using full = await startReceiver({ tls: receiverTls("server") });
      await using nameOnly = await startReceiver({
        tls: receiverTls("server-name-only"),
      });

      // No caCerts: the system's roots do not know the test CA.
      assertTlsRefused(
        await refusal("127.0.0.1", full.port, { ...clientCert }),
        "client",
        "unknown_ca",
      );
      // Another CA than the one that signed the receiver's certificate.
      assertTlsRefused(
        await refusal("127.0.0.1", full.port, {
          caCerts: UNTRUSTED_CA_PEM,
          ...clientCert,
        }),
        "client",
        "unknown_ca",
      );
      // The full server certificate names IP 127.0.0.1 as well.
      assertAA(
        await exchange("127.0.0.1", full.port, {
          caCerts: ROOT_CA_PATH,
          ...clientCert,
        }),
      );

      // server-name-only names localhost only: by IP it does not match...
      assertTlsRefused(
        await refusal("127.0.0.1", nameOnly.port, {
          caCerts: ROOT_CA_PATH,
          ...clientCert,
        }),
        "client",
        "name_mismatch",
      );
      // ...unless the client says which name to verify...
      assertAA(
        await exchange("127.0.0.1", nameOnly.port, {
          caCerts: ROOT_CA_PATH,
          serverName: "localhost",
          ...clientCert,
        }),
      );
      // ...and that name must be the right one.
      assertTlsRefused(
        await refusal("127.0.0.1", nameOnly.port, {
          caCerts: ROOT_CA_PATH,
          serverName: "wrong.example",
          ...clientCert,
        }),
        "client",
        "name_mismatch",
      );
      assertTlsRefused(
        await refusal("127.0.0.1", full.port, {
          caCerts: ROOT_CA_PATH,
          serverName: "other.example",
          ...clientCert,
        }),
        "client",
        "name_mismatch",
      );

      const names = withCertificate ? ["client-1"] : [undefined];
      assertEquals(full.dispatched.map((ctx) => ctx.certificateName), names);
      assertEquals(
        nameOnly.dispatched.map((ctx) => ctx.certificateName),
        names,
      );
    },
  );
}

// ---------------------------------------------------------------------------
// Start-up failures

tlsTest("start: verifyPeer without a CA rejects with TypeError", async () => {
  const port = freePort();
  for (const ca of [undefined, []]) {
    await assertRejects(
      () =>
        Receiver.start({
          port,
          hostname: "127.0.0.1",
          dispatcher: EchoDispatcher,
          tls: { ...pairPath("server"), ca, verifyPeer: true },
        }),
      TypeError,
      "tls.verifyPeer needs tls.ca",
    );
  }
  await assertNotListening(port);
});

tlsTest(
  "start: allowedClients with no resolvable entry fails closed",
  async () => {
    for (
      const tls of [undefined, await serverTls("path", { verifyPeer: false })]
    ) {
      const port = freePort();
      const error = await assertRejects(
        () =>
          Receiver.start({
            port,
            hostname: "127.0.0.1",
            dispatcher: EchoDispatcher,
            tls,
            allowedClients: ["no-such-host.invalid", "neither-this.invalid"],
          }),
        AllowListError,
        "no entry is usable",
      );
      assertEquals((error as AllowListError).entries, [
        "no-such-host.invalid",
        "neither-this.invalid",
      ]);
      await assertNotListening(port);
    }
  },
);

tlsTest(
  "start: a malformed allowedClients entry rejects with TypeError naming it",
  async () => {
    for (const entry of ["10.0.0.300", "10.0.0.0/33", ""]) {
      const port = freePort();
      await assertRejects(
        () =>
          Receiver.start({
            port,
            hostname: "127.0.0.1",
            dispatcher: EchoDispatcher,
            allowedClients: ["localhost", entry],
          }),
        TypeError,
        entry === "" ? undefined : `"${entry}"`,
      );
      await assertNotListening(port);
    }
  },
);

tlsTest(
  "start: an unreadable certificate, key or CA path rejects with a clear message",
  async () => {
    const port = freePort();
    const missing = tlsPath("server/no-such-file.pem");
    const cases: [ReceiverTlsOptions, string][] = [
      [
        { ...pairPath("server"), cert: missing },
        `Cannot read the TLS certificate (tls.cert) from "${missing}"`,
      ],
      [
        { ...pairPath("server"), key: missing },
        `Cannot read the TLS key (tls.key) from "${missing}"`,
      ],
      [
        {
          ...pairPath("server"),
          ca: [ROOT_CA_PATH, missing],
          verifyPeer: true,
        },
        `Cannot read the CA certificates (tls.ca) from "${missing}"`,
      ],
    ];
    for (const [tls, message] of cases) {
      await assertRejects(
        () =>
          Receiver.start({
            port,
            hostname: "127.0.0.1",
            dispatcher: EchoDispatcher,
            tls,
          }),
        Error,
        message,
      );
    }
    // A readable file without PEM in it.
    const readme = tlsPath("README.md");
    await assertRejects(
      () =>
        Receiver.start({
          port,
          hostname: "127.0.0.1",
          dispatcher: EchoDispatcher,
          tls: { ...pairPath("server"), cert: readme },
        }),
      TypeError,
      `Cannot use the TLS certificate (tls.cert) from "${readme}": no PEM block in it`,
    );
    await assertNotListening(port);
    // The client's settings are read when it connects.
    await assertRejects(
      () =>
        Client.connect("127.0.0.1", port, {
          ...CLIENT_LIMITS,
          tls: { caCerts: missing },
        }),
      Error,
      `Cannot read the CA certificates (tls.caCerts) from "${missing}"`,
    );
  },
);

tlsTest(
  "start: a handshake timeout that is not a positive number rejects",
  async () => {
    for (const handshakeTimeout of [0, -1, NaN, Infinity]) {
      await assertRejects(
        () =>
          Receiver.start({
            port: 0,
            hostname: "127.0.0.1",
            dispatcher: EchoDispatcher,
            tls: { ...pairPath("server"), handshakeTimeout },
          }),
        RangeError,
        "tls.handshakeTimeout",
      );
    }
  },
);

// ---------------------------------------------------------------------------
// Plain meets TLS

for (const verifyPeer of [false, true]) {
  const transport = verifyPeer ? "verifyPeer" : "no client certificates";
  tlsTest(
    `a plain client to a TLS receiver (${transport}): handshakeerror, and it keeps serving`,
    async (logs) => {
      await using server = await startReceiver({
        tls: await serverTls("path", { verifyPeer }),
      });
      const good: ClientTlsOptions = {
        caCerts: ROOT_CA_PATH,
        ...(verifyPeer ? CLIENT_1 : {}),
      };

      // A raw socket writes an MLLP frame where a ClientHello should be.
      const raw = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      let rawPort: number;
      try {
        rawPort = raw.localAddr.port;
        await raw.write(bytes([0x0b], SAMPLE, [0x1c, 0x0d]));
        const { received } = await readUntilClosed(raw);
        // The receiver's answer is a TLS alert record, then the close.
        assert(received.length > 0, "expected a TLS alert");
        assertEquals(received[0], 0x15);
      } finally {
        closeQuietly(raw);
      }
      const [event] = await server.events.wait("handshakeerror");
      assertEquals(event.peer, { hostname: "127.0.0.1", port: rawPort });
      assertEquals(event.failure, "not_tls");
      assertLogLine(
        logs,
        "warning",
        `TLS handshake with 127.0.0.1:${rawPort} failed: the client did not speak TLS`,
      );
      assertAA(await exchange("127.0.0.1", server.port, good));

      // The library's plain client: the receiver's TLS alert is no MLLP
      // reply, and the client names it.
      const plainError = await refusal("127.0.0.1", server.port);
      assertInstanceOf(plainError, InvalidReplyError);
      assertEquals((plainError as InvalidReplyError).problem, "no_start_block");
      assertStringIncludes((plainError as Error).message, "TLS record");
      const events = await server.events.wait("handshakeerror", 2);
      assertEquals(events[1].failure, "not_tls");
      assertAA(await exchange("127.0.0.1", server.port, good));
      assertEquals(server.dispatched.length, 2);
    },
  );
}

tlsTest(
  "a TLS client to a plain receiver: the receiver closes at once, the client gets TlsHandshakeError",
  async (logs) => {
    const kinds: string[] = [];
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: (message) => {
        kinds.push(message.kind);
        return message.kind === "hl7"
          ? Ack.forMessage(message, "AA")
          : undefined;
      },
    });
    // The plain receiver recognises the ClientHello and closes the
    // connection, so the client learns well before its connect timeout,
    // with or without a client certificate.
    for (const cert of [{}, CLIENT_1]) {
      const error = await refusal("127.0.0.1", receiver.port, {
        caCerts: ROOT_CA_PATH,
        ...cert,
      }, { connectTimeout: 5000, replyTimeout: 5000 });
      const named = handshakeError(error);
      assertEquals(named.refusedBy, "server");
      assertEquals(named.failure, "refused");
    }
    const warnings = logs.filter((line) =>
      line.level === "warning" &&
      line.text.endsWith(
        "started a TLS handshake, but this receiver speaks plain TCP; closing the connection",
      )
    );
    assertEquals(warnings.length, 2);
    // The plain receiver keeps serving plain clients.
    assertAA(await exchange("127.0.0.1", receiver.port));
    assertEquals(kinds, ["hl7"]);
  },
);

// ---------------------------------------------------------------------------
// TLS errors on open connections

tlsTest(
  "garbage instead of a ClientHello ends that connection only",
  async (logs) => {
    await using server = await startReceiver({
      tls: await serverTls("pem", { verifyPeer: false }),
    });
    await using other = await Client.connect("127.0.0.1", server.port, {
      ...CLIENT_LIMITS,
      tls: { caCerts: ROOT_CA_PEM },
    });
    assertAA(await other.send(SAMPLE));
    const raw = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    try {
      await raw.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
      const { received } = await readUntilClosed(raw);
      assertEquals(received[0], 0x15);
      const [event] = await server.events.wait("handshakeerror");
      assertEquals(event.peer.port, raw.localAddr.port);
      assertEquals(event.failure, "not_tls");
    } finally {
      closeQuietly(raw);
    }
    assert(
      logs.some((line) =>
        line.level === "warning" && line.text.startsWith("TLS handshake with ")
      ),
    );
    // The connection opened before is untouched.
    assert(other.connected);
    assertAA(await other.send(SAMPLE));
    assertEquals(server.events.list("connectionclose"), []);
  },
);

for (const verifyPeer of [false, true]) {
  const transport = verifyPeer ? "verifyPeer" : "no client certificates";
  tlsTest(
    `a TLS error on an open connection ends that connection only (${transport})`,
    async (logs) => {
      await using server = await startReceiver({
        tls: await serverTls("path", { verifyPeer }),
      });
      const tls: ClientTlsOptions = {
        caCerts: ROOT_CA_PATH,
        ...(verifyPeer ? CLIENT_1 : {}),
      };
      await using other = await Client.connect("127.0.0.1", server.port, {
        ...CLIENT_LIMITS,
        tls,
      });
      assertAA(await other.send(SAMPLE));

      await using relay = new Relay(server.port);
      await using victim = await Client.connect("127.0.0.1", relay.port, {
        ...CLIENT_LIMITS,
        tls,
      });
      assertAA(await victim.send(SAMPLE));
      const upstream = await relay.upstream;
      const peer = { hostname: "127.0.0.1", port: upstream.localAddr.port };
      // An application-data record the client never sealed: the receiver
      // cannot decrypt it.
      await upstream.write(
        bytes([0x17, 0x03, 0x03, 0x00, 0x10], new Uint8Array(16).fill(0x42)),
      );
      const [closed] = await server.events.wait("connectionclose");
      assertEquals(closed.peer, peer);
      assertEquals(closed.messages, 1);
      assertStringIncludes(closed.reason, "decrypt");
      const ended = logs.filter((line) =>
        line.text.startsWith(`Connection from ${formatAddress(peer)} ended: `)
      );
      assertEquals(ended.length, 1);
      assertStringIncludes(ended[0].text, "decrypt");
      if (!verifyPeer) assertEquals(ended[0].level, "warning");
      assertLogLine(
        logs,
        "info",
        `Closed connection from ${formatAddress(peer)} after ${
          Math.round(closed.durationMs)
        } ms, messages: 1 (${closed.reason})`,
      );

      // The other connection is untouched, and new ones are served.
      assert(other.connected);
      assertAA(await other.send(SAMPLE));
      assertEquals(server.events.list("connectionclose").length, 1);
      assertAA(await exchange("127.0.0.1", server.port, tls));
      assertEquals(server.dispatched.length, 4);
    },
  );
}

// ---------------------------------------------------------------------------
// TLS 1.2 minimum

for (const verifyPeer of [false, true]) {
  const transport = verifyPeer ? "verifyPeer" : "no client certificates";
  opensslTest(
    `TLS 1.2 is the minimum (${transport}, openssl s_client)`,
    async (command) => {
      await using server = await startReceiver({
        tls: await serverTls("path", { verifyPeer }),
      });
      const base = [
        "s_client",
        "-connect",
        `127.0.0.1:${server.port}`,
        "-servername",
        "localhost",
        "-CAfile",
        ROOT_CA_PATH,
        "-verify_return_error",
        ...(verifyPeer ? ["-cert", CLIENT_1.cert, "-key", CLIENT_1.key] : []),
      ];

      // SECLEVEL=0 lets openssl itself offer TLS 1.1, so it is the receiver
      // that refuses it.
      const old = await run(command, [
        ...base,
        "-tls1_1",
        "-cipher",
        "DEFAULT@SECLEVEL=0",
      ]);
      if (/no protocols available/i.test(old.stderr)) {
        console.log(
          "This openssl cannot offer TLS 1.1; that check is skipped.",
        );
      } else {
        assertNotEquals(old.code, 0, old.stdout);
        assertStringIncludes(old.stdout, "Cipher is (NONE)");
        assertMatch(old.stderr, /alert/i);
        const [event] = await server.events.wait("handshakeerror");
        assertEquals(event.peer.hostname, "127.0.0.1");
      }
      assertEquals(server.events.list("connectionopen"), []);

      for (const [flag, version] of [["-tls1_2", "1.2"], ["-tls1_3", "1.3"]]) {
        const result = await run(command, [...base, flag]);
        assertEquals(result.code, 0, result.stderr);
        assertStringIncludes(result.stdout, `New, TLSv${version}, Cipher is `);
      }
      const opened = await server.events.wait("connectionopen", 2);
      assertEquals(
        opened.map((open) => open.certificateName),
        verifyPeer ? ["client-1", "client-1"] : [undefined, undefined],
      );
      await server.events.wait("connectionclose", 2);
    },
  );
}
