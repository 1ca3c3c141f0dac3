/**
 * The command line's NATS flags, for `listen --store nats://...` (and any
 * other command that takes a NATS URL): the server list, the stream and
 * consumer names, replicas, and credentials (user and password, token,
 * nkey seed file, creds file, TLS). It only parses: it loads no NATS code,
 * so the commands load NATS only when a `nats://` URL is given.
 *
 * @module
 */

import { type Flags, stringFlag, UsageError } from "./common.ts";

/** The flag names, for `parseFlags`'s `string` list. */
export const NATS_FLAGS: readonly string[] = [
  "nats-stream",
  "nats-consumer",
  "nats-replicas",
  "nats-user",
  "nats-password",
  "nats-token",
  "nats-nkey",
  "nats-creds",
  "nats-ca",
  "nats-cert",
  "nats-key",
];

/** The flags' help, as a usage block's lines (indented by two). */
export const NATS_USAGE =
  `  --nats-stream NAME   The JetStream stream                [default: HL7_IN]
  --nats-consumer NAME The durable consumer receivers share [default: mllp]
  --nats-replicas N    Replicas of a stream it creates: 1, 3 or 5
                                                              [default: 3]
  --nats-user USER     NATS user, with --nats-password (or give them in
  --nats-password PASS the URL: nats://USER:PASS@host:4222)
  --nats-token TOKEN   NATS token (or nats://TOKEN@host:4222)
  --nats-nkey FILE     A file with the user's nkey seed (SU...)
  --nats-creds FILE    A creds file (JWT and seed), as nsc writes it
  --nats-ca FILE       TLS to NATS, checking the servers against this CA
  --nats-cert FILE     TLS client certificate for NATS, with --nats-key
  --nats-key FILE      Its private key
`;

/** What a NATS URL and the NATS flags describe; plain data. */
export interface NatsOptions {
  /** The servers, `nats://host:port` (credentials taken out). */
  servers: string[];
  /** `--nats-stream`, when given. */
  stream?: string;
  /** `--nats-consumer`, when given. */
  consumer?: string;
  /** `--nats-replicas`, when given. */
  replicas?: number;
  /** Credentials and TLS, as `JetStreamConnectionOptions` takes them. */
  connection: {
    user?: string;
    pass?: string;
    token?: string;
    nkeyFile?: string;
    credsFile?: string;
    tls?: { caFile?: string; certFile?: string; keyFile?: string };
  };
}

/** Whether a flag's value is a NATS URL (`nats://` or `tls://`). */
export function isNatsUrl(value: string): boolean {
  return /^(nats|tls):\/\//i.test(value);
}

/**
 * Reads a NATS URL list (`nats://host:4222[,host:4223,...]`; later hosts
 * may leave out `nats://`, and credentials may be in the first URL) and
 * the `--nats-*` flags.
 *
 * @param url The flag's value, such as `--store`'s.
 * @param flags The parsed flags (with {@linkcode NATS_FLAGS} among them).
 * @param flag The flag the URL came from, for error messages.
 * @returns The servers, names, replicas and credentials.
 * @throws {UsageError} If a URL or flag is invalid, or credentials are
 *   given two ways.
 *
 * @example The servers and credentials of a `--store` URL
 * ```ts
 * import { natsOptions } from "./nats_options.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const options = natsOptions(
 *   "nats://mllp:secret@10.0.0.1:4222,10.0.0.2:4222",
 *   { _: [], "nats-stream": "ADT_IN" },
 *   "--store",
 * );
 * assertEquals(options.servers, ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]);
 * assertEquals(options.connection, { user: "mllp", pass: "secret" });
 * assertEquals(options.stream, "ADT_IN");
 * ```
 */
export function natsOptions(
  url: string,
  flags: Flags,
  flag: string,
): NatsOptions {
  const connection: NatsOptions["connection"] = {};
  const servers = serversOf(url, flag, connection);
  credentialsOf(flags, connection);
  const options: NatsOptions = { servers, connection };
  const stream = stringFlag(flags, "nats-stream");
  const consumer = stringFlag(flags, "nats-consumer");
  const replicas = stringFlag(flags, "nats-replicas");
  if (stream !== undefined) options.stream = stream;
  if (consumer !== undefined) options.consumer = consumer;
  if (replicas !== undefined) {
    if (!["1", "3", "5"].includes(replicas)) {
      throw new UsageError(
        `Invalid --nats-replicas "${replicas}": expected 1, 3 or 5`,
      );
    }
    options.replicas = Number(replicas);
  }
  return options;
}

/** The servers of a URL list; credentials in a URL go to `connection`. */
function serversOf(
  url: string,
  flag: string,
  connection: NatsOptions["connection"],
): string[] {
  const servers: string[] = [];
  for (const part of url.split(",").map((s) => s.trim())) {
    if (part === "") continue;
    let parsed: URL | undefined;
    try {
      parsed = new URL(isNatsUrl(part) ? part : `nats://${part}`);
    } catch {
      // Not a URL: said below.
    }
    if (
      !parsed?.hostname ||
      (parsed.pathname !== "" && parsed.pathname !== "/")
    ) {
      throw new UsageError(
        `Invalid ${flag} "${url}": "${part}" is not a NATS URL (nats://host:port)`,
      );
    }
    const user = decodeURIComponent(parsed.username);
    const pass = decodeURIComponent(parsed.password);
    if (user !== "" && pass !== "") {
      connection.user = user;
      connection.pass = pass;
    } else if (user !== "") {
      connection.token = user;
    }
    servers.push(
      `${parsed.protocol}//${parsed.hostname}:${parsed.port || "4222"}`,
    );
  }
  if (servers.length === 0) {
    throw new UsageError(`Invalid ${flag} "${url}": no NATS server in it`);
  }
  return servers;
}

/** The credential and TLS flags, into `connection`. */
function credentialsOf(
  flags: Flags,
  connection: NatsOptions["connection"],
): void {
  const fromFlags = {
    user: stringFlag(flags, "nats-user"),
    pass: stringFlag(flags, "nats-password"),
    token: stringFlag(flags, "nats-token"),
    nkeyFile: stringFlag(flags, "nats-nkey"),
    credsFile: stringFlag(flags, "nats-creds"),
  };
  for (const [key, value] of Object.entries(fromFlags)) {
    if (value !== undefined) connection[key as keyof typeof fromFlags] = value;
  }
  if ((connection.user === undefined) !== (connection.pass === undefined)) {
    throw new UsageError("--nats-user and --nats-password go together");
  }
  const ways = [
    connection.user,
    connection.token,
    connection.nkeyFile,
    connection.credsFile,
  ].filter((v) => v !== undefined).length;
  if (ways > 1) {
    throw new UsageError(
      "Give one NATS credential: a user and password, --nats-token, --nats-nkey or --nats-creds",
    );
  }
  const tls = {
    caFile: stringFlag(flags, "nats-ca"),
    certFile: stringFlag(flags, "nats-cert"),
    keyFile: stringFlag(flags, "nats-key"),
  };
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new UsageError("--nats-cert and --nats-key go together");
  }
  if (tls.caFile !== undefined || tls.certFile !== undefined) {
    connection.tls = Object.fromEntries(
      Object.entries(tls).filter(([, v]) => v !== undefined),
    );
  }
}
