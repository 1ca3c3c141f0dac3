/**
 * Message bytes in Deno KV, for the message store and the outbox.
 *
 * Deno KV limits a value to 64 KiB and an atomic commit to 800 KiB, so a
 * message's bytes are kept as chunks of {@linkcode CHUNK_BYTES} under
 * `[...prefix, "chunk", id, i]`. A message of at most
 * {@linkcode INLINE_CHUNKS} chunks is written in the same commit as its
 * record; a larger one is written first, in commits of at most
 * {@linkcode INLINE_CHUNKS} chunks, under a fresh id and a "partial"
 * marker, and then one commit makes its record appear. Chunks of a commit
 * that failed are deleted; chunks left by a process that died in between
 * are found by their marker and deleted by {@linkcode sweepPartials}.
 *
 * @module
 */

import { atomic, retryBusy } from "./_kv.ts";

/** The size of one chunk of message bytes: 60 KiB. */
export const CHUNK_BYTES = 60 * 1024;
/**
 * The most chunks written in one commit (600 KiB, leaving room in the
 * 800 KiB commit limit for the record and the keys).
 */
export const INLINE_CHUNKS = 10;

/** How many chunks `size` bytes take (at least one). */
export function chunkCount(size: number): number {
  return Math.max(1, Math.ceil(size / CHUNK_BYTES));
}

/** Adds the sets of a message's chunks to an atomic operation. */
export function setChunks(
  op: Deno.AtomicOperation,
  prefix: Deno.KvKey,
  id: string,
  raw: Uint8Array,
): Deno.AtomicOperation {
  const count = chunkCount(raw.length);
  for (let i = 0; i < count; i++) {
    op.set(
      [...prefix, "chunk", id, i],
      raw.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
    );
  }
  return op;
}

/** Whether a message is small enough to go in one commit with its record. */
export function fitsInline(size: number): boolean {
  return chunkCount(size) <= INLINE_CHUNKS;
}

/**
 * Writes a large message's chunks ahead of its record: a "partial" marker
 * first (so {@linkcode sweepPartials} can find them if this process dies),
 * then the chunks, {@linkcode INLINE_CHUNKS} per commit. Deletes what it
 * wrote if a commit fails.
 */
export async function writeLargeChunks(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  id: string,
  raw: Uint8Array,
): Promise<void> {
  const count = chunkCount(raw.length);
  await retryBusy(() =>
    kv.set([...prefix, "partial", id], { at: Date.now(), chunks: count })
  );
  try {
    for (let first = 0; first < count; first += INLINE_CHUNKS) {
      const op = atomic(kv);
      const last = Math.min(count, first + INLINE_CHUNKS);
      for (let i = first; i < last; i++) {
        op.set(
          [...prefix, "chunk", id, i],
          raw.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
        );
      }
      await op.commit();
    }
  } catch (error) {
    await deleteChunks(kv, prefix, id, count).catch(() => {});
    throw error;
  }
}

/**
 * Deletes a message's chunks and its partial marker, in commits of at most
 * 100 deletions.
 */
export async function deleteChunks(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  id: string,
  count: number,
): Promise<void> {
  for (let first = 0; first < count; first += 100) {
    const op = atomic(kv);
    for (let i = first; i < Math.min(count, first + 100); i++) {
      op.delete([...prefix, "chunk", id, i]);
    }
    await op.commit();
  }
  await retryBusy(() => kv.delete([...prefix, "partial", id]));
}

/** Drops the partial marker once the record that owns the chunks exists. */
export function clearPartial(
  op: Deno.AtomicOperation,
  prefix: Deno.KvKey,
  id: string,
): Deno.AtomicOperation {
  return op.delete([...prefix, "partial", id]);
}

/**
 * Reads a message's bytes back from its chunks.
 *
 * @throws {Error} If a chunk is missing or the size does not add up.
 */
export async function readChunks(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  id: string,
  size: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  const count = chunkCount(size);
  if (count <= 10) {
    // A point read of each chunk: cheaper than a range read.
    const keys = Array.from(
      { length: count },
      (_, i) => [...prefix, "chunk", id, i],
    );
    let offset = 0;
    for (const entry of await kv.getMany<Uint8Array[]>(keys)) {
      if (entry.value === null || offset + entry.value.length > size) break;
      out.set(entry.value, offset);
      offset += entry.value.length;
    }
    if (offset === size) return out;
    throw new Error(
      `Cannot read message ${id}: its stored chunks hold ${offset} of ${size} bytes`,
    );
  }
  let offset = 0;
  let expected = 0;
  for await (
    const entry of kv.list<Uint8Array>({ prefix: [...prefix, "chunk", id] }, {
      batchSize: 100,
    })
  ) {
    if (entry.key.at(-1) !== expected) break;
    const chunk = entry.value;
    if (offset + chunk.length > size) break;
    out.set(chunk, offset);
    offset += chunk.length;
    expected++;
  }
  if (offset !== size) {
    throw new Error(
      `Cannot read message ${id}: its stored chunks hold ${offset} of ${size} bytes`,
    );
  }
  return out;
}

/**
 * Deletes the chunks of large messages whose record never appeared (the
 * writer died between its chunks and its record), once their marker is
 * older than `olderThanMs`.
 *
 * @returns How many partial messages were deleted.
 */
export async function sweepPartials(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  olderThanMs: number,
): Promise<number> {
  let swept = 0;
  const before = Date.now() - olderThanMs;
  for await (
    const entry of kv.list<{ at: number; chunks: number }>({
      prefix: [...prefix, "partial"],
    })
  ) {
    if (entry.value.at > before) continue;
    await deleteChunks(
      kv,
      prefix,
      String(entry.key.at(-1)),
      entry.value.chunks,
    );
    swept++;
  }
  return swept;
}
