/**
 * Where a receiver listens when no address is named (loopback for plain
 * TCP, every interface with TLS) and what its start-up line says, and
 * what starting one without Deno's net permission throws: one line that
 * names the flag.
 *
 * Only loopback is used: a receiver bound to 127.0.0.1 refuses 127.0.0.2
 * (another loopback address), one bound to 0.0.0.0 accepts it.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertRejects,
} from "@std/assert";
import { EchoDispatcher } from "../../src/dispatch/dispatcher.ts";
import { formatAddress } from "../../src/net/address.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { type LogLine, withCapturedLogs } from "../_helpers.ts";

const TLS = {
  cert: "tls/server/server_certificate.pem",
  key: "tls/server/private_key.pem",
};

/** Whether a TCP connection to `hostname:port` is accepted. */
async function accepts(hostname: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
}

/** The receiver's start-up line. */
function startLine(logs: LogLine[]): string | undefined {
  return logs.find((line) =>
    line.category.join(".") === "mllp.receiver" &&
    line.text.startsWith("Receiver listening on ")
  )?.text;
}

Deno.test("start: without hostname and without TLS a receiver listens on 127.0.0.1 only, and its start-up line says how to accept other hosts", () =>
  withCapturedLogs(async (logs) => {
    await using receiver = await Receiver.start({
      port: 0,
      dispatcher: EchoDispatcher,
    });
    assertEquals(receiver.address.hostname, "127.0.0.1");
    assertEquals(await accepts("127.0.0.1", receiver.port), true);
    assertEquals(await accepts("127.0.0.2", receiver.port), false);
    assertEquals(
      startLine(logs),
      `Receiver listening on 127.0.0.1:${receiver.port} without TLS: data will pass unencrypted; only this machine can connect (hostname "0.0.0.0" accepts other hosts)`,
    );
  }));

Deno.test('start: hostname "0.0.0.0" without TLS listens on every interface, as named', () =>
  withCapturedLogs(async (logs) => {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "0.0.0.0",
      dispatcher: EchoDispatcher,
    });
    assertEquals(receiver.address.hostname, "0.0.0.0");
    assertEquals(await accepts("127.0.0.2", receiver.port), true);
    assertEquals(
      startLine(logs),
      `Receiver listening on 0.0.0.0:${receiver.port} without TLS: data will pass unencrypted`,
    );
  }));

Deno.test('start: hostname "127.0.0.1", named, gets no hint (the address was chosen)', () =>
  withCapturedLogs(async (logs) => {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: EchoDispatcher,
    });
    assertEquals(
      startLine(logs),
      `Receiver listening on 127.0.0.1:${receiver.port} without TLS: data will pass unencrypted`,
    );
  }));

Deno.test("start: with TLS and without hostname a receiver listens on every interface", () =>
  withCapturedLogs(async (logs) => {
    await using receiver = await Receiver.start({
      port: 0,
      dispatcher: EchoDispatcher,
      tls: TLS,
    });
    assertEquals(receiver.address.hostname, "0.0.0.0");
    assertEquals(await accepts("127.0.0.2", receiver.port), true);
    assertEquals(
      startLine(logs),
      `Receiver listening on ${formatAddress(receiver.address)} with TLS`,
    );
  }));

// --- Without permission --------------------------------------------------------

/** One line that names the flag: no line break, no stack, the flag. */
function assertOneLine(error: Error, flag: string) {
  assert(!error.message.includes("\n"), error.message);
  assert(error.message.includes(flag), error.message);
}

Deno.test({
  name:
    "start: without net permission, Receiver.start throws NotCapable in one line naming --allow-net (plain TCP)",
  permissions: { net: false, read: true },
  async fn() {
    const error = await assertRejects(() =>
      Receiver.start({ port: 0, dispatcher: EchoDispatcher })
    );
    assertInstanceOf(error, Deno.errors.NotCapable);
    assertEquals(
      error.message,
      'Cannot listen on 127.0.0.1:0: no net permission for "127.0.0.1:0"; run Deno with --allow-net=127.0.0.1:0 (or -A for every permission, or -P for the permission set in deno.json)',
    );
    assertOneLine(error, "--allow-net");
  },
});

Deno.test({
  name:
    "start: without net permission, a TLS receiver throws NotCapable from Receiver.start too (not an uncaught error later)",
  permissions: { net: false, read: true },
  async fn() {
    const error = await assertRejects(() =>
      Receiver.start({
        port: 0,
        hostname: "127.0.0.1",
        dispatcher: EchoDispatcher,
        tls: TLS,
      })
    );
    assertInstanceOf(error, Deno.errors.NotCapable);
    assertMatch(
      error.message,
      /^Cannot listen on 127\.0\.0\.1:0: no net permission for "127\.0\.0\.1:0"; run Deno with --allow-net=127\.0\.0\.1:0 \(or -A/,
    );
  },
});

Deno.test({
  name:
    "start: net permission for another address only is not enough, and says so",
  permissions: { net: ["127.0.0.1"], read: true },
  async fn() {
    // 127.0.0.1 is allowed ...
    await using receiver = await Receiver.start({
      port: 0,
      dispatcher: EchoDispatcher,
    });
    assert(receiver.port > 0);
    // ... 0.0.0.0 is not.
    const error = await assertRejects(() =>
      Receiver.start({
        port: 0,
        hostname: "0.0.0.0",
        dispatcher: EchoDispatcher,
      })
    );
    assertInstanceOf(error, Deno.errors.NotCapable);
    assertOneLine(error, "--allow-net");
  },
});
