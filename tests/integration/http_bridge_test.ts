// examples/http_bridge.ts end to end: real MLLP receivers on loopback, the
// bridge's handler served in-process with Deno.serve and, as a child
// process, with `deno serve` and `deno run`, configured by environment
// variables; every request is a real `fetch`.

import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  Ack,
  type DispatchFunction,
  type DispatchReply,
  EchoDispatcher,
  Receiver,
} from "../../mod.ts";
import { fixtureText } from "../_helpers.ts";

type Bridge = typeof import("../../examples/http_bridge.ts");

const ROOT = new URL("../..", import.meta.url);
const BRIDGE = new URL("../../examples/http_bridge.ts", import.meta.url).href;
const LIMIT = 20_000;
let instances = 0;

/**
 * Imports a fresh instance of the example (a query string makes each
 * import a module of its own) with these environment variables set: it
 * reads its configuration and opens its client then, as a script does.
 */
async function importBridge(env: Record<string, string>): Promise<Bridge> {
  const saved = Object.keys(env).map((name) => [name, Deno.env.get(name)]);
  for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
  try {
    return await import(`${BRIDGE}?instance=${++instances}`) as Bridge;
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name!);
      else Deno.env.set(name!, value);
    }
  }
}

function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Serves `handler` on loopback for the test's duration. */
function serve(handler: (request: Request) => Promise<Response>) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A receiver on loopback with this dispatcher. */
function receiver(dispatcher: DispatchFunction | typeof EchoDispatcher) {
  return Receiver.start({ port: 0, hostname: "127.0.0.1", dispatcher });
}

/**
 * The example's own handler and client, configured by environment
 * variables to reach `port`, served on loopback.
 */
async function bridgeTo(
  port: number,
  env: Record<string, string> = {},
): Promise<{ url: string; bridge: Bridge } & AsyncDisposable> {
  const bridge = await importBridge({
    MLLP_HOST: "127.0.0.1",
    MLLP_PORT: String(port),
    ...env,
  });
  const server = serve(bridge.handler);
  return {
    url: server.url,
    bridge,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await bridge.client.close();
    },
  };
}

async function post(
  url: string,
  body: string,
  type = "application/hl7-v2",
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": type },
    body,
  });
  return { status: response.status, body: await response.json() };
}

const SAMPLE = await fixtureText("adt_a01_wikipedia.hl7");

Deno.test("http bridge: the example's handler, configured from the environment, answers 200 with the ACK", async () => {
  await using upstream = await receiver(EchoDispatcher);
  await using server = await bridgeTo(upstream.port);
  assertEquals(server.bridge.client.address, `127.0.0.1:${upstream.port}`);
  // Segments separated by LF, as curl --data-binary sends a text file.
  const { status, body } = await post(
    server.url,
    SAMPLE.replaceAll("\r", "\n") + "\n",
    "application/x-www-form-urlencoded",
  );
  assertEquals(status, 200);
  assertEquals(body.ok, true);
  assertEquals(body.outcome, "accept");
  assertEquals(body.code, "AA");
  assertEquals(body.controlId, "01052901");
  assertEquals(body.text, "A real MLLP message dispatcher was not provided");
  assertMatch(String(body.raw), /^MSH\|.*\rMSA\|AA\|01052901\|/);
  assert(typeof body.roundTripMs === "number");
  // An MLLP-framed body is unwrapped, not refused.
  const framed = await post(server.url, `\x0b${SAMPLE}\x1c\r`, "text/plain");
  assertEquals([framed.status, framed.body.code], [200, "AA"]);
  const state = await fetch(server.url);
  assertEquals(await state.json(), {
    upstream: `127.0.0.1:${upstream.port}`,
    state: "connected",
    queued: 0,
  });
});

Deno.test("http bridge: AR and AE answer 422 with the code", async () => {
  await using upstream = await receiver((message) =>
    message.kind === "hl7"
      ? Ack.forMessage(
        message,
        message.header.controlId === "ERR" ? "AE" : "AR",
        { text: "Unknown patient" },
      )
      : undefined
  );
  await using bridge = await bridgeTo(upstream.port);
  const rejected = await post(bridge.url, SAMPLE);
  assertEquals(rejected.status, 422);
  assertEquals(
    [rejected.body.ok, rejected.body.outcome, rejected.body.code],
    [false, "reject", "AR"],
  );
  assertEquals(rejected.body.text, "Unknown patient");
  const errored = await post(
    bridge.url,
    "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ERR|P|2.5\rPID|1\r",
  );
  assertEquals(errored.status, 422);
  assertEquals([errored.body.code, errored.body.controlId], ["AE", "ERR"]);
});

Deno.test("http bridge: no reply in time is 504, and the next request goes through", async () => {
  const pending: (() => void)[] = [];
  await using upstream = await receiver((message) => {
    if (message.kind === "hl7" && message.header.controlId === "SLOW") {
      const { promise, resolve } = Promise.withResolvers<DispatchReply>();
      pending.push(() => resolve(undefined));
      return promise;
    }
    return message.kind === "hl7" ? Ack.forMessage(message, "AA") : undefined;
  });
  try {
    await using bridge = await bridgeTo(upstream.port, {
      MLLP_TIMEOUT: "200",
    });
    const slow = await post(
      bridge.url,
      "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|SLOW|P|2.5\r",
    );
    assertEquals(slow.status, 504);
    assertEquals(
      [slow.body.ok, slow.body.error, slow.body.reason],
      [false, "upstream_timeout", "timeout"],
    );
    const next = await post(bridge.url, SAMPLE);
    assertEquals(next.status, 200);
  } finally {
    for (const release of pending) release();
  }
});

Deno.test("http bridge: an unreachable receiver is 502, and it recovers when the receiver is back", async () => {
  const port = closedPort();
  await using bridge = await bridgeTo(port);
  const started = performance.now();
  const down = await post(bridge.url, SAMPLE);
  assertEquals(down.status, 502);
  assertEquals(
    [down.body.error, down.body.reason],
    ["upstream_unreachable", "refused"],
  );
  assert(performance.now() - started < 5000, "fails fast");
  await using upstream = await Receiver.start({
    port,
    hostname: "127.0.0.1",
    dispatcher: EchoDispatcher,
  });
  assertEquals(upstream.port, port);
  assertEquals((await post(bridge.url, SAMPLE)).status, 200);
});

Deno.test("http bridge: an ACK for another message is 502", async () => {
  await using upstream = await receiver(() =>
    Ack.forMessage("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|OTHER|P|2.5\r", "AA")
  );
  await using bridge = await bridgeTo(upstream.port);
  const { status, body } = await post(bridge.url, SAMPLE);
  assertEquals(status, 502);
  assertEquals([body.error, body.controlId], ["ack_mismatch", "OTHER"]);
});

Deno.test("http bridge: bad requests are 400, 405, 413 and 415, and nothing is sent", async () => {
  let received = 0;
  await using upstream = await receiver(() => {
    received++;
    return undefined;
  });
  await using bridge = await bridgeTo(upstream.port, {
    BRIDGE_MAX_BYTES: "2000",
  });
  const cases: [string, string, number, string][] = [
    ["", "text/plain", 400, "The body is empty"],
    ["\r\n \n", "text/plain", 400, "The body is empty"],
    ["Hip hip hurray", "text/plain", 400, "it must start with MSH"],
    ["PID|1\rMSH|^~\\&|A\r", "text/plain", 400, "it must start with MSH"],
    [SAMPLE + "\r" + SAMPLE, "text/plain", 400, "several messages"],
    ["MSH|", "text/plain", 400, "Cannot read header"],
    [SAMPLE, "application/json", 415, 'Cannot take "application/json"'],
    [SAMPLE.repeat(3), "text/plain", 413, "larger than 2000 bytes"],
  ];
  for (const [body, type, status, message] of cases) {
    const answer = await post(bridge.url, body, type);
    assertEquals(answer.status, status, `${body.slice(0, 20)}: ${answer.body}`);
    assertEquals(answer.body.ok, false);
    assert(
      String(answer.body.message).includes(message),
      `${answer.body.message} should include ${message}`,
    );
  }
  const put = await fetch(bridge.url, { method: "PUT", body: SAMPLE });
  assertEquals(put.status, 405);
  assertEquals(put.headers.get("allow"), "GET, POST");
  await put.body?.cancel();
  assertEquals(received, 0);
});

/**
 * Runs the example as a child until it prints its URL (on stdout or
 * stderr); returns the URL and a way to stop it.
 */
async function startChild(
  args: string[],
  env: Record<string, string>,
  pattern: RegExp,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const found = Promise.withResolvers<string | undefined>();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output += text;
      const url = output.match(pattern)?.[1];
      if (url) found.resolve(url);
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  drained.then(() => found.resolve(undefined));
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // Exited already.
    }
  };
  const timer = setTimeout(() => kill("SIGKILL"), LIMIT);
  const url = await found.promise;
  clearTimeout(timer);
  const stop = async () => {
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 5000);
    try {
      await child.status;
      await drained;
      return output;
    } finally {
      clearTimeout(timer);
    }
  };
  if (url === undefined) {
    throw new Error(`The bridge did not start:\n${await stop()}`);
  }
  return { url, stop };
}

Deno.test("http bridge: runs with `deno serve` and with `deno run`, configured by environment variables", async () => {
  await using upstream = await receiver(EchoDispatcher);
  const mllp = { MLLP_HOST: "127.0.0.1", MLLP_PORT: String(upstream.port) };
  const served = await startChild(
    [
      "serve",
      "-A",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "examples/http_bridge.ts",
    ],
    { ...mllp, PORT: "" },
    /deno serve: Listening on (http:\/\/127\.0\.0\.1:\d+\/)/,
  );
  let output;
  try {
    const answer = await post(served.url, SAMPLE);
    assertEquals([answer.status, answer.body.code], [200, "AA"]);
  } finally {
    output = await served.stop();
  }
  assertMatch(output, /Connected to 127\.0\.0\.1:\d+/);
  const run = await startChild(
    ["run", "-A", "examples/http_bridge.ts"],
    { ...mllp, PORT: "0", BRIDGE_HOSTNAME: "127.0.0.1" },
    /HTTP bridge on (http:\/\/127\.0\.0\.1:\d+\/) to MLLP 127\.0\.0\.1:\d+/,
  );
  try {
    const answer = await post(run.url, SAMPLE);
    assertEquals([answer.status, answer.body.controlId], [200, "01052901"]);
  } finally {
    await run.stop();
  }
});
