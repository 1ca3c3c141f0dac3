/**
 * A `Deno.Kv` that lets a test see and hold the commits a store makes: each
 * commit is recorded with the keys it sets (and each `getMany` with its
 * keys), and while {@linkcode WatchedKv.hold}
 * is in force commits wait (having been recorded) until it is released.
 * Everything else goes straight to the real KV.
 *
 * @module
 */

/** One commit: the keys it set and deleted. */
export interface SeenCommit {
  sets: Deno.KvKey[];
  deletes: Deno.KvKey[];
  /** Resolves with whether it committed, once it has. */
  done: Promise<boolean>;
}

/** A KV whose commits a test can count and hold back. */
export class WatchedKv {
  readonly real: Deno.Kv;
  readonly commits: SeenCommit[] = [];
  /** The keys of each `getMany` call. */
  readonly reads: Deno.KvKey[][] = [];
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  #which: ((commit: Omit<SeenCommit, "done">) => boolean) | undefined;

  constructor(real: Deno.Kv) {
    this.real = real;
  }

  /** The KV to hand to the store: the real one, with `atomic` watched. */
  get kv(): Deno.Kv {
    return new Proxy(this.real, {
      get: (target, name) => {
        if (name === "atomic") return () => this.#watch(target.atomic());
        if (name === "getMany") {
          return (keys: Deno.KvKey[], options?: Deno.KvListOptions) => {
            this.reads.push([...keys]);
            return target.getMany(keys, options);
          };
        }
        const value = Reflect.get(target, name, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  /**
   * Commits made from now on (those for which `which` holds, if given)
   * wait until {@linkcode release}.
   */
  hold(which?: (commit: Omit<SeenCommit, "done">) => boolean): void {
    this.#gate ??= new Promise((resolve) => this.#open = resolve);
    this.#which = which;
  }

  /** Lets the held commits (and later ones) through. */
  release(): void {
    this.#open?.();
    this.#gate = undefined;
    this.#open = undefined;
    this.#which = undefined;
  }

  /** The commits that set a key whose part after `prefix` is `part`. */
  setting(prefix: Deno.KvKey, part: string): SeenCommit[] {
    return this.commits.filter((c) =>
      c.sets.some((key) => key[prefix.length] === part)
    );
  }

  #watch(op: Deno.AtomicOperation): Deno.AtomicOperation {
    const sets: Deno.KvKey[] = [];
    const deletes: Deno.KvKey[] = [];
    const set = op.set.bind(op);
    const del = op.delete.bind(op);
    const commit = op.commit.bind(op);
    op.set = (key, value, options) => {
      sets.push(key);
      return set(key, value, options);
    };
    op.delete = (key) => {
      deletes.push(key);
      return del(key);
    };
    op.commit = () => {
      const gate = this.#which && !this.#which({ sets, deletes })
        ? undefined
        : this.#gate;
      const result = (async () => {
        if (gate) await gate;
        return await commit();
      })();
      this.commits.push({
        sets,
        deletes,
        done: result.then((r) => r.ok, () => false),
      });
      return result;
    };
    return op;
  }
}
