/**
 * An HTTP → MLLP bridge, written as a Deno Deploy-style script: POST an
 * HL7 v2 message, and it is sent through one long-lived {@linkcode Client}
 * to an MLLP receiver; the ACK comes back as JSON. It listens on nothing
 * but HTTP and only connects out over TCP, so it runs where raw TCP
 * listeners are not allowed (Deno Deploy and the like).
 *
 *     MLLP_HOST=127.0.0.1 MLLP_PORT=2575 deno serve -P --port 8080 examples/http_bridge.ts
 *     MLLP_HOST=127.0.0.1 MLLP_PORT=2575 PORT=8080 deno run -P examples/http_bridge.ts
 *     curl -s --data-binary @tests/fixtures/adt_a01_wikipedia.hl7 http://localhost:8080/
 *
 * `-P` grants the permissions deno.json declares for the examples: the
 * network, read access to `tls/` (an `MLLP_CA` path elsewhere needs
 * `--allow-read=FILE` too) and the variables below.
 *
 * Configuration, from environment variables:
 *
 * - `MLLP_HOST` (default `127.0.0.1`), `MLLP_PORT` (default `2575`): the
 *   receiver.
 * - `MLLP_TIMEOUT`: the reply timeout in ms (default 30000);
 *   `MLLP_CONNECT_TIMEOUT` (default 5000).
 * - TLS, on when any is set: `MLLP_CA` (PEM text, or a path), `MLLP_CERT`
 *   and `MLLP_KEY` (a client certificate), `MLLP_SERVERNAME`; or
 *   `MLLP_TLS=true` alone to trust the system's roots.
 * - `BRIDGE_MAX_BYTES`: the largest body accepted (default 1048576).
 * - `PORT`: with `deno run`, serve HTTP on this port (`BRIDGE_HOSTNAME`,
 *   default `0.0.0.0`). Leave it unset under `deno serve`, which serves
 *   the default export on its own `--port`.
 *
 * `POST /` with the message as the body (`text/plain`, `application/hl7-v2`,
 * `x-application/hl7-v2+er7`, `application/octet-stream`, what
 * `curl --data-binary` sends, or no content type; segments separated by
 * CR, LF or CRLF; one message per request) answers:
 *
 * | status | when                                                        |
 * | ------ | ----------------------------------------------------------- |
 * | 200    | `AA` or `CA`                                                |
 * | 422    | `AE`, `AR`, `CE` or `CR`: the receiver answered no          |
 * | 400    | an empty body, not HL7, several messages, an unreadable MSH |
 * | 405    | a method other than POST (GET answers the bridge's state)   |
 * | 413    | a body over `BRIDGE_MAX_BYTES`                              |
 * | 415    | another content type (JSON, a form, multipart)              |
 * | 502    | the receiver cannot be reached, closed the connection, or   |
 * |        | answered with something that is not this message's ACK      |
 * | 503    | too many requests queued for the one connection             |
 * | 504    | no reply within `MLLP_TIMEOUT` (the message was sent)       |
 *
 * @module
 */

import {
  Client,
  ClientError,
  type ClientTlsOptions,
  HeaderError,
  isHl7,
  QueueFullError,
  ReplyTimeoutError,
  type SendResult,
  unwrap,
} from "@x/mllp";
import { log, reportMissingPermission, setupLogging } from "./_sample.ts";

/** The bridge's settings. */
export interface BridgeConfig {
  /** The MLLP receiver. */
  mllpHost: string;
  mllpPort: number;
  /** Reply timeout, ms. */
  timeout: number;
  connectTimeout: number;
  tls: ClientTlsOptions | undefined;
  /** The largest request body accepted, in bytes. */
  maxBytes: number;
  /** Where `deno run` serves HTTP (`PORT`); unset under `deno serve`. */
  httpPort: number | undefined;
  httpHostname: string;
}

/** Reads the configuration from environment variables (see above). */
export function readConfig(
  env: { get(name: string): string | undefined },
): BridgeConfig {
  const number = (name: string, fallback: number) => {
    const value = env.get(name);
    if (value === undefined || value === "") return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0) {
      throw new RangeError(`Invalid ${name} "${value}": expected a number`);
    }
    return parsed;
  };
  const ca = env.get("MLLP_CA");
  const cert = env.get("MLLP_CERT");
  const key = env.get("MLLP_KEY");
  const serverName = env.get("MLLP_SERVERNAME");
  const tlsOn = env.get("MLLP_TLS") === "true" ||
    [ca, cert, key, serverName].some((value) => value);
  const port = env.get("PORT");
  return {
    mllpHost: env.get("MLLP_HOST") || "127.0.0.1",
    mllpPort: number("MLLP_PORT", 2575),
    timeout: number("MLLP_TIMEOUT", 30_000),
    connectTimeout: number("MLLP_CONNECT_TIMEOUT", 5_000),
    tls: tlsOn
      ? { caCerts: ca || undefined, cert, key, serverName }
      : undefined,
    maxBytes: number("BRIDGE_MAX_BYTES", 1024 * 1024),
    httpPort: port ? number("PORT", 8000) : undefined,
    httpHostname: env.get("BRIDGE_HOSTNAME") || "0.0.0.0",
  };
}

/**
 * Opens the bridge's client. It connects now and, after a drop, again
 * when a request needs it (`reconnect: false`): no reconnect loop runs
 * between requests, and a request fails fast (502) while the receiver is
 * down.
 */
export function openClient(config: BridgeConfig): Client {
  return new Client(config.mllpHost, config.mllpPort, {
    replyTimeout: config.timeout,
    connectTimeout: config.connectTimeout,
    tls: config.tls,
    reconnect: false,
  });
}

const ACCEPTED_TYPES = [
  "",
  "text/plain",
  "application/hl7-v2",
  "application/hl7-v2+er7",
  "x-application/hl7-v2+er7",
  "application/octet-stream",
  "application/x-www-form-urlencoded", // what curl --data-binary sends
];

/**
 * Makes the request handler: `(request) => response`, for `Deno.serve`.
 *
 * @param client The client every request sends through.
 * @param maxBytes The largest body accepted.
 */
export function createHandler(
  client: Client,
  maxBytes: number,
): (request: Request) => Promise<Response> {
  return async (request) => {
    if (request.method === "GET") {
      return json(200, {
        upstream: client.address,
        state: client.state,
        queued: client.queued,
      });
    }
    if (request.method !== "POST") {
      return json(405, { ok: false, error: "method_not_allowed" }, {
        allow: "GET, POST",
      });
    }
    const type = (request.headers.get("content-type") ?? "").split(";")[0]
      .trim().toLowerCase();
    if (!ACCEPTED_TYPES.includes(type) && !type.startsWith("text/")) {
      return json(415, {
        ok: false,
        error: "unsupported_media_type",
        message: `Cannot take "${type}": send the HL7 message as text`,
      });
    }
    const body = await readBody(request, maxBytes);
    if (body === undefined) {
      return json(413, {
        ok: false,
        error: "payload_too_large",
        message: `The body is larger than ${maxBytes} bytes`,
      });
    }
    const message = toMessage(body);
    if (typeof message === "string") {
      return json(400, { ok: false, error: "bad_request", message });
    }
    let result: SendResult;
    const started = performance.now();
    try {
      // Not aborted with the request: a message half-way out would cost
      // the connection, and one already sent cannot be called back.
      result = await client.send(message);
    } catch (error) {
      return failure(error);
    }
    return answer(result, performance.now() - started);
  };
}

/** The body, or `undefined` when it is over `maxBytes`. */
async function readBody(
  request: Request,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  if (Number(request.headers.get("content-length") ?? 0) > maxBytes) {
    return undefined;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body ?? []) {
    size += chunk.length;
    if (size > maxBytes) return undefined; // cancels the rest of the body
    chunks.push(chunk);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/**
 * The message to send: the body without a BOM or MLLP frame, its segments
 * (split at CR, LF or CRLF, blank lines dropped) ended by CR. A string
 * says why the body cannot be sent.
 */
function toMessage(body: Uint8Array): Uint8Array | string {
  let bytes = body;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    bytes = bytes.subarray(3);
  }
  bytes = unwrap(bytes);
  const segments: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 0x0d && bytes[i] !== 0x0a) continue;
    const line = bytes.subarray(start, i);
    if (line.some((byte) => byte !== 0x20 && byte !== 0x09)) {
      segments.push(line);
    }
    start = i + 1;
  }
  if (segments.length === 0) return "The body is empty";
  if (!isHl7(segments[0])) {
    return "The body is not an HL7 v2 message: it must start with MSH";
  }
  if (segments.filter((segment) => isHl7(segment)).length > 1) {
    return "The body holds several messages: send one per request";
  }
  const message = new Uint8Array(
    segments.reduce((n, segment) => n + segment.length + 1, 0),
  );
  let offset = 0;
  for (const segment of segments) {
    message.set(segment, offset);
    offset += segment.length;
    message[offset++] = 0x0d;
  }
  return message;
}

/** The response to a reply. */
function answer(result: SendResult, ms: number): Response {
  const roundTripMs = Math.round(ms * 100) / 100;
  switch (result.outcome) {
    case "accept":
    case "error":
    case "reject":
      return json(result.ok ? 200 : 422, {
        ok: result.ok,
        outcome: result.outcome,
        code: result.code,
        controlId: result.ack.messageControlId,
        text: result.ack.text,
        raw: result.ack.toString(),
        roundTripMs,
      });
    case "mismatch":
      return json(502, {
        ok: false,
        error: "ack_mismatch",
        message:
          `The receiver's ACK names control id "${result.ack.messageControlId}", not "${result.expected}"`,
        code: result.code,
        controlId: result.ack.messageControlId,
        raw: result.ack.toString(),
      });
    case "not_ack":
      return json(502, {
        ok: false,
        error: "not_an_ack",
        message: result.reason,
        raw: new TextDecoder().decode(result.reply),
      });
    case "reply": // Only sent for payloads that are not HL7: never here.
      return json(502, { ok: false, error: "not_an_ack", raw: result.text });
    case "silent":
      // MSH-15/MSH-16 let the receiver answer with silence.
      return json(result.ok ? 200 : 422, {
        ok: result.ok,
        outcome: "silent",
        means: result.means,
        controlId: result.controlId,
        roundTripMs,
      });
  }
}

/** The response to a send that failed. */
function failure(error: unknown): Response {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof HeaderError || error instanceof TypeError) {
    return json(400, { ok: false, error: "bad_request", message });
  }
  if (!(error instanceof ClientError)) throw error;
  const reason = error.reason;
  if (error instanceof ReplyTimeoutError) {
    return json(504, { ok: false, error: "upstream_timeout", reason, message });
  }
  if (error instanceof QueueFullError) {
    return json(503, { ok: false, error: "busy", reason, message }, {
      "retry-after": "1",
    });
  }
  return json(502, {
    ok: false,
    error: error.context === "connecting"
      ? "upstream_unreachable"
      : "upstream_error",
    reason,
    message,
  });
}

function json(
  status: number,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Response {
  return Response.json(body, { status, headers });
}

// ---- The script: top-level await, configuration from the environment ----

// Run without the permissions it needs: one line, not a stack trace.
if (import.meta.main) reportMissingPermission();

const config = readConfig(Deno.env);

// The library's log lines (ids, types, peers; never bodies at info) go to
// the console. Not when a test imports the module.
if (import.meta.main) setupLogging("info");

/** The one client, shared by every request this isolate serves. */
export const client: Client = openClient(config);

/** The handler, for `Deno.serve(handler)`. */
export const handler: (request: Request) => Promise<Response> = createHandler(
  client,
  config.maxBytes,
);

// `deno serve examples/http_bridge.ts` serves this.
export default { fetch: handler } satisfies Deno.ServeDefaultExport;

// `PORT=8080 deno run -A examples/http_bridge.ts` serves it itself.
const server = import.meta.main && config.httpPort !== undefined
  ? Deno.serve({
    port: config.httpPort,
    hostname: config.httpHostname,
    onListen: ({ hostname, port }) =>
      log.info("HTTP bridge on {url} to MLLP {upstream}", {
        url: `http://${hostname}:${port}/`,
        upstream: client.address,
      }),
  }, handler)
  : undefined;

// On SIGINT or SIGTERM, stop serving, close the MLLP connection and exit.
// Platforms without signals (Deno Deploy) end the isolate themselves.
if (import.meta.main) {
  const stop = async () => {
    await server?.shutdown();
    await client.close();
    Deno.exit(0);
  };
  try {
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  } catch {
    // No signals here.
  }
}
