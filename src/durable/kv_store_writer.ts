/**
 * How `KvMessageStore` writes what it receives, with group commit: each
 * `put` waits for a commit that holds its message, and the puts that
 * arrive while a commit is in flight (from many connections) share the
 * next one ({@linkcode GroupCommitter}). A put resolves only after that
 * commit, so a receiver's `AA` still goes out only once its message is
 * stored.
 *
 * Duplicates stay exact in a group: the commit checks each message's
 * duplicate key is absent; copies of one id in one group go in as one (the
 * first), the others get its id and ACK; and when the commit fails on a
 * check (the id was stored before, by this process or another), the keys
 * are read, those found are answered with what they hold, and the rest
 * are committed again.
 *
 * @module
 */

import { atomic, isBusy, newId, retryBusy } from "./_kv.ts";
import {
  chunkCount,
  clearPartial,
  deleteChunks,
  fitsInline,
  setChunks,
  writeLargeChunks,
} from "./_kv_chunks.ts";
import { GroupCommitter, keyBytes } from "./_kv_group.ts";
import type { Wakeup } from "./_wakeup.ts";
import type { StoreEntry, StorePutResult } from "../dispatch/message_store.ts";
import type { QueueEntry, StoredRecord } from "./kv_store_types.ts";

/**
 * What a duplicate key holds: the id of the message stored under it and
 * the ACK it got, so that a resend is answered from the key alone (even
 * once retention has removed the record). Stores written before retention
 * existed hold the id alone.
 */
export type DedupeValue = { id: string; ack: Uint8Array } | string;

/** The id a duplicate key names. */
export function dedupeId(value: DedupeValue): string {
  return typeof value === "string" ? value : value.id;
}

/**
 * The duplicate key of a sender (MSH-3, MSH-4) and control id (MSH-10):
 * the fields, or their SHA-256 when they are long.
 */
export async function dedupeKey(
  prefix: Deno.KvKey,
  application: string,
  facility: string,
  controlId: string,
): Promise<Deno.KvKey> {
  if (application.length + facility.length + controlId.length <= 1024) {
    return [...prefix, "dedupe", application, facility, controlId];
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(
      JSON.stringify([application, facility, controlId]),
    ),
  );
  const hex = Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return [...prefix, "dedupe", "#sha256", hex];
}

/** What the writer needs from its store. */
export interface WriterSettings {
  kv: Deno.Kv;
  prefix: Deno.KvKey;
  /** How long a duplicate key lives (`expireIn`), in ms; `Infinity`: always. */
  dedupeWindowMs: number;
  /** Notified when messages are stored. */
  wakeup: Wakeup;
  /** Logs a failure to delete the chunks of a message not stored. */
  warn(message: string, properties: Record<string, unknown>): void;
}

/** One put waiting for its commit. */
interface Put {
  id: string;
  record: StoredRecord;
  raw: Uint8Array;
  inline: boolean;
  /** The duplicate key, or none for an empty MSH-10. */
  dedupe: Deno.KvKey | undefined;
  /** The same, as a string, to find copies in a group. */
  dedupeName: string | undefined;
  resolve(result: StorePutResult): void;
  fail(error: unknown): void;
}

/** The write path of a `KvMessageStore`. */
export class StoreWriter {
  #s: WriterSettings;
  #committer: GroupCommitter<Put>;

  constructor(settings: WriterSettings) {
    this.#s = settings;
    this.#committer = new GroupCommitter((group) => this.#write(group));
  }

  /** Commits so far that stored messages, and the puts they settled. */
  get counts(): { groups: number; items: number } {
    return this.#committer.counts;
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#s.prefix, ...parts];
  }

  /** Stores one message (see `KvMessageStore.put`). */
  async put(entry: StoreEntry): Promise<StorePutResult> {
    const { header, raw } = entry.message;
    const id = newId();
    const dedupe = header.controlId === "" ? undefined : await dedupeKey(
      this.#s.prefix,
      header.sendingApplication,
      header.sendingFacility,
      header.controlId,
    );
    const record: StoredRecord = {
      id,
      sendingApplication: header.sendingApplication,
      sendingFacility: header.sendingFacility,
      controlId: header.controlId,
      messageType: header.messageType,
      size: raw.length,
      receivedAt: entry.receivedAt.getTime(),
      peer: { hostname: entry.peer.hostname, port: entry.peer.port },
      local: { hostname: entry.local.hostname, port: entry.local.port },
      certificateName: entry.certificateName,
      ack: entry.ack,
      state: "pending",
      attempts: 0,
    };
    const inline = fitsInline(raw.length);
    if (!inline) await writeLargeChunks(this.#s.kv, this.#s.prefix, id, raw);
    const dedupeName = dedupe && JSON.stringify(dedupe);
    const base = keyBytes(this.#key("msg", id)) + 16;
    const dedupeBytes = dedupe ? keyBytes(dedupe) : 0;
    const chunks = inline ? chunkCount(raw.length) : 1;
    const fields = header.sendingApplication.length +
      header.sendingFacility.length + header.controlId.length +
      header.messageType.length + (entry.certificateName?.length ?? 0) +
      entry.peer.hostname.length + entry.local.hostname.length;
    const keys = 2 * dedupeBytes + (2 + chunks) * base;
    const bytes = (inline ? raw.length : 0) + 2 * entry.ack.length +
      3 * fields + 1024 + keys;
    const { promise, resolve, reject } = Promise.withResolvers<
      StorePutResult
    >();
    this.#committer.add({
      id,
      record,
      raw,
      inline,
      dedupe,
      dedupeName,
      resolve,
      fail: reject,
    }, { bytes, keyBytes: keys });
    try {
      const result = await promise;
      if (result.duplicate && !inline) await this.#dropChunks(id, raw.length);
      return result;
    } catch (error) {
      if (!inline) await this.#dropChunks(id, raw.length);
      throw error;
    }
  }

  async #dropChunks(id: string, size: number): Promise<void> {
    await deleteChunks(this.#s.kv, this.#s.prefix, id, chunkCount(size))
      .catch((error) =>
        this.#s.warn("Cannot delete the chunks of message {id}: {error}", {
          id,
          error,
        })
      );
  }

  /** Commits a group: one atomic operation, again without what it finds stored. */
  async #write(group: Put[]): Promise<void> {
    // Copies of one id in the group follow the first.
    const leaders: Put[] = [];
    const followers = new Map<Put, Put[]>();
    const byName = new Map<string, Put>();
    for (const put of group) {
      const leader = put.dedupeName && byName.get(put.dedupeName);
      if (leader) {
        followers.get(leader)!.push(put);
      } else {
        leaders.push(put);
        followers.set(put, []);
        if (put.dedupeName) byName.set(put.dedupeName, put);
      }
    }
    /** Answers a leader and its followers with an earlier message. */
    const answer = (leader: Put, result: StorePutResult) => {
      leader.resolve(result);
      for (const follower of followers.get(leader)!) follower.resolve(result);
    };
    let todo = leaders;
    let duplicates = 0;
    for (let tries = 1;; tries++) {
      if (todo.length === 0) {
        // Only a count: its failure must not fail the replies.
        await atomic(this.#s.kv)
          .sum(this.#key("count", "duplicates"), BigInt(duplicates))
          .commit().catch(() => {});
        return;
      }
      let ok: boolean;
      try {
        ok = await this.#commit(
          todo,
          duplicates + todo.reduce((n, p) => n + followers.get(p)!.length, 0),
        );
      } catch (error) {
        if (todo.length === 1 || isBusy(error)) throw error;
        // Perhaps the group was too large after all: one at a time.
        for (const leader of todo) {
          await this.#write([leader, ...followers.get(leader)!]).catch((
            error,
          ) => {
            leader.fail(error);
            for (const follower of followers.get(leader)!) {
              follower.fail(error);
            }
          });
        }
        if (duplicates > 0) {
          await atomic(this.#s.kv)
            .sum(this.#key("count", "duplicates"), BigInt(duplicates))
            .commit().catch(() => {});
        }
        return;
      }
      if (ok) {
        for (const leader of todo) {
          leader.resolve({ duplicate: false, id: leader.id });
          for (const follower of followers.get(leader)!) {
            follower.resolve({
              duplicate: true,
              id: leader.id,
              ack: leader.record.ack,
            });
          }
        }
        this.#s.wakeup.notify();
        return;
      }
      // A duplicate key is there: answer those found, commit the rest.
      const found = await this.#earlier(todo);
      const rest: Put[] = [];
      for (const leader of todo) {
        const earlier = found.get(leader);
        if (earlier === undefined) {
          rest.push(leader);
        } else if (earlier instanceof Error) {
          leader.fail(earlier);
          for (const follower of followers.get(leader)!) {
            follower.fail(earlier);
          }
        } else {
          answer(leader, earlier);
          duplicates += 1 + followers.get(leader)!.length;
        }
      }
      if (rest.length === todo.length && tries >= 100) {
        throw new Error(
          "Cannot store messages: their duplicate keys kept changing (100 tries)",
        );
      }
      todo = rest;
    }
  }

  /** One commit of these messages; whether its checks held. */
  async #commit(todo: Put[], duplicates: number): Promise<boolean> {
    const op = atomic(this.#s.kv);
    const expireIn = Number.isFinite(this.#s.dedupeWindowMs)
      ? { expireIn: Math.max(1, this.#s.dedupeWindowMs) }
      : undefined;
    for (const put of todo) {
      const { id, record, raw } = put;
      if (put.dedupe) {
        op.check({ key: put.dedupe, versionstamp: null })
          .set(put.dedupe, { id, ack: record.ack }, expireIn);
      }
      op.set(this.#key("msg", id), record)
        .set(
          this.#key("ready", id),
          { receivedAt: record.receivedAt, attempts: 0 } satisfies QueueEntry,
        );
      if (put.inline) setChunks(op, this.#s.prefix, id, raw);
      else clearPartial(op, this.#s.prefix, id);
    }
    op.sum(this.#key("count", "stored"), BigInt(todo.length));
    if (duplicates > 0) {
      op.sum(this.#key("count", "duplicates"), BigInt(duplicates));
    }
    return (await op.commit()).ok;
  }

  /**
   * What the duplicate keys of these messages hold now: the earlier
   * message's answer, nothing (the key is absent), or an error (the key
   * names a record that is gone).
   */
  async #earlier(
    todo: Put[],
  ): Promise<Map<Put, StorePutResult | Error>> {
    const found = new Map<Put, StorePutResult | Error>();
    const keyed = todo.filter((put) => put.dedupe);
    for (let first = 0; first < keyed.length; first += 10) {
      const slice = keyed.slice(first, first + 10);
      const entries = await retryBusy(() =>
        this.#s.kv.getMany<DedupeValue[]>(slice.map((put) => put.dedupe!))
      );
      for (const [i, entry] of entries.entries()) {
        const value = entry.value;
        if (value === null) continue;
        const put = slice[i];
        if (typeof value !== "string") {
          found.set(put, { duplicate: true, id: value.id, ack: value.ack });
          continue;
        }
        // A key written before retention: the ACK is in the record.
        const record = await retryBusy(() =>
          this.#s.kv.get<StoredRecord>(this.#key("msg", value))
        );
        found.set(
          put,
          record.value
            ? { duplicate: true, id: record.value.id, ack: record.value.ack }
            : new Error(
              `Cannot store message ${put.record.controlId}: its duplicate key is there but its record is not`,
            ),
        );
      }
    }
    return found;
  }
}
