// `mllp send`'s summary: messages written, answered and accepted are told
// apart (a receiver that got nothing, or answered nothing, is never "sent
// 1 of 1"), and with --rate N its msg/s agrees with the cap.

import { assert, assertEquals, assertMatch, assertNotMatch } from "@std/assert";
import { Ack, type DispatchReply, Receiver } from "../../mod.ts";
import {
  closedPort,
  FIXTURE,
  lines,
  ROOT_CA,
  runCli,
  SERVER_TLS,
  startListen,
} from "./_helpers.ts";

Deno.test("cli send's summary says written 0 when the receiver got nothing", async () => {
  // A receiver that requires a client certificate: the handshake fails.
  await using tls = await startListen([
    ...SERVER_TLS,
    ...ROOT_CA,
    "--verify-peer",
  ]);
  const [refused, handshake] = await Promise.all([
    runCli(["send", "--port", String(closedPort()), FIXTURE]),
    runCli([
      "send",
      "--host",
      "localhost",
      "--port",
      String(tls.port),
      ...ROOT_CA,
      FIXTURE,
    ]),
  ]);
  assertEquals(refused.code, 2, refused.stderr);
  assertMatch(
    refused.stderr,
    /^written 0 of 1, answered 0, accepted 0 in .*errors 1$/m,
  );
  // With TLS 1.3 the server may refuse the client's certificate after
  // the client has written its first frame (the client then sees the
  // connection close): written, but never answered.
  assertEquals(handshake.code, 2, handshake.stderr);
  assertMatch(
    handshake.stderr,
    /^written [01] of 1, answered 0, accepted 0 in .*errors 1$/m,
  );
  for (const output of [refused, handshake]) {
    assertNotMatch(output.stderr, /sent 1 of 1/);
  }
});

Deno.test("cli send's summary says answered 0 when no reply came", async () => {
  const pending: (() => void)[] = [];
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: () => {
      const { promise, resolve } = Promise.withResolvers<DispatchReply>();
      pending.push(() => resolve(undefined));
      return promise;
    },
  });
  try {
    const port = String(receiver.port);
    const args = ["send", "--port", port, "--timeout", "200", FIXTURE];
    const [text, json] = await Promise.all([
      runCli(args),
      runCli([...args, "--json"]),
    ]);
    assertEquals(text.code, 2, text.stderr);
    assertMatch(
      text.stderr,
      /^written 1 of 1, answered 0, accepted 0 in .*timeouts 1$/m,
    );
    assertNotMatch(text.stderr, /sent 1 of 1/);
    const summary = JSON.parse(lines(json.stdout).at(-1)!);
    assertEquals(
      [summary.total, summary.written, summary.answered, summary.accepted],
      [1, 1, 0, 0],
    );
  } finally {
    for (const release of pending) release();
    await receiver.stop();
  }
});

Deno.test("cli send --rate N: the summary's msg/s agrees with the cap", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_send_rate_" });
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (message) => Ack.forMessage(message, "AA"),
  });
  const arrivals: number[] = [];
  receiver.addEventListener("dispatch", () => arrivals.push(performance.now()));
  try {
    const file = `${dir}/three.hl7`;
    await Deno.writeTextFile(
      file,
      ["R1", "R2", "R3"].map((id) =>
        `MSH|^~\\&|A|B|C|D|20240101||ADT^A01|${id}|P|2.5\r`
      ).join(""),
    );
    const port = String(receiver.port);
    const text = await runCli([
      "send",
      "--port",
      port,
      "--rate",
      "4",
      "--progress",
      file,
    ]);
    const json = await runCli([
      "send",
      "--port",
      port,
      "--rate",
      "4",
      "--json",
      file,
    ]);
    assertEquals(text.code, 0, text.stderr);
    assertEquals(json.code, 0, json.stderr);
    // The cap holds: half a second from the first message to the third
    // (less a little: the first may arrive late, behind the connection).
    assertEquals(arrivals.length, 6);
    for (const first of [0, 3]) {
      assert(arrivals[first + 2] - arrivals[first] >= 440, `${arrivals}`);
    }
    // Three messages at 4 a second take three quarters of a second (a
    // little more when timers fire late on a busy machine; the rate was
    // counted over two quarters before, above 5 msg/s).
    const match = text.stderr.match(
      /^written 3 of 3, answered 3, accepted 3 in (\d+\.\d\d) s \(([\d.]+) msg\/s\)/m,
    );
    if (!match) throw new Error(`No summary in:\n${text.stderr}`);
    const [seconds, rate] = [Number(match[1]), Number(match[2])];
    assert(rate <= 4 && rate >= 3.5, `${rate} msg/s with --rate 4`);
    assert(Math.abs(seconds * rate - 3) < 0.05, `${seconds} s, ${rate} msg/s`);
    // The bar's last rate agrees too.
    const bar = text.stderr.match(/3\/3 {2}100% {2}([\d.]+) msg\/s/);
    if (!bar) throw new Error(`No bar in:\n${text.stderr}`);
    assert(Number(bar[1]) <= 4, `bar: ${bar[1]} msg/s`);
    const summary = JSON.parse(lines(json.stdout).at(-1)!);
    assert(
      summary.ratePerSecond <= 4 && summary.ratePerSecond >= 3.5,
      `${summary.ratePerSecond} msg/s with --rate 4`,
    );
    assert(summary.elapsedMs >= 740, `${summary.elapsedMs} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
