/**
 * Enhanced acknowledgment mode (MSH-15 / MSH-16), on real sockets: every
 * combination of AL / NE / ER / SU / empty for an accepting and an
 * erroring dispatcher, at the wire (a raw peer reading frames by hand) and
 * through the Client (commit ACK as the result, application ACK later);
 * application ACKs delivered through a function; original mode unchanged.
 *
 * The expected frames are worked out here from HL7 table 0155, not with
 * the library's own rules.
 */

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import { Client } from "../../src/client/client.ts";
import type { Dispatcher } from "../../src/dispatch/dispatcher.ts";
import type { Hl7Message, Message } from "../../src/hl7/message.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import { RawConn } from "../_raw_frames.ts";
import { acked, deadline } from "../_helpers.ts";

const CONDITIONS = ["AL", "NE", "ER", "SU", ""] as const;
type Condition = typeof CONDITIONS[number];

let counter = 0;

function message(accept: string, application: string, id?: string): string {
  const controlId = id ?? `E${++counter}`;
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5|||${accept}|${application}\rPID|1||42\r`;
}

function controlIdOf(text: string): string {
  return text.split("\r")[0].split("|")[9];
}

/** Whether an ACK with `code` is sent under `condition` (table 0155; blank: AL). */
function sent(condition: Condition, code: string): boolean {
  switch (condition) {
    case "":
    case "AL":
      return true;
    case "NE":
      return false;
    case "ER":
      return code[1] !== "A";
    case "SU":
      return code[1] === "A";
  }
}

/** The frames a receiver should send for a message, in order. */
function expectedFrames(
  accept: Condition,
  application: Condition,
  appCode: "AA" | "AE",
  id: string,
): string[] {
  if (accept === "" && application === "") return [`${appCode} ${id}`];
  const frames: string[] = [];
  if (sent(accept, "CA")) frames.push(`CA ${id}`);
  if (sent(application, appCode)) frames.push(`${appCode} ${id}`);
  return frames;
}

const accepting: Dispatcher = (m) => Ack.forMessage(m, "AA");
const erroring: Dispatcher = () => {
  throw new Error("Cannot file the result");
};

for (
  const [name, dispatcher, appCode] of [
    ["accepting", accepting, "AA"],
    ["erroring", erroring, "AE"],
  ] as const
) {
  Deno.test(`every MSH-15 x MSH-16 on the wire, ${name} dispatcher`, async () => {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher,
    });
    await using peer = await RawConn.connect(receiver.port);
    for (const accept of CONDITIONS) {
      for (const application of CONDITIONS) {
        const text = message(accept, application);
        const id = controlIdOf(text);
        // An original-mode message after it: its ACK ends what belongs
        // to the first (replies keep the order of the messages).
        const sentinel = message("", "", `S${id}`);
        await peer.send(text);
        await peer.send(sentinel);
        const frames = await peer.until((f) => f.endsWith(` S${id}`));
        assertEquals(
          frames.slice(0, -1),
          expectedFrames(accept, application, appCode, id),
          `MSH-15 "${accept}" MSH-16 "${application}"`,
        );
      }
    }
  });

  Deno.test(`every MSH-15 x MSH-16 through the Client, ${name} dispatcher`, async () => {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher,
    });
    // Where an application ACK must come, a client that waits for it
    // longer than a busy machine needs; where none may come, one that
    // stops waiting soon (silence is certain there, so nothing races).
    await using patient = await Client.connect("127.0.0.1", receiver.port, {
      replyTimeout: 10_000,
      applicationAckTimeout: 10_000,
    });
    await using brief = await Client.connect("127.0.0.1", receiver.port, {
      replyTimeout: 10_000,
      applicationAckTimeout: 300,
    });
    for (const accept of CONDITIONS) {
      for (const application of CONDITIONS) {
        const label = `MSH-15 "${accept}" MSH-16 "${application}"`;
        const text = message(accept, application);
        const id = controlIdOf(text);
        const frames = expectedFrames(accept, application, appCode, id);
        const expectedApp = frames.find((f) => f.startsWith("A"));
        const client = expectedApp === undefined ? brief : patient;
        if (accept === "NE" && application === "NE") {
          await assertRejects(() => client.send(text), TypeError, "both NE");
          continue;
        }
        if (frames.length === 0) {
          // Nothing comes back, as MSH-15/16 allow: the send reports
          // silence, which means success when only errors are reported
          // (ER/NE), failure when only successes are (SU).
          const silent = await client.send(text, { timeout: 300 });
          const means = accept === "SU" || application === "SU"
            ? "not_accepted"
            : "accepted";
          assertEquals(
            silent.outcome === "silent" && [silent.ok, silent.means],
            [means === "accepted", means],
            label,
          );
          continue;
        }
        const result = acked(await client.send(text));
        assertEquals(
          `${result.code} ${result.ack.messageControlId}`,
          frames[0],
          label,
        );
        if (accept === "" && application === "") {
          assertEquals(result.applicationAck, undefined, label);
          continue;
        }
        assert(result.applicationAck, label);
        const application_ = await result.applicationAck;
        assertEquals(
          application_ &&
            `${application_.code} ${application_.messageControlId}`,
          expectedApp,
          label,
        );
      }
    }
  });
}

Deno.test("pipelined sends: the application ACK of an earlier message is routed to it", async () => {
  const release = Promise.withResolvers<void>();
  let first = true;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (m) => {
      // The first message's application ACK is held back until the second
      // message has been sent.
      if (first) {
        first = false;
        await release.promise;
      }
      return Ack.forMessage(m, "AA", { text: "Filed" });
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const one = acked(await client.send(message("AL", "AL", "P1")));
  assertEquals(one.outcome === "accept" && one.code, "CA");
  // The second send goes out while the first's application ACK is due;
  // the second's commit ACK can only come after it (one dispatch at a time
  // per connection), so the frames arrive as AA P1, CA P2, AA P2.
  const sending = client.send(message("AL", "AL", "P2"));
  release.resolve();
  const two = acked(await sending);
  assertEquals(two.outcome === "accept" && two.code, "CA");
  assertEquals(two.outcome === "accept" && two.ack.messageControlId, "P2");
  const [app1, app2] = await Promise.all([
    one.applicationAck,
    two.applicationAck,
  ]);
  assertEquals([app1?.code, app1?.messageControlId, app1?.text], [
    "AA",
    "P1",
    "Filed",
  ]);
  assertEquals([app2?.code, app2?.messageControlId], ["AA", "P2"]);
  assertEquals(client.isConnected, true);
});

Deno.test("an application ACK after applicationAckTimeout is dropped, not taken for the next reply", async () => {
  const gate = Promise.withResolvers<void>();
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: async (m) => {
      if (m.kind === "hl7" && m.header.controlId === "T1") await gate.promise;
      return Ack.forMessage(m, "AA");
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    applicationAckTimeout: 100,
  });
  let closed = 0;
  client.addEventListener("closed", () => closed++);
  const one = acked(await client.send(message("AL", "AL", "T1")));
  assertEquals(one.code, "CA");
  assertEquals(await one.applicationAck, undefined);
  // Now the AA for T1 comes, ahead of the reply to T2.
  gate.resolve();
  const two = acked(await client.send(message("", "", "T2")));
  assertEquals([two.code, two.ack.messageControlId], ["AA", "T2"]);
  assertEquals([client.isConnected, closed], [true, 0]);
});

Deno.test("application ACKs through a function, delivered on another connection", async () => {
  // The sender's own receiver, which gets the application ACKs.
  const arrived: string[] = [];
  const done = Promise.withResolvers<void>();
  await using senderSide = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => {
      arrived.push(m.text.split("\r")[1]);
      done.resolve();
      return Ack.forMessage(m, "AA");
    },
  });
  await using back = await Client.connect("127.0.0.1", senderSide.port);
  const handed: Hl7Message[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => Ack.forMessage(m, "AA", { text: "Filed" }),
    applicationAcks: async (ack, m) => {
      handed.push(m);
      await back.send(ack.toString());
    },
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("AL", "AL", "CB1"));
  await peer.send(message("", "", "CB2"));
  // Only the commit ACK on this connection, then the sentinel's AA.
  assertEquals(await peer.until((f) => f.endsWith("CB2")), [
    "CA CB1",
    "AA CB2",
  ]);
  await deadline(done.promise, 10_000);
  assertEquals(arrived, ["MSA|AA|CB1|Filed"]);
  assertEquals(handed.map((m) => m.header.controlId), ["CB1"]);
});

Deno.test("a dispatcher answering a commit code in enhanced mode gets AE", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => Ack.forMessage(m, "CA"),
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("AL", "AL", "W1"));
  await peer.send(message("", "", "W2"));
  assertEquals(await peer.until((f) => f.endsWith("W2")), [
    "CA W1",
    "AE W1",
    "CA W2", // original mode: the dispatcher's answer as it is
  ]);
});

Deno.test("MSH-15/16 outside table 0155 get CR and no dispatch", async () => {
  let dispatched = 0;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => {
      dispatched++;
      return Ack.forMessage(m, "AA");
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const result = acked(await client.send(message("AL", "XX", "R1")));
  assertEquals(result.outcome, "reject");
  assertEquals(result.code, "CR");
  assertStringIncludes(result.ack.text, 'MSH-16 "XX"');
  assertEquals(await result.applicationAck, undefined);
  assertEquals(dispatched, 0);
});

Deno.test("original mode is unchanged: one AA, no applicationAck", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: accepting,
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("", "", "O1"));
  await peer.send(message("", "", "O2"));
  assertEquals(await peer.until((f) => f.endsWith("O2")), ["AA O1", "AA O2"]);
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const result = await client.send(message("", "", "O3"));
  assertEquals(result.outcome === "accept" && result.code, "AA");
  assertEquals("applicationAck" in result, false);
});

Deno.test("enhancedMode: false answers every message in original mode", async () => {
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: accepting,
    enhancedMode: false,
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("AL", "NE", "X1"));
  await peer.send(message("", "", "X2"));
  assertEquals(await peer.until((f) => f.endsWith("X2")), ["AA X1", "AA X2"]);
});

Deno.test("with a store: CA once stored, a resend gets CA again, the application ACK comes from the consumer", async () => {
  await using store = await KvMessageStore.open(":memory:");
  const acks: Ack[] = [];
  const delivered = Promise.withResolvers<void>();
  let dispatched = 0;
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store,
    dispatcher: (m) => {
      dispatched++;
      return Ack.forMessage(m, "AA", { text: "Filed" });
    },
    applicationAcks: (ack) => {
      acks.push(ack);
      delivered.resolve();
    },
  });
  await using peer = await RawConn.connect(receiver.port);
  await peer.send(message("AL", "AL", "K1"));
  await peer.send(message("AL", "AL", "K1")); // a resend
  await peer.send(message("", "", "K2"));
  assertEquals(await peer.until((f) => f.endsWith("K2")), [
    "CA K1",
    "CA K1",
    "AA K2",
  ]);
  await deadline(delivered.promise, 10_000);
  assertEquals(acks.map((a) => [a.code, a.messageControlId, a.text]), [
    ["AA", "K1", "Filed"],
  ]);
  assertEquals(dispatched >= 1, true);
});

Deno.test("a failing store: CE per MSH-15, no application ACK", async () => {
  const failing = {
    put: () => Promise.reject(new Error("disk full")),
    consume: () => ({ stop: () => Promise.resolve() }),
  };
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    store: failing,
    dispatcher: accepting,
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const result = acked(await client.send(message("AL", "AL", "F1")));
  assertEquals(result.outcome, "error");
  assertEquals(result.code, "CE");
  assertStringIncludes(result.ack.text, "disk full");
  assertEquals(await result.applicationAck, undefined);
  const failed = acked(await client.send(message("ER", "AL", "F2")));
  assertEquals(failed.code, "CE");
});

Deno.test("silence under MSH-15/16 ER: the send reports it, the connection stays open, and a late ACK is not taken for the next send's", async () => {
  // A peer written here: it answers nothing to the first message, and
  // only when the second arrives sends a late CE for the first, then the
  // second's AA. What goes wrong in it (its own assertion included) is
  // kept and fails the test at the end.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const peerErrors: unknown[] = [];
  const handlers: Promise<void>[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      connections++;
      const raw = new RawConn(conn);
      const handler = (async () => {
        const first = await raw.next();
        if (first === null) return;
        const second = await raw.next();
        if (second === null) return;
        const idOf = (p: Uint8Array) =>
          new TextDecoder().decode(p).split("\r")[0].split("|")[9];
        await raw.send(
          Ack.forMessage(new TextDecoder().decode(first), "CE").toString(),
        );
        await raw.send(
          Ack.forMessage(new TextDecoder().decode(second), "AA").toString(),
        );
        assertEquals([idOf(first), idOf(second)], ["S1", "S2"]);
        await raw.next(); // until the client closes
      })();
      handlers.push(
        handler.catch((error) => {
          peerErrors.push(error);
        }).finally(() => raw.close()),
      );
    }
  })().catch(() => {}); // the listener was closed

  try {
    await using client = await Client.connect("127.0.0.1", listener.addr.port, {
      replyTimeout: 2_000,
    });
    const silent = await client.send(message("ER", "ER", "S1"), {
      timeout: 200,
    });
    assertEquals(
      silent.outcome === "silent" &&
        [silent.ok, silent.means, silent.controlId, silent.waitedMs],
      [true, "accepted", "S1", 200],
    );
    // Original mode: the reply is the AA for S2, not the late CE for S1.
    const next = acked(await client.send(message("", "", "S2")));
    assertEquals([next.code, next.ack.messageControlId], ["AA", "S2"]);
    assertEquals(connections, 1);
  } finally {
    listener.close();
    await serving;
    await Promise.all(handlers);
  }
  // The peer's own checks fail the test too.
  if (peerErrors.length > 0) throw peerErrors[0];
});

Deno.test("a dispatch timeout in enhanced mode: the AE goes as MSH-16 and applicationAcks say; a slow store gets CE, never a late CA", async () => {
  const hang = (m: Message) =>
    m.kind === "hl7" && m.header.controlId.startsWith("H")
      ? new Promise<undefined>(() => {})
      : Ack.forMessage(m as Hl7Message, "AA");
  // On the connection: CA, then AE only when MSH-16 asks for it.
  {
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatchTimeout: 100,
      dispatcher: hang,
    });
    await using peer = await RawConn.connect(receiver.port);
    await peer.send(message("AL", "NE", "H1"));
    await peer.send(message("", "", "O1"));
    assertEquals(await peer.until((f) => f === "AA O1"), ["CA H1", "AA O1"]);
    await peer.send(message("AL", "AL", "H2"));
    await peer.send(message("", "", "O2"));
    assertEquals(await peer.until((f) => f === "AA O2"), [
      "CA H2",
      "AE H2",
      "AA O2",
    ]);
  }
  // A function route gets the AE; the connection only the CA.
  {
    const routed: string[] = [];
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatchTimeout: 100,
      dispatcher: hang,
      applicationAcks: (ack) => {
        routed.push(`${ack.code} ${ack.messageControlId}`);
      },
    });
    await using peer = await RawConn.connect(receiver.port);
    await peer.send(message("AL", "AL", "H3"));
    await peer.send(message("", "", "O3"));
    assertEquals(await peer.until((f) => f === "AA O3"), ["CA H3", "AA O3"]);
    assertEquals(routed, ["AE H3"]);
  }
  // A store slower than the timeout: CE as MSH-15 asks, and when the
  // store's commit ends after all, no CA follows.
  {
    const slow = Promise.withResolvers<void>();
    const store = {
      put: async () => {
        await slow.promise;
        return { duplicate: false as const, id: "1" };
      },
      consume: () => ({ stop: () => Promise.resolve() }),
    };
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatchTimeout: 100,
      store,
      dispatcher: accepting,
    });
    await using peer = await RawConn.connect(receiver.port);
    await peer.send(message("AL", "AL", "H4"));
    assertEquals(await peer.until((f) => f.startsWith("CE")), ["CE H4"]);
    slow.resolve();
    await peer.send(message("", "", "O4"));
    assertEquals(await peer.until((f) => f.startsWith("A")), ["AA O4"]);
  }
});
