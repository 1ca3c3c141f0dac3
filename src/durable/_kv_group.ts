/**
 * Group commit: writes that arrive while a commit is in flight wait, and
 * go together in the next commit, so that many writers share one commit
 * (the cost of a Deno KV commit on a SQLite file is mostly per commit,
 * not per key). The first write after a quiet spell goes at once, alone:
 * nothing waits for company. A group holds at most as much as one Deno KV
 * atomic operation takes ({@linkcode GroupLimits}).
 *
 * The committer only forms the groups; the `write` function given to it
 * builds and commits each group, and settles each item of it.
 *
 * @module
 */

/** What one item adds to a group's commit. */
export interface GroupCost {
  /** Bytes of keys and values it sets. */
  bytes: number;
  /** Bytes of the keys it sets or checks. */
  keyBytes: number;
}

/** The most a group may hold. */
export interface GroupLimits {
  /** Items in a group. */
  items: number;
  /** Bytes of keys and values in a group. */
  bytes: number;
  /** Bytes of keys in a group. */
  keyBytes: number;
}

/** An item of a group: something that can be failed. */
export interface GroupItem {
  /** Settles the item with an error. */
  fail(error: unknown): void;
}

/**
 * Deno KV's limits on one atomic operation are 100 checks, 1000 mutations,
 * 800 KiB of keys and values, and 80 KiB of keys; these leave room for a
 * group's counters and for estimates that fall short.
 */
export const KV_GROUP_LIMITS: GroupLimits = {
  items: 64,
  bytes: 640 * 1024,
  keyBytes: 60 * 1024,
};

/**
 * Forms groups of items and hands each group to `write`, one group at a
 * time, in arrival order.
 */
export class GroupCommitter<T extends GroupItem> {
  #write: (items: T[]) => Promise<void>;
  #limits: GroupLimits;
  #queue: { item: T; cost: GroupCost }[] = [];
  #head = 0;
  #running = false;
  #groups = 0;
  #items = 0;

  /**
   * @param write Commits a group and settles each of its items; an error
   *   it throws fails the items of the group.
   * @param limits The most a group may hold.
   */
  constructor(
    write: (items: T[]) => Promise<void>,
    limits: GroupLimits = KV_GROUP_LIMITS,
  ) {
    this.#write = write;
    this.#limits = limits;
  }

  /** Groups written so far, and the items in them. */
  get counts(): { groups: number; items: number } {
    return { groups: this.#groups, items: this.#items };
  }

  /** Adds an item: it goes in the next group that has room for it. */
  add(item: T, cost: GroupCost): void {
    this.#queue.push({ item, cost });
    if (!this.#running) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#head < this.#queue.length) {
        const group = this.#take();
        this.#groups++;
        this.#items += group.length;
        try {
          await this.#write(group);
        } catch (error) {
          for (const item of group) item.fail(error);
        }
      }
    } finally {
      this.#queue = [];
      this.#head = 0;
      this.#running = false;
    }
  }

  /** The next group: as many waiting items as fit, at least one. */
  #take(): T[] {
    const group: T[] = [];
    let bytes = 0;
    let keyBytes = 0;
    while (this.#head < this.#queue.length) {
      const { item, cost } = this.#queue[this.#head];
      if (
        group.length > 0 &&
        (group.length >= this.#limits.items ||
          bytes + cost.bytes > this.#limits.bytes ||
          keyBytes + cost.keyBytes > this.#limits.keyBytes)
      ) break;
      group.push(item);
      bytes += cost.bytes;
      keyBytes += cost.keyBytes;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return group;
  }
}

const encoder = new TextEncoder();

/** About how many bytes Deno KV counts for a key (a little more). */
export function keyBytes(key: Deno.KvKey): number {
  let n = 0;
  for (const part of key) {
    if (typeof part === "string") n += encoder.encode(part).length + 2;
    else if (part instanceof Uint8Array) n += part.length + 2;
    else n += 10;
  }
  return n;
}
