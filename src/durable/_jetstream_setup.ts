/**
 * Connecting `JetStreamMessageStore` to NATS and making sure its streams
 * and consumers are there: the network permission check that comes before
 * the node transport (which, without permission, throws an uncaught
 * `NotCapable` from inside its socket code), stream and consumer
 * configurations, and a count of the messages on a subject filter.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { requirePermissions } from "../net/permission.ts";
import { guardConnect } from "./_nats_reset_guard.ts";
import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import {
  connect,
  credsAuthenticator,
  nanos,
  type NatsConnection,
  nkeyAuthenticator,
  type NodeConnectionOptions,
} from "@nats-io/transport-node";
import type { JetStreamConnectionOptions } from "./jetstream_connection.ts";

const logger = getLogger(["mllp", "store"]);

/** A server URL as `host:port` for a permission query (default port 4222). */
export function hostOf(server: string): string {
  const url = new URL(
    /^[a-z]+:\/\//i.test(server) ? server : `nats://${server}`,
  );
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  return `${hostname}:${url.port || "4222"}`;
}

/**
 * Throws `NotCapable` in one line naming the flag when Deno may not
 * connect to one of `servers` (checked before the transport runs, since it
 * would throw `NotCapable` where nobody can catch it).
 */
export function checkNetPermission(servers: string[]): void {
  requirePermissions(
    servers.map((server) => ({ name: "net", host: hostOf(server) })),
    `Cannot connect to NATS at ${servers.join(",")}`,
  );
}

/**
 * Connects to NATS after {@linkcode checkNetPermission}, guarded so that a
 * refused connect cannot end the process later (`guardConnect`).
 */
export async function connectNats(
  servers: string[],
  options: NodeConnectionOptions,
): Promise<NatsConnection> {
  if (servers.length === 0) {
    throw new TypeError("Cannot connect to NATS: no server given");
  }
  checkNetPermission(servers);
  try {
    return await guardConnect(() =>
      connect({
        name: "mllp-store",
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...options,
        servers,
      })
    );
  } catch (error) {
    throw new Error(
      `Cannot connect to NATS at ${servers.join(",")}: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
}

/** The server a connection is on, for messages (`127.0.0.1:4222`). */
export function serversOf(nc: NatsConnection): string {
  return nc.getServer();
}

/** How long opening a store or outbox waits for JetStream to answer. */
export const JETSTREAM_READY_MS = 30_000;

/** Errors of a JetStream that is not ready yet (a cluster starting up). */
const NOT_READY = /timeout|timed out|temporarily unavailable|no responders/i;

/**
 * Runs `setup` (the JetStream requests that open a store or outbox) until
 * it succeeds, trying again while JetStream is not ready yet, as when the
 * servers were just started and have no meta leader: for at most
 * {@linkcode JETSTREAM_READY_MS}. Other errors go through at once.
 *
 * @param servers The servers, for the messages.
 * @param what What is being opened, as the error starts: `Cannot open store`.
 * @param setup The requests; run again from the start after a failure.
 * @returns What `setup` returned.
 * @throws {Error} If JetStream did not answer in time, saying what to
 *   check.
 */
export async function whenJetStreamReady<T>(
  servers: string,
  what: string,
  setup: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + JETSTREAM_READY_MS;
  let delay = 250;
  let logged = false;
  for (;;) {
    try {
      return await setup();
    } catch (error) {
      const message = (error as Error)?.message ?? String(error);
      if (!NOT_READY.test(message)) throw error;
      if (Date.now() + delay > deadline) {
        throw new Error(
          `${what}: JetStream at ${servers} did not answer within ${
            JETSTREAM_READY_MS / 1000
          } s (${message}); check that the servers run with JetStream on (-js) and that a quorum of them is up`,
          { cause: error },
        );
      }
      if (!logged) {
        logged = true;
        logger.info(
          "Waiting for JetStream at {servers} to be ready ({reason})",
          { servers, reason: message },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 2_000);
    }
  }
}

/** Reads a credentials file, or fails naming what it is for. */
async function readFileFor(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw new Error(
      `Cannot read the NATS ${what} "${path}": ${
        (error as Error).message
      }; check the path (and that Deno may read it: --allow-read)`,
      { cause: error },
    );
  }
}

/**
 * The NATS client's options for a {@linkcode JetStreamConnectionOptions}:
 * reads the nkey seed, creds and TLS files.
 */
export async function natsConnectOptions(
  options: JetStreamConnectionOptions,
): Promise<NodeConnectionOptions> {
  const ways = [
    options.user !== undefined || options.pass !== undefined,
    options.token !== undefined,
    options.nkeyFile !== undefined,
    options.credsFile !== undefined,
  ].filter(Boolean).length;
  if (ways > 1) {
    throw new TypeError(
      "Cannot connect to NATS: give one of user and password, token, nkey seed file or creds file",
    );
  }
  const result: NodeConnectionOptions = {
    name: options.name,
    maxReconnectAttempts: options.maxReconnectAttempts,
    reconnectTimeWait: options.reconnectTimeWait,
    timeout: options.timeout,
    user: options.user,
    pass: options.pass,
    token: options.token,
  };
  if (options.nkeyFile !== undefined) {
    const text = new TextDecoder().decode(
      await readFileFor(options.nkeyFile, "nkey seed file"),
    );
    const seed = /\bSU[A-Z2-7]{40,}\b/.exec(text)?.[0];
    if (!seed) {
      throw new Error(
        `Cannot use the NATS nkey seed file "${options.nkeyFile}": it holds no user seed (a line starting with SU); create one with nk -gen user`,
      );
    }
    result.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (options.credsFile !== undefined) {
    result.authenticator = credsAuthenticator(
      await readFileFor(options.credsFile, "creds file"),
    );
  }
  const tls = options.tls;
  if (tls && (tls.caFile || tls.certFile || tls.keyFile)) {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      throw new TypeError(
        "Cannot connect to NATS: a TLS client certificate needs its key, give both certFile and keyFile",
      );
    }
    const text = async (path: string | undefined, what: string) =>
      path === undefined
        ? undefined
        : new TextDecoder().decode(await readFileFor(path, what));
    result.tls = {
      ca: await text(tls.caFile, "TLS CA file"),
      cert: await text(tls.certFile, "TLS certificate file"),
      key: await text(tls.keyFile, "TLS key file"),
    };
  }
  for (const key of Object.keys(result) as (keyof NodeConnectionOptions)[]) {
    if (result[key] === undefined) delete result[key];
  }
  return result;
}

/**
 * Logs what happens to a connection until it closes, and tells
 * `onChange` when it is lost (`false`) and back (`true`).
 */
export async function logStatus(
  nc: NatsConnection,
  onChange: (connected: boolean) => void = () => {},
): Promise<void> {
  for await (const status of nc.status()) {
    if (status.type === "disconnect") onChange(false);
    if (status.type === "reconnect") onChange(true);
    switch (status.type) {
      case "disconnect":
        logger.warn(
          "Lost the connection to NATS at {server}; stores answer AE until it is back",
          { server: status.server },
        );
        break;
      case "reconnect":
        logger.info("Reconnected to NATS at {server}", {
          server: status.server,
        });
        break;
      case "error":
        logger.warn("NATS connection error: {error}", {
          error: status.error,
        });
        break;
    }
  }
}

/** What the streams of a store are. */
export interface StreamSettings {
  stream: string;
  prefix: string;
  parkedStream: string;
  parkedPrefix: string;
  replicas: number;
  maxAge: number;
  duplicateWindow: number;
}

/**
 * Creates the store's stream and its parked stream when they are missing;
 * warns (and changes nothing) when they are there with other settings.
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  settings: StreamSettings,
): Promise<void> {
  const window = Math.min(
    settings.duplicateWindow,
    settings.maxAge > 0 ? settings.maxAge : Infinity,
  );
  await ensureStream(jsm, {
    name: settings.stream,
    subjects: [`${settings.prefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: settings.replicas,
    max_age: nanos(settings.maxAge),
    duplicate_window: nanos(window),
  });
  await ensureStream(jsm, {
    name: settings.parkedStream,
    subjects: [`${settings.parkedPrefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: settings.replicas,
    max_age: 0,
    duplicate_window: nanos(window),
  });
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string; subjects: string[] },
): Promise<void> {
  let existing: StreamConfig | undefined;
  try {
    existing = (await jsm.streams.info(config.name)).config;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (!existing) {
    try {
      await jsm.streams.add(config);
      logger.info("Created stream {stream} ({replicas} replicas)", {
        stream: config.name,
        replicas: config.num_replicas,
      });
      return;
    } catch (error) {
      // Another receiver created it meanwhile: use it.
      existing = (await jsm.streams.info(config.name).catch(() => {
        throw error;
      })).config;
    }
  }
  const subject = config.subjects[0];
  if (
    !existing.subjects?.some((s) => s === subject || s === ">")
  ) {
    throw new Error(
      `Cannot use stream ${config.name}: its subjects (${
        existing.subjects?.join(", ")
      }) do not include ${subject}; give the store another stream or prefix`,
    );
  }
  const differences = (["num_replicas", "max_age", "duplicate_window"] as const)
    .filter((key) => existing[key] !== config[key]).map((key) =>
      `${key} ${existing[key]} (asked ${config[key]})`
    );
  if (differences.length > 0) {
    logger.warn(
      "Stream {stream} exists with other settings, kept as they are: {differences}",
      { stream: config.name, differences: differences.join(", ") },
    );
  }
}

/** Whether an error is JetStream's "stream not found" or "consumer not found". */
export function isNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === 10059 || code === 10014 ||
    (error instanceof Error && /not found/i.test(error.message));
}

/** A dispatching consumer's settings. */
export interface ConsumerSettings {
  name: string;
  filter: string;
  ackWait: number;
  maxAckPending: number;
}

/**
 * Creates a durable pull consumer when it is missing, or brings its ack
 * wait and max ack pending to these settings.
 */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  settings: ConsumerSettings,
): Promise<ConsumerInfo> {
  const config: Partial<ConsumerConfig> = {
    durable_name: settings.name,
    filter_subject: settings.filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    ack_wait: nanos(settings.ackWait),
    max_deliver: -1,
    max_ack_pending: settings.maxAckPending,
  };
  let info: ConsumerInfo | undefined;
  try {
    info = await jsm.consumers.info(stream, settings.name);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (!info) return await jsm.consumers.add(stream, config);
  if (info.config.filter_subject !== settings.filter) {
    throw new Error(
      `Cannot use consumer ${settings.name} of stream ${stream}: it takes ${info.config.filter_subject}, not ${settings.filter}; give the store another consumer name`,
    );
  }
  if (
    info.config.ack_wait !== config.ack_wait ||
    info.config.max_ack_pending !== config.max_ack_pending
  ) {
    return await jsm.consumers.update(stream, settings.name, {
      ack_wait: config.ack_wait,
      max_ack_pending: config.max_ack_pending,
    });
  }
  return info;
}
