// Route patterns are written Go-style (the guide's "Go-flavoured regex"); JavaScript's RegExp
// covers nearly all of it. The two Go spellings users reach for are translated here, once, at load:
// named groups `(?P<name>...)` and a leading flag group such as `(?i)`.
//
// JavaScript matches with a backtracking engine, and the request path is the attacker's: a pattern
// like `^/(a+)+$` takes exponential time on a 30-character path, and `^/.*.*x$` quadratic time on
// a 16 KiB one. So a pattern is compiled only if a static check proves that its backtracking work
// grows linearly with the path (see `slowMatch` below); otherwise it is refused at load with a
// problem that says why and how to rewrite it.

export function compilePattern(pattern: string): RegExp | string {
  let source = pattern.replace(/\(\?P</g, '(?<')
  let flags = ''
  const lead = /^\(\?([imsU]+)\)/.exec(source)
  if (lead) {
    const goFlags = lead[1]!
    if (goFlags.includes('U')) return 'the Go flag U (ungreedy) has no JavaScript equivalent'
    flags = [...new Set(goFlags.replace(/U/g, ''))].join('')
    source = source.slice(lead[0].length)
  }
  let re: RegExp
  try {
    re = new RegExp(source, flags)
  } catch (err) {
    return `regular expression does not compile: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`
  }
  const slow = slowMatch(source, flags)
  return slow === undefined ? re : slow
}

// ---------------------------------------------------------------------------------------------
// The check. A backtracking matcher that fails explores every path of the pattern's NFA that
// reads a prefix of the input, so its work is the number of such paths. Weber and Seidl's
// criteria on the NFA tell how that number grows with the input length n:
// - EDA (exponential): a state q with two different paths q -> q reading the same word, as in
//   `(a|a)*`, `(a+)+`, `(\w+\s?)*`;
// - IDA (polynomial, n^2 or worse): two different states p, q with paths p -> p, p -> q and
//   q -> q all reading the same word, as in `.*.*x`, `\d+\d+x`, or `[a-z]+x` without `^` (the
//   engine retries every start position, which acts like a leading `.*?`);
// - neither: a bounded number of paths, so linear work.
// The NFA is a Thompson construction with the engine's priorities and its rule that a repeat's
// iteration must not match the empty string (so `(a*)*` keeps its two ways to read "aa", which a
// position automaton would merge). Characters are abstracted to the 128 ASCII characters plus
// one symbol for everything else; that can only add paths, so the check stays on the safe side.
//
// Two refinements keep ordinary patterns accepted. (1) A state from which the pattern can end
// without any condition (no `$`, `\b` or lookaround on the way) always leads to a match: the
// engine never backtracks out of it, so such states are left out of the failing paths
// (`/users/.*` unanchored is linear). (2) Finite ambiguity is bounded too: `(a|a){30}` has no
// loop but 2^30 paths, so a pattern with more than MAX_PATHS failing paths on one word is refused.
//
// Back-references are refused (matching with them is NP-hard), and so are lookarounds whose body
// has an unbounded repeat (a lookaround re-runs at many positions). A pattern too large to check
// within the budget below is refused as such: route patterns are short.

const MAX_CHAR_NODES = 150
const MAX_NODES = 4000
const MAX_PATHS = 256
const WORK_BUDGET = 3_000_000

const ADVICE_EXP =
  'a repeated part can match the same text in more than one way (as in `(a+)+`, `(a|a)*`, `(\\w+\\s?)*`), ' +
  'so a long path that almost matches takes exponential time; rewrite it so that text can be split only one way, ' +
  'e.g. `(a+)+` as `a+`, `(\\w+\\s?)*` as `[\\w\\s]*`, `(a|a)*` as `a*`'
const ADVICE_POLY =
  'two repeated parts can match the same characters one after the other (as in `.*.*x`, `\\d+\\d+`), ' +
  'or the pattern has no leading `^` and starts with a repeat (as in `[a-z]+x`, retried at every position), ' +
  'so a long path takes quadratic time or worse; anchor it with `^`, merge the repeats, or make them match ' +
  'different characters (e.g. `[^/]+` between slashes instead of `.*`)'
const ADVICE_FORKS =
  'too many alternatives or optional parts that can match the same text one after another (as in `(a|a){30}`), ' +
  'so a path can be tried in very many ways; make the alternatives match different text'

/** Why the pattern can make matching slow (a problem message), or undefined when it cannot. */
export function slowMatch(source: string, flags: string): string | undefined {
  let ast: Ast
  try {
    ast = new Parser(source, flags.includes('i')).parse()
  } catch (err) {
    if (err instanceof Refusal) return err.message
    throw err
  }
  try {
    const nfa = buildNfa(ast, !flags.includes('m') && anchoredAtStart(ast))
    const verdict = analyse(nfa)
    if (verdict === 'exponential') return `can take exponential time to match: ${ADVICE_EXP}`
    if (verdict === 'polynomial') return `can take quadratic time or worse to match: ${ADVICE_POLY}`
    if (verdict === 'forks') return `can take very long to match: ${ADVICE_FORKS}`
    return undefined
  } catch (err) {
    if (err instanceof Refusal) return err.message
    throw err
  }
}

class Refusal extends Error {}

const TOO_COMPLEX = () =>
  new Refusal(
    `is too complex to check for slow matching (at most ${MAX_CHAR_NODES} characters and classes once ` +
      'counted repeats like {2,5} are expanded); simplify it',
  )

// --- Character sets: 128 ASCII bits plus one bit standing for every non-ASCII character. -------

type CharSet = Uint32Array // 5 words: 4 x 32 ASCII bits, then bit 0 = some non-ASCII character

const NON_ASCII = 1

function emptySet(): CharSet {
  return new Uint32Array(5)
}
function fullSet(): CharSet {
  return Uint32Array.of(~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0, NON_ASCII)
}
function addRange(s: CharSet, lo: number, hi: number): void {
  for (let c = lo; c <= Math.min(hi, 127); c++) s[c >> 5]! |= 1 << (c & 31)
  if (hi > 127) s[4]! |= NON_ASCII
}
function union(a: CharSet, b: CharSet): void {
  for (let i = 0; i < 5; i++) a[i]! |= b[i]!
}
function complement(a: CharSet): CharSet {
  const r = emptySet()
  for (let i = 0; i < 4; i++) r[i] = ~a[i]! >>> 0
  // Whatever the class lists, the complement may hold some other non-ASCII character.
  r[4] = NON_ASCII
  return r
}
function intersects(a: CharSet, b: CharSet): boolean {
  for (let i = 0; i < 5; i++) if ((a[i]! & b[i]!) !== 0) return true
  return false
}
function intersects3(a: CharSet, b: CharSet, c: CharSet): boolean {
  for (let i = 0; i < 5; i++) if ((a[i]! & b[i]! & c[i]!) !== 0) return true
  return false
}
function has(s: CharSet, c: number): boolean {
  return (s[c >> 5]! & (1 << (c & 31))) !== 0
}
/** Non-Unicode case folding never maps a non-ASCII character to an ASCII one, so ASCII suffices. */
function foldCase(s: CharSet): void {
  for (let c = 65; c <= 90; c++) {
    if (has(s, c) || has(s, c + 32)) {
      addRange(s, c, c)
      addRange(s, c + 32, c + 32)
    }
  }
}

function classEscape(ch: string): CharSet | undefined {
  const s = emptySet()
  switch (ch) {
    case 'd':
      addRange(s, 48, 57)
      return s
    case 'w':
      addRange(s, 48, 57)
      addRange(s, 65, 90)
      addRange(s, 97, 122)
      addRange(s, 95, 95)
      return s
    case 's':
      addRange(s, 9, 13)
      addRange(s, 32, 32)
      s[4] = NON_ASCII
      return s
    case 'D':
    case 'W':
    case 'S':
      return complement(classEscape(ch.toLowerCase())!)
    default:
      return undefined
  }
}

// --- Parser: JavaScript regex syntax without the u flag (the source already compiled). --------

type Ast =
  | { t: 'char'; set: CharSet }
  | { t: 'seq'; items: Ast[] }
  | { t: 'alt'; alts: Ast[] }
  | { t: 'repeat'; body: Ast; min: number; max: number; greedy: boolean }
  /** ^ $ \b \B and lookarounds: they consume nothing but may fail. */
  | { t: 'cond'; start: boolean }

class Parser {
  #i = 0
  readonly #s: string
  readonly #fold: boolean

  constructor(source: string, fold: boolean) {
    this.#s = source
    this.#fold = fold
  }

  parse(): Ast {
    return this.#alt()
  }

  #alt(): Ast {
    const alts = [this.#seq()]
    while (this.#s[this.#i] === '|') {
      this.#i++
      alts.push(this.#seq())
    }
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts }
  }

  #seq(): Ast {
    const items: Ast[] = []
    while (this.#i < this.#s.length && this.#s[this.#i] !== '|' && this.#s[this.#i] !== ')') {
      const atom = this.#atom()
      items.push(this.#quantified(atom))
    }
    return { t: 'seq', items }
  }

  #quantified(atom: Ast): Ast {
    for (;;) {
      const c = this.#s[this.#i]
      let min: number
      let max: number
      if (c === '*' || c === '+' || c === '?') {
        this.#i++
        min = c === '+' ? 1 : 0
        max = c === '?' ? 1 : Number.POSITIVE_INFINITY
      } else if (c === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.#s.slice(this.#i))
        if (!m) return atom // a literal `{` (allowed without the u flag), read by the caller
        this.#i += m[0].length
        min = Number(m[1])
        max = m[2] === undefined ? min : m[3] === '' ? Number.POSITIVE_INFINITY : Number(m[3])
        if (min > MAX_CHAR_NODES || (max !== Number.POSITIVE_INFINITY && max > MAX_CHAR_NODES))
          throw TOO_COMPLEX()
      } else {
        return atom
      }
      let greedy = true
      if (this.#s[this.#i] === '?') {
        this.#i++
        greedy = false
      }
      atom = { t: 'repeat', body: atom, min, max, greedy }
    }
  }

  #atom(): Ast {
    const s = this.#s
    const c = s[this.#i]!
    this.#i++
    switch (c) {
      case '.':
        return { t: 'char', set: fullSet() }
      case '^':
        return { t: 'cond', start: true }
      case '$':
        return { t: 'cond', start: false }
      case '[':
        return { t: 'char', set: this.#class() }
      case '(':
        return this.#group()
      case '\\':
        return this.#escape()
      default:
        return this.#literal(c.charCodeAt(0))
    }
  }

  #literal(code: number): Ast {
    const set = emptySet()
    addRange(set, code, code)
    if (this.#fold) foldCase(set)
    return { t: 'char', set }
  }

  #group(): Ast {
    const s = this.#s
    let look = false
    if (s.startsWith('?:', this.#i)) this.#i += 2
    else if (s.startsWith('?=', this.#i) || s.startsWith('?!', this.#i)) {
      this.#i += 2
      look = true
    } else if (s.startsWith('?<=', this.#i) || s.startsWith('?<!', this.#i)) {
      this.#i += 3
      look = true
    } else if (s.startsWith('?<', this.#i)) {
      this.#i = s.indexOf('>', this.#i) + 1
    }
    const body = this.#alt()
    this.#i++ // ')'
    if (!look) return body
    if (hasUnboundedRepeat(body))
      throw new Refusal(
        'has a lookahead or lookbehind with an unbounded repeat (*, + or {n,}) inside; it is re-run at many ' +
          'positions of the path, so matching can take quadratic time; bound the repeat (e.g. {0,32}) or drop the lookaround',
      )
    return { t: 'cond', start: false }
  }

  #escape(): Ast {
    const s = this.#s
    const c = s[this.#i]!
    this.#i++
    if (c === 'b' || c === 'B') return { t: 'cond', start: false }
    if ((c >= '1' && c <= '9') || (c === 'k' && s[this.#i] === '<'))
      throw new Refusal(
        'uses a back-reference (\\1, \\k<name>), which can make matching take exponential time; ' +
          'route patterns cannot use them: repeat the sub-pattern instead',
      )
    const cls = classEscape(c)
    if (cls) return { t: 'char', set: cls }
    return this.#literal(this.#escapedCode(c))
  }

  /** The code unit of a character escape whose letter (after the backslash) was just read. */
  #escapedCode(c: string): number {
    const s = this.#s
    const hex = (n: number): number | undefined => {
      const h = s.slice(this.#i, this.#i + n)
      if (h.length === n && /^[0-9a-fA-F]+$/.test(h)) {
        this.#i += n
        return Number.parseInt(h, 16)
      }
      return undefined
    }
    switch (c) {
      case 'n':
        return 10
      case 'r':
        return 13
      case 't':
        return 9
      case 'v':
        return 11
      case 'f':
        return 12
      case '0':
        return 0
      case 'x':
        return hex(2) ?? 120
      case 'u':
        return hex(4) ?? 117
      case 'c': {
        const l = s[this.#i]
        if (l !== undefined && /[a-zA-Z]/.test(l)) {
          this.#i++
          return l.charCodeAt(0) % 32
        }
        this.#i-- // `\c` without a letter is a literal backslash, then `c`
        return 92
      }
      default:
        return c.charCodeAt(0)
    }
  }

  #class(): CharSet {
    const s = this.#s
    let negate = false
    if (s[this.#i] === '^') {
      negate = true
      this.#i++
    }
    const set = emptySet()
    // One class member: a code unit, or a class escape such as \d (which cannot bound a range).
    const member = (): number | CharSet => {
      const c = s[this.#i]!
      this.#i++
      if (c !== '\\') return c.charCodeAt(0)
      const e = s[this.#i]!
      this.#i++
      if (e === 'b') return 8
      if (e === '-') return 45
      if (e >= '1' && e <= '7') return 0 // legacy octal: any small code will do (ASCII control)
      return classEscape(e) ?? this.#escapedCode(e)
    }
    while (this.#i < s.length && s[this.#i] !== ']') {
      const lo = member()
      if (s[this.#i] === '-' && s[this.#i + 1] !== ']' && this.#i + 1 < s.length && typeof lo === 'number') {
        this.#i++
        const hi = member()
        if (typeof hi === 'number') {
          addRange(set, lo, hi)
          continue
        }
        addRange(set, lo, lo)
        addRange(set, 45, 45)
        union(set, hi)
        continue
      }
      if (typeof lo === 'number') addRange(set, lo, lo)
      else union(set, lo)
    }
    this.#i++ // ']'
    if (this.#fold) foldCase(set)
    return negate ? complement(set) : set
  }
}

function hasUnboundedRepeat(a: Ast): boolean {
  switch (a.t) {
    case 'repeat':
      return a.max === Number.POSITIVE_INFINITY || hasUnboundedRepeat(a.body)
    case 'seq':
      return a.items.some(hasUnboundedRepeat)
    case 'alt':
      return a.alts.some(hasUnboundedRepeat)
    default:
      return false
  }
}

/** Every way through the pattern starts with `^`: the engine then tries position 0 only. */
function anchoredAtStart(a: Ast): boolean {
  switch (a.t) {
    case 'cond':
      return a.start
    case 'seq':
      return a.items.length > 0 && anchoredAtStart(a.items[0]!)
    case 'alt':
      return a.alts.every(anchoredAtStart)
    default:
      return false
  }
}

// --- Thompson NFA with the engine's priorities. ------------------------------------------------

type Node =
  | { k: 'char'; set: CharSet; next: number }
  /** Try `a` first, then `b`. */
  | { k: 'split'; a: number; b: number }
  | { k: 'cond'; next: number }
  | { k: 'accept' }
  /** An unbounded repeat: enter the body (an iteration) or leave, in the order `greedy` says. */
  | { k: 'loop'; body: number; exit: number; greedy: boolean }
  /** The end of an iteration of `loop`: back to the loop node, unless the iteration was empty. */
  | { k: 'back'; loop: number }
  /** An optional iteration of a bounded repeat (`x?`, the extra ones of `x{2,5}`). */
  | { k: 'opt'; body: number; exit: number; greedy: boolean }
  /** The end of an optional iteration: refused when it matched nothing, as the engine does. */
  | { k: 'optEnd'; opt: number; next: number }

interface Nfa {
  nodes: Node[]
  entry: number
  anchored: boolean
}

function buildNfa(ast: Ast, anchored: boolean): Nfa {
  const nodes: Node[] = [{ k: 'accept' }]
  let chars = 0
  const add = (n: Node): number => {
    if (nodes.length >= MAX_NODES) throw TOO_COMPLEX()
    nodes.push(n)
    return nodes.length - 1
  }
  const build = (a: Ast, next: number): number => {
    switch (a.t) {
      case 'char':
        if (++chars > MAX_CHAR_NODES) throw TOO_COMPLEX()
        return add({ k: 'char', set: a.set, next })
      case 'cond':
        return add({ k: 'cond', next })
      case 'seq': {
        let n = next
        for (let i = a.items.length - 1; i >= 0; i--) n = build(a.items[i]!, n)
        return n
      }
      case 'alt': {
        let n = build(a.alts[a.alts.length - 1]!, next)
        for (let i = a.alts.length - 2; i >= 0; i--) n = add({ k: 'split', a: build(a.alts[i]!, next), b: n })
        return n
      }
      case 'repeat': {
        let n = next
        if (a.max === Number.POSITIVE_INFINITY) {
          const loop = add({ k: 'loop', body: -1, exit: next, greedy: a.greedy })
          const back = add({ k: 'back', loop })
          ;(nodes[loop] as { body: number }).body = build(a.body, back)
          n = loop
        } else {
          for (let i = 0; i < a.max - a.min; i++) {
            const opt = add({ k: 'opt', body: -1, exit: next, greedy: a.greedy })
            const end = add({ k: 'optEnd', opt, next: n })
            ;(nodes[opt] as { body: number }).body = build(a.body, end)
            n = opt
          }
        }
        for (let i = 0; i < a.min; i++) n = build(a.body, n)
        return n
      }
    }
  }
  return { nodes, entry: build(ast, 0), anchored }
}

// --- The state graph: states are "just read this character node" (plus the start). ------------

interface Edge {
  to: number
  set: CharSet
  /** Distinct ways (capped at 2) the engine can go from the state to `to` on one character. */
  ways: number
}

interface Graph {
  out: Edge[][]
  /** From this state the pattern can end unconditionally, so the search ends in a match. */
  final: boolean[]
}

function stateGraph(nfa: Nfa, budget: { left: number }): Graph {
  const { nodes } = nfa
  const stateOf = new Map<number, number>() // char node -> state
  const after: number[] = [nfa.entry] // state -> the node right after it
  const setOf: CharSet[] = [fullSet()]
  nodes.forEach((n, id) => {
    if (n.k === 'char') {
      stateOf.set(id, after.length)
      after.push(n.next)
      setOf.push(n.set)
    }
  })
  const out: Edge[][] = []
  const final: boolean[] = []
  for (const start of after) {
    // Every path of non-consuming steps, in the engine's order, up to the first way to an
    // unconditional end (what comes after it is never tried: the search has succeeded).
    const ways = new Map<number, number>()
    let isFinal = false
    const entered: number[] = [] // repeats whose iteration started on this path
    const walk = (id: number, cond: boolean): boolean => {
      if (--budget.left < 0) throw TOO_COMPLEX()
      const n = nodes[id]!
      switch (n.k) {
        case 'accept':
          if (!cond) {
            isFinal = true
            return true
          }
          return false
        case 'char': {
          const s = stateOf.get(id)!
          ways.set(s, Math.min(2, (ways.get(s) ?? 0) + 1))
          return false
        }
        case 'cond':
          return walk(n.next, true)
        case 'split':
          return walk(n.a, cond) || walk(n.b, cond)
        case 'loop':
        case 'opt': {
          const enter = (): boolean => {
            entered.push(id)
            const stop = walk(n.body, cond)
            entered.pop()
            return stop
          }
          return n.greedy ? enter() || walk(n.exit, cond) : walk(n.exit, cond) || enter()
        }
        case 'back':
          return entered.includes(n.loop) ? false : walk(n.loop, cond)
        case 'optEnd':
          return entered.includes(n.opt) ? false : walk(n.next, cond)
      }
    }
    walk(start, false)
    final.push(isFinal)
    out.push([...ways].map(([to, w]) => ({ to, set: setOf[to]!, ways: w })))
  }
  if (!nfa.anchored && !final[0]) {
    // Unanchored: the engine retries at every position, like a leading lazy `[^]*?`.
    out[0]!.push({ to: 0, set: fullSet(), ways: 1 })
  }
  return { out, final }
}

type Verdict = 'linear' | 'exponential' | 'polynomial' | 'forks'

function analyse(nfa: Nfa): Verdict {
  const budget = { left: WORK_BUDGET }
  const g = stateGraph(nfa, budget)
  const n = g.out.length
  if (g.final[0]) return 'linear' // the empty match at the first position always succeeds

  // Pairs (x, y) of states that are not final: two paths reading the same word.
  const failing = g.out.map((edges, s) => (g.final[s] ? [] : edges.filter((e) => !g.final[e.to])))
  const pairEdges = (p: number): Array<{ to: number; fork: boolean }> => {
    const x = Math.floor(p / n)
    const y = p % n
    const r: Array<{ to: number; fork: boolean }> = []
    for (const e1 of failing[x]!) {
      for (const e2 of failing[y]!) {
        if (--budget.left < 0) throw TOO_COMPLEX()
        if (!intersects(e1.set, e2.set)) continue
        const fork = x === y && (e1.to !== e2.to || e1.ways > 1)
        r.push({ to: e1.to * n + e2.to, fork })
      }
    }
    return r
  }
  const { comp } = scc(n * n, pairEdges, budget)
  // EDA: a component holding a pair (q, q) and a fork back into it.
  const diagonalComp = new Set<number>()
  for (let q = 0; q < n; q++) diagonalComp.add(comp[q * n + q]!)
  for (let p = 0; p < n * n; p++) {
    if (!diagonalComp.has(comp[p]!)) continue
    if (Math.floor(p / n) !== p % n) return 'exponential'
    for (const e of pairEdges(p)) if (e.fork && comp[e.to] === comp[p]) return 'exponential'
  }

  // IDA: p != q, q not final, (p, p, q) reaches (p, q, q) reading one word.
  const stateComp = scc(n, (s) => g.out[s]!.map((e) => e.to), budget).comp
  const onCycle = (s: number) =>
    g.out[s]!.some((e) => e.to === s || (stateComp[e.to] === stateComp[s] && e.to !== s))
  const loops = [...Array(n).keys()].filter(onCycle)
  const seen = new Int32Array(loops.length > 1 ? n * n * n : 0)
  let stamp = 0
  for (const p of loops) {
    for (const q of loops) {
      if (p === q || g.final[q]) continue
      stamp++
      const goal = (p * n + q) * n + q
      const stack = [(p * n + p) * n + q]
      seen[stack[0]!] = stamp
      while (stack.length > 0) {
        const t = stack.pop()!
        if (t === goal) return 'polynomial'
        const a = Math.floor(t / (n * n))
        const b = Math.floor(t / n) % n
        const c = t % n
        for (const e1 of g.out[a]!)
          for (const e2 of g.out[b]!)
            for (const e3 of g.out[c]!) {
              if (--budget.left < 0) throw TOO_COMPLEX()
              if (!intersects3(e1.set, e2.set, e3.set)) continue
              const u = (e1.to * n + e2.to) * n + e3.to
              if (seen[u] === stamp) continue
              seen[u] = stamp
              stack.push(u)
            }
      }
    }
  }

  // Bounded but large ambiguity: no loop, yet `(a|a){30}` reads "aaa…" in 2^30 ways. Follow, for
  // every word, how many failing paths read it (a vector of counts per state, one step per
  // character class); the engine's work is at most that count times the path length.
  return pathCount(g, failing, budget) > MAX_PATHS ? 'forks' : 'linear'
}

/** The most failing paths that read one word (capped just above MAX_PATHS). */
function pathCount(g: Graph, failing: Edge[][], budget: { left: number }): number {
  const n = g.out.length
  // Characters that every edge treats alike form one class: one representative each.
  const bySignature = new Map<string, number>()
  for (let c = 0; c <= 128; c++) {
    const sym = c === 128 ? -1 : c
    const sig = failing
      .flat()
      .map((e) => ((sym === -1 ? (e.set[4]! & NON_ASCII) !== 0 : has(e.set, sym)) ? '1' : '0'))
      .join('')
    if (!bySignature.has(sig)) bySignature.set(sig, sym)
  }
  const symbols = [...bySignature.values()]
  const reads = (e: Edge, sym: number) => (sym === -1 ? (e.set[4]! & NON_ASCII) !== 0 : has(e.set, sym))
  const start = new Array<number>(n).fill(0)
  start[0] = 1
  const seen = new Set<string>([start.join()])
  const queue = [start]
  let most = 1
  while (queue.length > 0) {
    const v = queue.pop()!
    for (const sym of symbols) {
      const next = new Array<number>(n).fill(0)
      let total = 0
      for (let s = 0; s < n; s++) {
        if (v[s] === 0) continue
        for (const e of failing[s]!) {
          if (--budget.left < 0) throw TOO_COMPLEX()
          if (!reads(e, sym)) continue
          const add = v[s]! * e.ways
          next[e.to] = Math.min(MAX_PATHS + 1, next[e.to]! + add)
          total += add
        }
      }
      if (total === 0) continue
      most = Math.max(most, total)
      if (most > MAX_PATHS) return most
      const key = next.join()
      if (seen.has(key)) continue
      seen.add(key)
      queue.push(next)
    }
  }
  return most
}

/**
 * Tarjan's strongly connected components, iterative. `comp[v]` is v's component index;
 * components are numbered (and listed in `order`) sinks first.
 */
function scc(
  count: number,
  next: (v: number) => Array<number | { to: number }>,
  budget: { left: number },
): { comp: Int32Array; order: number[][] } {
  const index = new Int32Array(count).fill(-1)
  const low = new Int32Array(count)
  const comp = new Int32Array(count).fill(-1)
  const onStack = new Uint8Array(count)
  const stack: number[] = []
  const order: number[][] = []
  let counter = 0
  for (let root = 0; root < count; root++) {
    if (index[root] !== -1) continue
    const work: Array<{ v: number; succ: number[]; i: number }> = []
    const push = (v: number) => {
      index[v] = low[v] = counter++
      stack.push(v)
      onStack[v] = 1
      work.push({ v, succ: next(v).map((e) => (typeof e === 'number' ? e : e.to)), i: 0 })
    }
    push(root)
    while (work.length > 0) {
      const f = work[work.length - 1]!
      if (--budget.left < 0) throw TOO_COMPLEX()
      if (f.i < f.succ.length) {
        const w = f.succ[f.i++]!
        if (index[w] === -1) push(w)
        else if (onStack[w]) low[f.v] = Math.min(low[f.v]!, index[w]!)
        continue
      }
      work.pop()
      if (work.length > 0) {
        const parent = work[work.length - 1]!
        low[parent.v] = Math.min(low[parent.v]!, low[f.v]!)
      }
      if (low[f.v] === index[f.v]) {
        const members: number[] = []
        let w: number
        do {
          w = stack.pop()!
          onStack[w] = 0
          comp[w] = order.length
          members.push(w)
        } while (w !== f.v)
        order.push(members)
      }
    }
  }
  return { comp, order }
}
