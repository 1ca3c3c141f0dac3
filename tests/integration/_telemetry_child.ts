/**
 * The program `telemetry_test.ts` runs in a child Deno process, with or
 * without `OTEL_DENO=true`: a receiver and a client on loopback exchange a
 * known set of messages, then both close and the process exits (which
 * flushes Deno's OpenTelemetry exporter).
 *
 * The receiver's dispatcher routes on the control id's prefix: `AA-` goes
 * to the EchoDispatcher, `AR-` is rejected, `AE-` throws (so the receiver
 * answers AE) and `SLOW-` answers after {@linkcode SLOW_DELAY} ms, longer
 * than that send's timeout. After the timeout the client reconnects at
 * once (a reconnection without a wait) and sends one more message; then
 * the receiver stops, which drops the client's connection and makes it
 * schedule a reconnection after a wait.
 *
 * It prints one line of JSON: the {@linkcode ChildReport}.
 *
 * @module
 */

import {
  Ack,
  Client,
  type ClientEventMap,
  type DispatchDetail,
  EchoDispatcher,
  Receiver,
  type ReceiverEventMap,
  ReplyTimeoutError,
  type SendResult,
} from "../../mod.ts";
import { delay } from "@std/async/delay";

/** How long the `SLOW-` message's dispatcher takes, in milliseconds. */
export const SLOW_DELAY = 600;
/** The timeout of the `SLOW-` send, in milliseconds. */
export const SLOW_TIMEOUT = 150;
/** The longest any one wait in this program may take, in milliseconds. */
const WAIT_LIMIT = 10_000;

/** The messages sent before the timeout, in order. */
export const BEFORE_TIMEOUT: readonly string[] = [
  "AA-1",
  "AA-2",
  "AR-1",
  "AA-3",
  "AE-1",
  "AA-4",
  "AR-2",
  "AA-5",
  "AR-3",
];
/** The message that times out. */
export const TIMED_OUT = "SLOW-1";
/** The message sent on the new connection after the timeout. */
export const AFTER_TIMEOUT = "AA-6";

/** What the child saw, printed as JSON for the test to compare. */
export interface ChildReport {
  /** The ACK code each send got, by control id. */
  acks: Record<string, string>;
  /** The `dispatch` events, by ACK code. */
  dispatched: Record<string, number>;
  /** `connectionopen` events. */
  opened: number;
  /** `connectionclose` events. */
  closed: number;
  /** `reconnecting` events. */
  reconnecting: number;
  /** `replytimeout` events. */
  timeouts: number;
}

/** An HL7 ADT^A01 with the given control id. */
export function message(controlId: string): string {
  return [
    `MSH|^~\\&|TEST|LAB|MLLP|RCV|20240101120000||ADT^A01^ADT_A01|${controlId}|P|2.5`,
    "EVN||20240101120000",
    `PID|||${controlId}^^^TEST^PI||DOE^JANE`,
  ].join("\r");
}

/**
 * Waits for the next event of this type that `accept` accepts, for at most
 * {@linkcode WAIT_LIMIT} ms.
 */
function nextEvent<M, K extends keyof M & string>(
  target: EventTarget,
  type: K,
  accept: (event: M[K]) => boolean = () => true,
): Promise<M[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.removeEventListener(type, listener);
      reject(new Error(`No ${type} event within ${WAIT_LIMIT} ms`));
    }, WAIT_LIMIT);
    const listener = (event: Event) => {
      if (!accept(event as M[K])) return;
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve(event as M[K]);
    };
    target.addEventListener(type, listener);
  });
}

function ackCode(result: SendResult): string {
  return "code" in result ? result.code : result.outcome;
}

if (import.meta.main) {
  const report: ChildReport = {
    acks: {},
    dispatched: {},
    opened: 0,
    closed: 0,
    reconnecting: 0,
    timeouts: 0,
  };

  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    async dispatcher(message, ctx) {
      const id = message.header?.controlId ?? "";
      if (id.startsWith("AR-")) return Ack.forMessage(message, "AR");
      if (id.startsWith("AE-")) throw new Error(`Cannot store ${id}`);
      if (id.startsWith("SLOW-")) {
        await delay(SLOW_DELAY);
        return Ack.forMessage(message, "AA");
      }
      return EchoDispatcher.dispatch(message, ctx);
    },
  });
  receiver.addEventListener("dispatch", (event) => {
    const code = event.detail.ackCode ?? "none";
    report.dispatched[code] = (report.dispatched[code] ?? 0) + 1;
  });
  receiver.addEventListener("connectionopen", () => report.opened++);
  receiver.addEventListener("connectionclose", () => report.closed++);

  // A long fixed interval: the drop at the end schedules exactly one
  // reconnection, which close() then cancels.
  const client = await Client.connect("127.0.0.1", receiver.port, {
    reconnect: { interval: 60_000 },
    replyTimeout: WAIT_LIMIT,
  });
  client.addEventListener("reconnecting", () => report.reconnecting++);
  client.addEventListener("replytimeout", () => report.timeouts++);

  for (const id of BEFORE_TIMEOUT) {
    report.acks[id] = ackCode(await client.send(message(id)));
  }

  const reconnected = nextEvent<ClientEventMap, "connected">(
    client,
    "connected",
  );
  const slowDispatched = nextEvent<ReceiverEventMap, "dispatch">(
    receiver,
    "dispatch",
    (event) => (event.detail as DispatchDetail).controlId === TIMED_OUT,
  );
  try {
    await client.send(message(TIMED_OUT), { timeout: SLOW_TIMEOUT });
    throw new Error(`${TIMED_OUT} did not time out`);
  } catch (error) {
    if (!(error instanceof ReplyTimeoutError)) throw error;
    report.acks[TIMED_OUT] = error.reason;
  }
  await reconnected;
  report.acks[AFTER_TIMEOUT] = ackCode(
    await client.send(message(AFTER_TIMEOUT)),
  );
  await slowDispatched;

  // The receiver drops the client's connection: the client schedules a
  // reconnection (and waits the interval, which close() cuts short).
  const reconnecting = nextEvent<ClientEventMap, "reconnecting">(
    client,
    "reconnecting",
  );
  await receiver.stop();
  await reconnecting;
  await client.close();

  console.log(JSON.stringify(report));
}
