/**
 * A durable outbound queue on a NATS JetStream cluster:
 * {@linkcode JetStreamOutbox.enqueue} returns once the stream acknowledged
 * the message (with 3 replicas: once two nodes have it), and workers in
 * any number of processes deliver each destination's queue in order with
 * the library's `Client`: one message at a time (a durable pull
 * consumer with `max_ack_pending: 1`), acked in the stream only after the
 * destination's `AA`/`CA`. Used like `KvOutbox`, with the same records,
 * events and numbers.
 *
 * What it guarantees, and where that ends:
 *
 * - Nothing is queued unless JetStream acknowledged it: with no quorum (two
 *   of three nodes down) `enqueue` rejects. A publish that timed out may
 *   still have been stored; it is then sent like any other.
 * - Order per destination: the next message goes only once the one before
 *   it is acked or parked. `AE`/`CE`, a NAK, no reply in time, or an ACK
 *   for another message: the same message is sent again after the
 *   backoff's delay (a `nak` with a delay), and parked after `maxAttempts`
 *   such sends. `AR`/`CR` parks it at once. While the destination cannot
 *   be reached the queue waits, however long.
 * - Delivery is at least once. A worker that dies (or stalls past
 *   `ackWait`) holding a message loses it to another worker, which sends it
 *   again with the same control id, flagged `possibleDuplicate`; a reply
 *   that did not come in time is resent the same way. The receiver should
 *   detect duplicates by sender and control id, as a receiver with a
 *   `KvMessageStore` or `JetStreamMessageStore` does.
 * - A parked message is copied with its reason to `<stream>_PARKED` and
 *   stays there until {@linkcode JetStreamOutbox.requeue}, which puts it at
 *   the end of the queue (not at its old place, as `KvOutbox` does).
 * - Retention: the queue stream keeps messages for `maxAge` (its
 *   `max_age`), delivered or not, and the records with them.
 *
 * Layout: `<stream>.<destination>.q` holds queued messages and
 * `<stream>.<destination>.r` requeued ones; `<stream>_STATUS` keeps the
 * latest record of each (one message per subject); `<stream>_PARKED` the
 * parked copies. The destination is a subject token made from
 * `host:port`.
 *
 * Needs `--allow-net` for the NATS servers (checked first: `open()` fails
 * with a one-line error naming the flag) and the destination.
 *
 * @example Queue messages for a lab system on a three-node cluster
 * ```ts ignore
 * // Needs a NATS cluster with JetStream (see docs/scaling.md).
 * import { JetStreamOutbox } from "@x/mllp/jetstream";
 *
 * await using outbox = await JetStreamOutbox.open(
 *   "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222",
 *   { destination: { hostname: "lab.example.org", port: 2575 } },
 * );
 * const { seq } = await outbox.enqueue(
 *   "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|Q1|P|2.5\r",
 * );
 * outbox.start(); // in as many processes as you like
 * console.log((await outbox.waitFor(seq)).state); // acked
 * ```
 *
 * @module
 */

import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import {
  headers as natsHeaders,
  type NatsConnection,
} from "@nats-io/transport-node";
import { getLogger } from "@logtape/logtape";
import { prepare } from "./_outbox_shared.ts";
import { formatAddress } from "../net/address.ts";
import { TypedEventTarget } from "../observe/events.ts";
import { fieldToken } from "./_jetstream_codec.ts";
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
import { sleep, Wakeup } from "./_wakeup.ts";
import {
  describeError,
  ensureStatusStream,
  freshRecord,
  HEADER,
  nextOnSubject,
  type Settings,
  settingsOf,
} from "./jetstream_outbox_layout.ts";
import {
  JsOutboxWorker,
  type OutboxLedger,
} from "./jetstream_outbox_worker.ts";
import type {
  JetStreamOutboxOptions,
  JetStreamOutboxStats,
} from "./jetstream_outbox_types.ts";
import type {
  Enqueued,
  OutboxEventMap,
  OutboxRecord,
  OutboxState,
} from "./kv_outbox_types.ts";

export type {
  JetStreamOutboxOptions,
  JetStreamOutboxStats,
} from "./jetstream_outbox_types.ts";

const logger = getLogger(["mllp", "outbox"]);

/**
 * A durable outbound queue for one destination, on NATS JetStream. See the
 * module documentation for what it guarantees.
 *
 * States, as `KvOutbox`'s: `pending` → `in_flight` (recorded before the
 * message is written, so a worker that dies after writing is noticed by
 * the next) → `acked` or `parked`; `pending` again after a send to try
 * again.
 *
 * @example Open, queue, deliver, and read the numbers
 * ```ts ignore
 * // Needs a NATS server with JetStream (nats-server -js) and a receiver.
 * import { JetStreamOutbox } from "@x/mllp/jetstream";
 *
 * await using outbox = await JetStreamOutbox.open("nats://127.0.0.1:4222", {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 *   replicas: 1,
 * });
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|Q1|P|2.5\r");
 * outbox.addEventListener("parked", (event) => {
 *   console.log(event.detail.controlId, event.detail.reason);
 * });
 * outbox.start();
 * console.log(await outbox.stats()); // { depth, oldestAgeMs, parked, ... }
 * ```
 */
export class JetStreamOutbox extends TypedEventTarget<OutboxEventMap>
  implements AsyncDisposable {
  /** The destination, as `host:port`: the name of its queue. */
  readonly destination: string;
  #nc: NatsConnection;
  #owned: boolean;
  #js: JetStreamClient;
  #jsm: JetStreamManager;
  #settings: Settings;
  #token: string;
  #consumer: string;
  #target: JetStreamOutboxOptions["destination"];
  #maxPayload: number;
  #settled = new Wakeup();
  #worker: JsOutboxWorker | undefined;
  #stopping: AbortController | undefined;
  #working: Promise<void> | undefined;
  #status: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #stats: JetStreamOutboxStats | undefined;

  private constructor(
    nc: NatsConnection,
    owned: boolean,
    jsm: JetStreamManager,
    settings: Settings,
    token: string,
    options: JetStreamOutboxOptions,
  ) {
    super();
    const { hostname, port } = options.destination;
    this.destination = formatAddress({ hostname, port });
    this.#nc = nc;
    this.#owned = owned;
    this.#jsm = jsm;
    this.#js = jetstream(nc, { timeout: settings.publishTimeout });
    this.#settings = settings;
    this.#token = token;
    this.#consumer = `${settings.consumerPrefix}__${token}`;
    this.#target = options.destination;
    this.#maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    if (owned) this.#status = logStatus(nc).catch(() => {});
  }

  /**
   * Connects to NATS and opens the outbox of one destination: creates its
   * streams and the destination's consumer when they are missing. On a
   * cluster that is still starting it waits up to 30 s for JetStream to
   * answer.
   *
   * @param servers NATS server URLs (an array, or one string with commas:
   *   `"nats://a:4222,nats://b:4222"`), or an open connection (which stays
   *   yours to close).
   * @param options The destination, stream, replicas, retries, credentials.
   * @returns The outbox; call {@linkcode JetStreamOutbox.start} to deliver.
   * @throws {Deno.errors.NotCapable} If Deno has no network permission
   *   for a server (the message names the flag).
   * @throws {Error} If NATS cannot be reached, or JetStream is not
   *   enabled.
   * @throws {RangeError} If an option is invalid.
   */
  static async open(
    servers: string | string[] | NatsConnection,
    options: JetStreamOutboxOptions,
  ): Promise<JetStreamOutbox> {
    const settings = settingsOf(options);
    let nc: NatsConnection;
    let owned: boolean;
    if (typeof servers === "string" || Array.isArray(servers)) {
      const list = (typeof servers === "string" ? servers.split(",") : servers)
        .map((s) => s.trim()).filter((s) => s !== "");
      const connectOptions = await natsConnectOptions({
        name: "mllp-outbox",
        ...options.connection,
      });
      nc = await connectNats(list, connectOptions);
      owned = true;
    } else {
      nc = servers;
      owned = false;
    }
    try {
      const { hostname, port } = options.destination;
      const token = await fieldToken(formatAddress({ hostname, port }), 60);
      const jsm = await whenJetStreamReady(
        serversOf(nc),
        "Cannot open outbox",
        async () => {
          const jsm = await jetstreamManager(nc, {
            timeout: settings.publishTimeout,
          });
          await ensureStreams(jsm, {
            stream: settings.stream,
            prefix: settings.stream,
            parkedStream: settings.parkedStream,
            parkedPrefix: settings.parkedStream,
            replicas: settings.replicas,
            maxAge: settings.maxAge,
            duplicateWindow: 120_000,
          });
          await ensureStatusStream(jsm, settings);
          await ensureConsumer(jsm, settings.stream, {
            name: `${settings.consumerPrefix}__${token}`,
            filter: `${settings.stream}.${token}.*`,
            ackWait: settings.ackWait,
            maxAckPending: 1,
          });
          return jsm;
        },
      );
      return new JetStreamOutbox(nc, owned, jsm, settings, token, options);
    } catch (error) {
      if (owned) await nc.close().catch(() => {});
      throw error;
    }
  }

  get #queueSubject(): string {
    return `${this.#settings.stream}.${this.#token}.q`;
  }

  #statusSubject(seq: number): string {
    return `${this.#settings.statusStream}.${this.#token}.${seq}`;
  }

  #parkedSubject(seq: number): string {
    return `${this.#settings.parkedStream}.${this.#token}.${seq}`;
  }

  /** Where a purge is marked (`"*"`: every one), for `stats()` to count. */
  #purgedSubject(seq: number | "*"): string {
    return `${this.#settings.parkedStream}.${this.#token}.purged.${seq}`;
  }

  /**
   * Queues a message: returns once the stream acknowledged it.
   *
   * @param payload An HL7 message or another payload, text or bytes (an
   *   MLLP frame around it is removed).
   * @returns Its place in the queue (its sequence in the stream) and its
   *   control id.
   * @throws {HeaderError} If it starts with `MSH` but its header cannot be
   *   read (nothing is queued).
   * @throws {TypeError} If it holds a VT or FS byte (nothing is queued).
   * @throws {Error} If it is larger than the servers' `max_payload`, or
   *   JetStream did not acknowledge it in time (no quorum, no connection).
   */
  async enqueue(payload: string | Uint8Array): Promise<Enqueued> {
    const message = prepare(payload);
    const raw = message.raw;
    const limit = this.#maxPayload - 1024;
    if (raw.length > limit) {
      throw new Error(
        `Cannot queue message: ${raw.length} bytes is more than the NATS server's max_payload allows (${this.#maxPayload} bytes, with headers); raise max_payload in the server's config`,
      );
    }
    const controlId = message.header?.controlId;
    const h = natsHeaders();
    h.set(
      HEADER.msh,
      encodeURIComponent(
        JSON.stringify([
          controlId ?? null,
          message.header?.messageType ?? null,
        ]),
      ),
    );
    h.set(HEADER.enqueuedAt, String(Date.now()));
    try {
      const ack = await this.#js.publish(this.#queueSubject, raw, {
        headers: h,
        timeout: this.#settings.publishTimeout,
      });
      return { seq: ack.seq, controlId };
    } catch (error) {
      throw new Error(
        `Cannot queue message: ${
          describeError(error)
        }; send it again or check the NATS cluster`,
        { cause: error },
      );
    }
  }

  async #readStatus(seq: number): Promise<OutboxRecord | undefined> {
    const stored = await this.#jsm.streams.getMessage(
      this.#settings.statusStream,
      { last_by_subj: this.#statusSubject(seq) },
    );
    return stored ? stored.json<OutboxRecord>() : undefined;
  }

  async #writeStatus(record: OutboxRecord): Promise<void> {
    await this.#js.publish(
      this.#statusSubject(record.seq),
      JSON.stringify(record),
      { timeout: this.#settings.publishTimeout },
    );
  }

  /** A queued message as the stream holds it, if it is this queue's. */
  async #queued(seq: number): Promise<StoredMsg | null> {
    if (!Number.isSafeInteger(seq) || seq < 1) return null;
    const stored = await this.#jsm.streams.getMessage(this.#settings.stream, {
      seq,
    }).catch((error) => {
      if (isNotFound(error)) return null;
      throw error;
    });
    return stored?.subject === this.#queueSubject ? stored : null;
  }

  /**
   * The record of a queued message.
   *
   * @param seq Its place in the queue.
   * @returns The record, or `undefined` (not queued here, or removed by
   *   retention).
   */
  async get(seq: number): Promise<OutboxRecord | undefined> {
    const status = await this.#readStatus(seq);
    if (status) return status;
    const stored = await this.#queued(seq);
    return stored ? freshRecord(stored, seq) : undefined;
  }

  /**
   * A queued message's bytes.
   *
   * @param seq Its place in the queue.
   * @returns The bytes.
   * @throws {Error} If the stream does not have it.
   */
  async read(seq: number): Promise<Uint8Array> {
    const stored = await this.#queued(seq) ??
      await this.#jsm.streams.getMessage(this.#settings.parkedStream, {
        last_by_subj: this.#parkedSubject(seq),
      });
    if (!stored) {
      throw new Error(
        `Cannot read message ${seq}: stream ${this.#settings.stream} does not have it for ${this.destination}`,
      );
    }
    return stored.data;
  }

  /**
   * The records of the queue that the stream still holds, in order.
   *
   * @param options Only those in `state`.
   * @returns The records.
   */
  async *list(
    options: { state?: OutboxState } = {},
  ): AsyncIterableIterator<OutboxRecord> {
    let seq = 1;
    for (;;) {
      const stored = await nextOnSubject(
        this.#jsm,
        this.#settings.stream,
        seq,
        this.#queueSubject,
      );
      if (!stored) return;
      seq = stored.seq + 1;
      const record = await this.#readStatus(stored.seq) ??
        freshRecord(stored, stored.seq);
      if (!options.state || record.state === options.state) yield record;
    }
  }

  /**
   * Waits until a message is acknowledged or parked. Reads that fail (a
   * stream's leader moving after a node died) are tried again.
   *
   * @param seq Its place in the queue.
   * @param options Stops waiting when `signal` aborts.
   * @returns Its final record.
   * @throws {Error} If there is no such message, or `signal` aborted.
   */
  async waitFor(
    seq: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<OutboxRecord> {
    for (;;) {
      options.signal?.throwIfAborted();
      const next = this.#settled.next;
      let record: OutboxRecord | undefined;
      try {
        record = await this.get(seq);
      } catch {
        // A stream without a leader for a moment (a node died): read
        // again.
        await sleep(this.#settings.pollInterval, options.signal, next);
        continue;
      }
      if (!record) {
        throw new Error(`Cannot wait for message ${seq}: not queued`);
      }
      if (record.state === "acked" || record.state === "parked") return record;
      await sleep(this.#settings.pollInterval, options.signal, next);
    }
  }

  /**
   * Queue depth, oldest age and parked count for this destination, read
   * from its consumer and the streams, and what retention removed.
   *
   * @returns The numbers.
   */
  async stats(): Promise<JetStreamOutboxStats> {
    const { stream, parkedStream } = this.#settings;
    const jsm = this.#jsm;
    const [info, parkedInfo, consumer] = await Promise.all([
      // Per-subject counts: one subject for the queue; in the parked
      // stream, one per parked copy and one per purge's mark.
      jsm.streams.info(stream, { subjects_filter: this.#queueSubject }),
      jsm.streams.info(parkedStream, {
        subjects_filter: `${parkedStream}.${this.#token}.>`,
      }),
      jsm.consumers.info(stream, this.#consumer),
    ]);
    const enqueued = info.state.subjects?.[this.#queueSubject] ?? 0;
    const purgedPrefix = this.#purgedSubject("*").slice(0, -1);
    let parked = 0;
    let purged = 0;
    for (
      const [subject, n] of Object.entries(parkedInfo.state.subjects ?? {})
    ) {
      if (subject.startsWith(purgedPrefix)) purged++;
      else parked += n;
    }
    // One message is out at a time, the first after the ack floor. Its
    // result is recorded just before its ack reaches the server: once
    // recorded acked or parked it is no longer queued.
    let depth = consumer.num_pending + consumer.num_ack_pending;
    const filter = `${stream}.${this.#token}.*`;
    let first = depth > 0
      ? await nextOnSubject(
        jsm,
        stream,
        consumer.ack_floor.stream_seq + 1,
        filter,
      )
      : null;
    if (first && consumer.num_ack_pending > 0) {
      const seq = Number(first.header.get(HEADER.seq)) || first.seq;
      const state = (await this.#readStatus(seq))?.state;
      if (state === "acked" || state === "parked") {
        depth--;
        first = depth > 0
          ? await nextOnSubject(jsm, stream, first.seq + 1, filter)
          : null;
      }
    }
    const oldestAgeMs = first
      ? Math.max(0, Date.now() - first.time.getTime())
      : 0;
    const stats: JetStreamOutboxStats = {
      depth,
      oldestAgeMs,
      parked,
      enqueued,
      removed: Math.max(0, info.state.first_seq - 1),
      purged,
      bytes: info.state.bytes,
    };
    this.#stats = stats;
    return stats;
  }

  /** The last numbers read by {@linkcode JetStreamOutbox.stats}. */
  get cachedStats(): JetStreamOutboxStats | undefined {
    return this.#stats;
  }

  /**
   * Puts a parked message back in the queue, at its end, with its attempts
   * reset (it keeps its place number: `get` and `waitFor` follow it).
   *
   * @param seq Its place in the queue.
   * @returns Whether it was parked (and is now pending).
   */
  async requeue(seq: number): Promise<boolean> {
    const { stream, parkedStream, publishTimeout } = this.#settings;
    const parked = await this.#jsm.streams.getMessage(parkedStream, {
      last_by_subj: this.#parkedSubject(seq),
    });
    if (!parked) return false;
    const record = await this.#readStatus(seq) ??
      freshRecord(parked, seq);
    await this.#writeStatus({
      ...record,
      state: "pending",
      attempts: 0,
      possibleDuplicate: false,
      finishedAt: undefined,
    });
    const h = natsHeaders();
    for (const name of [HEADER.msh, HEADER.enqueuedAt]) {
      const value = parked.header.get(name);
      if (value) h.set(name, value);
    }
    h.set(HEADER.seq, String(seq));
    await this.#js.publish(`${stream}.${this.#token}.r`, parked.data, {
      headers: h,
      msgID: `requeue|${parkedStream}|${parked.seq}`,
      timeout: publishTimeout,
    });
    await this.#jsm.streams.deleteMessage(parkedStream, parked.seq).catch(
      (error) => {
        if (!isNotFound(error)) throw error;
      },
    );
    logger.info("Outbox for {destination}: requeued parked message {seq}", {
      destination: this.destination,
      seq,
    });
    return true;
  }

  /**
   * Removes a parked message for good: its parked copy, its record and its
   * queued bytes. Queued, in-flight and acknowledged messages are left as
   * they are (the stream's `maxAge` removes acknowledged ones). Counted in
   * {@linkcode OutboxStats.purged}.
   *
   * @param seq Its place in the queue.
   * @returns Whether it was parked (and is now gone).
   */
  async purge(seq: number): Promise<boolean> {
    const { stream, parkedStream, statusStream, publishTimeout } =
      this.#settings;
    const parked = await this.#jsm.streams.getMessage(parkedStream, {
      last_by_subj: this.#parkedSubject(seq),
    });
    if (!parked) return false;
    // Marked first: a purge cut short is counted, and the next call
    // finishes it (the mark is deduplicated by its id).
    await this.#js.publish(this.#purgedSubject(seq), new Uint8Array(), {
      msgID: `purge|${parkedStream}|${parked.seq}`,
      timeout: publishTimeout,
    });
    const gone = (error: unknown) => {
      if (!isNotFound(error)) throw error;
    };
    await this.#jsm.streams.deleteMessage(parkedStream, parked.seq).catch(gone);
    await this.#jsm.streams.purge(statusStream, {
      filter: this.#statusSubject(seq),
    });
    if (await this.#queued(seq)) {
      await this.#jsm.streams.deleteMessage(stream, seq).catch(gone);
    }
    logger.info("Outbox for {destination}: purged parked message {seq}", {
      destination: this.destination,
      seq,
    });
    return true;
  }

  /** Whether the worker is running. */
  get started(): boolean {
    return this.#working !== undefined;
  }

  /**
   * Starts this process's worker for the destination. Does nothing if it
   * runs. Workers in other processes share the queue: one message is out
   * at a time.
   *
   * @throws {Error} If the outbox is closed.
   */
  start(): void {
    if (this.#closing) throw new Error("Cannot start: the outbox is closed");
    if (this.#working) return;
    const stopping = new AbortController();
    this.#stopping = stopping;
    const s = this.#settings;
    const ledger: OutboxLedger = {
      recordOf: async (msg) => {
        const seq = Number(msg.headers?.get(HEADER.seq)) || msg.seq;
        return await this.#readStatus(seq) ?? freshRecord(msg, seq);
      },
      write: (record) => this.#writeStatus(record),
      park: async (record, msg) => {
        const h = natsHeaders();
        for (const name of [HEADER.msh, HEADER.enqueuedAt]) {
          const value = msg.headers?.get(name);
          if (value) h.set(name, value);
        }
        h.set(HEADER.seq, String(record.seq));
        h.set(HEADER.reason, encodeURIComponent(record.reason ?? ""));
        await this.#js.publish(this.#parkedSubject(record.seq), msg.data, {
          headers: h,
          msgID: `park|${s.stream}|${msg.seq}`,
          timeout: s.publishTimeout,
        });
      },
    };
    const worker = this.#worker ??= new JsOutboxWorker({
      js: this.#js,
      stream: s.stream,
      consumer: this.#consumer,
      ledger,
      destination: this.destination,
      target: this.#target,
      retry: s.retry,
      maxAttempts: s.maxAttempts,
      ackWait: s.ackWait,
      publishTimeout: s.publishTimeout,
      closing: () => this.#closing !== undefined || this.#nc.isClosed(),
      onFinished: (state, record) => {
        this.#settled.notify();
        this.dispatchEvent(new CustomEvent(state, { detail: record }));
      },
      onRetry: (detail) => {
        this.dispatchEvent(new CustomEvent("retrying", { detail }));
      },
    });
    this.#working = worker.run(stopping.signal);
  }

  /**
   * Stops the worker after the send in progress (if any) has its reply,
   * error or timeout.
   *
   * @returns A promise that resolves once it has stopped.
   */
  async stop(): Promise<void> {
    this.#stopping?.abort();
    await this.#working;
    this.#working = undefined;
  }

  /**
   * Stops the worker (after the send in progress), closes the connection
   * to the destination, and closes the NATS connection if the outbox
   * opened it. Calling it again returns the same promise.
   *
   * @returns A promise that resolves once closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      await this.stop();
      await this.#worker?.close();
      if (this.#owned) {
        await this.#nc.close().catch(() => {});
        await this.#status;
      }
    })();
  }

  /** Closes the outbox; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
