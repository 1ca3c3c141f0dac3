/**
 * The command line's durable delivery, run in-process with `main()`:
 * `listen --store PATH` and `send --queue PATH`.
 *
 * @module
 */

import { assertEquals, assertMatch } from "@std/assert";
import { Client } from "../../src/client/client.ts";
import { main, type SyncWriter } from "../../src/cli.ts";
import { EchoDispatcher } from "../../src/dispatch/dispatcher.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { accepted } from "../_helpers.ts";

const FIXTURE = "tests/fixtures/adt_a01_wikipedia.hl7";
const ORU = "tests/fixtures/oru_r01_lab.hl7";

function sink(): SyncWriter & { text: () => string } {
  let text = "";
  return {
    writeSync(data: Uint8Array): number {
      text += new TextDecoder().decode(data);
      return data.length;
    },
    text: () => text,
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

async function withTempDir(run: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "mllp-cli-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cli: listen --store stores each message once and answers a resend with the stored ACK", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/in.sqlite`;
    const port = freePort();
    const stop = new AbortController();
    const stderr = sink();
    const running = main(
      [
        "listen",
        "--port",
        String(port),
        "--hostname",
        "127.0.0.1",
        "--store",
        path,
      ],
      { stderr, signal: stop.signal, configureLogging: false },
    );
    try {
      let client: Client | undefined;
      for (let tries = 0; !client; tries++) {
        try {
          client = await Client.connect("127.0.0.1", port);
        } catch (error) {
          if (tries > 200) throw error;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      const message = await Deno.readTextFile(FIXTURE);
      const first = accepted(await client.send(message.replaceAll("\n", "\r")));
      const again = accepted(await client.send(message.replaceAll("\n", "\r")));
      await client.close();
      assertEquals(first.ack.text, "Stored");
      assertEquals(again.ack.toString(), first.ack.toString());
    } finally {
      stop.abort();
      assertEquals(await running, 0, stderr.text());
    }
    await using store = await KvMessageStore.open(path);
    const stats = await store.stats();
    assertEquals([stats.stored, stats.duplicates], [1, 1]);
  });
});

Deno.test("cli: listen --store with a store that cannot be opened is exit status 2", async () => {
  const stderr = sink();
  const status = await main(
    ["listen", "--port", "0", "--store", "/nonexistent-dir/x/store.sqlite"],
    { stderr, configureLogging: false },
  );
  assertEquals(status, 2);
  assertMatch(stderr.text(), /^error: Cannot open store "/);
});

Deno.test("cli: send --queue delivers, stops at a transport failure leaving the rest queued, and a later run delivers them", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/out.sqlite`;
    {
      await using receiver = await Receiver.start({
        port: 0,
        hostname: "127.0.0.1",
        dispatcher: EchoDispatcher,
      });
      const stdout = sink();
      const status = await main(
        [
          "send",
          "--port",
          String(receiver.port),
          "--queue",
          path,
          FIXTURE,
          ORU,
        ],
        { stdout, configureLogging: false },
      );
      assertEquals(status, 0);
      const lines = stdout.text().trim().split("\n");
      assertMatch(lines[0], /^01052901 AA \d+\.\d ms$/);
      // The ORU asks for enhanced mode (MSH-15 AL): its commit ACK.
      assertMatch(lines[1], /^LAB000917 CA \d+\.\d ms$/);
    }
    const port = freePort();
    const stderr = sink();
    const down = await main(
      [
        "send",
        "--port",
        String(port),
        "--timeout",
        "2000",
        "--queue",
        path,
        FIXTURE,
        ORU,
      ],
      { stderr, configureLogging: false },
    );
    assertEquals(down, 2);
    assertMatch(
      stderr.text(),
      /error: .*adt_a01_wikipedia\.hl7: Cannot connect/,
    );
    assertMatch(stderr.text(), /2 message\(s\) remain queued/);
    await using _receiver = await Receiver.start({
      port,
      hostname: "127.0.0.1",
      dispatcher: EchoDispatcher,
    });
    const stdout = sink();
    const later = await main(
      ["send", "--port", String(port), "--queue", path],
      { stdout, stderr: sink(), configureLogging: false },
    );
    assertEquals(later, 0);
    const lines = stdout.text().trim().split("\n");
    assertEquals(lines.map((l) => l.split(" ")[0]), ["01052901", "LAB000917"]);
    // The ORU asks for enhanced mode (MSH-15 AL): its commit ACK.
    assertEquals(lines.map((l) => l.split(" ")[1]), ["AA", "CA"]);
  });
});
