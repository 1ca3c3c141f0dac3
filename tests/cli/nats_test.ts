/**
 * `mllp listen --store nats://...`, the real command line against real
 * `nats-server` nodes on loopback: it stores in JetStream before it
 * acknowledges, answers a resend from the stream, logs a lost NATS
 * connection and answers AE while it lasts (never AA), and connects with
 * a user and password, an nkey seed file, and TLS to NATS checked against
 * a CA; bad credentials or files are a one-line error and exit status 2.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertStringIncludes,
} from "@std/assert";
import { nkeys } from "@nats-io/transport-node";
import { JetStreamMessageStore } from "../../src/durable/jetstream.ts";
import { startNatsCluster, waitFor } from "../_nats.ts";
import {
  assertAccepted,
  assertCleanError,
  lines,
  ROOT,
  runCli,
  sendFixture,
  STACK_TRACE,
  startListen,
} from "./_helpers.ts";

const FIXTURE_TEXT = await Deno.readTextFile(
  new URL("tests/fixtures/adt_a01_wikipedia.hl7", ROOT),
);

/** The fixture with another MSH-10. */
function withControlId(id: string): string {
  return FIXTURE_TEXT.replace("|01052901|", `|${id}|`);
}

/** Runs `mllp send --port PORT -` with a message on stdin. */
function sendText(port: number, text: string) {
  return runCli(
    ["send", "--port", String(port), "--timeout", "8000", "-"],
    text,
  );
}

Deno.test("cli nats: listen --store nats:// stores once before AA, answers a resend from the stream; NATS lost is logged and answered AE; back, AA again", async () => {
  await using cluster = await startNatsCluster();
  const listening = await startListen([
    "--store",
    cluster.servers.join(","),
    "--nats-stream",
    "CLI_IN",
    "--nats-consumer",
    "cli",
    "--nats-replicas",
    "3",
  ]);
  let stderr = "";
  try {
    assertAccepted(await sendFixture(listening.port, []));
    assertAccepted(await sendFixture(listening.port, []));
    {
      await using store = await JetStreamMessageStore.open(cluster.servers, {
        stream: "CLI_IN",
        consumer: "cli",
      });
      await waitFor(
        async () => (await store.stats()).pending === 0,
        "dispatch",
      );
      const stats = await store.stats();
      assertEquals([stats.stored, stats.dispatched], [1, 1]);
      assertEquals(await store.lookup("MegaReg", "XYZHospC", "01052901"), "1");
    }
    // Every node gone: the receiver cannot store, so it must not ACK.
    for (const index of cluster.running) await cluster.kill(index);
    const down = await sendText(listening.port, withControlId("DOWN-1"));
    assertEquals(down.code, 1, down.stderr);
    assertMatch(lines(down.stdout)[0], /^DOWN-1 AE /);
    // At once, not after the publish timeout (5 s): the store knows the
    // connection is lost.
    const ms = Number(/ AE ([\d.]+) ms/.exec(down.stdout)?.[1]);
    assert(ms < 2_000, `AE after ${ms} ms`);
    assertStringIncludes(down.stdout, "Cannot store message");
    // Back: the same message is stored and ACKed.
    for (const node of cluster.nodes) await cluster.start(node.index);
    await cluster.waitReady();
    await waitFor(
      async () => {
        const again = await sendText(listening.port, withControlId("DOWN-1"));
        return again.code === 0 && /^DOWN-1 AA /.test(again.stdout);
      },
      "AA once NATS is back",
      30_000,
      500,
    );
  } finally {
    const output = await listening.stop();
    stderr = output.stderr;
    assertEquals(output.code, 0, stderr);
  }
  assertStringIncludes(stderr, "Lost the connection to NATS");
  assertStringIncludes(stderr, "Reconnected to NATS");
  assertNotMatch(stderr, STACK_TRACE);
});

Deno.test("cli nats: user and password, nkey seed file, TLS checked against a CA; wrong credentials or no CA are exit status 2 with one line", async () => {
  const user = nkeys.createUser();
  const dir = await Deno.makeTempDir({ prefix: "mllp-cli-nats-" });
  try {
    const seedFile = `${dir}/user.nk`;
    await Deno.writeTextFile(
      seedFile,
      new TextDecoder().decode(user.getSeed()) + "\n",
    );
    const tls = new URL("tls/server/", ROOT).pathname;
    await using cluster = await startNatsCluster({
      nodes: 1,
      extraConfig: [
        `authorization {`,
        `  users: [`,
        `    { user: "mllp", password: "s3cret" }`,
        `    { nkey: "${user.getPublicKey()}" }`,
        `  ]`,
        `}`,
        `tls {`,
        `  cert_file: "${tls}server_certificate.pem"`,
        `  key_file: "${tls}private_key.pem"`,
        `}`,
      ].join("\n"),
    });
    const [server] = cluster.servers;
    const common = [
      "--nats-replicas",
      "1",
      "--nats-ca",
      "tls/root-ca/ca_certificate.pem",
    ];
    // A user and password in the URL.
    {
      const url = server.replace("nats://", "nats://mllp:s3cret@");
      await using listening = await startListen(["--store", url, ...common]);
      assertAccepted(await sendFixture(listening.port, []));
    }
    // An nkey seed file.
    {
      await using listening = await startListen([
        "--store",
        server,
        "--nats-nkey",
        seedFile,
        ...common,
      ]);
      const sent = await sendText(listening.port, withControlId("NK-1"));
      assertEquals(sent.code, 0, sent.stderr);
      assertMatch(sent.stdout, /^NK-1 AA /);
    }
    // A wrong password: exit 2, one line, no password in it.
    const wrong = await runCli([
      "listen",
      "--port",
      "0",
      "--store",
      server,
      "--nats-user",
      "mllp",
      "--nats-password",
      "wrong-pass",
      ...common,
    ]);
    assertCleanError(wrong, 2, "Cannot connect to NATS at");
    assertNotMatch(wrong.stderr, /wrong-pass/);
    // No CA: the server's certificate cannot be checked.
    const noCa = await runCli([
      "listen",
      "--port",
      "0",
      "--store",
      server,
      "--nats-user",
      "mllp",
      "--nats-password",
      "s3cret",
      "--nats-replicas",
      "1",
    ]);
    assertCleanError(noCa, 2, "Cannot connect to NATS at");
    // A seed file that is not there.
    const missing = await runCli([
      "listen",
      "--port",
      "0",
      "--store",
      server,
      "--nats-nkey",
      `${dir}/missing.nk`,
      ...common,
    ]);
    assertCleanError(missing, 2, "Cannot read the NATS nkey seed file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli nats: NATS flags without --store nats://, two credentials, or a bad URL are usage errors", async () => {
  const stray = await runCli(["listen", "--port", "0", "--nats-user", "u"]);
  assertCleanError(stray, 2, "--nats-user needs --store nats://host:port");
  const two = await runCli([
    "listen",
    "--port",
    "0",
    "--store",
    "nats://u:p@127.0.0.1:4222",
    "--nats-token",
    "t",
  ]);
  assertCleanError(two, 2, "Give one NATS credential");
  const bad = await runCli([
    "listen",
    "--port",
    "0",
    "--store",
    "nats://127.0.0.1:4222/path",
  ]);
  assertCleanError(bad, 2, 'Invalid --store "nats://127.0.0.1:4222/path"');
  const replicas = await runCli([
    "listen",
    "--port",
    "0",
    "--store",
    "nats://127.0.0.1:4222",
    "--nats-replicas",
    "2",
  ]);
  assertCleanError(replicas, 2, 'Invalid --nats-replicas "2"');
});
