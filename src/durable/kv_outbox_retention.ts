/**
 * Retention for `KvOutbox`: an acknowledged message's record and bytes are
 * removed once it was acknowledged longer ago than `retentionMs`; pending,
 * in-flight and parked messages are never removed by age (parked ones stay
 * until requeued or purged).
 *
 * A sweeper does it, not Deno KV's `expireIn`: the age counts from the
 * acknowledgment, which is not known when the bytes are written, and
 * what `expireIn` removes cannot be counted in `stats()`. An acknowledged
 * message gets an entry `[...base, "done", finishedAt, seq]`; the sweeper
 * reads those older than `retentionMs` in order and deletes each message's
 * record, bytes and entry in commits that check the entry and the record
 * (so two sweepers sharing a KV count each removal once). It also deletes
 * the chunks of partly written large messages older than `partialTtl`.
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
import type { OutboxRecord } from "./kv_outbox_types.ts";

/** What the sweeper needs from its outbox. */
export interface OutboxRetentionSettings {
  kv: Deno.Kv;
  /** The destination's key prefix. */
  base: Deno.KvKey;
  /** How long an acknowledged message is kept, in ms; `Infinity`: always. */
  retentionMs: number;
  /** The age after which a partly written message's chunks go, in ms. */
  partialTtl: number;
  /** The clock, in ms since the epoch. */
  now(): number;
}

/**
 * What one sweep of an outbox removed.
 *
 * @example See what a sweep removed
 * ```ts
 * import { KvOutbox, type OutboxSweepResult } from "@x/mllp/outbox";
 * import { assertEquals } from "@std/assert";
 *
 * await using outbox = await KvOutbox.open(":memory:", {
 *   destination: { hostname: "127.0.0.1", port: 2575 },
 *   retentionMs: 24 * 60 * 60 * 1000, // keep acknowledged messages a day
 *   sweepInterval: 0, // no sweeps of its own: this code calls sweep()
 * });
 * const swept: OutboxSweepResult = await outbox.sweep();
 * assertEquals(swept, { removed: 0, partials: 0 });
 * ```
 */
export interface OutboxSweepResult {
  /** Acknowledged messages removed (record and bytes). */
  removed: number;
  /** Partly written large messages whose chunks were removed. */
  partials: number;
}

/** How many messages one commit of the sweeper removes, at most. */
const BATCH = 40;

/**
 * Removes the acknowledged messages older than `retentionMs`, and the
 * chunks of partly written messages older than `partialTtl`.
 *
 * @returns What it removed.
 */
export async function sweepOutbox(
  settings: OutboxRetentionSettings,
): Promise<OutboxSweepResult> {
  const { kv, base } = settings;
  const result: OutboxSweepResult = { removed: 0, partials: 0 };
  result.partials = await sweepPartials(kv, base, settings.partialTtl);
  if (!Number.isFinite(settings.retentionMs)) return result;
  for (;;) {
    const cutoff = settings.now() - settings.retentionMs;
    const done = await Array.fromAsync(
      kv.list({ prefix: [...base, "done"], end: [...base, "done", cutoff] }, {
        limit: BATCH,
      }),
    );
    if (done.length === 0) return result;
    const items: Deno.KvEntryMaybe<OutboxRecord>[] = [];
    for (let first = 0; first < done.length; first += 10) {
      const slice = done.slice(first, first + 10);
      items.push(
        ...await retryBusy(() =>
          kv.getMany<OutboxRecord[]>(
            slice.map((entry) => [...base, "item", entry.key.at(-1)!]),
          )
        ),
      );
    }
    const pairs = done.map((entry, i) => ({ done: entry, item: items[i] }));
    let cleared = await removeAll(settings, pairs, result);
    if (cleared === undefined) {
      // A check failed (another sweeper, a purge): one at a time.
      cleared = 0;
      for (const pair of pairs) {
        cleared += await removeAll(settings, [pair], result) ?? 0;
      }
    }
    if (done.length < BATCH || cleared === 0) return result;
  }
}

/**
 * Removes these messages in one commit. Returns how many entries it
 * cleared, or `undefined` if a check failed (nothing was removed).
 */
async function removeAll(
  settings: OutboxRetentionSettings,
  pairs: {
    done: Deno.KvEntry<unknown>;
    item: Deno.KvEntryMaybe<OutboxRecord>;
  }[],
  result: OutboxSweepResult,
): Promise<number | undefined> {
  const { kv, base } = settings;
  const op = atomic(kv);
  const large: OutboxRecord[] = [];
  let removed = 0;
  for (const { done, item } of pairs) {
    op.check(done).delete(done.key);
    const record = item.value;
    if (!record || record.state !== "acked") continue;
    removed++;
    op.check(item).delete(item.key);
    const chunks = chunkCount(record.size);
    if (chunks <= INLINE_CHUNKS) {
      for (let i = 0; i < chunks; i++) {
        op.delete([...base, "chunk", record.id, i]);
      }
    } else {
      // Deleted after this commit; the marker finds them if that fails.
      op.set([...base, "partial", record.id], { at: 0, chunks });
      large.push(record);
    }
  }
  if (removed > 0) op.sum([...base, "count", "removed"], BigInt(removed));
  if (!(await op.commit()).ok) return undefined;
  for (const record of large) {
    await deleteChunks(kv, base, record.id, chunkCount(record.size));
  }
  result.removed += removed;
  return pairs.length;
}
