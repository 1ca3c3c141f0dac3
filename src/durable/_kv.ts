/**
 * Deno KV access shared by the message store and the outbox: opening a KV
 * (or taking an open handle), sortable ids, commits run again while SQLite
 * reports "database is locked", and counters kept with `sum`.
 *
 * @module
 */

import { requirePermissions } from "../net/permission.ts";

/** A KV handle and whether this code opened it (and so closes it). */
export interface OpenedKv {
  kv: Deno.Kv;
  owned: boolean;
}

/**
 * Opens a KV: a path, `":memory:"`, a KV Connect URL, or nothing for the
 * default; or takes an open handle, which stays the caller's to close.
 *
 * @throws {Deno.errors.NotCapable} For a file Deno may not read and write:
 *   one line naming `--allow-read --allow-write`.
 */
export async function openKv(
  pathOrKv: string | Deno.Kv | undefined,
): Promise<OpenedKv> {
  if (pathOrKv !== undefined && typeof pathOrKv !== "string") {
    return { kv: pathOrKv, owned: false };
  }
  if (typeof Deno.openKv !== "function") {
    throw new Error(
      'Deno KV is not available: run Deno with --unstable-kv (or "unstable": ["kv"] in deno.json)',
    );
  }
  if (
    pathOrKv !== undefined && pathOrKv !== ":memory:" &&
    !/^https?:\/\//i.test(pathOrKv)
  ) {
    // A file: one line naming both flags, rather than Deno's error for
    // the first one missing.
    requirePermissions(
      [{ name: "read", path: pathOrKv }, { name: "write", path: pathOrKv }],
      `Cannot open Deno KV "${pathOrKv}"`,
    );
  }
  return { kv: await Deno.openKv(pathOrKv), owned: true };
}

let lastMs = 0;
let counter = 0;

/**
 * A fresh id that sorts in creation order within a process (and roughly
 * across processes): 12 hex digits of milliseconds, 4 of a counter, 8
 * random.
 */
export function newId(): string {
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    counter = 0;
  } else if (++counter > 0xffff) {
    lastMs++;
    counter = 0;
  }
  const random = crypto.getRandomValues(new Uint32Array(1))[0];
  return lastMs.toString(16).padStart(12, "0") +
    counter.toString(16).padStart(4, "0") +
    random.toString(16).padStart(8, "0");
}

/** Reads counters kept with `sum` (absent counters are 0). */
export async function readCounters(
  kv: Deno.Kv,
  keys: Deno.KvKey[],
): Promise<number[]> {
  const entries = await kv.getMany<Deno.KvU64[]>(keys);
  return entries.map((entry) => Number(entry.value?.value ?? 0n));
}

/**
 * Whether an error is SQLite's "database is locked": another process
 * sharing the KV file held the write lock for longer than Deno's own
 * retries wait. Nothing was written; the operation can be run again.
 */
export function isBusy(error: unknown): boolean {
  return error instanceof Error &&
    /database is (locked|busy)/i.test(error.message);
}

/**
 * Runs a KV operation, again (up to `tries` times in all, after a short
 * random wait) while it fails with {@linkcode isBusy}. The operation must
 * build its atomic commit anew on each call.
 */
export async function retryBusy<T>(
  operation: () => Promise<T>,
  tries = 8,
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= tries || !isBusy(error)) throw error;
      await new Promise((resolve) =>
        setTimeout(resolve, attempt * (5 + Math.random() * 20))
      );
    }
  }
}

/**
 * `atomic(kv)`, whose `commit()` runs again while it fails with
 * {@linkcode isBusy} (a failed SQLite commit wrote nothing).
 */
export function atomic(kv: Deno.Kv): Deno.AtomicOperation {
  const op = kv.atomic();
  const commit = op.commit.bind(op);
  op.commit = () => retryBusy(commit);
  return op;
}
