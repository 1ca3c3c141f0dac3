import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";
import { Ack, type DispatchReply, Receiver } from "../../mod.ts";
import { fixtureText } from "../_helpers.ts";
import {
  AA_LINE,
  assertAccepted,
  assertCleanError,
  CLIENT_1,
  closedPort,
  FIXTURE,
  lines,
  type Output,
  ROOT_CA,
  RUN_LIMIT,
  runCli,
  sendFixture,
  SERVER_TLS,
  startListen,
} from "./_helpers.ts";

Deno.test("cli listen answers send, logs each message, and stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_cli_test_" });
  let stopped: Output;
  try {
    await using listening = await startListen([]);
    const port = listening.port;
    const lfFile = `${dir}/adt_a01_lf.hl7`;
    const crText = await fixtureText("adt_a01_wikipedia.hl7");
    await Deno.writeTextFile(lfFile, crText.replaceAll("\r", "\n") + "\n\n");
    const sent = await runCli([
      "send",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      FIXTURE,
      lfFile,
    ]);
    assertEquals(sent.code, 0, sent.stderr);
    const results = lines(sent.stdout);
    assertEquals(results.length, 2);
    for (const line of results) assertMatch(line, AA_LINE);
    stopped = await listening.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertEquals(stopped.code, 0, stopped.stderr);
  assertEquals(stopped.stdout, "");
  assertEquals(
    lines(stopped.stderr).filter((line) => line.includes("01052901")).length,
    2,
    stopped.stderr,
  );
  assertNotMatch(stopped.stderr, /error/i);
});

Deno.test("cli send reads one message from stdin", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AA"),
  });
  const crText = await fixtureText("adt_a01_wikipedia.hl7");
  const output = await runCli(
    ["send", "--port", String(receiver.port), "-"],
    crText.replaceAll("\r", "\r\n") + "\r\n",
  );
  assertEquals(output.code, 0, output.stderr);
  assertEquals(lines(output.stdout).length, 1);
  assertMatch(lines(output.stdout)[0], AA_LINE);
});

Deno.test("cli send prints the reply to a non-HL7 payload", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => `Got ${message.size} bytes`,
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    "--raw",
    "tests/fixtures/not_hl7.txt",
  ]);
  assertEquals(output.code, 0, output.stderr);
  assertMatch(output.stdout, /^- reply \d+\.\d ms "Got 14 bytes"\n$/);
});

Deno.test("cli send exits 1 when a message is rejected", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) =>
      Ack.forMessage(message, "AR", { text: "Rejected by test" }),
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    FIXTURE,
  ]);
  assertEquals(output.code, 1, output.stderr);
  assertMatch(
    output.stdout,
    /^01052901 AR \d+\.\d ms "Rejected by test"\n$/,
  );
});

Deno.test("cli send exits 1 on an ACK for another message", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: () =>
      Ack.forMessage(
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|OTHER|P|2.5\r",
        "AA",
      ),
  });
  const output = await runCli([
    "send",
    "--port",
    String(receiver.port),
    FIXTURE,
  ]);
  assertEquals(output.code, 1, output.stderr);
  assertMatch(
    output.stdout,
    /^01052901 mismatch \d+\.\d ms ACK AA names control id "OTHER"\n$/,
  );
});

Deno.test("cli send exits 2 when the port is closed", async () => {
  const output = await runCli([
    "send",
    "--port",
    String(closedPort()),
    FIXTURE,
  ]);
  assertCleanError(output, 2, FIXTURE, "[refused]");
});

Deno.test("cli send exits 2 when no reply arrives in time", async () => {
  const pending: (() => void)[] = [];
  let released = false;
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: () => {
      if (released) return undefined;
      const { promise, resolve } = Promise.withResolvers<DispatchReply>();
      pending.push(() => resolve(undefined));
      return promise;
    },
  });
  try {
    const output = await runCli([
      "send",
      "--port",
      String(receiver.port),
      "--timeout",
      "200",
      FIXTURE,
    ]);
    assertCleanError(output, 2, FIXTURE, "[timeout]");
  } finally {
    released = true;
    for (const release of pending) release();
    await receiver.stop();
  }
});

Deno.test("cli send exits 2 on a missing file without sending", async () => {
  const output = await runCli([
    "send",
    "--port",
    String(closedPort()),
    FIXTURE,
    "tests/fixtures/does_not_exist.hl7",
  ]);
  assertCleanError(
    output,
    2,
    "tests/fixtures/does_not_exist.hl7: Cannot read file",
  );
});

Deno.test("cli send exits 2 on an unreadable header or an empty file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_cli_test_" });
  try {
    await Deno.writeTextFile(`${dir}/bad.hl7`, "MSH|\r");
    await Deno.writeTextFile(`${dir}/empty.hl7`, "\n\r\n");
    const port = String(closedPort());
    const [bad, empty] = await Promise.all([
      runCli(["send", "--port", port, `${dir}/bad.hl7`]),
      runCli(["send", "--port", port, `${dir}/empty.hl7`]),
    ]);
    assertCleanError(bad, 2, "bad.hl7: Cannot read header");
    assertCleanError(empty, 2, "empty.hl7: Message is empty");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli exits 2 with a clear message on bad flags", async () => {
  const cases: [string[], string][] = [
    [["send", "--bogus", "--port", "2575", FIXTURE], 'Unknown flag "--bogus"'],
    [["send", FIXTURE], "Missing required flag --port"],
    [["send", "--port", "abc", FIXTURE], 'Invalid --port "abc"'],
    [["send", "--port", "0", FIXTURE], 'Invalid --port "0"'],
    [["send", "--port", "2575", "--timeout", "soon", FIXTURE], "--timeout"],
    [["send", "--port", "2575"], "No message files given"],
    [["send", "--port", "2575", "-", "-"], "only once"],
    [["listen", "--port", "70000"], 'Invalid --port "70000"'],
    [["listen", "--port"], "Missing value for --port"],
    [["listen", "extra"], 'Unexpected argument "extra"'],
    [["listen", "-x"], 'Unknown flag "-x"'],
    [["listen", "--cert", "a.pem"], "--cert needs --key"],
    [["listen", "--key", "a.pem"], "--key needs --cert"],
    [["listen", "--verify-peer", ...ROOT_CA], "--verify-peer needs TLS"],
    [["listen", ...ROOT_CA], "--ca needs TLS"],
    [["listen", ...SERVER_TLS, "--ca"], "Missing value for --ca"],
    [
      ["listen", "--allowed-clients", " , "],
      "Missing value for --allowed-clients",
    ],
    [
      ["send", "--port", "2575", "--cert", "a.pem", FIXTURE],
      "--cert needs --key",
    ],
    [
      ["send", "--port", "2575", "--key", "a.pem", FIXTURE],
      "--key needs --cert",
    ],
    [
      ["send", "--port", "2575", FIXTURE, "--servername"],
      "Missing value for --servername",
    ],
    [["--bogus"], 'Unknown flag "--bogus"'],
    [["bogus"], 'Unknown command "bogus"'],
  ];
  const outputs = await Promise.all(cases.map(([args]) => runCli(args)));
  for (const [i, output] of outputs.entries()) {
    assertCleanError(output, 2, cases[i][1]);
  }
});

Deno.test("cli prints usage to stderr and exits 2 without a command", async () => {
  const output = await runCli([]);
  assertEquals(output.code, 2);
  assertEquals(output.stdout, "");
  assertStringIncludes(output.stderr, "mllp send");
  assertStringIncludes(output.stderr, "mllp listen");
});

Deno.test("cli --help exits 0 for the top level and each command", async () => {
  const cases: [string[], string][] = [
    [["--help"], "mllp listen [options]"],
    [["-h"], "mllp send [options]"],
    [["listen", "--help"], "Usage: mllp listen"],
    [["listen", "-h"], "[default: 2575]"],
    [["send", "--help"], "Usage: mllp send"],
    [["send", "-h", "--bogus"], "Exit status"],
    [["listen", "--help"], "--allowed-clients LIST"],
    [["listen", "--help"], "--verify-peer"],
    [["send", "--help"], "--servername NAME"],
  ];
  const outputs = await Promise.all(cases.map(([args]) => runCli(args)));
  for (const [i, output] of outputs.entries()) {
    assertEquals(output.code, 0, output.stderr);
    assertStringIncludes(output.stdout, cases[i][1]);
    assertEquals(output.stderr, "");
  }
  assert(outputs[4].stdout.includes("--timeout MS"));
});

Deno.test("cli listen --cert --key serves TLS to send --ca", async () => {
  await using listening = await startListen(SERVER_TLS);
  const [byName, byIp, plain] = await Promise.all([
    sendFixture(listening.port, ["--host", "localhost", ...ROOT_CA]),
    // The server certificate names IP:127.0.0.1 too.
    sendFixture(listening.port, ["--host", "127.0.0.1", ...ROOT_CA]),
    sendFixture(listening.port, ["--host", "localhost"]),
  ]);
  assertAccepted(byName);
  assertAccepted(byIp);
  assertCleanError(
    plain,
    2,
    "[invalid_reply]",
    "TLS record",
    "hint: ",
    "--ca FILE",
  );
  const stopped = await listening.stop();
  assertEquals(stopped.code, 0, stopped.stderr);
  assertStringIncludes(stopped.stderr, "with TLS");
});

Deno.test("cli send refuses a receiver certificate from an unknown CA", async () => {
  await using listening = await startListen(SERVER_TLS);
  const [untrusted, systemRoots] = await Promise.all([
    sendFixture(listening.port, [
      "--host",
      "localhost",
      "--ca",
      "tls/untrusted-ca/ca_certificate.pem",
    ]),
    sendFixture(listening.port, [
      "--host",
      "localhost",
      "--servername",
      "localhost",
    ]),
  ]);
  for (const output of [untrusted, systemRoots]) {
    assertCleanError(
      output,
      2,
      `${FIXTURE}: TLS handshake with localhost:${listening.port} failed: `,
      "not signed by a trusted CA",
      "[tls_handshake, refused by: client, failure: unknown_ca]",
      "hint: give the CA that signed the receiver's certificate with --ca FILE",
    );
  }
});

Deno.test("cli listen --verify-peer requires a client certificate", async () => {
  await using listening = await startListen([
    ...SERVER_TLS,
    ...ROOT_CA,
    "--verify-peer",
  ]);
  const host = ["--host", "localhost", ...ROOT_CA];
  // One at a time: under load the library sometimes reports the refusal
  // as a plain closed connection (the alert can arrive before the send).
  const withCert = await sendFixture(listening.port, [...host, ...CLIENT_1]);
  const withoutCert = await sendFixture(listening.port, host);
  const expired = await sendFixture(listening.port, [
    ...host,
    "--cert",
    "tls/expired-client/client_certificate.pem",
    "--key",
    "tls/expired-client/private_key.pem",
  ]);
  assertAccepted(withCert);
  assertCleanError(
    withoutCert,
    2,
    "the server refused: a client certificate is required",
    "[tls_handshake, refused by: server, failure: certificate_required]",
    "hint: the receiver requires a client certificate: give one with --cert FILE --key FILE",
  );
  assertCleanError(
    expired,
    2,
    "it refused the client certificate",
    "refused by: server",
  );
  const stopped = await listening.stop();
  assertEquals(stopped.code, 0, stopped.stderr);
  assertStringIncludes(stopped.stderr, "client certificates required");
  assertStringIncludes(stopped.stderr, "(client-1)");
});

Deno.test("cli send --servername verifies a name other than --host", async () => {
  await using listening = await startListen([
    "--cert",
    "tls/server-name-only/server_certificate.pem",
    "--key",
    "tls/server-name-only/private_key.pem",
  ]);
  const byIp = ["--host", "127.0.0.1", ...ROOT_CA];
  const [named, unnamed, withCert] = await Promise.all([
    sendFixture(listening.port, [...byIp, "--servername", "localhost"]),
    sendFixture(listening.port, byIp),
    // A client certificate takes another code path in the library.
    sendFixture(listening.port, [
      ...byIp,
      "--servername",
      "localhost",
      ...CLIENT_1,
    ]),
  ]);
  assertAccepted(named);
  assertAccepted(withCert);
  assertCleanError(
    unnamed,
    2,
    "the certificate does not name the server",
    "failure: name_mismatch",
    'hint: the receiver\'s certificate does not name "127.0.0.1"; give the name it carries with --servername NAME',
  );
});

Deno.test("cli listen --allowed-clients refuses other addresses", async () => {
  await using listening = await startListen([
    "--allowed-clients",
    "10.0.0.0/8",
  ]);
  const refused = await sendFixture(listening.port, []);
  assertCleanError(
    refused,
    2,
    `Connection to 127.0.0.1:${listening.port}`,
    "[closed]",
    "hint: the receiver closed the connection without replying: it may allow only some clients",
  );
  const stopped = await listening.stop();
  assertEquals(stopped.code, 0, stopped.stderr);
  assertStringIncludes(stopped.stderr, "allows only: 10.0.0.0/8");
  assertMatch(
    stopped.stderr,
    /Failed to verify client \{127\.0\.0\.1, \d+\}, error: client_ip_not_allowed$/m,
  );
  assertNotMatch(stopped.stderr, /01052901/);
});

Deno.test("cli listen --allowed-clients lets a listed address in", async () => {
  await using listening = await startListen([
    "--allowed-clients",
    "10.0.0.0/8",
    "--allowed-clients",
    "192.0.2.1,127.0.0.1",
  ]);
  assertAccepted(await sendFixture(listening.port, []));
  const stopped = await listening.stop();
  assertStringIncludes(
    stopped.stderr,
    "allows only: 10.0.0.0/8, 192.0.2.1, 127.0.0.1",
  );
});

Deno.test("cli listen --verify-peer --allowed-clients matches certificate names", async () => {
  await using listening = await startListen([
    ...SERVER_TLS,
    ...ROOT_CA,
    "--verify-peer",
    "--allowed-clients",
    "mixed-case-client-cert",
  ]);
  const host = ["--host", "localhost", ...ROOT_CA];
  const listed = await sendFixture(listening.port, [
    ...host,
    "--cert",
    "tls/mixed-case-client/client_certificate.pem",
    "--key",
    "tls/mixed-case-client/private_key.pem",
  ]);
  // Alone, as in the --verify-peer test: a refusal right after the
  // handshake is otherwise sometimes reported as a plain closed connection.
  const unlisted = await sendFixture(listening.port, [...host, ...CLIENT_1]);
  assertAccepted(listed);
  assertCleanError(unlisted, 2, "refused by: server");
  const stopped = await listening.stop();
  assertMatch(
    stopped.stderr,
    /Failed to verify client \{127\.0\.0\.1, \d+\}, error: fail_to_verify_client_cert$/m,
  );
  assertStringIncludes(stopped.stderr, "(MIXED-CASE-client-cert)");
});

Deno.test("cli listen exits 2 when a security setting cannot be enforced", async () => {
  const cases: [string[], string][] = [
    [
      ["--allowed-clients", "no-such-host.invalid"],
      'Cannot use allowed clients: no entry is usable, as "no-such-host.invalid" did not resolve',
    ],
    [
      ["--allowed-clients", "10.0.0.0/33"],
      'Cannot use allowed client "10.0.0.0/33"',
    ],
    [
      [...SERVER_TLS, "--verify-peer"],
      "Cannot start receiver: tls.verifyPeer needs tls.ca",
    ],
    [
      ["--cert", "tls/nope.pem", "--key", "tls/server/private_key.pem"],
      'Cannot read the TLS certificate (tls.cert) from "tls/nope.pem"',
    ],
    [
      [...SERVER_TLS, "--ca", "tls/tls.sh", "--verify-peer"],
      'from "tls/tls.sh": no PEM block in it',
    ],
  ];
  const outputs = await Promise.all(
    cases.map(([args]) =>
      runCli(["listen", "--port", "0", "--hostname", "127.0.0.1", ...args])
    ),
  );
  for (const [i, output] of outputs.entries()) {
    assertCleanError(output, 2, cases[i][1]);
    assertNotMatch(output.stderr, /listening on/);
  }
});

// --- listen: limits and timeouts ---------------------------------------------

Deno.test("cli listen exits 2 on bad limit and timeout values", async () => {
  const cases: [string[], string][] = [
    [["--max-frame-bytes", "0"], 'Invalid --max-frame-bytes "0"'],
    [["--max-frame-bytes", "10MB"], 'Invalid --max-frame-bytes "10MB"'],
    [["--max-connections", "0"], 'Invalid --max-connections "0"'],
    [["--max-connections", "many"], 'Invalid --max-connections "many"'],
    [["--idle-timeout", "soon"], 'Invalid --idle-timeout "soon"'],
    [["--idle-timeout=-200"], 'Invalid --idle-timeout "-200"'],
    [["--frame-timeout", "1.5"], 'Invalid --frame-timeout "1.5"'],
    [["--frame-timeout=1e3"], 'Invalid --frame-timeout "1e3"'],
    [["--stop-deadline", "later"], 'Invalid --stop-deadline "later"'],
    [["--stop-deadline"], "Missing value for --stop-deadline"],
  ];
  const outputs = await Promise.all(
    cases.map(([args]) =>
      runCli(["listen", "--port", "0", "--hostname", "127.0.0.1", ...args])
    ),
  );
  for (const [i, output] of outputs.entries()) {
    assertCleanError(output, 2, cases[i][1]);
    assertNotMatch(output.stderr, /listening on/);
  }
});

Deno.test("cli listen --idle-timeout 200 closes an idle connection and says why", async () => {
  await using listening = await startListen([
    "--idle-timeout",
    "200",
    "--frame-timeout",
    "0",
    "--max-connections",
    "10",
    "--max-frame-bytes",
    "4096",
  ]);
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: listening.port,
  });
  const port = conn.localAddr.port;
  // The receiver closes the silent connection: the read ends (bounded, so
  // a receiver that never closes fails the test instead of hanging it).
  const timer = setTimeout(() => conn.close(), RUN_LIMIT);
  let ended: number | null | "error";
  try {
    ended = await conn.read(new Uint8Array(16));
  } catch {
    ended = "error";
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
  assertEquals(ended, null, "the receiver closed the connection");
  // The flags took effect and still serve a well-behaved sender.
  assertAccepted(await sendFixture(listening.port, []));
  const stopped = await listening.stop();
  assertEquals(stopped.code, 0, stopped.stderr);
  assertStringIncludes(
    stopped.stderr,
    `Closing connection from 127.0.0.1:${port}: idle timeout: no data for 200 ms`,
  );
  assertMatch(
    stopped.stderr,
    new RegExp(
      `Closed connection from 127\\.0\\.0\\.1:${port} after \\d+ ms, messages: 0 \\(idle timeout: no data for 200 ms\\)`,
    ),
  );
});
