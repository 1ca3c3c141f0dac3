/**
 * What `mllp send` prints of each message: its result line, and the same
 * as a JSON object for `--json`, with a hint for what to do next when a
 * send failed.
 *
 * @module
 */

import type { Ack } from "../hl7/ack.ts";
import type { BatchItemResult, BatchResult } from "../hl7/batch.ts";
import type { ClientTlsOptions, SendResult } from "../client/client.ts";
import { isNak } from "../wire/release2.ts";
import {
  ClientError,
  ConnectionClosedError,
  ConnectTimeoutError,
  InvalidReplyError,
  TlsHandshakeError,
} from "../client/errors.ts";
import { UNKNOWN_REPLY } from "../dispatch/echo.ts";
import { CharsetError } from "../hl7/charset.ts";
import { HeaderError } from "../hl7/errors.ts";
import { describeError } from "./common.ts";
import type { InputProblem, Outgoing } from "./input.ts";
import type { Ending } from "./progress.ts";

/** The result line for one message, its exit status and its ending. */
export function describeResult(
  message: Outgoing,
  result: SendResult,
  ms: number,
): [string, number, Ending] {
  const id = message.controlId || "-";
  const time = `${ms.toFixed(1)} ms`;
  switch (result.outcome) {
    case "accept":
      return [`${id} ${result.code} ${time}`, 0, {
        kind: "ack",
        code: result.code,
        ms,
      }];
    case "error":
    case "reject": {
      const text = result.ack.text ? ` ${JSON.stringify(result.ack.text)}` : "";
      return [`${id} ${result.code} ${time}${text}`, 1, {
        kind: "ack",
        code: result.code,
        ms,
      }];
    }
    case "mismatch":
      return [
        `${id} mismatch ${time} ACK ${result.code} names control id ${
          JSON.stringify(result.ack.messageControlId)
        }`,
        1,
        { kind: "other", ms },
      ];
    case "not_ack":
      return [`${id} not-an-ack ${time} ${result.reason}`, 1, {
        kind: "other",
        ms,
      }];
    case "reply":
      if (isNak(result.reply)) {
        return [`- NAK ${time}`, 1, { kind: "other", ms }];
      }
      if (isUnknownReply(result.text)) {
        return [
          `- reply ${time} ${
            JSON.stringify(result.text)
          } (not accepted: the receiver does not know this payload)`,
          1,
          { kind: "other", ms },
        ];
      }
      return [`- reply ${time} ${JSON.stringify(result.text)}`, 0, {
        kind: "reply",
        ms,
      }];
    case "silent":
      return [
        `${id} silent ${time} (no acknowledgment, which means ${
          result.means === "accepted" ? "accepted" : "not accepted"
        } for this MSH-15/MSH-16)`,
        result.ok ? 0 : 1,
        { kind: "silent" },
      ];
  }
}

/**
 * Whether a reply to a payload that is not HL7 is the receiver's "unknown
 * payload" answer (the EchoDispatcher's `mllp_unknown`, elixir-mllp's
 * too): the payload was not understood, so not accepted.
 */
export function isUnknownReply(text: string): boolean {
  return text.trim() === UNKNOWN_REPLY;
}

/**
 * The result line for one message of a batch, its exit status and its
 * ending. A message the response batch leaves out was accepted (HL7's
 * exception mode): it is shown and counted as `AA`.
 */
export function describeBatchItem(
  item: BatchItemResult,
  result: BatchResult,
  ms: number,
): [string, number, Ending] {
  const id = item.controlId || "-";
  const time = `${ms.toFixed(1)} ms`;
  if (item.outcome === "unknown") {
    return [
      `${id} unknown ${time} ${result.problem ?? "no ACK names it"}`,
      1,
      { kind: "other", ms },
    ];
  }
  const code = item.ack?.code ?? "AA";
  const text = item.outcome !== "accept" && item.ack?.text
    ? ` ${JSON.stringify(item.ack.text)}`
    : "";
  return [`${id} ${code} ${time}${text}`, item.outcome === "accept" ? 0 : 1, {
    kind: "ack",
    code,
    ms,
  }];
}

/** One `--json` object for a message of a batch. */
export function batchItemJson(
  message: Outgoing,
  i: number,
  item: BatchItemResult,
  result: BatchResult,
  ms: number,
): Record<string, unknown> {
  return {
    file: message.file,
    index: message.index,
    batch: message.controlId ?? null,
    batchIndex: i + 1,
    controlId: item.controlId,
    ok: item.outcome === "accept",
    outcome: item.outcome,
    code: item.outcome === "unknown" ? null : item.ack?.code ?? "AA",
    ms: Math.round(ms * 100) / 100,
    text: item.ack?.text ?? null,
    ...(item.outcome === "unknown" ? { reason: result.problem ?? null } : {}),
  };
}

/** The `applicationAck` of a `--json` object: code and text, or null. */
export function appAckJson(
  ack: Ack | undefined,
): Record<string, unknown> | null {
  return ack === undefined ? null : { code: ack.code, text: ack.text };
}

/** One `--json` object for a message that got a reply. */
export function resultJson(
  message: Outgoing,
  result: SendResult,
  ms: number,
): Record<string, unknown> {
  const base = {
    file: message.file,
    index: message.index,
    controlId: message.controlId ?? null,
  };
  const time = Math.round(ms * 100) / 100;
  switch (result.outcome) {
    case "accept":
    case "error":
    case "reject":
      return {
        ...base,
        ok: result.ok,
        outcome: result.outcome,
        code: result.code,
        ms: time,
        text: result.ack.text,
      };
    case "mismatch":
      return {
        ...base,
        ok: false,
        outcome: "mismatch",
        code: result.code,
        ms: time,
        ackControlId: result.ack.messageControlId,
      };
    case "not_ack":
      return {
        ...base,
        ok: false,
        outcome: "not_ack",
        ms: time,
        reason: result.reason,
      };
    case "reply":
      return isNak(result.reply)
        ? { ...base, ok: false, outcome: "nak", ms: time }
        : {
          ...base,
          ok: !isUnknownReply(result.text),
          outcome: "reply",
          ms: time,
          reply: result.text,
        };
    case "silent":
      return {
        ...base,
        ok: result.ok,
        outcome: "silent",
        means: result.means,
        ms: time,
      };
  }
}

/** One `--json` object for a message whose send failed. */
export function errorJson(
  message: Outgoing,
  error: unknown,
  timedOut: boolean,
): Record<string, unknown> {
  return {
    file: message.file,
    index: message.index,
    controlId: message.controlId ?? null,
    ok: false,
    outcome: timedOut ? "timeout" : "error",
    reason: reasonOfError(error),
    error: error instanceof Error ? error.message : String(error),
  };
}

/**
 * A failed send's reason, in a word: a client error's own (`refused`,
 * `timeout`, `tls_handshake`, ...), `charset` or `header` for a message
 * the client could not read, `invalid_message` for one it refused
 * otherwise, `error` for anything else. Never null.
 */
export function reasonOfError(error: unknown): string {
  if (error instanceof ClientError) return error.reason;
  if (error instanceof CharsetError) return "charset";
  if (error instanceof HeaderError) return "header";
  if (error instanceof TypeError) return "invalid_message";
  return "error";
}

/**
 * One `--json` object for a file (or message) that cannot be sent; its
 * `error` is the message without the file's name (that is `file`).
 */
export function problemJson(problem: InputProblem): Record<string, unknown> {
  const label = problem.index === undefined
    ? problem.file
    : `${problem.file}#${problem.index}`;
  const error = problem.message.startsWith(`${label}: `)
    ? problem.message.slice(label.length + 2)
    : problem.message;
  return {
    file: problem.file,
    index: problem.index ?? null,
    controlId: null,
    ok: false,
    outcome: "invalid",
    reason: problem.reason,
    error,
  };
}

/**
 * A failed connect or send: one `error:` line, and for a TLS problem a
 * `hint:` line naming the flag that may fix it.
 */
export function sendErrorText(
  label: string,
  error: unknown,
  host: string,
  tls: ClientTlsOptions | undefined,
  connecting = false,
): string {
  // A certificate that cannot be read is not about the message.
  const prefix = !connecting || error instanceof ClientError
    ? `${label}: `
    : "";
  const hint = sendHint(error, host, tls);
  return `error: ${prefix}${describeError(error)}\n` +
    (hint ? `hint: ${hint}\n` : "");
}

export function sendHint(
  error: unknown,
  host: string,
  tls: ClientTlsOptions | undefined,
): string | undefined {
  if (error instanceof ConnectTimeoutError && tls) {
    return "a receiver that does not speak TLS leaves the handshake waiting until the connect timeout";
  }
  if (error instanceof ConnectionClosedError && error.context !== undefined) {
    return tls
      ? "the receiver closed the connection without replying: it may allow only some clients (its log says which)"
      : "the receiver closed the connection without replying: it may allow only some clients (its log says which), or speak only TLS (then give --ca FILE)";
  }
  if (
    error instanceof InvalidReplyError && !tls &&
    error.message.includes("TLS record")
  ) {
    return "the receiver speaks TLS: give --ca FILE (or --servername NAME) to connect with TLS";
  }
  if (!(error instanceof TlsHandshakeError)) return undefined;
  if (error.refusedBy === "client") {
    switch (error.failure) {
      case "name_mismatch":
        return tls?.serverName === undefined
          ? `the receiver's certificate does not name "${host}"; give the name it carries with --servername NAME`
          : `the receiver's certificate does not name "${tls.serverName}"`;
      case "unknown_ca":
        return "give the CA that signed the receiver's certificate with --ca FILE";
      case "expired":
        return "the receiver's certificate has expired or is not valid yet";
    }
    return undefined;
  }
  switch (error.failure) {
    case "certificate_required":
      return "the receiver requires a client certificate: give one with --cert FILE --key FILE";
    case "refused":
    case "unknown_ca":
    case "expired":
    case "bad_certificate":
      return tls?.cert === undefined
        ? undefined
        : "the receiver did not accept the client certificate (--cert); its log may say more";
  }
  return undefined;
}
