// Which routes a path can possibly match, found without running their patterns. A route whose
// pattern starts `^/literal...` (no `i` or `m` flag, no top-level `|`) matches only paths that
// start with that literal text; RouteTable.match then tests just the routes whose literal prefix
// the path starts with, in the table's order, so the answer is the one a walk over every route
// gives (the 405's Allow list too). With 50 routes `^/api/v1/svcNN(/|$)` the walk cost about
// 2.5 µs per request in a profile (50 regex tests); the index walk is one Map lookup per
// character of the path's literal part.

/**
 * The text every match of `regex` starts with at position 0: its leading `^` followed by
 * literal characters, stopping at the first thing that is not one. Empty when nothing can be
 * said (no leading `^`, a top-level `|`, the `i` or `m` flag). A character followed by a
 * quantifier (`?`, `*`, `+`, `{`) may be absent, so it is left out.
 */
export function literalPrefix(regex: RegExp): string {
  const { source, flags } = regex
  // `i`: the path may differ in case; `m`: `^` also matches after a line break.
  if (flags.includes('i') || flags.includes('m')) return ''
  if (source.charCodeAt(0) !== 94 /* ^ */ || hasTopLevelAlternation(source)) return ''
  let prefix = ''
  for (let i = 1; i < source.length; i++) {
    const c = source[i]!
    if (c === '*' || c === '+' || c === '?' || c === '{') return prefix.slice(0, -1)
    if ('.()[]}|^$'.includes(c)) return prefix
    if (c === '\\') {
      const d = source[i + 1]
      // `\d`, `\w`, `\b`, `\1`, `\x41`, `\u0041`...: classes, assertions, references and
      // code escapes are not taken apart; only an escaped punctuation character is literal.
      if (d === undefined || /[A-Za-z0-9]/.test(d)) return prefix
      prefix += d
      i++
      continue
    }
    prefix += c
  }
  return prefix
}

/** Whether `source` has a `|` outside every group and character class. */
function hasTopLevelAlternation(source: string): boolean {
  let depth = 0
  let inClass = false
  for (let i = 0; i < source.length; i++) {
    const c = source[i]
    if (c === '\\') i++
    else if (inClass) inClass = c !== ']'
    else if (c === '[') inClass = true
    else if (c === '(') depth++
    else if (c === ')') depth--
    else if (c === '|' && depth <= 0) return true
  }
  return false
}

interface Node {
  readonly next: Map<number, Node>
  /**
   * The characters after the one this node is reached by, when the nodes between had one child
   * and no route each and were folded into this one (path compression): one startsWith instead
   * of a Map lookup per character (`/api/v1/svc` is one step, not eleven).
   */
  label: string
  /** The routes whose prefix is exactly this node's text. */
  readonly own: number[]
  /** Indexes of the routes a path that starts with this node's text may match, ascending. */
  candidates: readonly number[] | undefined
}

const node = (): Node => ({ next: new Map(), label: '', own: [], candidates: undefined })

export class PrefixIndex {
  readonly #root: Node

  /** `prefixes[i]`: route i's literal prefix ('' when it has none), in the table's order. */
  constructor(prefixes: readonly string[]) {
    this.#root = node()
    for (let r = 0; r < prefixes.length; r++) {
      const p = prefixes[r]!
      let at = this.#root
      for (let i = 0; i < p.length; i++) {
        const code = p.charCodeAt(i)
        let child = at.next.get(code)
        if (child === undefined) {
          child = node()
          at.next.set(code, child)
        }
        at = child
      }
      at.own.push(r)
    }
    // A node's candidates: its own routes merged with those of the nearest node above it that
    // has some (all of its ancestors' routes), so a reload with thousands of routes stays
    // linear in the routes and prefix lengths. Depth first with a stack: prefixes can be long.
    this.#root.candidates = this.#root.own
    const stack: [Node, readonly number[]][] = [[this.#root, this.#root.own]]
    while (stack.length > 0) {
      const [at, inherited] = stack.pop()!
      for (const child of at.next.values()) {
        if (child.own.length > 0) child.candidates = mergeAscending(inherited, child.own)
        stack.push([child, child.candidates ?? inherited])
      }
    }
    fold(this.#root)
  }

  /**
   * The routes `path` may match, ascending: those of the longest indexed prefix the path starts
   * with, which holds every route whose prefix is a prefix of the path (they nest).
   */
  candidates(path: string): readonly number[] {
    let at = this.#root
    let best = at.candidates!
    for (let i = 0; i < path.length; ) {
      const child = at.next.get(path.charCodeAt(i))
      if (child === undefined) break
      // The path leaves a folded edge in its middle: the nodes there held no route.
      if (child.label.length > 0 && !path.startsWith(child.label, i + 1)) break
      i += 1 + child.label.length
      at = child
      if (at.candidates !== undefined) best = at.candidates
    }
    return best
  }
}

/**
 * Folds every chain of nodes with one child and no route into the node at its end (its label),
 * below `root`. After the candidates are set: a folded node had none of its own.
 */
function fold(root: Node): void {
  const stack = [root]
  while (stack.length > 0) {
    const at = stack.pop()!
    for (const [code, child] of at.next) {
      let end = child
      let label = ''
      while (end.own.length === 0 && end.next.size === 1) {
        const [c, only] = end.next.entries().next().value!
        label += String.fromCharCode(c)
        end = only
      }
      if (end !== child) {
        end.label = label
        at.next.set(code, end)
      }
      stack.push(end)
    }
  }
}

function mergeAscending(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]! < b[j]!)) out.push(a[i++]!)
    else out.push(b[j++]!)
  }
  return out
}
