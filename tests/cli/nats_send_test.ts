/**
 * `mllp send --queue nats://...`, the real command line against real
 * `nats-server` nodes on loopback: it queues in a JetStream stream, then
 * delivers the destination's queue in order with one line per message; a
 * receiver that is down is exit status 2 with the messages left queued,
 * which a later run delivers; credentials as flags; NATS flags without a
 * NATS queue are usage errors.
 *
 * @module
 */

import {
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";
import { JetStreamOutbox } from "../../src/durable/jetstream.ts";
import { EchoDispatcher } from "../../src/dispatch/dispatcher.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { startNatsCluster } from "../_nats.ts";
import {
  AA_LINE,
  assertCleanError,
  closedPort,
  FIXTURE,
  lines,
  runCli,
  startListen,
} from "./_helpers.ts";

const SECOND =
  "MSH|^~\\&|A|B|C|D|20240101||ADT^A08^ADT_A01|Q-2|P|2.5\rPID|1||42\r";

Deno.test("cli nats: send --queue nats:// queues in JetStream and delivers in order; receiver down is exit 2 with the messages left queued, and a later run delivers them", async () => {
  await using cluster = await startNatsCluster();
  const servers = cluster.servers.join(",");
  const flags = ["--queue", servers, "--nats-stream", "CLI_OUT"];
  {
    await using listening = await startListen([]);
    const sent = await runCli(
      ["send", "--port", String(listening.port), ...flags, FIXTURE, "-"],
      SECOND,
    );
    assertEquals(sent.code, 0, sent.stderr);
    const out = lines(sent.stdout);
    assertEquals(out.length, 2, sent.stdout);
    assertMatch(out[0], AA_LINE);
    assertMatch(out[1], /^Q-2 AA \d+\.\d ms$/);
    await using outbox = await JetStreamOutbox.open(cluster.servers, {
      stream: "CLI_OUT",
      destination: { hostname: "127.0.0.1", port: listening.port },
    });
    const stats = await outbox.stats();
    assertEquals([stats.depth, stats.enqueued, stats.parked], [0, 2, 0]);
    const records = await Array.fromAsync(outbox.list());
    assertEquals(
      records.map((r) => [r.controlId, r.state]),
      [["01052901", "acked"], ["Q-2", "acked"]],
    );
  }
  // Nothing listens: the message stays queued, exit 2.
  const port = closedPort();
  const down = await runCli([
    "send",
    "--port",
    String(port),
    "--timeout",
    "1000",
    ...flags,
    FIXTURE,
  ]);
  assertEquals(down.code, 2, down.stderr);
  assertEquals(down.stdout, "");
  assertStringIncludes(down.stderr, `error: ${FIXTURE}: Cannot connect`);
  assertStringIncludes(
    down.stderr,
    `1 message(s) remain queued in "${servers}"`,
  );
  // A later run, with no files, delivers what was left.
  await using _receiver = await Receiver.start({
    port,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  const later = await runCli(["send", "--port", String(port), ...flags]);
  assertEquals(later.code, 0, later.stderr);
  assertMatch(lines(later.stdout)[0], AA_LINE);
  assertStringIncludes(
    later.stderr,
    `1 message(s) queued earlier for 127.0.0.1:${port} go first`,
  );
});

Deno.test("cli nats: send --queue with a user and password as flags; a wrong password is exit 2 with one line that does not show it", async () => {
  await using cluster = await startNatsCluster({
    nodes: 1,
    extraConfig: [
      `authorization {`,
      `  users: [ { user: "mllp", password: "s3cret" } ]`,
      `}`,
    ].join("\n"),
  });
  const [server] = cluster.servers;
  await using listening = await startListen([]);
  const common = ["send", "--port", String(listening.port), "--queue", server];
  const sent = await runCli([
    ...common,
    "--nats-user",
    "mllp",
    "--nats-password",
    "s3cret",
    "--nats-replicas",
    "1",
    FIXTURE,
  ]);
  assertEquals(sent.code, 0, sent.stderr);
  assertMatch(lines(sent.stdout)[0], AA_LINE);
  const wrong = await runCli([
    ...common,
    "--nats-user",
    "mllp",
    "--nats-password",
    "wrong-pass",
    "--nats-replicas",
    "1",
    FIXTURE,
  ]);
  assertCleanError(wrong, 2, "Cannot connect to NATS at", server);
  assertNotMatch(wrong.stderr, /wrong-pass/);
});

Deno.test("cli nats: NATS flags without --queue nats:// are usage errors, and send --help names them", async () => {
  const stray = await runCli([
    "send",
    "--port",
    "2575",
    "--nats-stream",
    "X",
    FIXTURE,
  ]);
  assertCleanError(stray, 2, "--nats-stream needs --queue nats://host:port");
  const help = await runCli(["send", "--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.stdout, "--queue nats://HOST:PORT[,HOST:PORT...]");
  assertStringIncludes(help.stdout, "--nats-creds FILE");
  assertMatch(help.stdout, /--nats-stream NAME .*\[default: HL7_OUT\]/);
});
