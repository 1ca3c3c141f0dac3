/**
 * What a receiver tells the world: its events (a `CustomEvent` each, with
 * a typed `detail`), and the OpenTelemetry numbers each one records.
 *
 * @module
 */

import type { DispatchOutcome } from "../dispatch/stream.ts";
import type { Address } from "../net/address.ts";
import type { TlsFailure } from "../net/tls.ts";
import {
  recordConnection,
  recordDispatch,
  recordFramingError,
  recordRejection,
} from "../observe/telemetry.ts";

/**
 * Detail of the `connectionopen` event.
 *
 * @example Log who connects
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ConnectionDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const opened = new Promise<ConnectionDetail>((resolve) =>
 *   receiver.addEventListener(
 *     "connectionopen",
 *     (event) => resolve(event.detail),
 *     { once: true },
 *   )
 * );
 * await using _client = await Client.connect("127.0.0.1", receiver.port);
 * const detail = await opened;
 * assertEquals(detail.peer.hostname, "127.0.0.1");
 * assertEquals([detail.local.port, detail.secure], [receiver.port, false]);
 * ```
 */
export interface ConnectionDetail {
  /** The client's address. */
  peer: Address;
  /** The receiver's address the client connected to. */
  local: Address;
  /** Whether the connection is TLS. */
  secure: boolean;
  /** The client certificate's subject CN, with `verifyPeer`. */
  certificateName?: string;
}

/**
 * Detail of the `connectionclose` event.
 *
 * @example Count the messages a connection carried
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ConnectionCloseDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const closed = new Promise<ConnectionCloseDetail>((resolve) =>
 *   receiver.addEventListener(
 *     "connectionclose",
 *     (event) => resolve(event.detail),
 *     { once: true },
 *   )
 * );
 * const client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("PING");
 * await client.close();
 * const detail = await closed;
 * assertEquals([detail.messages, detail.durationMs >= 0], [1, true]);
 * ```
 */
export interface ConnectionCloseDetail extends ConnectionDetail {
  /** How long the connection was open, in milliseconds. */
  durationMs: number;
  /** How many messages it carried. */
  messages: number;
  /** Why it closed, in words. */
  reason: string;
}

/**
 * Detail of the `clientreject` event: a client not in `allowedClients`, or
 * over a connection limit.
 *
 * @example See who was turned away
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ClientRejectDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   allowedClients: ["192.0.2.0/24"],
 * });
 * const rejected = new Promise<ClientRejectDetail>((resolve) =>
 *   receiver.addEventListener("clientreject", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * using _conn = await Deno.connect({
 *   hostname: "127.0.0.1",
 *   port: receiver.port,
 * });
 * const detail = await rejected;
 * assertEquals([detail.peer.hostname, detail.reason], [
 *   "127.0.0.1",
 *   "client_ip_not_allowed",
 * ]);
 * ```
 */
export interface ClientRejectDetail {
  /** The client's address. */
  peer: Address;
  /**
   * Why: the peer's address or certificate is not allowed, or
   * `too_many_connections` past `maxConnections` or
   * `maxConnectionsPerClient`.
   */
  reason:
    | "client_ip_not_allowed"
    | "fail_to_verify_client_cert"
    | "too_many_connections";
  /** The names the client's certificate carries, when it had one. */
  certificateNames?: string[];
}

/**
 * Detail of the `handshakeerror` event.
 *
 * @example Spot a client that does not speak TLS
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { HandshakeErrorDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 *   tls: {
 *     cert: "tls/server/server_certificate.pem",
 *     key: "tls/server/private_key.pem",
 *   },
 * });
 * const failed = new Promise<HandshakeErrorDetail>((resolve) =>
 *   receiver.addEventListener(
 *     "handshakeerror",
 *     (event) => resolve(event.detail),
 *     { once: true },
 *   )
 * );
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: receiver.port });
 * await conn.write(new TextEncoder().encode("\x0bMSH|^~\\&|plain text\x1c\r"));
 * const detail = await failed;
 * assertEquals([detail.peer.hostname, detail.failure], ["127.0.0.1", "not_tls"]);
 * ```
 */
export interface HandshakeErrorDetail {
  /** The client's address. */
  peer: Address;
  /** Why the handshake failed. */
  failure: TlsFailure;
  /** A sentence saying why. */
  detail: string;
  /** The error TLS reported. */
  error: unknown;
}

/**
 * Detail of the `framingerror` event.
 *
 * @example Count junk between frames
 * ```ts
 * import { EchoDispatcher, Receiver } from "@x/mllp";
 * import type { FramingErrorDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const framing = new Promise<FramingErrorDetail>((resolve) =>
 *   receiver.addEventListener("framingerror", (event) => resolve(event.detail), {
 *     once: true,
 *   })
 * );
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: receiver.port });
 * await conn.write(new TextEncoder().encode("\r\n\x0bPING\x1c\r"));
 * const detail = await framing;
 * assertEquals([detail.kind, detail.bytes], ["junk", 2]);
 * ```
 */
export interface FramingErrorDetail {
  /** The client's address. */
  peer: Address;
  /**
   * What went wrong: a frame over `maxFrameBytes` (the connection is
   * closed), bytes outside a frame (skipped), a start block inside an
   * unfinished frame (the partial frame is dropped), or a frame that did
   * not arrive within `frameTimeout` (the connection is closed).
   */
  kind: "frame_too_large" | "junk" | "resync" | "frame_timeout";
  /** The bytes concerned: skipped or dropped, or the limit exceeded. */
  bytes: number;
}

/**
 * Detail of the `dispatch` event, one per message.
 *
 * @example Log each message with its sender
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { DispatchDetail } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const dispatched: DispatchDetail[] = [];
 * receiver.addEventListener("dispatch", (event) => dispatched.push(event.detail));
 * await using client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r");
 * const [detail] = dispatched;
 * assertEquals(detail.peer.hostname, "127.0.0.1");
 * assertEquals([detail.kind, detail.controlId, detail.ackCode], [
 *   "hl7",
 *   "7",
 *   "AA",
 * ]);
 * ```
 */
export interface DispatchDetail extends DispatchOutcome {
  /** The client's address. */
  peer: Address;
}

/**
 * The events a {@linkcode Receiver} emits, each a `CustomEvent`.
 *
 * @example Trace a connection's life
 * ```ts
 * import { Client, EchoDispatcher, Receiver } from "@x/mllp";
 * import type { ReceiverEventMap } from "@x/mllp/receiver";
 * import { assertEquals } from "@std/assert";
 *
 * await using receiver = await Receiver.start({
 *   port: 0,
 *   dispatcher: EchoDispatcher,
 * });
 * const seen: (keyof ReceiverEventMap)[] = [];
 * const closed = new Promise((resolve) =>
 *   receiver.addEventListener("connectionclose", resolve)
 * );
 * for (const type of ["connectionopen", "dispatch", "connectionclose"] as const) {
 *   receiver.addEventListener(type, () => seen.push(type));
 * }
 * const client = await Client.connect("127.0.0.1", receiver.port);
 * await client.send("PING");
 * await client.close();
 * await closed;
 * assertEquals(seen, ["connectionopen", "dispatch", "connectionclose"]);
 * ```
 */
export interface ReceiverEventMap {
  /** A client connected (after the handshake and the allow-list). */
  connectionopen: CustomEvent<ConnectionDetail>;
  /** A connection closed. */
  connectionclose: CustomEvent<ConnectionCloseDetail>;
  /** A client was refused by `allowedClients` or a connection limit. */
  clientreject: CustomEvent<ClientRejectDetail>;
  /** A TLS handshake failed. */
  handshakeerror: CustomEvent<HandshakeErrorDetail>;
  /** A connection sent bytes that break the framing. */
  framingerror: CustomEvent<FramingErrorDetail>;
  /** A message was dispatched and answered. */
  dispatch: CustomEvent<DispatchDetail>;
}

/** Records a receiver event's numbers with OpenTelemetry. */
export function recordEvent<K extends keyof ReceiverEventMap>(
  type: K,
  detail: ReceiverEventMap[K]["detail"],
) {
  switch (type) {
    case "connectionopen":
      return recordConnection(1);
    case "connectionclose":
      return recordConnection(-1);
    case "clientreject":
      return recordRejection((detail as ClientRejectDetail).reason);
    case "handshakeerror":
      return recordRejection(
        `tls_${(detail as HandshakeErrorDetail).failure}`,
      );
    case "framingerror":
      return recordFramingError((detail as FramingErrorDetail).kind);
    case "dispatch": {
      const d = detail as DispatchDetail;
      return recordDispatch(d.kind, d.ackCode, d.failed, d.ms, d.bytes);
    }
  }
}
