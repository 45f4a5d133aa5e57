// A small seeded PRNG (sfc32, seeded through splitmix32) for the fuzz run. Every input is made
// from its own generator, derived from (seed, class, iteration), so one input can be rebuilt
// alone from those three values, whatever ran before it.

function splitmix32(state: number): () => number {
  let s = state >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** FNV-1a of a string, to fold a class name into a seed. */
export function hashName(name: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

export class Rng {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: number) {
    const next = splitmix32(seed)
    this.#a = next()
    this.#b = next()
    this.#c = next()
    this.#d = next()
    for (let i = 0; i < 12; i++) this.u32()
  }

  /** The generator for one input: the same (seed, class, iteration) always gives the same stream. */
  static forInput(seed: number, className: string, iteration: number): Rng {
    const mix = splitmix32((seed ^ hashName(className)) >>> 0)
    const base = mix()
    return new Rng((base ^ Math.imul(iteration + 1, 0x9e3779b1)) >>> 0)
  }

  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0
    this.#d = (this.#d + 1) >>> 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) >>> 0
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0
    this.#c = (this.#c + t) >>> 0
    return t
  }

  /** An integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.u32() / 0x1_0000_0000) * (hi - lo + 1))
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!
  }

  /** Picks by weight: `[[3, 'a'], [1, 'b']]` gives 'a' three times as often. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((n, [w]) => n + w, 0)
    let r = this.int(0, total - 1)
    for (const [w, v] of items) {
      if (r < w) return v
      r -= w
    }
    return items[items.length - 1]![1]
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff
    return b
  }

  /** A string of `n` characters drawn from `alphabet`. */
  str(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'): string {
    let s = ''
    for (let i = 0; i < n; i++) s += alphabet[this.int(0, alphabet.length - 1)]
    return s
  }
}

/** The run's seed: LOCCI_FUZZ_SEED (decimal or 0x hex) or the fixed default. */
export function fuzzSeed(fallback: number): number {
  const raw = process.env.LOCCI_FUZZ_SEED
  if (raw === undefined || raw === '') return fallback
  const n = raw.startsWith('0x') ? Number.parseInt(raw.slice(2), 16) : Number.parseInt(raw, 10)
  if (!Number.isFinite(n)) throw new Error(`LOCCI_FUZZ_SEED must be a number, got "${raw}"`)
  return n >>> 0
}
