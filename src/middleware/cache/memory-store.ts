// The cache's memory store: stored responses by key, least recently used dropped first once the
// total passes max_bytes. A key is the primary key (route, host, path and query) and the
// secondary key its Vary names make (policy.ts secondaryKey); the Vary names a primary key's
// responses use are recorded per primary key, so a lookup knows which request headers to read.
// A Map keeps insertion order: a hit re-inserts its entry, so the first entries are the coldest.
// Only a hit on an entry in the older half of that order moves it (a hot entry among the newer
// half stays put): the order is LRU to within half the store, and a hit on a hot key is one Map
// lookup instead of a lookup, a delete and an insert (which also grew the Map's deleted slots).
// (No LRU library is a dependency; this is the whole of it.)

import type { AgeFacts, Directives } from './policy'
import { secondaryKey } from './policy'

export interface Entry {
  readonly primary: string
  /** The client's normalized path (no query): what a purge matches. */
  readonly path: string
  /** varyNames() of the response. */
  readonly vary: string
  status: number
  /** As sent to the client, without per-exchange headers (Content-Length, Age, X-Request-Id...). */
  headers: string[]
  readonly body: Buffer
  directives: Directives
  /** Freshness lifetime, ms. */
  lifetime: number
  age: AgeFacts
  etag: string | undefined
  lastModified: string | undefined
  /** Bytes charged to max_bytes: the body, the header text and a fixed overhead. */
  size: number
  /** Set by the store while it holds the entry. */
  inStore?: boolean
  /** The store's insertion count when the entry was last (re)inserted. */
  seq?: number
}

/** What an entry costs beyond its body and headers (the objects, the map slots), estimated. */
const ENTRY_OVERHEAD = 512

export function entrySize(headers: readonly string[], bodyLength: number, key: string): number {
  let n = ENTRY_OVERHEAD + bodyLength + key.length * 2
  for (const h of headers) n += h.length * 2
  return n
}

export interface PurgeMatch {
  path?: string
  prefix?: string
}

export class MemoryStore {
  readonly maxBytes: number
  #bytes = 0
  /** Counts purges: a response fetched before one is not stored after it (it may be what was purged). */
  generation = 0
  readonly #entries = new Map<string, Entry>()
  /** Insertions so far (entries' `seq`). */
  #seq = 0
  /** Primary key -> the Vary names its stored responses use, and their keys. */
  readonly #primaries = new Map<string, { vary: string; keys: Set<string> }>()

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get bytes(): number {
    return this.#bytes
  }

  get size(): number {
    return this.#entries.size
  }

  /** The full key a request has for `primary`, given the Vary names known for it (if any). */
  keyFor(primary: string, raw: readonly string[], vary?: string): string {
    const names = vary ?? this.#primaries.get(primary)?.vary ?? ''
    return `${primary}\n${secondaryKey(names, raw)}`
  }

  /** The stored response for this request, marked most recently used. */
  get(primary: string, raw: readonly string[]): Entry | undefined {
    const p = this.#primaries.get(primary)
    if (p === undefined) return undefined
    const key = this.keyFor(primary, raw, p.vary)
    const e = this.#entries.get(key)
    if (e === undefined) return undefined
    if (this.#seq - e.seq! > this.#entries.size >> 1) {
      this.#entries.delete(key)
      this.#entries.set(key, e)
      e.seq = ++this.#seq
    }
    return e
  }

  /** Stores `e` under the request's key (replacing what was there), then evicts down to maxBytes. */
  put(e: Entry, raw: readonly string[]): void {
    if (e.size > this.maxBytes) return
    // A response varying on other headers than the stored ones: the old variants' keys were made
    // from other names and can no longer be found; they go.
    if ((this.#primaries.get(e.primary)?.vary ?? e.vary) !== e.vary) this.invalidate(e.primary)
    const key = this.keyFor(e.primary, raw, e.vary)
    const old = this.#entries.get(key)
    // Removed before the primary's record is looked up: removing its last key drops the record.
    if (old !== undefined) this.#remove(key, old)
    let p = this.#primaries.get(e.primary)
    if (p === undefined) {
      p = { vary: e.vary, keys: new Set() }
      this.#primaries.set(e.primary, p)
    }
    this.#entries.set(key, e)
    e.seq = ++this.#seq
    e.inStore = true
    p.keys.add(key)
    this.#bytes += e.size
    for (const [k, victim] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break
      this.#remove(k, victim)
    }
  }

  /** A 304 refreshed `e`'s headers: recharged for their new size. */
  refreshed(e: Entry): void {
    this.resized(e, entrySize(e.headers, e.body.length, e.primary))
  }

  /** Recharges an entry whose headers changed (a 304 refreshed it). */
  resized(e: Entry, size: number): void {
    if (e.inStore) this.#bytes += size - e.size
    e.size = size
  }

  /** Every variant of `primary` (RFC 9111 section 4.4: an unsafe method changed it). */
  invalidate(primary: string): void {
    const p = this.#primaries.get(primary)
    if (p === undefined) return
    for (const k of p.keys) {
      const e = this.#entries.get(k)
      if (e !== undefined) this.#remove(k, e)
    }
  }

  /** Drops the entries whose path is `path`, or starts with `prefix`; returns how many. */
  purge(m: PurgeMatch): number {
    this.generation++
    let n = 0
    for (const [k, e] of this.#entries) {
      if (
        (m.path !== undefined && e.path === m.path) ||
        (m.prefix !== undefined && e.path.startsWith(m.prefix))
      ) {
        this.#remove(k, e)
        n++
      }
    }
    return n
  }

  clear(): void {
    this.generation++
    for (const e of this.#entries.values()) e.inStore = false
    this.#entries.clear()
    this.#primaries.clear()
    this.#bytes = 0
  }

  #remove(key: string, e: Entry): void {
    this.#entries.delete(key)
    e.inStore = false
    this.#bytes -= e.size
    const p = this.#primaries.get(e.primary)
    if (p !== undefined) {
      p.keys.delete(key)
      if (p.keys.size === 0) this.#primaries.delete(e.primary)
    }
  }
}
