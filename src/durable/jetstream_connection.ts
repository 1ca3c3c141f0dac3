/**
 * How `JetStreamMessageStore` connects to NATS: credentials and TLS as
 * plain data (strings and file paths), so that a caller such as the
 * command line can describe a connection without loading NATS.
 *
 * @module
 */

/**
 * TLS to the NATS servers. Any field turns TLS on; `caFile` alone checks
 * the servers' certificates against that CA.
 *
 * @example TLS with a private CA and a client certificate
 * ```ts
 * import type { JetStreamTlsOptions } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * const tls: JetStreamTlsOptions = {
 *   caFile: "/etc/nats/ca.pem",
 *   certFile: "/etc/nats/client.pem",
 *   keyFile: "/etc/nats/client-key.pem",
 * };
 * assertEquals(Object.keys(tls).length, 3);
 * ```
 */
export interface JetStreamTlsOptions {
  /** A PEM file of the CA(s) the servers' certificates must chain to. */
  caFile?: string;
  /** A PEM client certificate, for servers that verify clients. */
  certFile?: string;
  /** The PEM private key of `certFile`. */
  keyFile?: string;
}

/**
 * Connection options for NATS: one way to authenticate (user and
 * password, a token, an nkey seed, or a creds file) and TLS. Files are
 * read when the connection is opened (Deno needs `--allow-read` for them).
 *
 * @example A user and password from the environment
 * ```ts
 * import type { JetStreamConnectionOptions } from "@x/mllp/jetstream";
 * import { assertEquals } from "@std/assert";
 *
 * const connection: JetStreamConnectionOptions = {
 *   user: "mllp",
 *   pass: Deno.env.get("NATS_PASSWORD") ?? "",
 *   tls: { caFile: "/etc/nats/ca.pem" },
 * };
 * assertEquals(connection.user, "mllp");
 * ```
 */
export interface JetStreamConnectionOptions {
  /** The user, with `pass`. */
  user?: string;
  /** The password of `user`. */
  pass?: string;
  /** A token (`authorization { token: ... }` on the server). */
  token?: string;
  /**
   * A file holding a user nkey seed (`SU...`), as `nk -gen user` writes
   * it; the server knows the public key.
   */
  nkeyFile?: string;
  /** A creds file (the user's JWT and nkey seed), as `nsc` writes it. */
  credsFile?: string;
  /** TLS to the servers. */
  tls?: JetStreamTlsOptions;
  /** The connection's name, as the servers show it. @default {"mllp-store"} */
  name?: string;
  /**
   * How many times to try reconnecting after a connection is lost; -1
   * forever. @default {-1}
   */
  maxReconnectAttempts?: number;
  /** The wait between reconnection attempts, in ms. @default {250} */
  reconnectTimeWait?: number;
  /** How long the first connection may take, in ms. @default {20000} */
  timeout?: number;
}
