/**
 * The client's log lines state only what happened (issue 15, item 6): no
 * "reconnecting" line from a client that is closed before it reconnects,
 * a reconnection logged once it is made, and "Connected ... with TLS" only
 * for a connection whose handshake the receiver accepted.
 *
 * Logs are captured with a LogTape test sink (`withCapturedLogs`).
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
} from "@std/assert";
import { Client, type ClientEventMap } from "../../src/client/client.ts";
import { ReplyTimeoutError, TlsHandshakeError } from "../../src/errors.ts";
import { EchoDispatcher } from "../../src/dispatch/echo.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { FaultPeer } from "../_fault_peer.ts";
import { deadline, type LogLine, withCapturedLogs } from "../_helpers.ts";

/** Bounds every wait that is not itself under test. */
const TIMEOUT = 5_000;

const SAMPLE = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|LOG-1|P|2.5\r";

/** A port that nothing listens on (it was free a moment ago). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** The next `type` event of a client, bounded in time. */
function nextEvent<K extends keyof ClientEventMap>(
  client: Client,
  type: K,
): Promise<ClientEventMap[K]["detail"]> {
  return deadline(
    new Promise((resolve) =>
      client.addEventListener(type, (event) => resolve(event.detail), {
        once: true,
      })
    ),
    TIMEOUT,
  );
}

/** The client's lines, as text. */
function clientLines(logs: LogLine[]): string[] {
  return logs.filter((line) => line.category[1] === "client").map((line) =>
    line.text
  );
}

/** The lines that say a reconnection is coming or under way. */
function reconnecting(logs: LogLine[]): string[] {
  return clientLines(logs).filter((line) => /reconnect/i.test(line));
}

const tls = {
  cert: "tls/server/server_certificate.pem",
  key: "tls/server/private_key.pem",
  ca: "tls/root-ca/ca_certificate.pem",
};

Deno.test("logs: a client closed while it waits to reconnect never says it is reconnecting", async () => {
  await withCapturedLogs(async (logs) => {
    const client = new Client("127.0.0.1", freePort(), {
      reconnect: { initialDelay: 60_000 },
    });
    await nextEvent(client, "connectfailed");
    await client.close();
    assertEquals(reconnecting(logs), []);
    // What did happen is logged: the attempt failed.
    assert(
      clientLines(logs).some((line) =>
        /Cannot connect to .*attempt 1/.test(line)
      ),
      clientLines(logs).join("\n"),
    );
  });
});

Deno.test("logs: a client closed after a reply timeout does not say it reconnects", async () => {
  await using peer = await FaultPeer.start({ decide: () => "silent" });
  await withCapturedLogs(async (logs) => {
    const client = await Client.connect("127.0.0.1", peer.port, {
      connectTimeout: TIMEOUT,
    });
    const error = await assertRejects(
      () => client.send(SAMPLE, { timeout: 100 }),
    );
    assertInstanceOf(error, ReplyTimeoutError);
    await client.close();
    assertEquals(reconnecting(logs), []);
  });
});

Deno.test("logs: a reconnection is logged once it has been made, with its attempt", async () => {
  await using peer = await FaultPeer.start();
  await withCapturedLogs(async (logs) => {
    await using client = await Client.connect("127.0.0.1", peer.port, {
      connectTimeout: TIMEOUT,
      reconnect: { interval: 20 },
    });
    const refused = nextEvent(client, "connectfailed");
    await peer.stop();
    await refused;
    assertEquals(reconnecting(logs), []);
    const connected = nextEvent(client, "connected");
    await peer.start();
    const { attempt } = await connected;
    assert(attempt > 1);
    assertEquals(reconnecting(logs), [
      `Reconnected to 127.0.0.1:${peer.port} (attempt ${attempt})`,
    ]);
    assertEquals(
      clientLines(logs).filter((line) => line.startsWith("Connected")),
      [`Connected to 127.0.0.1:${peer.port}`],
    );
  });
});

Deno.test("logs: no 'Connected ... with TLS' when the receiver refuses the client's certificate after the handshake", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    tls: { ...tls, verifyPeer: true },
  });
  await withCapturedLogs(async (logs) => {
    // No client certificate: with TLS 1.3 the client finishes its side of
    // the handshake, and the receiver refuses it just after.
    const error = await assertRejects(() =>
      Client.connect("localhost", receiver.port, {
        connectTimeout: TIMEOUT,
        tls: { caCerts: tls.ca },
      })
    );
    assertInstanceOf(error, TlsHandshakeError);
    assertEquals(error.failure, "certificate_required");
    const lines = clientLines(logs);
    assertEquals(lines.filter((line) => /Connected/.test(line)), []);
    assertEquals(reconnecting(logs), []);
    // What did happen is logged: the attempt failed its handshake.
    assert(
      lines.includes(
        `Cannot connect to localhost:${receiver.port} (attempt 1): TLS handshake with localhost:${receiver.port} failed: the server refused: a client certificate is required`,
      ),
      lines.join("\n"),
    );
  });
});

Deno.test("logs: a new Client whose certificate is refused fails its send and never logs a TLS connection", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    tls: { ...tls, verifyPeer: true },
  });
  await withCapturedLogs(async (logs) => {
    const client = new Client("localhost", receiver.port, {
      connectTimeout: TIMEOUT,
      reconnect: { initialDelay: 60_000 },
      tls: {
        caCerts: tls.ca,
        cert: "tls/untrusted-client/client_certificate.pem",
        key: "tls/untrusted-client/private_key.pem",
      },
    });
    const error = await assertRejects(() =>
      client.send(SAMPLE, { timeout: TIMEOUT })
    );
    assertInstanceOf(error, TlsHandshakeError);
    await client.close();
    const lines = clientLines(logs);
    assertEquals(lines.filter((line) => /Connected/.test(line)), []);
    assertEquals(reconnecting(logs), []);
  });
});

Deno.test("logs: a TLS connection the receiver keeps is logged as connected with TLS", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
    tls: { ...tls, verifyPeer: true },
  });
  await withCapturedLogs(async (logs) => {
    await using client = await Client.connect("localhost", receiver.port, {
      connectTimeout: TIMEOUT,
      tls: {
        caCerts: tls.ca,
        cert: "tls/client/client_certificate.pem",
        key: "tls/client/private_key.pem",
      },
    });
    assertEquals((await client.send(SAMPLE)).outcome, "accept");
    assertEquals(
      clientLines(logs).filter((line) => /Connected/.test(line)),
      [`Connected to localhost:${receiver.port} with TLS`],
    );
  });
});
