/**
 * The dispatch path without a socket: `compose` and its contract (order,
 * `next`, failure hooks, a synchronous path staying synchronous), and the
 * receiver's path (`receiverPath`) run over frames with a `PathStream`,
 * where the order of what goes out is the point: release 2 commit frames
 * relative to a store, a store that fails, and one slower than the
 * dispatch timeout.
 *
 * @module
 */

import { assert, assertEquals, assertInstanceOf } from "@std/assert";
import { delay as untypedDelay } from "@std/async/delay";
import { Ack } from "../../src/hl7/ack.ts";
import { type Message, readMessage } from "../../src/hl7/message.ts";
import { EchoDispatcher } from "../../src/dispatch/echo.ts";
import type { MessageStore } from "../../src/dispatch/message_store.ts";
import {
  compose,
  type Exchange,
  type Stage,
} from "../../src/dispatch/stage.ts";
import { PathStream } from "../../src/dispatch/stream.ts";
import type { DispatchContext } from "../../src/dispatch/types.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { type PathOptions, receiverPath } from "../../src/receiver/path.ts";
import { text } from "../_helpers.ts";

const delay: (ms: number) => Promise<void> = untypedDelay;

const HL7 = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|1||ORU^R01|S1|P|2.5\r";

function exchangeOf(message: Message, sent: Uint8Array[] = []): Exchange {
  const ctx: DispatchContext = {
    peer: { hostname: "192.0.2.7", port: 40_001 },
    local: { hostname: "127.0.0.1", port: 2575 },
    context: undefined,
    receivedAt: new Date(),
    signal: new AbortController().signal,
  };
  return { message, ctx, send: (payload) => sent.push(payload) };
}

/** A stage that notes when it runs, before and after the stages below. */
function noting(name: string, seen: string[]): Stage {
  return {
    name,
    handle(exchange, next) {
      seen.push(`${name} in`);
      const reply = next(exchange);
      seen.push(`${name} out`);
      return reply;
    },
    failed(_exchange, reply) {
      seen.push(`${name} failed`);
      return reply;
    },
  };
}

Deno.test("compose runs stages outermost first, the dispatcher last, and failure hooks innermost first", () => {
  const seen: string[] = [];
  const path = compose(
    [noting("a", seen), undefined, noting("b", seen)],
    () => {
      seen.push("dispatcher");
      return "done";
    },
  );
  assertEquals(path.stages, ["a", "b"]);
  const exchange = exchangeOf(readMessage(HL7));
  assertEquals(path.handle(exchange), "done");
  assertEquals(seen, ["a in", "b in", "dispatcher", "b out", "a out"]);
  seen.length = 0;
  assertEquals(path.failed(exchange, "ae"), "ae");
  assertEquals(seen, ["b failed", "a failed"]);
});

Deno.test("the receiver's default path answers a synchronous dispatcher at once, with no promise", () => {
  const path = receiverPath({ ...defaults(), dispatcher: EchoDispatcher });
  assertEquals(path.stages, ["batches (each)", "enhanced mode"]);
  const reply = path.handle(exchangeOf(readMessage(HL7)));
  assertInstanceOf(reply, Ack);
  assertEquals((reply as Ack).code, "AA");
});

Deno.test("the receiver's path with every stage, in order", async () => {
  await using store = await KvMessageStore.open(":memory:");
  const path = receiverPath({
    ...defaults(),
    dispatcher: () => {},
    store,
    mllpRelease: 2,
  });
  assertEquals(path.stages, [
    "release 2 (commit once stored)",
    "batches (each)",
    "enhanced mode (commit once stored)",
    "store",
  ]);
});

Deno.test("release 2 with a store: the commit frame goes out once the message is stored, then the AA", async () => {
  await using kv = await KvMessageStore.open(":memory:");
  const store = gated(kv);
  await using run = pathRun({ store, mllpRelease: 2 });
  run.write(HL7);
  const first = run.read();
  // Nothing may go out while the store has not committed.
  await delay(30);
  assertEquals(store.putting, 1);
  store.open();
  assertEquals(describe(await first), "ACK");
  assert(store.committed, "the commit frame went out before the store");
  assertEquals(describe(await run.read()), "AA S1 Stored");
});

Deno.test("release 2 with a store that fails: the NAK alone, and non-HL7 is committed on arrival", async () => {
  const failing: MessageStore = {
    put: () => Promise.reject(new Error("disk full")),
    consume: () => ({ stop: () => Promise.resolve() }),
  };
  await using run = pathRun({
    store: failing,
    mllpRelease: 2,
    dispatcher: (m) => m.kind === "unknown" ? "pong" : undefined,
  });
  run.write(HL7);
  run.write("ping");
  assertEquals((await run.rest()).map(describe), ["NAK", "ACK", "pong"]);
});

Deno.test("release 2, original mode: a store slower than the dispatch timeout gets the NAK, and no late commit frame", async () => {
  await using kv = await KvMessageStore.open(":memory:");
  const store = gated(kv);
  await using run = pathRun({ store, mllpRelease: 2 }, { dispatchTimeout: 30 });
  run.write(HL7);
  assertEquals(describe(await run.read()), "NAK");
  // The store finishes after the sender was told to resend: nothing more.
  store.open();
  await store.done;
  await delay(0);
  assertEquals((await run.rest()).map(describe), []);
  assertEquals((await kv.stats()).stored, 1);
});

function defaults(): PathOptions<unknown> {
  return {
    dispatcher: EchoDispatcher,
    mllpRelease: 1,
    enhancedMode: true,
    applicationAcks: "connection",
    batches: "each",
    batchAcks: "errors",
  };
}

/** A real store whose `put` waits until `open()`. */
function gated(inner: MessageStore) {
  const gate = Promise.withResolvers<void>();
  const done = Promise.withResolvers<void>();
  const store = {
    putting: 0,
    committed: false,
    done: done.promise,
    open: () => gate.resolve(),
    put: async (entry: Parameters<MessageStore["put"]>[0]) => {
      store.putting++;
      await gate.promise;
      const result = await inner.put(entry);
      store.committed = true;
      done.resolve();
      return result;
    },
    consume: (handler: Parameters<MessageStore["consume"]>[0]) =>
      inner.consume(handler),
  };
  return store;
}

/** The receiver's path over a PathStream, written and read by hand. */
function pathRun(
  options: Partial<PathOptions<unknown>>,
  stream: { dispatchTimeout?: number } = {},
) {
  const path = receiverPath({ ...defaults(), ...options });
  const transform = new PathStream(path, {
    mllpRelease: options.mllpRelease,
    dispatchTimeout: stream.dispatchTimeout,
  });
  const writer = transform.writable.getWriter();
  const reader = transform.readable.getReader();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await writer.close();
  };
  return {
    write: (payload: string) => writer.write(new TextEncoder().encode(payload)),
    async read(): Promise<Uint8Array> {
      const { value, done } = await reader.read();
      if (done) throw new Error("The stream ended");
      return value;
    },
    /** Ends the input and reads what is left. */
    async rest(): Promise<Uint8Array[]> {
      const closing = close();
      const left: Uint8Array[] = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        left.push(value);
      }
      await closing;
      return left;
    },
    async [Symbol.asyncDispose]() {
      await close().catch(() => {});
      await reader.cancel().catch(() => {});
    },
  };
}

/** A reply as a short name: ACK/NAK for commit frames, else code and id. */
function describe(payload: Uint8Array): string {
  if (payload.length === 1 && payload[0] === 0x06) return "ACK";
  if (payload.length === 1 && payload[0] === 0x15) return "NAK";
  const body = text(payload);
  if (!body.startsWith("MSH")) return body;
  const ack = Ack.parse(body);
  return [ack.code, ack.messageControlId, ack.text].filter((s) => s).join(" ");
}
