// The cache's Redis store: entries shared by every proxy that names the same Redis and key
// prefix. Keys put the client's path first, so a purge by path or prefix is a SCAN of a key
// pattern (no index to keep consistent across instances):
//   PREFIX e:PATH \n PRIMARY \n SECONDARY   an entry: 4-byte meta length, JSON meta, body
//   PREFIX v:PATH \n PRIMARY                the Vary names the primary key's entries use
// An entry is found only through its primary's Vary record, so an unsafe method invalidates a
// URI by deleting that one record (its entries are then unreachable and expire on their own).
// Each key's TTL is what is left of the entry's freshness plus its stale windows
// (stale-while-revalidate, stale-if-error); an entry with a validator is kept a while longer
// (REVALIDATE_GRACE_MS, or its lifetime if longer) so it can still be revalidated with a 304.
//
// Redis down or slow is never the client's problem: every command fails fast (no offline queue,
// a command timeout; middleware/registry.ts) and the cache then fails open: a lookup is a miss
// (the request goes upstream), a store is skipped, a purge says what it could not do. Failures
// are logged once per outage, and again when Redis answers again.

import type Redis from 'ioredis'
import { ChangeRefused } from '../../config/refused'
import type { Logger } from '../../observe/logger'
import type { Entry, PurgeMatch } from './memory-store'
import { currentAge, deltaSeconds, secondaryKey } from './policy'

const REVALIDATE_GRACE_MS = 60_000

// Stores an entry and its Vary record in one step; the record lives as long as the longest-lived
// entry it leads to (never shortened by a shorter-lived variant).
const PUT = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[3], 'KEEPTTL')
end
return 1
`

type WithPut = Redis & {
  locciCachePut(entryKey: string, varyKey: string, value: Buffer, ttl: number, vary: string): Promise<number>
}
const SCAN_COUNT = 500

interface Meta {
  primary: string
  path: string
  vary: string
  status: number
  headers: string[]
  directives: Array<[string, string]>
  lifetime: number
  age: Entry['age']
  etag: string | undefined
  lastModified: string | undefined
}

export class RedisCacheStore {
  readonly #redis: WithPut
  readonly #prefix: string
  readonly #log: Logger
  readonly #name: string
  /** Counts purges made through this process (see MemoryStore.generation). */
  generation = 0
  /** Primary -> Vary names last seen in Redis: the lock key of a request (coalescing is local). */
  readonly #vary = new Map<string, string>()
  #down = false

  constructor(redis: Redis, prefix: string, name: string, log: Logger) {
    if (!('locciCachePut' in redis)) redis.defineCommand('locciCachePut', { numberOfKeys: 2, lua: PUT })
    this.#redis = redis as WithPut
    this.#prefix = prefix
    this.#name = name
    this.#log = log
  }

  /** The key a request has for `primary` in this process's coalescing (Vary names last seen). */
  keyFor(primary: string, raw: readonly string[]): string {
    return `${primary}\n${secondaryKey(this.#vary.get(primary) ?? '', raw)}`
  }

  /** The stored response for this request; undefined on a miss or when Redis cannot answer. */
  async get(primary: string, raw: readonly string[], path: string): Promise<Entry | undefined> {
    const head = `${path}\n${primary}`
    try {
      // One round trip in the usual case: the Vary record and the entry its last-seen names give.
      const guess = this.#vary.get(primary) ?? ''
      const [[e1, vary], [e2, value]] = (await this.#redis
        .multi()
        .get(`${this.#prefix}v:${head}`)
        .getBuffer(`${this.#prefix}e:${head}\n${secondaryKey(guess, raw)}`)
        .exec()) as [[Error | null, string | null], [Error | null, Buffer | null]]
      if (e1 || e2) throw e1 ?? e2
      this.#up()
      if (vary === null) {
        this.#vary.delete(primary)
        return undefined
      }
      this.#remember(primary, vary)
      if (vary === guess) return decode(value)
      return decode(await this.#redis.getBuffer(`${this.#prefix}e:${head}\n${secondaryKey(vary, raw)}`))
    } catch (err) {
      this.#failed(err as Error)
      return undefined
    }
  }

  /** Stores `e` (fire-and-forget: the client's answer never waits for Redis). */
  put(e: Entry, raw: readonly string[]): void {
    const ttl = ttlMs(e, Date.now())
    if (ttl <= 0) return
    const head = `${e.path}\n${e.primary}`
    const meta: Meta = {
      primary: e.primary,
      path: e.path,
      vary: e.vary,
      status: e.status,
      headers: e.headers,
      directives: [...e.directives],
      lifetime: e.lifetime,
      age: e.age,
      etag: e.etag,
      lastModified: e.lastModified,
    }
    const json = Buffer.from(JSON.stringify(meta))
    const len = Buffer.alloc(4)
    len.writeUInt32BE(json.length)
    const value = Buffer.concat([len, json, e.body])
    this.#remember(e.primary, e.vary)
    this.#redis
      .locciCachePut(
        `${this.#prefix}e:${head}\n${secondaryKey(e.vary, raw)}`,
        `${this.#prefix}v:${head}`,
        value,
        ttl,
        e.vary,
      )
      .then(
        () => this.#up(),
        (err: Error) => this.#failed(err),
      )
  }

  /** A 304 refreshed `e`'s headers and freshness: stored again. */
  refreshed(e: Entry, raw: readonly string[]): void {
    this.put(e, raw)
  }

  /** Every variant of `primary` at `path` (RFC 9111 section 4.4), in every instance. */
  invalidate(primary: string, path: string): void {
    this.#vary.delete(primary)
    this.#redis.del(`${this.#prefix}v:${path}\n${primary}`).then(
      () => this.#up(),
      (err: Error) => this.#failed(err),
    )
  }

  /**
   * Drops the entries (and Vary records) whose path is `path`, or starts with `prefix`, for every
   * instance; returns how many entries. Throws when Redis cannot answer: the purge did not happen.
   */
  async purge(m: PurgeMatch): Promise<number> {
    this.generation++
    this.#vary.clear()
    try {
      return await this.#purge(m)
    } catch (err) {
      throw new ChangeRefused(
        'unavailable',
        `cache "${this.#name}": its Redis store could not be purged (${(err as Error).message}); try again`,
      )
    }
  }

  async #purge(m: PurgeMatch): Promise<number> {
    const glob = escapeGlob(m.path !== undefined ? `${m.path}\n` : m.prefix!)
    let entries = 0
    for (const kind of ['e:', 'v:']) {
      let cursor = '0'
      do {
        const [next, keys] = await this.#redis.scan(
          cursor,
          'MATCH',
          `${escapeGlob(this.#prefix)}${kind}${glob}*`,
          'COUNT',
          SCAN_COUNT,
        )
        cursor = next
        if (keys.length > 0) {
          const n = await this.#redis.unlink(...keys)
          if (kind === 'e:') entries += n
        }
      } while (cursor !== '0')
    }
    return entries
  }

  /** Forgets what this process learned; Redis keeps the entries for the other instances. */
  clear(): void {
    this.generation++
    this.#vary.clear()
  }

  #remember(primary: string, vary: string): void {
    // Bounded: a lookup key learned per URL, dropped wholesale past a size no config would need.
    if (this.#vary.size >= 100_000) this.#vary.clear()
    this.#vary.set(primary, vary)
  }

  #up(): void {
    if (!this.#down) return
    this.#down = false
    this.#log.info({ middleware: this.#name }, 'cache store reachable again')
  }

  #failed(err: Error): void {
    if (this.#down) return
    this.#down = true
    this.#log.warn(
      { middleware: this.#name, error_type: 'cache_store_unavailable', err: err.message },
      'cache store (redis) unavailable; serving from upstream until it is back',
    )
  }
}

/** How long Redis keeps an entry: freshness left, stale windows, and time to revalidate it. */
export function ttlMs(e: Entry, now: number): number {
  const left = e.lifetime - currentAge(e.age, now)
  const swr = deltaSeconds(e.directives.get('stale-while-revalidate')) ?? 0
  const sie = deltaSeconds(e.directives.get('stale-if-error')) ?? 0
  let ttl = Math.max(left, 0) + Math.max(swr, sie) * 1000
  if (e.etag !== undefined || e.lastModified !== undefined) ttl += Math.max(REVALIDATE_GRACE_MS, e.lifetime)
  return Math.ceil(ttl)
}

/** An entry read back; undefined for anything that is not one (another writer's key). */
function decode(value: Buffer | null): Entry | undefined {
  if (value === null || value.length < 4) return undefined
  const n = value.readUInt32BE(0)
  let meta: Meta
  try {
    meta = JSON.parse(value.subarray(4, 4 + n).toString()) as Meta
  } catch {
    return undefined
  }
  if (!Array.isArray(meta?.headers) || !Array.isArray(meta.directives)) return undefined
  const body = value.subarray(4 + n)
  return {
    primary: meta.primary,
    path: meta.path,
    vary: meta.vary,
    status: meta.status,
    headers: meta.headers,
    body,
    directives: new Map(meta.directives),
    lifetime: meta.lifetime,
    age: meta.age,
    etag: meta.etag ?? undefined,
    lastModified: meta.lastModified ?? undefined,
    size: value.length,
  }
}

/** `s` matched literally in a SCAN MATCH pattern. */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}
