/**
 * "Did you mean ...?" for the command line: the known name closest to a
 * mistyped flag or command.
 *
 * @module
 */

/**
 * The name in `known` that `typed` most likely meant, or `undefined` when
 * none is close: a name `typed` is a prefix of (`--keep` for
 * `--keep-going`), or one at most a third of its length of edits away
 * (insertions, deletions, substitutions and swaps of two neighbours: at
 * most one edit for short names). The first of equally close names wins.
 *
 * @param typed What was given, such as `prot` (without dashes).
 * @param known The names it may have meant, such as `port` and `host`.
 */
export function closest(
  typed: string,
  known: readonly string[],
): string | undefined {
  const lower = typed.toLowerCase();
  const limit = Math.max(1, Math.floor(lower.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of known) {
    const distance = editDistance(lower, name.toLowerCase());
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  if (best !== undefined && bestDistance <= limit) return best;
  if (lower.length >= 3) {
    const prefixed = known.filter((name) => name.startsWith(lower));
    if (prefixed.length === 1) return prefixed[0];
  }
  return undefined;
}

/**
 * The optimal string alignment distance between two strings: the fewest
 * insertions, deletions, substitutions and swaps of two neighbouring
 * characters that turn one into the other.
 */
export function editDistance(a: string, b: string): number {
  // Three rows of the table: two back, one back, this one.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = new Array<number>(b.length + 1);
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(
        previous[j] + 1,
        row[j - 1] + 1,
        previous[j - 1] + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j], before[j - 2] + 1);
      }
    }
    before = previous;
    previous = row;
  }
  return previous[b.length];
}
