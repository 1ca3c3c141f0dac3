/**
 * TLS helpers shared by the receiver and the client: reading PEM given as
 * text or a path, and naming why a handshake failed.
 *
 * @module
 */

import { permissionError } from "./permission.ts";

/**
 * A side of a TLS connection.
 *
 * @example Blame the right side
 * ```ts
 * import { TlsHandshakeError, type TlsSide } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const fix: Record<TlsSide, string> = {
 *   client: "check the receiver's certificate and our CA",
 *   server: "check the certificate we present",
 * };
 * const error = new TlsHandshakeError("Refused", {
 *   refusedBy: "client",
 *   failure: "unknown_ca",
 * });
 * assertEquals(
 *   fix[error.refusedBy],
 *   "check the receiver's certificate and our CA",
 * );
 * ```
 */
export type TlsSide = "client" | "server";

/**
 * Why a TLS handshake failed, in a few stable words:
 * `expired`, `unknown_ca`, `name_mismatch`, `wrong_usage`,
 * `bad_certificate`, `certificate_required`, `protocol_version`,
 * `handshake_failure`, `refused` (the peer closed the connection without
 * saying why), `not_tls` or `other`.
 *
 * @example Explain a failure
 * ```ts
 * import { type TlsFailure, TlsHandshakeError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * function explain(failure: TlsFailure): string {
 *   return failure === "expired"
 *     ? "a certificate has expired"
 *     : `handshake failed: ${failure}`;
 * }
 * const error = new TlsHandshakeError("Refused", {
 *   refusedBy: "client",
 *   failure: "expired",
 * });
 * assertEquals(explain(error.failure), "a certificate has expired");
 * ```
 */
export type TlsFailure =
  | "expired"
  | "unknown_ca"
  | "name_mismatch"
  | "wrong_usage"
  | "bad_certificate"
  | "certificate_required"
  | "protocol_version"
  | "handshake_failure"
  | "refused"
  | "not_tls"
  | "other";

/**
 * Returns PEM text: the value itself when it holds a PEM block, else the
 * contents of the file it names.
 */
export async function loadPem(value: string, what: string): Promise<string> {
  if (value.includes("-----BEGIN ")) return value;
  let text: string;
  try {
    text = await Deno.readTextFile(value);
  } catch (error) {
    const doing = `Cannot read ${what} from "${value}"`;
    throw permissionError(error, doing) ??
      new Error(
        `${doing}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
  }
  if (!text.includes("-----BEGIN ")) {
    throw new TypeError(
      `Cannot use ${what} from "${value}": no PEM block in it`,
    );
  }
  return text;
}

/** Loads one PEM value or a list of them. */
export async function loadPems(
  value: string | readonly string[] | undefined,
  what: string,
): Promise<string[]> {
  if (value === undefined) return [];
  const list = typeof value === "string" ? [value] : value;
  return await Promise.all(list.map((v) => loadPem(v, what)));
}

/** Why a TLS handshake failed, read from the error TLS reported. */
export interface TlsFailureInfo {
  /** Who refused: "local" (this side) or "peer" (the other side). */
  by: "local" | "peer";
  /** The failure, in a few stable words. */
  failure: TlsFailure;
  /** A sentence for logs. */
  detail: string;
}

const LOCAL_FAILURES: [RegExp, TlsFailure, string][] = [
  [
    /peer is incompatible|PeerIncompatible/i,
    "protocol_version",
    "the peer offers no TLS version or parameters this side accepts (TLS 1.2 is the minimum)",
  ],
  [/Expired/i, "expired", "the certificate has expired"],
  [/NotValidYet/i, "expired", "the certificate is not valid yet"],
  [
    /UnknownIssuer|UNABLE_TO_VERIFY|self.signed/i,
    "unknown_ca",
    "the certificate is not signed by a trusted CA",
  ],
  [
    /NotValidForName|not valid for name|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME/i,
    "name_mismatch",
    "the certificate does not name the server",
  ],
  [/InvalidPurpose/i, "wrong_usage", "the certificate is not for this use"],
  [
    /BadSignature|BadEncoding/i,
    "bad_certificate",
    "the certificate is malformed",
  ],
];

const ALERTS: [RegExp, TlsFailure, string][] = [
  [
    /CertificateRequired|PEER_DID_NOT_RETURN_A_CERTIFICATE/i,
    "certificate_required",
    "a client certificate is required",
  ],
  [
    /UnknownCA|UNKNOWN_CA/i,
    "unknown_ca",
    "the certificate is not signed by a CA the peer trusts",
  ],
  [
    /CertificateExpired|CERTIFICATE_EXPIRED/i,
    "expired",
    "the certificate has expired",
  ],
  [
    /BadCertificate|BAD_CERTIFICATE|UnsupportedCertificate/i,
    "bad_certificate",
    "the peer rejected the certificate",
  ],
  [
    /ProtocolVersion|PROTOCOL_VERSION/i,
    "protocol_version",
    "no TLS version both sides accept (TLS 1.2 is the minimum)",
  ],
  [
    /HandshakeFailure|HANDSHAKE_FAILURE/i,
    "handshake_failure",
    "no parameters both sides accept",
  ],
];

/** What this side knows about the handshake, for the wording. */
export interface TlsContext {
  /** A server that demands client certificates. */
  verifiesPeer?: boolean;
  /** A client that presented a certificate. */
  sentCertificate?: boolean;
}

/**
 * Names the failure behind a TLS error from Deno (rustls) or `node:tls`.
 *
 * @param error The error.
 * @param role Which side this process plays, for the wording.
 * @param context What this side knows about the handshake.
 */
export function describeTlsError(
  error: unknown,
  role: TlsSide,
  context: TlsContext = {},
): TlsFailureInfo {
  const message = error instanceof Error
    ? `${error.name} ${
      (error as { code?: string }).code ?? ""
    } ${error.message}`
    : String(error);
  const peerRole = role === "client" ? "server" : "client";
  const alert = /alert|PEER_DID_NOT_RETURN/i.test(message);
  if (!alert) {
    for (const [pattern, failure, text] of LOCAL_FAILURES) {
      if (pattern.test(message)) {
        return {
          by: "local",
          failure,
          detail: failure === "protocol_version"
            ? `the ${role} refused: ${text}`
            : `the ${role} refused the ${peerRole}'s certificate: ${text}`,
        };
      }
    }
  }
  for (const [pattern, failure, text] of ALERTS) {
    if (pattern.test(message)) {
      if (failure === "protocol_version" || failure === "handshake_failure") {
        return { by: "peer", failure, detail: `the handshake failed: ${text}` };
      }
      const by = /PEER_DID_NOT_RETURN/i.test(message) ? "local" : "peer";
      const who = by === "local" ? role : peerRole;
      return { by, failure, detail: `the ${who} refused: ${text}` };
    }
  }
  if (
    /UnexpectedEof|unexpected end of file|close_notify|ECONNRESET|socket hang up|reset/i
      .test(message)
  ) {
    // Deno's node:tls server drops a refused client certificate without
    // saying why, and a TLS 1.3 client learns of it only from the close.
    if (role === "server" && context.verifiesPeer) {
      return {
        by: "local",
        failure: "refused",
        detail:
          "the server refused the client certificate (not signed by a trusted CA, expired, or not for client authentication), or the client hung up",
      };
    }
    if (role === "client" && context.sentCertificate) {
      return {
        by: "peer",
        failure: "refused",
        detail:
          "the server closed the connection right after the handshake: it refused the client certificate",
      };
    }
    return {
      by: "peer",
      failure: "refused",
      detail:
        `the ${peerRole} closed the connection during the handshake (a refused certificate, or not speaking TLS)`,
    };
  }
  if (
    /corrupt|InvalidContentType|InvalidMessage|wrong version/i.test(message)
  ) {
    return {
      by: "peer",
      failure: "not_tls",
      detail: `the ${peerRole} did not speak TLS`,
    };
  }
  return {
    by: "peer",
    failure: "other",
    detail: error instanceof Error ? error.message : String(error),
  };
}

/**
 * Whether bytes start like a TLS record (a handshake or an alert, TLS
 * 1.0 to 1.3): what a TLS peer sends to a plain one.
 */
export function isTlsRecord(data: Uint8Array): boolean {
  return data.length >= 3 && (data[0] === 0x16 || data[0] === 0x15) &&
    data[1] === 0x03 && data[2] <= 0x04;
}
