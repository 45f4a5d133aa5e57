// In-process buckets. Bounded: at most `maxKeys` buckets (the least recently used go first), and
// buckets that have refilled completely are swept out once a minute, since a full bucket and
// no bucket behave the same. A client rotating keys cannot grow memory past maxKeys.
//
// Bounded in bytes too: a key comes from a client-chosen header (`key_header`, up to the 16 KiB
// header limit), so 100k such keys would hold 1.6 GB. A key longer than MAX_KEY_LENGTH is kept
// as a fixed-size digest instead (see `bucketKey`), and a short key is copied so that it does not
// pin the (possibly 16 KiB) header string it was sliced from. Worst case per bucket, on V8 64-bit:
// key string <= 16 B header + 64 UTF-16 code units x 2 B = 144 B; bucket object with two
// numbers and the key's reference ~ 56 B; Map entry ~ 24 B plus its hash table share ~ 16 B:
// about 250 B, so the default max_keys of 100,000 is bounded by ~25 MB.

import { createHash } from 'node:crypto'
import { type Bucket, type TakeResult, take } from './token-bucket'

/** Keys up to this many UTF-16 code units are kept as they are. */
export const MAX_KEY_LENGTH = 64

/**
 * The key a bucket is stored under: short keys as they are (copied), longer ones as `\0` + the
 * base64url SHA-256 of the key (44 characters). No short key starts with `\0` (such a key is
 * digested too), so a digest never equals a short key.
 */
export function bucketKey(key: string): string {
  if (isShortKey(key)) {
    // A substring can share the memory of the string it was cut from (V8 sliced strings); the
    // UTF-16 round trip makes a flat copy, keeping every code unit (lone surrogates included).
    return Buffer.from(key, 'utf16le').toString('utf16le')
  }
  return `\0${createHash('sha256').update(key, 'utf16le').digest('base64url')}`
}

/** A key bucketKey keeps as it is (copied). */
function isShortKey(key: string): boolean {
  return key.length <= MAX_KEY_LENGTH && key.charCodeAt(0) !== 0
}

/** A bucket and the key it is stored under (bucketKey's copy or digest). */
interface KeyedBucket extends Bucket {
  readonly key: string
  /** The store's insertion count when the bucket was last (re)inserted. */
  seq: number
}

export class MemoryStore {
  readonly #buckets = new Map<string, KeyedBucket>()
  readonly #burst: number
  readonly #perMs: number
  readonly #maxKeys: number
  /** A bucket used once this many insertions went after it is moved to the back. */
  readonly #stale: number
  /** Insertions so far (new buckets and moves to the back). */
  #seq = 0
  readonly #sweeper: NodeJS.Timeout

  constructor(burst: number, perMs: number, maxKeys: number) {
    this.#burst = burst
    this.#perMs = perMs
    this.#maxKeys = maxKeys
    this.#stale = Math.max(1, maxKeys >> 1)
    this.#sweeper = setInterval(() => this.sweep(Date.now()), 60_000)
    this.#sweeper.unref()
  }

  get size(): number {
    return this.#buckets.size
  }

  /** Sum of the stored keys' lengths (UTF-16 code units): what the keys themselves hold. */
  get keyLength(): number {
    let n = 0
    for (const k of this.#buckets.keys()) n += k.length
    return n
  }

  take(rawKey: string, now: number): TakeResult {
    // A short key is looked up as it is (bucketKey would copy it to the same text); the key
    // stored is always the bucket's own copy or digest, kept in the bucket: a known key costs
    // no copy (the copy was ~1.5 µs of a request in a profile).
    const lookup = isShortKey(rawKey) ? rawKey : bucketKey(rawKey)
    let b = this.#buckets.get(lookup)
    if (b === undefined) {
      if (this.#buckets.size >= this.#maxKeys) {
        // Map iteration order is insertion order, and a used bucket is moved to the back (below):
        // the first one is the least recently used, give or take.
        this.#buckets.delete(this.#buckets.keys().next().value!)
      }
      const key = lookup === rawKey ? bucketKey(rawKey) : lookup
      b = { tokens: this.#burst, at: now, key, seq: ++this.#seq }
      this.#buckets.set(key, b)
    } else if (this.#seq - b.seq >= this.#stale) {
      // Moved to the back only once half of max_keys insertions went after it, so a bucket is
      // dropped only after ceil(max_keys / 2) other keys were new or used since its last use.
      // Moving it on every use (a delete and a set) made V8 shrink and regrow the Map's table
      // for a store of one hot key: ~0.6 µs of a request (rate_limiting 0.95 -> 0.23 µs a call).
      this.#buckets.delete(b.key)
      b.seq = ++this.#seq
      this.#buckets.set(b.key, b)
    }
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
