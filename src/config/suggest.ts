// "Did you mean ...?": the closest of the names a config accepts at a place (keys of a mapping,
// upstream and middleware names), for a name that is none of them. Close means a few edits for
// its length, so a short name gets no far-fetched suggestion.

/**
 * Edits (insert, delete, replace, swap two neighbours) from `a` to `b`, ignoring case and
 * treating `-` as `_` (optimal string alignment distance).
 */
export function editDistance(a: string, b: string): number {
  const x = fold(a)
  const y = fold(b)
  const rows: number[][] = [Array.from({ length: y.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= x.length; i++) {
    const row = [i]
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1])
        d = Math.min(d, rows[i - 2]![j - 2]! + 1)
      row.push(d)
    }
    rows.push(row)
  }
  return rows[x.length]![y.length]!
}

const fold = (s: string) => s.toLowerCase().replaceAll('-', '_')

/** Names longer than this are not compared (a config key or name is short; keeps the cost bounded). */
const MAX_LENGTH = 100

/**
 * The candidate closest to `typed` when it is close enough: at most 2 edits, and at most a third
 * of the length (at least 1), so `bind_adress` finds `bind_address` but `no` finds nothing. Ties
 * go to the earlier candidate.
 */
export function closest(typed: string, candidates: Iterable<string>): string | undefined {
  if (typed.length > MAX_LENGTH) return undefined
  const limit = Math.min(2, Math.max(1, Math.floor(typed.length / 3)))
  let best: string | undefined
  let bestDistance = limit + 1
  for (const c of candidates) {
    if (c === typed || c.length > MAX_LENGTH) continue
    const d = editDistance(typed, c)
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  return best
}

/** `; did you mean "x"?` or nothing, to append to a message. */
export function didYouMean(typed: string, candidates: Iterable<string>): string {
  const c = closest(typed, candidates)
  return c === undefined ? '' : `; did you mean "${c}"?`
}
