/**
 * Reliability of the client under injected faults, on loopback: reconnect
 * backoff, a receiver restart, late replies, each named reply problem,
 * connections that drop mid-reply, `sendAsync`, the bounded queue,
 * `close()`, `reconnect()`, `retryUnwritten`, and a 2,000-message soak with
 * about 5 % faults.
 *
 * The peer is `FaultPeer` (tests/_fault_peer.ts): its own framing and
 * ACKs, not the library's. Delays are kept small; nothing asserts on wall
 * time, but every wait is bounded. A reply that must come too late is held
 * until the client has given up on its message (its `replytimeout` event),
 * never raced against a short timeout, and a send that must succeed has a
 * timeout a busy machine cannot run into. Set `SOAK_SEED` to run the soak
 * with another fault sequence.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "@std/assert";
import { delay as untypedDelay } from "@std/async/delay";
import {
  Client,
  type ClientEventMap,
  type ClientOptions,
  type ClosedDetail,
  reconnectDelay,
  type SendErrorDetail,
  type SendResult,
} from "../../src/client/client.ts";
import {
  ClientError,
  ConnectionClosedError,
  ConnectionRefusedError,
  ConnectTimeoutError,
  InvalidReplyError,
  QueueFullError,
  ReplyTimeoutError,
} from "../../src/errors.ts";
import {
  byControlId,
  type Decide,
  type Fault,
  FaultPeer,
  handAck,
  handFrame,
  seededFaults,
} from "../_fault_peer.ts";
import { accepted } from "../_helpers.ts";

/** A promise that resolves after `ms` milliseconds. */
const delay: (ms: number) => Promise<void> = untypedDelay;

/** Bounds every wait that is not itself under test. */
const TIMEOUT = 5_000;
/** Sends and connections that should never time out in a test. */
const PATIENT: ClientOptions = {
  replyTimeout: TIMEOUT,
  connectTimeout: TIMEOUT,
  reconnect: { initialDelay: 20, jitter: 0 },
};

/** A small HL7 v2.5 ADT^A01 with the given control id. */
function hl7(controlId: string): string {
  return `MSH|^~\\&|SND|SFAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5\rPID|1||${controlId}^^^SFAC^MR\r`;
}

/** Fails if `promise` does not settle within `ms` milliseconds. */
async function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: not settled within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

type EventName = keyof ClientEventMap;
type Detail<K extends EventName> = ClientEventMap[K]["detail"];

/** The detail of the next `type` event that passes `filter`. */
function nextEvent<K extends EventName>(
  client: Client,
  type: K,
  filter: (detail: Detail<K>) => boolean = () => true,
): Promise<Detail<K>> {
  const { promise, resolve } = Promise.withResolvers<Detail<K>>();
  const listener = (event: ClientEventMap[K]) => {
    if (!filter(event.detail)) return;
    client.removeEventListener(type, listener);
    resolve(event.detail);
  };
  client.addEventListener(type, listener);
  return within(promise, TIMEOUT, `a "${type}" event`);
}

/** Every event of the given types, in order, as they come. */
function record(
  client: Client,
  ...types: EventName[]
): { type: EventName; detail: Detail<EventName> }[] {
  const events: { type: EventName; detail: Detail<EventName> }[] = [];
  for (const type of types) {
    client.addEventListener(type, (event: ClientEventMap[typeof type]) => {
      events.push({ type, detail: event.detail });
    });
  }
  return events;
}

/** The details of the first `n` `type` events. */
function firstEvents<K extends EventName>(
  client: Client,
  type: K,
  n: number,
): Promise<Detail<K>[]> {
  const seen: Detail<K>[] = [];
  const { promise, resolve } = Promise.withResolvers<Detail<K>[]>();
  const listener = (event: ClientEventMap[K]) => {
    seen.push(event.detail);
    if (seen.length === n) {
      client.removeEventListener(type, listener);
      resolve(seen);
    }
  };
  client.addEventListener(type, listener);
  return within(promise, TIMEOUT, `${n} "${type}" events`);
}

/** A peer that is not listening: its port is known and closed. */
async function stoppedPeer(options = {}): Promise<FaultPeer> {
  const peer = await FaultPeer.start(options);
  await peer.stop();
  return peer;
}

/** A decision that holds `controlId`'s reply until `release` resolves. */
function holding(controlId: string, release: Promise<void>): Decide {
  return async ({ controlId: id }): Promise<Fault> => {
    if (id === controlId) await release;
    return "none";
  };
}

/**
 * Tells when the client gave up waiting for a reply: `until(controlId)`
 * resolves once a `replytimeout` event for that control id has been
 * dispatched (the client has closed the connection by then), whether it
 * came before or after the call. `watch` attaches it to a client, so a
 * peer started first can already hold replies on it.
 */
function replyTimeouts(): {
  watch(client: Client): void;
  until(controlId: string): Promise<void>;
} {
  const gaveUp = new Map<string, PromiseWithResolvers<void>>();
  const entry = (controlId: string) => {
    let found = gaveUp.get(controlId);
    if (!found) {
      found = Promise.withResolvers<void>();
      gaveUp.set(controlId, found);
    }
    return found;
  };
  return {
    watch(client) {
      client.addEventListener("replytimeout", (event) => {
        entry(event.detail.controlId ?? "").resolve();
      });
    },
    until: (controlId) => entry(controlId).promise,
  };
}

/** The `senderror` details, by control id. */
function sendErrors(client: Client): Map<string, SendErrorDetail> {
  const errors = new Map<string, SendErrorDetail>();
  client.addEventListener("senderror", (event) => {
    errors.set(event.detail.controlId ?? "", event.detail);
  });
  return errors;
}

// --- Backoff -----------------------------------------------------------------

Deno.test("backoff: delays double from initialDelay to maxDelay; a connection resets them", async () => {
  await using peer = await stoppedPeer();
  await using client = new Client("127.0.0.1", peer.port, {
    ...PATIENT,
    reconnect: { initialDelay: 20, factor: 2, maxDelay: 160, jitter: 0 },
  });
  const failures = record(client, "connectfailed");
  const waits = await firstEvents(client, "reconnecting", 5);
  assertEquals(waits.map((w) => w.delayMs), [20, 40, 80, 160, 160]);
  assertEquals(waits.map((w) => w.attempt), [2, 3, 4, 5, 6]);
  // Every wait follows a refused attempt.
  assert(failures.length >= 5);
  for (const { detail } of failures) {
    assertInstanceOf(
      (detail as Detail<"connectfailed">).error,
      ConnectionRefusedError,
    );
  }

  const connected = nextEvent(client, "connected");
  await peer.start();
  await connected;
  const refusedBeforeConnecting = failures.length;
  assert(refusedBeforeConnecting >= 5);
  accepted(await client.send(hl7("B-1")));

  // The receiver drops the connection: the first wait is initialDelay again.
  const afterDrop = nextEvent(client, "reconnecting");
  const reconnected = nextEvent(client, "connected");
  peer.dropConnections();
  const drop = await afterDrop;
  assertEquals([drop.delayMs, drop.attempt], [20, 1]);
  assertEquals((await reconnected).attempt, 1);
  assertEquals(failures.length, refusedBeforeConnecting);

  // Down again: the waits start over from initialDelay and double.
  const again = firstEvents(client, "reconnecting", 3);
  await peer.stop();
  assertEquals((await again).map((w) => w.delayMs), [20, 40, 80]);
});

Deno.test("backoff: a fixed interval waits the same each time", async () => {
  await using peer = await stoppedPeer();
  await using client = new Client("127.0.0.1", peer.port, {
    ...PATIENT,
    reconnect: { interval: 30 },
  });
  const waits = await firstEvents(client, "reconnecting", 4);
  assertEquals(waits.map((w) => w.delayMs), [30, 30, 30, 30]);
});

Deno.test("backoff: with jitter 0.5 every delay is within ±50 % of its base", async () => {
  await using peer = await stoppedPeer();
  await using client = new Client("127.0.0.1", peer.port, {
    ...PATIENT,
    reconnect: { initialDelay: 20, factor: 2, maxDelay: 80, jitter: 0.5 },
  });
  const waits = await firstEvents(client, "reconnecting", 6);
  const bases = [20, 40, 80, 80, 80, 80];
  waits.forEach((wait, i) => {
    const base = bases[i];
    assert(
      wait.delayMs >= base * 0.5 && wait.delayMs <= base * 1.5,
      `delay ${i + 1} is ${wait.delayMs} ms, base ${base} ms`,
    );
    assert(wait.delayMs <= 80, "never past maxDelay");
  });
});

Deno.test("backoff: reconnectDelay computed directly", () => {
  const policy = { initialDelay: 20, factor: 2, maxDelay: 160, jitter: 0 };
  assertEquals(
    [1, 2, 3, 4, 5, 6, 50].map((n) => reconnectDelay(policy, n)),
    [20, 40, 80, 160, 160, 160, 160],
  );
  // The seed's defaults: 1 s doubling to 180 s.
  assertEquals(
    [1, 2, 8, 9].map((n) => reconnectDelay({ jitter: 0 }, n)),
    [1000, 2000, 128_000, 180_000],
  );
  assertEquals(reconnectDelay({ interval: 30 }, 1), 30);
  assertEquals(reconnectDelay({ interval: 30 }, 99), 30);
  // Jitter: the random source's extremes give base ∓ jitter·base.
  const jittered = { initialDelay: 100, maxDelay: 1000, jitter: 0.5 };
  assertEquals(reconnectDelay(jittered, 1, () => 0), 50);
  assertEquals(reconnectDelay(jittered, 1, () => 0.5), 100);
  assertEquals(reconnectDelay(jittered, 1, () => 0.999999), 150);
  assertEquals(reconnectDelay(jittered, 2, () => 0), 100);
  // At the cap, jitter only goes down.
  assertEquals(reconnectDelay(jittered, 9, () => 0.999999), 1000);
  assertEquals(reconnectDelay(jittered, 9, () => 0), 500);
});

Deno.test("connect timeout: separate from the reply timeout", async () => {
  // A peer that accepts TCP but never speaks TLS: the handshake hangs.
  // (Silent even if the ClientHello's random bytes happen to hold a frame.)
  await using peer = await FaultPeer.start({ decide: () => "silent" });
  const caCerts = await Deno.readTextFile(
    new URL("../../tls/root-ca/ca_certificate.pem", import.meta.url),
  );
  await using client = new Client("127.0.0.1", peer.port, {
    connectTimeout: 100,
    replyTimeout: TIMEOUT,
    reconnect: { initialDelay: 60_000 },
    tls: { caCerts, serverName: "localhost" },
  });
  const failed = await nextEvent(client, "connectfailed");
  const error = failed.error as ConnectTimeoutError;
  assertInstanceOf(error, ConnectTimeoutError);
  assertEquals(error.timeout, 100);
  assertEquals(error.reason, "connect_timeout");
  await client.close();
});

// --- Receiver restart ----------------------------------------------------------

Deno.test("restart: sends made while the receiver is down go through once it is back", async () => {
  await using peer = await FaultPeer.start();
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  accepted(await client.send(hl7("R-1")));

  const refused = nextEvent(client, "connectfailed");
  await peer.stop();
  await refused; // the receiver is really down now
  assertEquals(client.isConnected, false);
  const during = ["R-2", "R-3", "R-4"].map((id) => client.send(hl7(id)));
  await peer.start();
  const results = await Promise.all(during);
  assertEquals(
    results.map((r) => accepted(r).ack.messageControlId),
    ["R-2", "R-3", "R-4"],
  );
  assertEquals(peer.connections, 2, "one new connection after the restart");
  assertEquals(peer.handled.map((m) => m.connection), [0, 1, 1, 1]);
});

Deno.test('restart: with whenDisconnected "fail" a send during the outage fails at once', async () => {
  await using peer = await FaultPeer.start();
  await using client = await Client.connect("127.0.0.1", peer.port, {
    ...PATIENT,
    replyTimeout: 60_000,
    whenDisconnected: "fail",
  });
  accepted(await client.send(hl7("F-1")));
  const refused = nextEvent(client, "connectfailed");
  await peer.stop();
  await refused;
  // The send's own timeout is 60 s: failing within the bound means at once.
  const error: ConnectionRefusedError = await within(
    assertRejects(() => client.send(hl7("F-2")), ConnectionRefusedError),
    TIMEOUT,
    "a send while disconnected",
  );
  assertEquals(error.reason, "refused");
  assertStringIncludes(error.message, "not connected");
  assertEquals(peer.count("F-2"), 0);

  const connected = nextEvent(client, "connected");
  await peer.start();
  await connected;
  assertEquals(
    accepted(await client.send(hl7("F-3"))).ack.messageControlId,
    "F-3",
  );
});

// --- Late reply ----------------------------------------------------------------

Deno.test("late reply: never credited to the next message", async () => {
  const gaveUp = replyTimeouts();
  // LATE-1's reply is held until the client has given up on it and NEXT-2
  // has arrived; NEXT-2's reply waits until LATE-1's is out. So the late
  // ACK goes out while NEXT-2 waits for its own, on any machine.
  await using peer: FaultPeer = await FaultPeer.start({
    decide: async ({ controlId }) => {
      if (controlId === "LATE-1") return "late";
      if (controlId === "NEXT-2") await peer.waitForHandled("LATE-1");
      return "none";
    },
    lateUntil: async () => {
      await gaveUp.until("LATE-1");
      await peer.waitForArrival("NEXT-2");
    },
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  gaveUp.watch(client);
  const timeouts = record(client, "replytimeout");
  const error: ReplyTimeoutError = await assertRejects(
    () => client.send(hl7("LATE-1"), { timeout: 100 }),
    ReplyTimeoutError,
  );
  assertStringIncludes(error.message, "outcome is unknown");
  assertEquals(error.timeout, 100);
  assertEquals(timeouts.length, 1);

  const next = accepted(await client.send(hl7("NEXT-2")));
  assertEquals(next.ack.messageControlId, "NEXT-2");
  // The late ACK for LATE-1 went out while NEXT-2 was in flight (on the
  // old socket, which the client closed); later sends still get their own.
  await within(peer.waitForHandled("LATE-1"), TIMEOUT, "the late reply");
  const third = accepted(await client.send(hl7("NEXT-3")));
  assertEquals(third.ack.messageControlId, "NEXT-3");
  assertEquals(peer.connections, 2, "the client reconnected");
  assertEquals(
    peer.handled.map((m) => [m.controlId, m.connection]),
    [["LATE-1", 0], ["NEXT-2", 1], ["NEXT-3", 1]],
  );
  assertEquals(peer.violations, 0);
});

// --- Named reply problems --------------------------------------------------------

Deno.test("reply problems: junk before the reply is no_start_block", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "J-1": "junk" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  const invalid = nextEvent(client, "invalidreply");
  const error: InvalidReplyError = await assertRejects(
    () => client.send(hl7("J-1")),
    InvalidReplyError,
  );
  assertEquals(error.problem, "no_start_block");
  assertEquals((await invalid).problem, "no_start_block");
  assertEquals(
    accepted(await client.send(hl7("J-2"))).ack.messageControlId,
    "J-2",
  );
  assertEquals(peer.connections, 2);
});

Deno.test("reply problems: data after the trailer with no send in flight closes the connection", async () => {
  await using peer = await FaultPeer.start();
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  accepted(await client.send(hl7("T-1")));
  const closed = nextEvent(client, "closed");
  await peer.inject("LEFTOVER");
  const detail: ClosedDetail = await closed;
  assertEquals(detail.byClient, true);
  assertInstanceOf(detail.error, InvalidReplyError);
  assertEquals(
    (detail.error as InvalidReplyError).problem,
    "data_after_trailer",
  );
  assertEquals(
    accepted(await client.send(hl7("T-2"))).ack.messageControlId,
    "T-2",
  );
  assertEquals(peer.connections, 2);
});

Deno.test("reply problems: data after the trailer in the reply's own write: the reply counts, the connection closes", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "TR-1": "trailing" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  const closed = nextEvent(client, "closed");
  const result = accepted(await client.send(hl7("TR-1")));
  assertEquals(result.ack.messageControlId, "TR-1");
  const detail = await closed;
  assertEquals(
    (detail.error as InvalidReplyError).problem,
    "data_after_trailer",
  );
  assertEquals(
    accepted(await client.send(hl7("TR-2"))).ack.messageControlId,
    "TR-2",
  );
  assertEquals(peer.connections, 2);
});

Deno.test("reply problems: an ACK for another control id is a mismatch and the connection is reopened", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "M-1": "mismatch" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  const invalid = nextEvent(client, "invalidreply");
  const closed = nextEvent(client, "closed");
  const result: SendResult = await client.send(hl7("M-1"));
  assertEquals(result.ok, false);
  if (result.outcome !== "mismatch") {
    throw new Error(`Expected a mismatch, got ${result.outcome}`);
  }
  assertEquals(result.expected, "M-1");
  assertEquals(result.ack.messageControlId, "M-1-OTHER");
  assertEquals((await invalid).problem, "control_id_mismatch");
  const detail = await closed;
  assertEquals(detail.byClient, true);
  assertEquals(
    (detail.error as InvalidReplyError).problem,
    "control_id_mismatch",
  );
  assertEquals(
    accepted(await client.send(hl7("M-2"))).ack.messageControlId,
    "M-2",
  );
  assertEquals(peer.connections, 2);
});

Deno.test("reply problems: a reply that is not an ACK is not_ack and the connection stays", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "N-1": "not_ack" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  const closes = record(client, "closed");
  const invalid = nextEvent(client, "invalidreply");
  const result = await client.send(hl7("N-1"));
  assertEquals(result.outcome, "not_ack");
  assertEquals(result.ok, false);
  assertEquals((await invalid).problem, "not_ack");
  assertEquals(client.isConnected, true);
  assertEquals(
    accepted(await client.send(hl7("N-2"))).ack.messageControlId,
    "N-2",
  );
  assertEquals(peer.connections, 1);
  assertEquals(closes.length, 0);
});

Deno.test("reply problems: an unsolicited frame closes the connection", async () => {
  await using peer = await FaultPeer.start();
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  accepted(await client.send(hl7("U-1")));
  const closed = nextEvent(client, "closed");
  await peer.inject(handFrame(handAck("NOBODY-ASKED")));
  const detail = await closed;
  assertEquals(detail.byClient, true);
  assertEquals((detail.error as InvalidReplyError).problem, "unsolicited");
  assertEquals(
    accepted(await client.send(hl7("U-2"))).ack.messageControlId,
    "U-2",
  );
  assertEquals(peer.connections, 2);
});

Deno.test("reply problems: bare CR/LF after a frame is tolerated", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "C-1": "crlf" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  const closes = record(client, "closed", "invalidreply");
  // In the reply's own write...
  assertEquals(
    accepted(await client.send(hl7("C-1"))).ack.messageControlId,
    "C-1",
  );
  // ...and alone, with no send in flight.
  await peer.inject("\r\n\r\n");
  assertEquals(
    accepted(await client.send(hl7("C-2"))).ack.messageControlId,
    "C-2",
  );
  assertEquals(client.isConnected, true);
  assertEquals(peer.connections, 1);
  assertEquals(closes.length, 0);
});

// --- Dropped mid-reply -------------------------------------------------------------

for (const fault of ["close", "reset"] as const) {
  Deno.test(`dropped: ${fault} before the whole reply: outcome unknown, the next send reconnects`, async () => {
    await using peer = await FaultPeer.start({
      decide: byControlId({ "D-1": fault }),
    });
    await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
    const errors = sendErrors(client);
    const error: ConnectionClosedError = await assertRejects(
      () => client.send(hl7("D-1")),
      ConnectionClosedError,
    );
    assertEquals(error.context, "receiving");
    const detail = errors.get("D-1");
    assertEquals(detail?.written, true, "written: its outcome is unknown");
    assertStrictEquals(detail?.error, error);
    assertEquals(
      accepted(await client.send(hl7("D-2"))).ack.messageControlId,
      "D-2",
    );
    assertEquals(peer.connections, 2);
  });
}

// --- sendAsync ---------------------------------------------------------------------

Deno.test("sendAsync: resolves once written; its reply is read before the next send is written", async () => {
  const release = Promise.withResolvers<void>();
  await using peer = await FaultPeer.start({
    decide: holding("A-1", release.promise),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  const replies = record(client, "reply");
  try {
    // Resolves while the peer still holds the reply.
    await within(client.sendAsync(hl7("A-1")), TIMEOUT, "sendAsync");
    await within(peer.waitForArrival("A-1"), TIMEOUT, "A-1 at the peer");
    const next = client.send(hl7("A-2"));
    await delay(50); // room for a (wrong) early write of A-2
    assertEquals(peer.count("A-2"), 0, "A-2 waits for A-1's reply");
    release.resolve();
    assertEquals(accepted(await next).ack.messageControlId, "A-2");
  } finally {
    release.resolve();
  }
  assertEquals(
    replies.map(({ detail }) => (detail as Detail<"reply">).controlId),
    ["A-1", "A-2"],
  );
  assertEquals(peer.violations, 0);

  // A burst of sendAsync calls stays stop-and-wait too.
  const ids = Array.from({ length: 20 }, (_, i) => `B-${i}`);
  await Promise.all(ids.map((id) => client.sendAsync(hl7(id))));
  accepted(await client.send(hl7("B-last")));
  assertEquals(
    replies.slice(2).map(({ detail }) => (detail as Detail<"reply">).controlId),
    [...ids, "B-last"],
  );
  assertEquals(peer.violations, 0);
  assertEquals(peer.connections, 1);
});

Deno.test("sendAsync: a reply that never comes does not block the next send", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "S-1": "silent" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, {
    ...PATIENT,
    replyTimeout: 100,
  });
  const errors = sendErrors(client);
  await within(client.sendAsync(hl7("S-1")), TIMEOUT, "sendAsync");
  const next = accepted(await client.send(hl7("S-2"), { timeout: TIMEOUT }));
  assertEquals(next.ack.messageControlId, "S-2");
  assertInstanceOf(errors.get("S-1")?.error, ReplyTimeoutError);
  assertEquals(errors.get("S-1")?.written, true);
  assertEquals(peer.connections, 2);
  assertEquals(peer.violations, 0);
});

Deno.test("sendAsync: while disconnected it fails after its timeout, never hangs", async () => {
  await using peer = await stoppedPeer();
  await using client = new Client("127.0.0.1", peer.port, {
    ...PATIENT,
    reconnect: { initialDelay: 20, maxDelay: 40, jitter: 0 },
  });
  await within(
    assertRejects(
      () => client.sendAsync(hl7("DA-1"), { timeout: 100 }),
      ClientError,
    ),
    TIMEOUT,
    "sendAsync while disconnected",
  );
  assertEquals(client.isConnected, false);
});

// --- Waiting for a connection -----------------------------------------------------

Deno.test("deadline: a send queued while disconnected fails at its own deadline, not after the sends ahead of it", async () => {
  await using peer = await stoppedPeer();
  await using client = new Client("127.0.0.1", peer.port, PATIENT);
  const errors = sendErrors(client);
  const first = assertRejects(
    () => client.send(hl7("DL-1"), { timeout: 60_000 }),
    ConnectionClosedError,
  );
  const second: ConnectionRefusedError = await within(
    assertRejects(
      () => client.send(hl7("DL-2"), { timeout: 100 }),
      ConnectionRefusedError,
    ),
    TIMEOUT,
    "the queued send with a short timeout",
  );
  assertStringIncludes(second.message, "not connected within 100 ms");
  assertEquals(errors.get("DL-2")?.written, false);
  assertEquals(client.queued, 0);
  await client.close();
  await first;
});

Deno.test("deadline: time queued behind a send in flight does not count as waiting for a connection", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "QD-1": "silent" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  // QD-1 is never answered: its timeout fires, whatever the machine's
  // speed. QD-2 is queued behind it for longer than its own timeout (a
  // timer wrongly failing QD-2 would fire before QD-1's), on an open
  // connection; QD-1's timeout then closes that connection. QD-2's own
  // timeout leaves a busy machine ample time to reconnect and answer.
  const first = assertRejects(
    () => client.send(hl7("QD-1"), { timeout: 1_100 }),
    ReplyTimeoutError,
  );
  const second = client.send(hl7("QD-2"), { timeout: 1_000 });
  await first;
  assertEquals(accepted(await second).ack.messageControlId, "QD-2");
  assertEquals(peer.connections, 2);
});

// --- Queue -------------------------------------------------------------------------

Deno.test("queue: past maxQueued a send is refused at once; none is dropped, all complete in order", async () => {
  const release = Promise.withResolvers<void>();
  await using peer = await FaultPeer.start({
    decide: holding("Q-1", release.promise),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, {
    ...PATIENT,
    maxQueued: 3,
  });
  const settled: string[] = [];
  const ids = ["Q-1", "Q-2", "Q-3", "Q-4"];
  try {
    const sends = ids.map((id) =>
      client.send(hl7(id)).then((result) => {
        settled.push(id);
        return result;
      })
    );
    assertEquals(client.queued, 3, "one in flight, three queued");
    const error: QueueFullError = await assertRejects(
      () => client.send(hl7("Q-5")),
      QueueFullError,
    );
    assertEquals(error.limit, 3);
    release.resolve();
    const results = await Promise.all(sends);
    assertEquals(results.map((r) => accepted(r).ack.messageControlId), ids);
  } finally {
    release.resolve();
  }
  assertEquals(settled, ids);
  assertEquals(peer.handled.map((m) => m.controlId), ids);
  assertEquals(peer.count("Q-5"), 0);
  // The queue has room again.
  accepted(await client.send(hl7("Q-6")));
});

// --- close() -------------------------------------------------------------------------

Deno.test("close: idempotent; sends in flight, queued and later all fail with ConnectionClosedError", async () => {
  const release = Promise.withResolvers<void>();
  await using peer = await FaultPeer.start({
    decide: holding("X-1", release.promise),
  });
  const client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  try {
    const sends = ["X-1", "X-2", "X-3"].map((id) => client.send(hl7(id)));
    const failures = sends.map((send) =>
      assertRejects(() => send, ConnectionClosedError)
    );
    await within(peer.waitForArrival("X-1"), TIMEOUT, "X-1 at the peer");
    assertEquals(client.queued, 2);
    const first = client.close();
    assertStrictEquals(client.close(), first);
    assertStrictEquals(client[Symbol.asyncDispose](), first);
    await within(Promise.all(failures), TIMEOUT, "the sends to fail");
    await within(first, TIMEOUT, "close()");
    assertEquals(client.state, "closed");
    assertEquals(client.isConnected, false);
    await assertRejects(() => client.send(hl7("X-4")), ConnectionClosedError);
    await assertRejects(
      () => client.sendAsync(hl7("X-5")),
      ConnectionClosedError,
    );
    await assertRejects(() => client.reconnect(), ConnectionClosedError);
  } finally {
    release.resolve();
    await client.close();
  }
  assertEquals(peer.count("X-2"), 0);
});

Deno.test("close: during a backoff wait, it returns promptly", async () => {
  await using peer = await stoppedPeer();
  const client = new Client("127.0.0.1", peer.port, {
    ...PATIENT,
    reconnect: { initialDelay: 60_000 },
  });
  await nextEvent(client, "reconnecting");
  assertEquals(client.state, "waiting");
  const waiting = assertRejects(
    () => client.send(hl7("W-1"), { timeout: 60_000 }),
    ConnectionClosedError,
  );
  await within(client.close(), TIMEOUT, "close() in backoff");
  await waiting;
  assertEquals(client.state, "closed");
});

Deno.test("close: while connecting, it returns promptly", async () => {
  // The TLS handshake never completes: the peer accepts TCP and is silent.
  await using peer = await FaultPeer.start({ decide: () => "silent" });
  const caCerts = await Deno.readTextFile(
    new URL("../../tls/root-ca/ca_certificate.pem", import.meta.url),
  );
  const client = new Client("127.0.0.1", peer.port, {
    connectTimeout: 60_000,
    replyTimeout: 60_000,
    tls: { caCerts, serverName: "localhost" },
  });
  const waiting = assertRejects(
    () => client.send(hl7("CC-1")),
    ConnectionClosedError,
  );
  await within(peer.waitForConnections(1), TIMEOUT, "a connection");
  assertEquals(client.state, "connecting");
  await within(client.close(), TIMEOUT, "close() while connecting");
  await waiting;
  assertEquals(client.state, "closed");
});

// --- reconnect() ------------------------------------------------------------------------

Deno.test("reconnect: when connected, drops the connection and opens a new one", async () => {
  await using peer = await FaultPeer.start();
  await using client = await Client.connect("127.0.0.1", peer.port, PATIENT);
  accepted(await client.send(hl7("RC-1")));
  const events = record(client, "closed", "connected");
  await within(client.reconnect(), TIMEOUT, "reconnect()");
  assertEquals(client.isConnected, true);
  assertEquals(events.map((e) => e.type), ["closed", "connected"]);
  assertEquals((events[0].detail as ClosedDetail).byClient, true);
  await within(peer.waitForConnections(2), TIMEOUT, "a second connection");
  accepted(await client.send(hl7("RC-2")));
  assertEquals(peer.handled.map((m) => m.connection), [0, 1]);
});

Deno.test("reconnect: during a backoff wait, connects at once", async () => {
  await using peer = await stoppedPeer();
  await using client = new Client("127.0.0.1", peer.port, {
    ...PATIENT,
    reconnect: { initialDelay: 60_000 },
  });
  await nextEvent(client, "reconnecting");
  await peer.start();
  await within(client.reconnect(), TIMEOUT, "reconnect() in backoff");
  assertEquals(client.isConnected, true);
  accepted(await client.send(hl7("RB-1")));
});

Deno.test("reconnect: called while connecting, the attempt serves it and later drops still back off", async () => {
  await using peer = await FaultPeer.start();
  await using client = new Client("127.0.0.1", peer.port, PATIENT);
  assertEquals(client.state, "connecting");
  await within(client.reconnect(), TIMEOUT, "reconnect() while connecting");
  assertEquals(client.isConnected, true);
  const events = record(client, "reconnecting", "connected");
  const connected = nextEvent(client, "connected");
  peer.dropConnections();
  await connected;
  assertEquals(events.map((e) => e.type), ["reconnecting", "connected"]);
  assertEquals((events[0].detail as Detail<"reconnecting">).delayMs, 20);
  assertEquals(peer.connections, 2);
});

// --- retryUnwritten -------------------------------------------------------------------

/**
 * A client whose first connection is closed the moment it opens, before a
 * send waiting for it can write: `reconnect()` from the `connected` event.
 */
function clientLosingFirstConnection(
  port: number,
  options: ClientOptions,
): Client {
  const client = new Client("127.0.0.1", port, options);
  client.addEventListener("connected", () => {
    client.reconnect().catch(() => {});
  }, { once: true });
  return client;
}

Deno.test("retryUnwritten: a send that was never written is tried again on the next connection", async () => {
  await using peer = await FaultPeer.start();
  await using client = clientLosingFirstConnection(peer.port, {
    ...PATIENT,
    retryUnwritten: 1,
  });
  const errors = sendErrors(client);
  const result = accepted(await client.send(hl7("UW-1")));
  assertEquals(result.ack.messageControlId, "UW-1");
  assertEquals(peer.count("UW-1"), 1);
  assertEquals(errors.size, 0);
  await within(peer.waitForConnections(2), TIMEOUT, "two connections");
  assertEquals(peer.handled.map((m) => m.connection), [1]);
});

Deno.test("retryUnwritten: by default a send that was never written fails", async () => {
  await using peer = await FaultPeer.start();
  await using client = clientLosingFirstConnection(peer.port, PATIENT);
  const errors = sendErrors(client);
  const error = await assertRejects(
    () => client.send(hl7("UW-2")),
    ConnectionClosedError,
  );
  assertEquals(errors.get("UW-2")?.written, false);
  assertStrictEquals(errors.get("UW-2")?.error, error);
  assertEquals(peer.count("UW-2"), 0);
  accepted(await client.send(hl7("UW-3")));
});

Deno.test("retryUnwritten: a send that was written is never resent", async () => {
  await using peer = await FaultPeer.start({
    decide: byControlId({ "WR-1": "close" }),
  });
  await using client = await Client.connect("127.0.0.1", peer.port, {
    ...PATIENT,
    retryUnwritten: 3,
  });
  const errors = sendErrors(client);
  await assertRejects(() => client.send(hl7("WR-1")), ConnectionClosedError);
  assertEquals(errors.get("WR-1")?.written, true);
  accepted(await client.send(hl7("WR-2")));
  assertEquals(peer.count("WR-1"), 1, "seen exactly once");
  assertEquals(peer.connections, 2);
});

/** The soak's PRNG seed; set `SOAK_SEED` to replay another. */
const SOAK_SEED = Number(Deno.env.get("SOAK_SEED") ?? 20240101);

// --- Soak -----------------------------------------------------------------------------

Deno.test("soak: 2,000 messages with about 5 % faults each end accepted, rejected or errored", async () => {
  const TOTAL = 2_000;
  /** Long enough that no reply the peer means to give in time misses it. */
  const REPLY_TIMEOUT = 30_000;
  /** The timeout of a message whose reply the peer holds back (`late`). */
  const LATE_TIMEOUT = 200;
  const faultRates: Partial<Record<Fault, number>> = {
    close: 0.01,
    reset: 0.01,
    late: 0.005,
    mismatch: 0.01,
    junk: 0.01,
    restart: 0.005,
    reject: 0.01, // not a fault: an honest AR
  };
  const ids = Array.from(
    { length: TOTAL },
    (_, i) => `SOAK-${String(i + 1).padStart(4, "0")}`,
  );
  // Each message's fault, drawn up front from the seed: a message planned
  // late is sent with a short timeout, and the peer holds its reply until
  // the client has given up on it.
  const roll = seededFaults(SOAK_SEED, faultRates);
  const plan = new Map<string, Fault>();
  for (const id of ids) {
    plan.set(
      id,
      await roll({ controlId: id, text: "", index: 0, connection: 0 }),
    );
  }
  const gaveUp = replyTimeouts();
  await using peer = await FaultPeer.start({
    decide: ({ controlId }) => plan.get(controlId) ?? "none",
    lateUntil: ({ controlId }) => gaveUp.until(controlId),
    downMs: 30,
  });
  await using client = await Client.connect("127.0.0.1", peer.port, {
    replyTimeout: REPLY_TIMEOUT,
    connectTimeout: TIMEOUT,
    reconnect: { initialDelay: 10, maxDelay: 200, jitter: 0.1 },
  });
  gaveUp.watch(client);
  const errors = sendErrors(client);
  let connects = 0;
  client.addEventListener("connected", () => connects++);

  type Outcome = "accepted" | "rejected" | "errored";
  const outcomes = new Map<string, Outcome>();
  const mismatched: string[] = [];
  const classify = async (id: string) => {
    let outcome: Outcome;
    try {
      const result = await client.send(
        hl7(id),
        plan.get(id) === "late" ? { timeout: LATE_TIMEOUT } : {},
      );
      switch (result.outcome) {
        case "accept":
          assertEquals(result.ack.messageControlId, id, "its own ACK");
          outcome = "accepted";
          break;
        case "reject":
        case "error":
          assertEquals(result.ack.messageControlId, id, "its own ACK");
          outcome = "rejected";
          break;
        case "mismatch":
          // An ACK for another message proves nothing about this one.
          assert(result.ack.messageControlId !== id);
          mismatched.push(id);
          outcome = "errored";
          break;
        default:
          throw new Error(`Unexpected outcome for ${id}: ${result.outcome}`);
      }
    } catch (error) {
      if (!(error instanceof ClientError)) throw error;
      outcome = "errored";
    }
    assert(!outcomes.has(id), `${id} ended twice`);
    outcomes.set(id, outcome);
  };
  // A few senders at once, so sends also queue behind each other.
  let next = 0;
  const worker = async () => {
    while (next < ids.length) await classify(ids[next++]);
  };
  await within(
    Promise.all(Array.from({ length: 4 }, worker)),
    120_000,
    "the soak",
  );

  // Every send ended in exactly one class, and the classes add up.
  assertEquals(outcomes.size, TOTAL);
  const counts = { accepted: 0, rejected: 0, errored: 0 };
  for (const outcome of outcomes.values()) counts[outcome]++;
  assertEquals(counts.accepted + counts.rejected + counts.errored, TOTAL);

  // Cross-check with what the peer did: a message it answered honestly
  // ended accepted or rejected; any fault (or never arriving) is errored.
  const faults = new Map<string, Fault>();
  for (const message of peer.handled) {
    faults.set(message.controlId, message.fault);
  }
  for (const id of ids) {
    assert(peer.count(id) <= 1, `${id} arrived ${peer.count(id)} times`);
    const fault = faults.get(id);
    const expected: Outcome = fault === "none"
      ? "accepted"
      : fault === "reject"
      ? "rejected"
      : "errored";
    assertEquals(outcomes.get(id), expected, `${id} (peer: ${fault})`);
    if (fault === "late") {
      // Held until the client gave up on it: a reply timeout, nothing else.
      assertInstanceOf(errors.get(id)?.error, ReplyTimeoutError, id);
    }
  }
  const injected =
    peer.handled.filter((m) => m.fault !== "none" && m.fault !== "reject")
      .length;
  assert(counts.accepted > 0 && counts.rejected > 0 && counts.errored > 0);
  assertEquals(peer.violations, 0);
  const unwritten = [...errors.values()].filter((e) => !e.written).length;
  const byKind = new Map<Fault, number>();
  for (const { fault } of peer.handled) {
    byKind.set(fault, (byKind.get(fault) ?? 0) + 1);
  }
  console.log(
    `soak: seed=${SOAK_SEED} accepted=${counts.accepted} rejected=${counts.rejected} errored=${counts.errored} faults=${injected} reconnects=${connects} (restarts=${peer.restarts} mismatches=${mismatched.length} unwritten=${unwritten})`,
  );
  console.log(
    `soak faults: ${
      [...byKind].filter(([kind]) => kind !== "none")
        .map(([kind, n]) => `${kind}=${n}`).join(" ")
    }`,
  );
});
