/**
 * Group commit: writes that arrive while a commit is in flight wait, and
 * go together in the next commit, so that many writers share one commit
 * (the cost of a Deno KV commit on a SQLite file is mostly per commit,
 * not per key). The first write after a quiet spell goes at once, alone:
 * nothing waits for company. A group holds at most as much as one Deno KV
 * atomic operation takes ({@linkcode GroupLimits}).
 *
 * After a shared commit, the next group waits a moment (at most
 * {@linkcode GATHER_MS}, and not past half the last commit's time) for as
 * many items as the last group held: connections that shared a commit get
 * their answers together and send again a moment apart, and without the
 * wait the first of them would go alone while the others wait for it, two
 * commits where one does. A lone writer (the last group held one item, or
 * the last commit ended a while ago) never waits.
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

/** The longest a group waits for company after a shared commit, in ms. */
export const GATHER_MS = 2;

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
  /** The size of the last group, how long its write took, when it ended. */
  #last = { size: 0, ms: 0, ended: 0 };
  /** Wakes a gathering group once `want` items wait. */
  #gathering: { want: number; wake: () => void } | undefined;

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
    if (
      this.#gathering &&
      this.#queue.length - this.#head >= this.#gathering.want
    ) {
      this.#gathering.wake();
    }
    if (!this.#running) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#head < this.#queue.length) {
        const wait = this.#gatherFor();
        if (wait > 0) await this.#gather(wait);
        const group = this.#take();
        this.#groups++;
        this.#items += group.length;
        const started = performance.now();
        try {
          await this.#write(group);
        } catch (error) {
          for (const item of group) item.fail(error);
        }
        const ended = performance.now();
        this.#last = { size: group.length, ms: ended - started, ended };
      }
    } finally {
      this.#queue = [];
      this.#head = 0;
      this.#running = false;
    }
  }

  /**
   * How long the next group should wait for company, in ms: none unless
   * the last group was shared, ended just now, and more were in it than
   * wait now.
   */
  #gatherFor(): number {
    const { size, ms, ended } = this.#last;
    const want = Math.min(size, this.#limits.items);
    if (want <= 1 || this.#queue.length - this.#head >= want) return 0;
    if (performance.now() - ended > Math.max(ms, GATHER_MS)) return 0;
    return Math.min(GATHER_MS, Math.max(ms / 2, 1));
  }

  /** Waits up to `ms` for as many items as the last group held. */
  async #gather(ms: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    const timer = setTimeout(resolve, ms);
    this.#gathering = {
      want: Math.min(this.#last.size, this.#limits.items),
      wake: resolve,
    };
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      this.#gathering = undefined;
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
