/**
 * One suite, every store: the cases a receiver's `store` must pass whatever
 * it is built on, run as steps of one test per store (so that a server the
 * store needs lives as long as the test). Each store's test file gives a
 * {@linkcode StoreBackend}: how to open handles to one storage (several
 * handles stand for several receivers sharing it) and how to read what
 * each store reports in the same terms.
 *
 * Cases: persist before ACK; a resend answered with the first ACK and
 * dispatched once; empty MSH-10 never a duplicate; one message on two
 * connections at once stored once; parking (AR at once, a failing
 * dispatcher after its attempts); requeue; a 4 MiB message; a store that
 * cannot write answers AE, never AA; two receivers sharing the store
 * dispatch each message once.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import type { Dispatcher } from "../../src/dispatch/dispatcher.ts";
import type {
  MessageStore,
  StoredDispatchContext,
} from "../../src/dispatch/message_store.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { accepted, acked } from "../_helpers.ts";

/** What the suite reads from a store, in the same terms for each. */
export interface ConformingStore extends MessageStore {
  stats(): Promise<{
    stored: number;
    pending: number;
    dispatched: number;
    parked: number;
    duplicates: number;
  }>;
  lookup(
    sendingApplication: string,
    sendingFacility: string,
    controlId: string,
  ): Promise<string | undefined>;
  read(id: string): Promise<Uint8Array>;
  requeue(id: string): Promise<boolean>;
  /** The parked messages' ids and reasons. */
  parkedList(): Promise<{ id: string; reason: string }[]>;
  close(): Promise<void>;
}

/** Options every store's test gives its handles. */
export interface HandleOptions {
  /** Attempts before a failing message is parked. */
  maxAttempts?: number;
}

/** One storage the suite runs against (fresh for each case). */
export interface StoreBackend {
  /** A name for the step titles. */
  name: string;
  /**
   * Makes a fresh, empty storage for one case and returns a function that
   * opens a handle to it (each call: another handle, as another receiver
   * would open).
   */
  fresh(): Promise<(options?: HandleOptions) => Promise<ConformingStore>>;
}

function hl7(controlId: string, app = "SND", fac = "SFAC"): string {
  return `MSH|^~\\&|${app}|${fac}|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 15_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A receiver on a store with a client connected to it. */
async function serve(store: MessageStore, dispatcher: Dispatcher) {
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher,
  });
  const client = await Client.connect("127.0.0.1", receiver.port);
  return {
    receiver,
    client,
    async [Symbol.asyncDispose]() {
      await client.close();
      await receiver.stop();
    },
  };
}

/** A store handle closed at the end of a block. */
function owned(store: ConformingStore): ConformingStore & AsyncDisposable {
  return Object.assign(store, {
    [Symbol.asyncDispose]: () => store.close(),
  });
}

/** The dispatches a dispatcher saw: control id, message id, attempt. */
interface Seen {
  controlId: string;
  messageId: string;
  attempt: number;
}

function recording(
  seen: Seen[],
  answer?: (controlId: string, attempt: number) => unknown,
): Dispatcher {
  return (message, context) => {
    if (message.kind !== "hl7") return;
    const ctx = context as StoredDispatchContext;
    seen.push({
      controlId: message.header.controlId,
      messageId: ctx.messageId,
      attempt: ctx.attempt,
    });
    const reply = answer?.(message.header.controlId, ctx.attempt);
    if (reply instanceof Error) throw reply;
    if (typeof reply === "string") {
      return Ack.forMessage(message, reply as "AR" | "AE", { text: "no" });
    }
  };
}

/** Runs every case against a backend, as steps of test `t`. */
export async function runStoreConformance(
  t: Deno.TestContext,
  backend: StoreBackend,
): Promise<void> {
  const step = (name: string, fn: () => Promise<void>) =>
    t.step(`${backend.name}: ${name}`, fn);

  await step(
    "a message is stored before its AA goes out, then dispatched from the store",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open());
      await using other = owned(await open());
      const seen: Seen[] = [];
      await using s = await serve(store, recording(seen));
      const result = accepted(await s.client.send(hl7("P1")));
      assertEquals(result.ack.text, "Stored");
      // Another handle (another receiver) finds it at once.
      const id = await other.lookup("SND", "SFAC", "P1");
      if (id === undefined) throw new Error("Not stored before its AA");
      assertEquals(
        new TextDecoder().decode(await other.read(id)),
        hl7("P1"),
      );
      await until(() => seen.length === 1, "the dispatch");
      assertEquals(seen, [{ controlId: "P1", messageId: id, attempt: 1 }]);
      await until(
        async () => (await store.stats()).dispatched === 1,
        "the mark",
      );
      const stats = await store.stats();
      assertEquals([stats.stored, stats.pending, stats.parked], [1, 0, 0]);
    },
  );

  await step(
    "a resend gets the first ACK byte for byte and is not dispatched again",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open());
      const seen: Seen[] = [];
      await using s = await serve(store, recording(seen));
      await using again = await Client.connect("127.0.0.1", s.receiver.port);
      const first = accepted(await s.client.send(hl7("D1")));
      const resent = accepted(await again.send(hl7("D1")));
      assertEquals(resent.ack.toString(), first.ack.toString());
      // Another facility's D1 is another message.
      accepted(await s.client.send(hl7("D1", "SND", "OTHER")));
      await until(() => seen.length === 2, "two dispatches");
      await until(
        async () => (await store.stats()).pending === 0,
        "both marked",
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      assertEquals(seen.map((s) => s.controlId).sort(), ["D1", "D1"]);
      assertEquals(new Set(seen.map((s) => s.messageId)).size, 2);
      const stats = await store.stats();
      assertEquals([stats.stored, stats.duplicates], [2, 1]);
    },
  );

  await step(
    "messages with an empty MSH-10 are never taken for duplicates",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open());
      await using s = await serve(store, () => {});
      accepted(await s.client.send(hl7("")));
      accepted(await s.client.send(hl7("")));
      assertEquals((await store.stats()).stored, 2);
    },
  );

  await step(
    "one message on two connections at once is stored once; both get its ACK",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open());
      await using s = await serve(store, () => {});
      await using other = await Client.connect("127.0.0.1", s.receiver.port);
      for (let i = 0; i < 5; i++) {
        const [a, b] = await Promise.all([
          s.client.send(hl7(`RACE-${i}`)),
          other.send(hl7(`RACE-${i}`)),
        ]);
        assertEquals(accepted(a).ack.toString(), accepted(b).ack.toString());
      }
      const stats = await store.stats();
      assertEquals([stats.stored, stats.duplicates], [5, 5]);
    },
  );

  await step(
    "AR from the dispatcher parks at once; a failing dispatcher is parked after its attempts",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open({ maxAttempts: 3 }));
      const seen: Seen[] = [];
      await using s = await serve(
        store,
        recording(seen, (id) => id === "AR-1" ? "AR" : new Error("down")),
      );
      accepted(await s.client.send(hl7("AR-1")));
      accepted(await s.client.send(hl7("FAIL-1")));
      await until(
        async () => (await store.stats()).parked === 2,
        "both parked",
      );
      const parked = await store.parkedList();
      const byId = new Map(parked.map((p) => [p.id, p.reason]));
      const ar = (await store.lookup("SND", "SFAC", "AR-1"))!;
      const fail = (await store.lookup("SND", "SFAC", "FAIL-1"))!;
      assertStringIncludes(byId.get(ar) ?? "", "AR");
      assertStringIncludes(byId.get(fail) ?? "", "Gave up after 3 attempts");
      assertStringIncludes(byId.get(fail) ?? "", "down");
      assertEquals(
        seen.filter((s) => s.controlId === "AR-1").map((s) => s.attempt),
        [1],
      );
      assertEquals(
        seen.filter((s) => s.controlId === "FAIL-1").map((s) => s.attempt),
        [1, 2, 3],
      );
      const stats = await store.stats();
      assertEquals([stats.stored, stats.pending, stats.parked], [2, 0, 2]);
    },
  );

  await step(
    "requeue puts a parked message back; it is dispatched with the same id",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open({ maxAttempts: 1 }));
      const seen: Seen[] = [];
      let fixed = false;
      await using s = await serve(
        store,
        recording(seen, () => fixed ? undefined : new Error("down")),
      );
      accepted(await s.client.send(hl7("RQ-1")));
      await until(async () => (await store.stats()).parked === 1, "parked");
      const id = (await store.lookup("SND", "SFAC", "RQ-1"))!;
      assertEquals((await store.parkedList()).map((p) => p.id), [id]);
      fixed = true;
      assertEquals(await store.requeue(id), true);
      assertEquals(await store.requeue(id), false); // not parked any more
      assertEquals(await store.requeue("no-such-id"), false);
      await until(() => seen.length === 2, "the second dispatch");
      assertEquals(seen.map((s) => [s.messageId, s.attempt]), [[id, 1], [
        id,
        1,
      ]]);
      await until(async () => (await store.stats()).pending === 0, "done");
      const stats = await store.stats();
      assertEquals([stats.stored, stats.parked, stats.dispatched], [1, 0, 1]);
      assertEquals(await store.parkedList(), []);
    },
  );

  await step(
    "a 4 MiB message is stored and read back exactly; its resend is not stored again",
    async () => {
      const open = await backend.fresh();
      await using store = owned(await open());
      const got: Uint8Array[] = [];
      await using s = await serve(store, (message) => {
        got.push(message.raw);
      });
      const header = new TextEncoder().encode(hl7("BIG-1"));
      const big = new Uint8Array(4 * 1024 * 1024);
      big.set(header);
      for (let i = header.length; i < big.length; i++) {
        big[i] = i % 997 === 0 ? 0x0d : 0x20 + (i * 7919) % 95;
      }
      accepted(await s.client.send(big));
      const id = (await store.lookup("SND", "SFAC", "BIG-1"))!;
      assert(id);
      assertEquals(await store.read(id), big);
      await until(() => got.length === 1, "the dispatch");
      assertEquals(got[0], big);
      accepted(await s.client.send(big));
      const stats = await store.stats();
      assertEquals([stats.stored, stats.duplicates], [1, 1]);
    },
  );

  await step("a store that cannot write answers AE, never AA", async () => {
    const open = await backend.fresh();
    const store = await open();
    const seen: Seen[] = [];
    await using s = await serve(store, recording(seen));
    accepted(await s.client.send(hl7("OK-1")));
    await store.close();
    const failed = acked(await s.client.send(hl7("LOST-1")));
    assertEquals(failed.code, "AE");
    assertStringIncludes(failed.ack.text, "Cannot store message");
    await using check = owned(await open());
    assertEquals(await check.lookup("SND", "SFAC", "LOST-1"), undefined);
  });

  await step(
    "two receivers sharing the store dispatch each message once",
    async () => {
      const open = await backend.fresh();
      await using a = owned(await open());
      await using b = owned(await open());
      const seen: Seen[] = [];
      await using ra = await serve(a, recording(seen));
      await using rb = await serve(b, recording(seen));
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < 40; i++) {
        const via = i % 2 === 0 ? ra.client : rb.client;
        sends.push(via.send(hl7(`SH-${i}`)).then(accepted));
      }
      await Promise.all(sends);
      await until(() => seen.length >= 40, "40 dispatches");
      await until(async () => (await a.stats()).pending === 0, "all marked");
      await new Promise((resolve) => setTimeout(resolve, 200));
      assertEquals(seen.length, 40);
      assertEquals(new Set(seen.map((s) => s.messageId)).size, 40);
      assertEquals((await b.stats()).dispatched, 40);
    },
  );
}
