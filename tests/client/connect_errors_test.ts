/**
 * Connection failures that say what is wrong and fail in time (issue 15,
 * items 10 and 12): a port where nothing listens fails a send within the
 * connect timeout, naming ECONNREFUSED, the address and what to check;
 * a process without net permission gets one line naming the flag, at once.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Client } from "../../src/client/client.ts";
import { ConnectionRefusedError } from "../../src/errors.ts";
import { deadline } from "../_helpers.ts";

const SAMPLE = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|REF-1|P|2.5\r";

/** A port that nothing listens on (it was free a moment ago). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Asserts the message explains a refused connection to `address`. */
function assertExplainsRefusal(message: string, address: string): void {
  assertStringIncludes(message, `Cannot connect to ${address}`);
  assertStringIncludes(message, "ECONNREFUSED");
  assertStringIncludes(message, "check that the receiver is running");
}

Deno.test("refused: Client.connect names ECONNREFUSED, the address and what to check", async () => {
  const port = freePort();
  const error = await assertRejects(
    () => Client.connect("127.0.0.1", port),
    ConnectionRefusedError,
  );
  assertExplainsRefusal(error.message, `127.0.0.1:${port}`);
});

Deno.test("refused: a send on a new Client fails within the connect timeout, not its 60 s reply timeout, with the real cause", async () => {
  const port = freePort();
  await using client = new Client("127.0.0.1", port, {
    connectTimeout: 500,
    reconnect: { initialDelay: 100, jitter: 0 },
  });
  const started = performance.now();
  // The send's own timeout is the default 60 s reply timeout.
  const error: Error = await deadline(
    assertRejects(() => client.send(SAMPLE), ConnectionRefusedError),
    5_000,
  );
  const waited = performance.now() - started;
  assert(
    waited >= 400,
    `failed after ${waited} ms, before the connect timeout`,
  );
  assertStringIncludes(error.message, "not connected within 500 ms");
  assertExplainsRefusal(error.message, `127.0.0.1:${port}`);
});

Deno.test("refused: a send's own shorter timeout still bounds its wait for a connection", async () => {
  const port = freePort();
  await using client = new Client("127.0.0.1", port, {
    reconnect: { initialDelay: 60_000 },
  });
  const error: Error = await deadline(
    assertRejects(
      () => client.send(SAMPLE, { timeout: 200 }),
      ConnectionRefusedError,
    ),
    5_000,
  );
  assertStringIncludes(error.message, "not connected within 200 ms");
  assertExplainsRefusal(error.message, `127.0.0.1:${port}`);
});

/** Runs a script with the permissions given; returns its output. */
async function runScript(
  source: string,
  permissions: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = new URL("./_no_net_client.ts", import.meta.url);
  await Deno.writeTextFile(path, source);
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...permissions, path.pathname],
      cwd: new URL("../../", import.meta.url).pathname,
      stdin: "null",
    }).output();
    return {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
    };
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("no net permission: Client.connect and a send fail at once with one line naming --allow-net=HOST:PORT, -A and -P", async () => {
  const { code, stdout, stderr } = await runScript(
    `
import { Client } from "../../mod.ts";
const started = performance.now();
try {
  await Client.connect("127.0.0.1", 2575);
} catch (error) {
  console.log(JSON.stringify({ name: error.name, message: error.message }));
}
const client = new Client("127.0.0.1", 2575);
try {
  await client.send("MSH|^~\\\\&|A|B|C|D|1||ADT^A01|7|P|2.5\\r");
} catch (error) {
  console.log(JSON.stringify({ name: error.name, message: error.message }));
}
await client.close();
console.log(JSON.stringify({ ms: performance.now() - started }));
`,
    ["--allow-read"],
  );
  assertEquals([code, stderr], [0, ""]);
  const [connect, send, { ms }] = stdout.trim().split("\n").map((line) =>
    JSON.parse(line)
  );
  for (const error of [connect, send]) {
    assertEquals(typeof error.message, "string", JSON.stringify(error));
    assert(!error.message.includes("\n"), error.message);
    assertStringIncludes(error.message, "Cannot connect to 127.0.0.1:2575");
    assertStringIncludes(error.message, "no net permission");
    assertStringIncludes(error.message, "--allow-net=127.0.0.1:2575");
    assertStringIncludes(error.message, "-A");
    assertStringIncludes(error.message, "-P");
  }
  // At once: a permission does not come by waiting for the next attempt.
  assert(ms < 5_000, `took ${ms} ms`);
});
