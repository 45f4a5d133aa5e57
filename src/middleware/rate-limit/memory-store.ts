// In-process buckets. Bounded: at most `maxKeys` buckets (the least recently used go first), and
// buckets that have refilled completely are swept out once a minute, since a full bucket and
// no bucket behave the same. A client rotating keys cannot grow memory past maxKeys.

import { type Bucket, type TakeResult, take } from './token-bucket'

export class MemoryStore {
  readonly #buckets = new Map<string, Bucket>()
  readonly #burst: number
  readonly #perMs: number
  readonly #maxKeys: number
  readonly #sweeper: NodeJS.Timeout

  constructor(burst: number, perMs: number, maxKeys: number) {
    this.#burst = burst
    this.#perMs = perMs
    this.#maxKeys = maxKeys
    this.#sweeper = setInterval(() => this.sweep(Date.now()), 60_000)
    this.#sweeper.unref()
  }

  get size(): number {
    return this.#buckets.size
  }

  take(key: string, now: number): TakeResult {
    let b = this.#buckets.get(key)
    if (b === undefined) {
      if (this.#buckets.size >= this.#maxKeys) {
        // Map iteration order is insertion order, and every use re-inserts: this is the LRU one.
        this.#buckets.delete(this.#buckets.keys().next().value!)
      }
      b = { tokens: this.#burst, at: now }
    } else {
      this.#buckets.delete(key)
    }
    this.#buckets.set(key, b)
    return take(b, now, this.#burst, this.#perMs)
  }

  /** Drops buckets that would be full by now. */
  sweep(now: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs >= this.#burst) this.#buckets.delete(key)
    }
  }

  close(): void {
    clearInterval(this.#sweeper)
  }
}
