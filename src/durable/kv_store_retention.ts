/**
 * Retention for `KvMessageStore`, after the model of an interface
 * engine's data pruner: a dispatched message's record and bytes are
 * removed once it was dispatched longer ago than `retentionMs`; parked
 * and pending messages are never removed by age (parked ones stay until
 * requeued or purged).
 *
 * Which mechanism removes what:
 *
 * - Records and bytes: this sweeper. A message marked dispatched gets an
 *   entry `[...prefix, "done", dispatchedAt, id]`, and the sweeper reads
 *   those older than `retentionMs` in order and deletes each message's
 *   record, bytes and entry in commits that check the entry (so two
 *   sweepers sharing a KV count each removal once). Deno KV's `expireIn`
 *   does not fit here: the age counts from dispatch, which is not known
 *   when the bytes are written, and what `expireIn` removes cannot be
 *   counted in `stats()`.
 * - Duplicate keys: `expireIn`, set to the dedupe window when the message
 *   is stored (Deno KV deletes an expired key in a sweep of its own, about
 *   once a minute, so a key lives a little longer than the window, never
 *   less). The sweeper also deletes a message's duplicate key with its
 *   record when the window has passed, so the two go together.
 * - Chunks of a large message whose writer died: this sweeper, after
 *   `partialTtl` (as `open()` does).
 *
 * @module
 */

import { atomic, retryBusy } from "./_kv.ts";
import {
  chunkCount,
  deleteChunks,
  INLINE_CHUNKS,
  sweepPartials,
} from "./_kv_chunks.ts";
import { dedupeKey, type DedupeValue } from "./kv_store_writer.ts";
import type { StoredRecord } from "./kv_store_types.ts";

/** What the sweeper needs from its store. */
export interface RetentionSettings {
  kv: Deno.Kv;
  prefix: Deno.KvKey;
  /** How long a dispatched message is kept, in ms; `Infinity`: always. */
  retentionMs: number;
  /** The dedupe window, in ms; `Infinity`: always. */
  dedupeWindowMs: number;
  /** The age after which a partly written message's chunks go, in ms. */
  partialTtl: number;
  /** The clock, in ms since the epoch. */
  now(): number;
}

/**
 * What one sweep removed.
 *
 * @example See what a sweep removed
 * ```ts
 * import { KvMessageStore, type SweepResult } from "@x/mllp/store";
 * import { assertEquals } from "@std/assert";
 *
 * await using store = await KvMessageStore.open(":memory:", {
 *   retentionMs: 24 * 60 * 60 * 1000, // a day
 *   sweepInterval: 0, // no sweeps of its own: this code calls sweep()
 * });
 * const swept: SweepResult = await store.sweep();
 * assertEquals(swept, { removed: 0, dedupeKeys: 0, partials: 0 });
 * ```
 */
export interface SweepResult {
  /** Dispatched messages removed (record and bytes). */
  removed: number;
  /** Duplicate keys removed with them (their window had passed). */
  dedupeKeys: number;
  /** Partly written large messages whose chunks were removed. */
  partials: number;
}

/** How many messages one commit of the sweeper removes, at most. */
const BATCH = 40;

/** One dispatched message to remove, with what its commit checks. */
interface Doomed {
  done: Deno.KvEntry<unknown>;
  record: StoredRecord | null;
  dedupe: Deno.KvEntryMaybe<DedupeValue> | undefined;
}

/**
 * Removes the dispatched messages older than `retentionMs`, and the
 * chunks of partly written messages older than `partialTtl`.
 *
 * @returns What it removed.
 */
export async function sweepStore(
  settings: RetentionSettings,
): Promise<SweepResult> {
  const result: SweepResult = { removed: 0, dedupeKeys: 0, partials: 0 };
  result.partials = await sweepPartials(
    settings.kv,
    settings.prefix,
    settings.partialTtl,
  );
  if (!Number.isFinite(settings.retentionMs)) return result;
  const key = (...parts: Deno.KvKeyPart[]) => [...settings.prefix, ...parts];
  for (;;) {
    const cutoff = settings.now() - settings.retentionMs;
    const done = await Array.fromAsync(
      settings.kv.list({ prefix: key("done"), end: key("done", cutoff) }, {
        limit: BATCH,
      }),
    );
    if (done.length === 0) return result;
    const doomed = await readDoomed(settings, done);
    let cleared = await removeAll(settings, doomed, result);
    if (cleared === undefined) {
      // A check failed (another sweeper, a resend's key): one at a time.
      cleared = 0;
      for (const one of doomed) {
        cleared += await removeAll(settings, [one], result) ?? 0;
      }
    }
    if (done.length < BATCH || cleared === 0) return result;
  }
}

async function readDoomed(
  settings: RetentionSettings,
  done: Deno.KvEntry<unknown>[],
): Promise<Doomed[]> {
  const { kv, prefix } = settings;
  const doomed: Doomed[] = [];
  for (let first = 0; first < done.length; first += 10) {
    const slice = done.slice(first, first + 10);
    const records = await retryBusy(() =>
      kv.getMany<StoredRecord[]>(
        slice.map((entry) => [...prefix, "msg", entry.key.at(-1)!]),
      )
    );
    const keys = await Promise.all(
      records.map((record) =>
        record.value && record.value.controlId !== ""
          ? dedupeKey(
            prefix,
            record.value.sendingApplication,
            record.value.sendingFacility,
            record.value.controlId,
          )
          : undefined
      ),
    );
    const present = keys.filter((k): k is Deno.KvKey => k !== undefined);
    const values = present.length === 0
      ? []
      : await retryBusy(() => kv.getMany<DedupeValue[]>(present));
    let v = 0;
    for (const [i, entry] of slice.entries()) {
      doomed.push({
        done: entry,
        record: records[i].value,
        dedupe: keys[i] ? values[v++] : undefined,
      });
    }
  }
  return doomed;
}

/**
 * Removes these messages in one commit. Returns how many entries it
 * cleared, or `undefined` if a check failed (nothing was removed).
 */
async function removeAll(
  settings: RetentionSettings,
  doomed: Doomed[],
  result: SweepResult,
): Promise<number | undefined> {
  const { kv, prefix } = settings;
  const op = atomic(kv);
  const large: StoredRecord[] = [];
  let removed = 0;
  let dedupeKeys = 0;
  const now = settings.now();
  for (const { done, record, dedupe } of doomed) {
    op.check(done).delete(done.key);
    if (!record) continue;
    removed++;
    op.delete([...prefix, "msg", record.id]);
    const chunks = chunkCount(record.size);
    if (chunks <= INLINE_CHUNKS) {
      for (let i = 0; i < chunks; i++) {
        op.delete([...prefix, "chunk", record.id, i]);
      }
    } else {
      // Deleted after this commit; the marker finds them if that fails.
      op.set([...prefix, "partial", record.id], { at: 0, chunks });
      large.push(record);
    }
    dedupeKeys += settleDedupe(op, record, dedupe, now, settings.dedupeWindowMs)
      ? 1
      : 0;
  }
  if (removed > 0) op.sum([...prefix, "count", "removed"], BigInt(removed));
  if (!(await op.commit()).ok) return undefined;
  for (const record of large) {
    await deleteChunks(kv, prefix, record.id, chunkCount(record.size));
  }
  result.removed += removed;
  result.dedupeKeys += dedupeKeys;
  return doomed.length;
}

/**
 * Adds to `op` what becomes of a message's duplicate key when its record
 * goes: deleted if the dedupe window has passed (or `forget`), else left
 * to expire (rewritten to hold the ACK, if it was written before it did).
 * Checks the key in either case. Returns whether it is deleted.
 */
export function settleDedupe(
  op: Deno.AtomicOperation,
  record: StoredRecord,
  dedupe: Deno.KvEntryMaybe<DedupeValue> | undefined,
  now: number,
  windowMs: number,
  forget = false,
): boolean {
  const value = dedupe?.value;
  if (!dedupe || value === null || value === undefined) return false;
  const id = typeof value === "string" ? value : value.id;
  if (id !== record.id) return false;
  const left = record.receivedAt + windowMs - now;
  op.check(dedupe);
  if (forget || left <= 0) {
    op.delete(dedupe.key);
    return true;
  }
  if (typeof value === "string") {
    op.set(
      dedupe.key,
      { id, ack: record.ack },
      Number.isFinite(left) ? { expireIn: left } : undefined,
    );
  }
  return false;
}
