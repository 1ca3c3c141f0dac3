/**
 * Durable receiving on a NATS JetStream cluster:
 * {@linkcode JetStreamMessageStore} publishes every HL7 message a receiver
 * accepts to a replicated stream, and the receiver's ACK goes out only
 * after the stream acknowledged the publish (with 3 replicas: once two
 * nodes have it). Receivers on several machines share the stream, and
 * share a durable pull consumer that hands each stored message to one of
 * them for dispatch. Any one node, and any receiver, can die without
 * losing a message that was acknowledged.
 *
 * What it guarantees, and where that ends:
 *
 * - An `AA` goes out only after JetStream acknowledged the publish. A
 *   publish that times out or finds no quorum (two of three nodes down)
 *   fails the `put`: the sender gets `AE` (`CE` in enhanced mode, NAK
 *   with MLLP release 2), never `AA`. A publish that timed out may still
 *   have been stored; its resend is then answered with the stored `AA`.
 * - A message (MSH-3, MSH-4 and a non-empty MSH-10) is stored once: a
 *   resend within the duplicate window is recognised by its
 *   `Nats-Msg-Id`, and after the window by its subject (one per sender and
 *   control id, published with `Nats-Expected-Last-Subject-Sequence: 0`),
 *   for as long as the stream keeps the first copy (`maxAge`). Either way
 *   the resend gets the ACK stored with the first copy.
 * - Dispatch is at least once. A message is acked (and the server
 *   confirms it) after the dispatcher succeeded; a receiver that dies
 *   before the ack, or stalls past `ackWait`, has the message delivered
 *   again, as the next `ctx.attempt` with the same `ctx.messageId`. Make
 *   the dispatcher's effects idempotent on `ctx.messageId`.
 *
 * Needs `--allow-net` for the NATS servers; without it `open()` fails with
 * a one-line error naming the flag.
 *
 * @example A receiver that stores in JetStream before it acknowledges
 * ```ts ignore
 * // Needs a running NATS server with JetStream (nats-server -js).
 * import { Receiver } from "@x/mllp";
 * import { JetStreamMessageStore } from "@x/mllp/jetstream";
 *
 * await using store = await JetStreamMessageStore.open(
 *   ["nats://nats1:4222", "nats://nats2:4222", "nats://nats3:4222"],
 *   { stream: "HL7_IN", replicas: 3 },
 * );
 * await using receiver = await Receiver.start({
 *   port: 2575,
 *   store,
 *   dispatcher: (message, ctx) => {
 *     // Runs from the stream, on one receiver of the group.
 *   },
 * });
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type MsgRequest,
  type PubAck,
  type StoredMsg,
} from "@nats-io/jetstream";
import {
  headers as natsHeaders,
  type MsgHdrs,
  type NatsConnection,
} from "@nats-io/transport-node";
import type {
  MessageStore,
  StoreConsumer,
  StoredMessageHandler,
  StoreEntry,
  StorePutResult,
} from "../dispatch/message_store.ts";
import type { BackoffOptions } from "../net/backoff.ts";
import {
  formatPeer,
  fromBase64,
  HEADER,
  messageId,
  parsePeer,
  requeueSubject,
  senderTokens,
  storedSubject,
  toBase64,
} from "./_jetstream_codec.ts";
import { startJsConsumer } from "./_jetstream_consumer.ts";
import {
  connectNats,
  ensureConsumer,
  ensureStreams,
  isNotFound,
  logStatus,
  natsConnectOptions,
  serversOf,
  whenJetStreamReady,
} from "./_jetstream_setup.ts";
import { Wakeup } from "./_wakeup.ts";
import type {
  JetStreamMessageStoreOptions,
  JetStreamParkedRecord,
  JetStreamStoredRecord,
  JetStreamStoreStats,
} from "./jetstream_store_types.ts";

const logger = getLogger(["mllp", "store"]);

const DEFAULT_RETRY: BackoffOptions = {
  initialDelay: 1000,
  maxDelay: 60_000,
  factor: 2,
  jitter: 0.1,
};

/** What a stream or consumer name may hold. */
const NAME = /^[A-Za-z0-9_-]+$/;
/** What a subject prefix may hold: tokens of the same, joined by dots. */
const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** The options, checked and with their defaults. */
interface Settings {
  stream: string;
  prefix: string;
  parkedStream: string;
  parkedPrefix: string;
  consumer: string;
  ordered: boolean;
  replicas: number;
  maxAge: number;
  duplicateWindow: number;
  publishTimeout: number;
  maxAttempts: number;
  retry: BackoffOptions;
  ackWait: number;
  maxAckPending: number;
  discoveryInterval: number;
}

function settingsOf(options: JetStreamMessageStoreOptions): Settings {
  const stream = options.stream ?? "HL7_IN";
  const parkedStream = options.parkedStream ?? `${stream}_PARKED`;
  const settings: Settings = {
    stream,
    prefix: options.subjectPrefix ?? stream,
    parkedStream,
    parkedPrefix: parkedStream,
    consumer: options.consumer ?? "mllp",
    ordered: options.ordered ?? false,
    replicas: options.replicas ?? 3,
    maxAge: options.maxAge ?? 7 * 24 * 3_600_000,
    duplicateWindow: options.duplicateWindow ?? 120_000,
    publishTimeout: options.publishTimeout ?? 5_000,
    maxAttempts: Math.max(1, options.maxAttempts ?? 10),
    retry: options.retry ?? DEFAULT_RETRY,
    ackWait: Math.max(1_000, options.ackWait ?? 30_000),
    maxAckPending: Math.max(1, options.maxAckPending ?? 1_000),
    discoveryInterval: Math.max(10, options.discoveryInterval ?? 1_000),
  };
  for (const key of ["stream", "parkedStream", "consumer"] as const) {
    if (!NAME.test(settings[key])) {
      throw new RangeError(
        `Cannot open JetStream store: ${key} must be letters, digits, "_" or "-", got "${
          settings[key]
        }"`,
      );
    }
  }
  if (!PREFIX.test(settings.prefix)) {
    throw new RangeError(
      `Cannot open JetStream store: subjectPrefix must be dot-separated tokens of letters, digits, "_" or "-", got "${settings.prefix}"`,
    );
  }
  if (settings.prefix === settings.parkedPrefix) {
    throw new RangeError(
      `Cannot open JetStream store: subjectPrefix and parkedStream must differ, both are "${settings.prefix}"`,
    );
  }
  // A resend's duplicate key (its first copy's subject) lives as long as
  // the stream keeps that copy: never shorter than the window it backs.
  if (
    options.duplicateWindow !== undefined && settings.maxAge > 0 &&
    settings.duplicateWindow > settings.maxAge
  ) {
    throw new RangeError(
      `Cannot open JetStream store: duplicateWindow (${settings.duplicateWindow} ms) must not exceed maxAge (${settings.maxAge} ms); raise maxAge or lower duplicateWindow`,
    );
  }
  if (settings.maxAge > 0) {
    settings.duplicateWindow = Math.min(
      settings.duplicateWindow,
      settings.maxAge,
    );
  }
  if (![1, 3, 5].includes(settings.replicas)) {
    throw new RangeError(
      `Cannot open JetStream store: replicas must be 1, 3 or 5, got "${settings.replicas}"`,
    );
  }
  return settings;
}

/**
 * A {@linkcode MessageStore} on NATS JetStream; give it to a receiver as
 * its `store` option. See the module documentation for what it
 * guarantees, and `docs/durable.md` for the layout and how to size the
 * duplicate window.
 *
 * @example Open a store on a cluster, with credentials
 * ```ts ignore
 * // Needs a NATS cluster with JetStream and this user.
 * import { JetStreamMessageStore } from "@x/mllp/jetstream";
 *
 * await using store = await JetStreamMessageStore.open(
 *   "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222",
 *   { connection: { user: "mllp", pass: Deno.env.get("NATS_PASSWORD") } },
 * );
 * console.log(await store.stats());
 * ```
 */
export class JetStreamMessageStore implements MessageStore, AsyncDisposable {
  #nc: NatsConnection;
  #owned: boolean;
  #js: JetStreamClient;
  #jsm: JetStreamManager;
  #settings: Settings;
  #maxPayload: number;
  #duplicates = 0;
  #senders = new Set<string>();
  #wakeup = new Wakeup();
  #consumers = new Set<StoreConsumer>();
  #status: Promise<void> | undefined;
  #connected = true;
  #closing: Promise<void> | undefined;

  private constructor(
    nc: NatsConnection,
    owned: boolean,
    jsm: JetStreamManager,
    settings: Settings,
  ) {
    this.#nc = nc;
    this.#owned = owned;
    this.#jsm = jsm;
    this.#js = jetstream(nc, { timeout: settings.publishTimeout });
    this.#settings = settings;
    this.#maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    // While the connection is lost a publish would wait for its timeout
    // in the client's buffer: answer at once instead.
    if (owned) {
      this.#status = logStatus(nc, (connected) => this.#connected = connected)
        .catch(() => {});
    }
  }

  /**
   * Connects to NATS and opens a store: creates its stream, parked stream
   * and consumer when they are missing. On a cluster that is still
   * starting it waits up to 30 s for JetStream to answer.
   *
   * @param servers NATS server URLs (an array, or one string with commas:
   *   `"nats://a:4222,nats://b:4222"`), or an open connection (which stays
   *   yours to close).
   * @param options Stream, consumer, replicas, retention, retries,
   *   credentials.
   * @returns The store.
   * @throws {Deno.errors.NotCapable} If Deno has no network permission
   *   for a server (the message names the flag).
   * @throws {Error} If NATS cannot be reached, JetStream is not enabled,
   *   or the stream or consumer is there with other subjects.
   * @throws {RangeError} If an option is invalid.
   *
   * @example Open a store on a local node, one replica
   * ```ts ignore
   * // Needs a NATS server with JetStream on this machine (nats-server -js).
   * import { JetStreamMessageStore } from "@x/mllp/jetstream";
   *
   * await using store = await JetStreamMessageStore.open(
   *   "nats://127.0.0.1:4222",
   *   { replicas: 1 },
   * );
   * console.log((await store.stats()).stored);
   * ```
   */
  static async open(
    servers: string | string[] | NatsConnection,
    options: JetStreamMessageStoreOptions = {},
  ): Promise<JetStreamMessageStore> {
    const settings = settingsOf(options);
    let nc: NatsConnection;
    let owned: boolean;
    if (typeof servers === "string" || Array.isArray(servers)) {
      const list = (typeof servers === "string" ? servers.split(",") : servers)
        .map((s) => s.trim()).filter((s) => s !== "");
      nc = await connectNats(
        list,
        await natsConnectOptions(options.connection ?? {}),
      );
      owned = true;
    } else {
      nc = servers;
      owned = false;
    }
    try {
      const jsm = await whenJetStreamReady(
        serversOf(nc),
        "Cannot open store",
        async () => {
          const jsm = await jetstreamManager(nc, {
            timeout: settings.publishTimeout,
          });
          await ensureStreams(jsm, settings);
          if (!settings.ordered) {
            await ensureConsumer(jsm, settings.stream, {
              name: settings.consumer,
              filter: `${settings.prefix}.>`,
              ackWait: settings.ackWait,
              maxAckPending: settings.maxAckPending,
            });
          }
          return jsm;
        },
      );
      return new JetStreamMessageStore(nc, owned, jsm, settings);
    } catch (error) {
      if (owned) await nc.close().catch(() => {});
      throw error;
    }
  }

  /**
   * Publishes a message with its ACK and waits for the stream's
   * acknowledgment; or, when the stream has it already (a resend),
   * returns the first copy's id and ACK.
   *
   * @param entry The message, its ACK and where it came from.
   * @returns Whether it was stored, or the earlier ACK.
   * @throws {Error} If the publish was not acknowledged in time (no
   *   quorum, no connection) or the message is larger than the server's
   *   `max_payload`.
   */
  async put(entry: StoreEntry): Promise<StorePutResult> {
    const { header, raw } = entry.message;
    const {
      sendingApplication: app,
      sendingFacility: fac,
      controlId,
    } = header;
    const { prefix, publishTimeout } = this.#settings;
    const subject = await storedSubject(prefix, app, fac, controlId);
    const msgID = await messageId(app, fac, controlId);
    const h = natsHeaders();
    h.set(HEADER.ack, toBase64(entry.ack));
    h.set(HEADER.received, String(entry.receivedAt.getTime()));
    h.set(HEADER.peer, formatPeer(entry.peer));
    h.set(HEADER.local, formatPeer(entry.local));
    if (entry.certificateName !== undefined) {
      h.set(HEADER.certificate, encodeURIComponent(entry.certificateName));
    }
    h.set(
      HEADER.msh,
      encodeURIComponent(
        JSON.stringify([app, fac, controlId, header.messageType]),
      ),
    );
    const limit = this.#maxPayload - headerSize(h) - 256;
    if (raw.length > limit) {
      throw new Error(
        `message of ${raw.length} bytes is larger than the NATS server's max_payload (${this.#maxPayload} bytes, with headers); raise max_payload in the server's config`,
      );
    }
    if (!this.#connected) {
      throw new Error(
        "not connected to NATS (reconnecting); the sender should resend",
      );
    }
    if (this.#settings.ordered) await this.#ensureSender(app, fac);
    let ack: PubAck;
    try {
      ack = await this.#js.publish(subject, raw, {
        headers: h,
        timeout: publishTimeout,
        ...(msgID ? { msgID, expect: { lastSubjectSequence: 0 } } : {}),
      });
    } catch (error) {
      const last = wrongLastSequence(error);
      if (last !== undefined) return await this.#duplicate(last, subject);
      throw new Error(`JetStream did not store it: ${describe(error)}`, {
        cause: error,
      });
    }
    if (ack.duplicate) return await this.#duplicate(ack.seq, subject);
    this.#wakeup.notify();
    return { duplicate: false, id: String(ack.seq) };
  }

  /** The first copy's id and ACK, for a resend. */
  async #duplicate(seq: number, subject: string): Promise<StorePutResult> {
    // A duplicate still being stored has no sequence yet: read it by its
    // subject once it is there.
    let stored = seq > 0
      ? await this.#jsm.streams.getMessage(this.#settings.stream, { seq })
      : null;
    for (let wait = 10; !stored && wait < 2_000; wait *= 2) {
      stored = await this.#jsm.streams.getMessage(this.#settings.stream, {
        last_by_subj: subject,
      });
      if (!stored) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const ack = stored?.header.get(HEADER.ack);
    if (!stored || !ack) {
      throw new Error(
        `its resend's first copy (sequence ${seq}) cannot be read from stream ${this.#settings.stream}`,
      );
    }
    this.#duplicates++;
    return {
      duplicate: true,
      id: stored.header.get(HEADER.id) || String(stored.seq),
      ack: fromBase64(ack),
    };
  }

  /** The consumer names of a sender (ordered) and its subject filter. */
  async #senderConsumer(
    app: string,
    fac: string,
  ): Promise<{ name: string; filter: string }> {
    const [a, f] = await senderTokens(app, fac);
    return {
      name: `${this.#settings.consumer}__${a}__${f}`,
      filter: `${this.#settings.prefix}.${a}.${f}.>`,
    };
  }

  /** With `ordered`, makes sure the sender's consumer is there. */
  async #ensureSender(app: string, fac: string): Promise<void> {
    const { name, filter } = await this.#senderConsumer(app, fac);
    if (this.#senders.has(name)) return;
    await ensureConsumer(this.#jsm, this.#settings.stream, {
      name,
      filter,
      ackWait: this.#settings.ackWait,
      maxAckPending: 1,
    });
    this.#senders.add(name);
    this.#wakeup.notify();
  }

  /** The names of the group's consumers. */
  async #consumerNames(): Promise<string[]> {
    const { stream, consumer, ordered } = this.#settings;
    if (!ordered) return [consumer];
    const names: string[] = [];
    for await (const info of this.#jsm.consumers.list(stream)) {
      if (info.name.startsWith(`${consumer}__`)) names.push(info.name);
    }
    return names;
  }

  /**
   * The id of the message stored for a sender and control id, if the
   * stream still has it.
   *
   * @param sendingApplication MSH-3.
   * @param sendingFacility MSH-4.
   * @param controlId MSH-10.
   * @returns The id, or `undefined`.
   */
  async lookup(
    sendingApplication: string,
    sendingFacility: string,
    controlId: string,
  ): Promise<string | undefined> {
    const stored = await this.#jsm.streams.getMessage(this.#settings.stream, {
      last_by_subj: await storedSubject(
        this.#settings.prefix,
        sendingApplication,
        sendingFacility,
        controlId,
      ),
    });
    return stored ? String(stored.seq) : undefined;
  }

  /**
   * The record of a stored message.
   *
   * @param id The message's id.
   * @returns Its record, or `undefined` when the stream does not have it.
   */
  async get(id: string): Promise<JetStreamStoredRecord | undefined> {
    const stored = await this.#message(id);
    if (!stored) return undefined;
    const h = stored.header;
    const [app, fac, controlId, messageType] = JSON.parse(
      decodeURIComponent(h.get(HEADER.msh) || "%5B%5D"),
    ) as string[];
    return {
      id,
      subject: stored.subject,
      sendingApplication: app ?? "",
      sendingFacility: fac ?? "",
      controlId: controlId ?? "",
      messageType: messageType ?? "",
      size: stored.data.length,
      receivedAt: Number(h.get(HEADER.received) || 0),
      storedAt: stored.time.getTime(),
      peer: parsePeer(h.get(HEADER.peer)),
      local: parsePeer(h.get(HEADER.local)),
      certificateName: h.get(HEADER.certificate)
        ? decodeURIComponent(h.get(HEADER.certificate))
        : undefined,
      ack: fromBase64(h.get(HEADER.ack) || ""),
    };
  }

  async #message(id: string) {
    const seq = Number(id);
    if (!Number.isSafeInteger(seq) || seq < 1) return null;
    return await this.#jsm.streams.getMessage(this.#settings.stream, { seq });
  }

  /**
   * A stored message's bytes, exactly as received.
   *
   * @param id The message's id.
   * @returns The bytes.
   * @throws {Error} If the stream does not have it.
   */
  async read(id: string): Promise<Uint8Array> {
    const stored = await this.#message(id);
    if (!stored) {
      throw new Error(
        `Cannot read message ${id}: stream ${this.#settings.stream} does not have it`,
      );
    }
    return stored.data;
  }

  /**
   * The parked messages, oldest first.
   *
   * @returns Their records, with the reason each was parked.
   */
  async *parked(): AsyncIterableIterator<JetStreamParkedRecord> {
    const { parkedStream, parkedPrefix } = this.#settings;
    let seq = 1;
    for (;;) {
      const stored = await nextOnSubject(
        this.#jsm,
        parkedStream,
        seq,
        `${parkedPrefix}.>`,
      );
      if (!stored) return;
      seq = stored.seq + 1;
      const h = stored.header;
      const [app, fac, controlId] = JSON.parse(
        decodeURIComponent(h.get(HEADER.msh) || "%5B%5D"),
      ) as string[];
      yield {
        id: h.get(HEADER.id),
        reason: decodeURIComponent(h.get(HEADER.reason)),
        attempts: Number(h.get(HEADER.attempts) || 0),
        parkedAt: Number(h.get(HEADER.parkedAt) || 0),
        sendingApplication: app ?? "",
        sendingFacility: fac ?? "",
        controlId: controlId ?? "",
      };
    }
  }

  async #parkedCopy(id: string) {
    return await this.#jsm.streams.getMessage(this.#settings.parkedStream, {
      last_by_subj: `${this.#settings.parkedPrefix}.${id}`,
    });
  }

  /**
   * Puts a parked message back for dispatch, with its attempts reset: a
   * copy is published (with the same id) and the parked copy deleted.
   *
   * @param id The message's id.
   * @returns Whether it was parked (and is now pending).
   */
  async requeue(id: string): Promise<boolean> {
    const parked = await this.#parkedCopy(id);
    if (!parked) return false;
    const h: MsgHdrs = natsHeaders();
    for (const [key, values] of parked.header) {
      const lower = key.toLowerCase();
      if (lower.startsWith("nats-")) continue;
      if (
        [
          HEADER.reason,
          HEADER.attempts,
          HEADER.parkedAt,
          HEADER.subject,
          HEADER.seq,
        ].some((name) => name.toLowerCase() === lower)
      ) continue;
      for (const value of values) h.append(key, value);
    }
    h.set(HEADER.id, id);
    const subject = requeueSubject(parked.header.get(HEADER.subject));
    await this.#js.publish(subject, parked.data, {
      headers: h,
      msgID: `requeue|${this.#settings.parkedStream}|${parked.seq}`,
      timeout: this.#settings.publishTimeout,
    });
    await this.#jsm.streams.deleteMessage(
      this.#settings.parkedStream,
      parked.seq,
    ).catch((error) => {
      if (!isNotFound(error)) throw error;
    });
    this.#wakeup.notify();
    logger.info("Requeued parked message {id}", { id });
    return true;
  }

  /**
   * Deletes a parked message for good (its original stays in the stream
   * until `maxAge` removes it, and still answers resends).
   *
   * @param id The message's id.
   * @returns Whether it was parked (and is now gone).
   */
  async purge(id: string): Promise<boolean> {
    const parked = await this.#parkedCopy(id);
    if (!parked) return false;
    return await this.#jsm.streams.deleteMessage(
      this.#settings.parkedStream,
      parked.seq,
    );
  }

  /**
   * Counts of stored, pending, dispatched and parked messages, and what
   * retention removed, read from the streams and consumers; see
   * {@linkcode JetStreamStoreStats} for what each means.
   *
   * @returns The counts.
   */
  async stats(): Promise<JetStreamStoreStats> {
    const { stream, prefix, parkedStream } = this.#settings;
    const jsm = this.#jsm;
    const [info, parkedInfo, names] = await Promise.all([
      // Requeued copies are few: the stream lists their subjects.
      jsm.streams.info(stream, { subjects_filter: `${prefix}.*.*.*.r` }),
      jsm.streams.info(parkedStream),
      this.#consumerNames(),
    ]);
    const requeued = Object.values(info.state.subjects ?? {}).reduce(
      (sum, n) => sum + n,
      0,
    );
    const stored = info.state.messages - requeued;
    let pending = 0;
    let oldest = Infinity;
    for (const name of names) {
      const consumer = await jsm.consumers.info(stream, name);
      const waiting = consumer.num_pending + consumer.num_ack_pending;
      pending += waiting;
      if (waiting === 0) continue;
      const first = await nextOnSubject(
        jsm,
        stream,
        consumer.ack_floor.stream_seq + 1,
        consumer.config.filter_subject ?? `${prefix}.>`,
      );
      if (first) oldest = Math.min(oldest, first.time.getTime());
    }
    const parked = parkedInfo.state.messages;
    return {
      stored,
      pending,
      dispatched: Math.max(0, stored - pending - parked),
      parked,
      duplicates: this.#duplicates,
      oldestAgeMs: oldest === Infinity ? 0 : Math.max(0, Date.now() - oldest),
      removed: Math.max(0, info.state.first_seq - 1),
      bytes: info.state.bytes,
    };
  }

  /**
   * Starts handing stored messages to `handler`, one at a time per
   * consumer (with `ordered`, one at a time per sender); see
   * {@linkcode MessageStore.consume}. The receiver calls this when it has a
   * store.
   *
   * @param handler Dispatches one message and says what became of it.
   * @returns The running consumer; stop it with `stop()`.
   */
  consume(handler: StoredMessageHandler): StoreConsumer {
    const s = this.#settings;
    const consumer = startJsConsumer({
      js: this.#js,
      stream: s.stream,
      parkedPrefix: s.parkedPrefix,
      maxAttempts: s.maxAttempts,
      retry: s.retry,
      ackWait: s.ackWait,
      publishTimeout: s.publishTimeout,
      pullExpires: 5_000,
      consumers: () => this.#consumerNames(),
      discoveryInterval: s.ordered ? s.discoveryInterval : 3_600_000,
      wakeup: this.#wakeup,
      closing: () => this.#closing !== undefined || this.#nc.isClosed(),
    }, handler);
    const stop = consumer.stop;
    consumer.stop = async (deadline) => {
      await stop(deadline);
      this.#consumers.delete(consumer);
    };
    this.#consumers.add(consumer);
    return consumer;
  }

  /**
   * Stops the store's consumers (without waiting for a dispatch in hand)
   * and closes the NATS connection if the store opened it. Calling it
   * again returns the same promise.
   *
   * @returns A promise that resolves once closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      await Promise.all([...this.#consumers].map((c) => c.stop(0)));
      if (this.#owned) {
        await this.#nc.close().catch(() => {});
        await this.#status;
      }
    })();
  }

  /** Closes the store; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The first message at or after `seq` on a subject filter (the client's
 * types leave out the API's `next_by_subj`, which 2.9 servers answer).
 */
function nextOnSubject(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
  filter: string,
): Promise<StoredMsg | null> {
  const query = { seq, next_by_subj: filter } as unknown as MsgRequest;
  return jsm.streams.getMessage(stream, query);
}

/** The size of a header block as sent (an estimate within a few bytes). */
function headerSize(h: MsgHdrs): number {
  let size = 12;
  for (const [key, values] of h) {
    for (const value of values) size += key.length + value.length + 4;
  }
  return size;
}

/**
 * The sequence a `Nats-Expected-Last-Subject-Sequence` check found (the
 * subject's last message), when that is why a publish failed.
 */
function wrongLastSequence(error: unknown): number | undefined {
  if ((error as { code?: number })?.code !== 10071) return undefined;
  const match = /wrong last sequence: (\d+)/.exec((error as Error).message);
  return match ? Number(match[1]) : undefined;
}

/** A NATS error as a short reason. */
function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message === "timeout" || /timeout/i.test(message)
    ? "no acknowledgment within the publish timeout (is a quorum of the stream's replicas up?)"
    : message;
}
