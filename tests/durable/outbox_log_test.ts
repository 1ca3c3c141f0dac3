/**
 * The outbox's log lines state only what happened (issue 15, item 6): a
 * failed send says the message stays queued, and a retry is logged when
 * it is made, never "trying again in N ms" from an outbox that is stopped
 * before it tries again.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import { KvOutbox } from "../../src/durable/kv_outbox.ts";
import type { OutboxRetryDetail } from "../../src/durable/kv_outbox_types.ts";
import { deadline, type LogLine, withCapturedLogs } from "../_helpers.ts";

const SAMPLE = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|OUT-1|P|2.5\r";

/** A port that nothing listens on (it was free a moment ago). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** The outbox's lines, as text. */
function outboxLines(logs: LogLine[]): string[] {
  return logs.filter((line) => line.category[1] === "outbox").map((line) =>
    line.text
  );
}

Deno.test("outbox logs: stopped on its first retry (as mllp send --queue does), it never says it will try again", async () => {
  const port = freePort();
  await withCapturedLogs(async (logs) => {
    await using outbox = await KvOutbox.open(":memory:", {
      destination: { hostname: "127.0.0.1", port, connectTimeout: 1_000 },
      retry: { initialDelay: 60_000 },
    });
    await outbox.enqueue(SAMPLE);
    const retrying = Promise.withResolvers<OutboxRetryDetail>();
    outbox.addEventListener("retrying", (event) => {
      retrying.resolve(event.detail);
    }, { once: true });
    outbox.start();
    await deadline(retrying.promise, 5_000);
    await outbox.stop();
    const lines = outboxLines(logs);
    assertEquals(
      lines.filter((line) => /again/.test(line)),
      [],
      lines.join("\n"),
    );
    assert(
      lines.some((line) =>
        line.startsWith(
          `Outbox for 127.0.0.1:${port}: cannot send message 1 (OUT-1): `,
        ) && line.endsWith("; it stays queued")
      ),
      lines.join("\n"),
    );
  });
});

Deno.test("outbox logs: a retry is logged when it is made", async () => {
  const port = freePort();
  await withCapturedLogs(async (logs) => {
    await using outbox = await KvOutbox.open(":memory:", {
      destination: { hostname: "127.0.0.1", port, connectTimeout: 1_000 },
      retry: { initialDelay: 10, jitter: 0 },
    });
    await outbox.enqueue(SAMPLE);
    let retries = 0;
    const twice = Promise.withResolvers<void>();
    outbox.addEventListener("retrying", () => {
      if (++retries === 2) twice.resolve();
    });
    outbox.start();
    await deadline(twice.promise, 5_000);
    await outbox.stop();
    const lines = outboxLines(logs);
    assert(
      lines.includes(
        `Outbox for 127.0.0.1:${port}: sending message 1 (OUT-1) again (attempt 2)`,
      ),
      lines.join("\n"),
    );
  });
});
