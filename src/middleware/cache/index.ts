// cache: a shared HTTP cache (RFC 9111) for GET and HEAD, in memory (memory-store.ts) or in Redis
// shared by several instances (redis-store.ts). The request half looks the request up and hands a fresh hit to the pipeline (ctx.stored: sent once the
// rest of the chain passed the request; X-Cache: HIT, Age); anything else goes upstream with a
// ResponseTap (types.ts) that stores the answer when policy.ts allows it (X-Cache: MISS), turns
// a 304 to its own conditional request into the stored response (HIT), and serves a stale entry
// when the upstream fails within stale-if-error (STALE). Within stale-while-revalidate the stale
// entry is sent at once (STALE) and the request goes upstream in the background to refresh it.
//
// Coalescing: while one request for a key is upstream, others for that key wait for it, then
// look again; they are released as soon as the first one knows it will not store (its head, or
// its body passing max_entry_bytes), and wait at most once, so uncacheable URLs are not
// serialized. Coalescing is per process (with a Redis store, each instance may send one request
// for a key before the first answer is stored). What is stored is the body the client was sent in full: a client that leaves, or
// an upstream that drops mid-body, stores nothing.

import type Redis from 'ioredis'
import type { Logger } from '../../observe/logger'
import { type Middleware, type RequestContext, type ResponseTap, rawHeader, type Substitute } from '../types'
import { type CacheConfig, memoryMaxBytes } from './config'
import { type Entry, entrySize, MemoryStore, type PurgeMatch } from './memory-store'
import {
  currentAge,
  type Directives,
  deltaSeconds,
  freshnessLifetime,
  httpDate,
  parseCacheControl,
  refusal,
  staleIfError,
  usability,
  varyNames,
} from './policy'
import { RedisCacheStore } from './redis-store'

/** Headers that belong to one exchange, never stored (the proxy writes its own). */
const NOT_STORED = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'x-request-id',
  'age',
  'x-cache',
  'proxy-connection',
])

/** What the request says, read once. */
interface Asked {
  primary: string
  path: string
  directives: Directives
  authorized: boolean
  /** The client sent its own If-None-Match / If-Modified-Since. */
  conditional: boolean
}

/** What the middleware needs of a store; the memory one answers synchronously. */
export interface CacheStore {
  /** Counts purges: a response fetched before one is not stored after it. */
  readonly generation: number
  /** The coalescing key of a request for `primary`. */
  keyFor(primary: string, raw: readonly string[]): string
  get(primary: string, raw: readonly string[], path: string): Entry | undefined | Promise<Entry | undefined>
  put(e: Entry, raw: readonly string[]): void
  /** `e` (a stored entry) was refreshed by a 304. */
  refreshed(e: Entry, raw: readonly string[]): void
  invalidate(primary: string, path: string): void
  purge(m: PurgeMatch): number | Promise<number>
  clear(): void
}

export interface Cache {
  middleware: Middleware
  purge(m: PurgeMatch): number | Promise<number>
  close(): void
  readonly store: CacheStore
}

export function cache(name: string, cfg: CacheConfig, log: Logger, redis?: (url: string) => Redis): Cache {
  const store: CacheStore =
    cfg.store === 'redis'
      ? new RedisCacheStore(redis!(cfg.redis_url!), cfg.key_prefix ?? `locci:cache:${name}:`, name, log)
      : new MemoryStore(memoryMaxBytes(cfg))
  /** Lock key -> the request fetching it now: resolved when it stores or knows it will not. */
  const pending = new Map<string, Promise<void>>()

  /** Takes the lock of `key`; the returned function releases it (once). */
  const lock = (key: string): (() => void) => {
    let resolve!: () => void
    pending.set(
      key,
      new Promise<void>((r) => {
        resolve = r
      }),
    )
    let held = true
    return () => {
      if (!held) return
      held = false
      pending.delete(key)
      resolve()
    }
  }

  /** Sends the request upstream with a tap; with `stale`, as a conditional request for it. */
  const capture = (
    ctx: RequestContext,
    asked: Asked,
    stale: Entry | undefined,
    release: () => void,
  ): void => {
    // Revalidate with the stored validators, unless the client asks its own question (its 304
    // is then its answer, passed on as it is).
    const revalidating = stale !== undefined && !asked.conditional
    if (revalidating) {
      if (stale!.etag !== undefined) ctx.upstreamHeaders.push('if-none-match', stale!.etag)
      if (stale!.lastModified !== undefined)
        ctx.upstreamHeaders.push('if-modified-since', stale!.lastModified)
    }
    ctx.responseTap = new Capture(ctx, asked, stale, revalidating, release, Date.now())
  }

  /**
   * Answers from the store (ctx.stored, sent once the rest of the chain passed the request) or
   * sends the request upstream with a tap. Returns a Promise only to wait for another request
   * fetching the same key.
   */
  const lookup = (ctx: RequestContext, asked: Asked, waited: boolean): undefined | Promise<undefined> => {
    const found = store.get(asked.primary, ctx.rawHeaders, asked.path)
    if (found instanceof Promise) return found.then((entry) => decide(ctx, asked, entry, waited))
    return decide(ctx, asked, found, waited)
  }

  /** What to do with the request given what the store holds for it. */
  const decide = (
    ctx: RequestContext,
    asked: Asked,
    entry: Entry | undefined,
    waited: boolean,
  ): undefined | Promise<undefined> => {
    let age = 0
    let use: ReturnType<typeof usability> | undefined
    if (entry !== undefined) {
      age = currentAge(entry.age, Date.now())
      use = usability(entry.directives, entry.lifetime, age, asked.directives)
      if (use === 'fresh') {
        ctx.stored = { answer: hit(entry, age, 'HIT'), revalidate: false }
        return undefined
      }
    }
    // Not fresh: is another request fetching it already? (A fresh hit needs no lock key.)
    const lockKey = store.keyFor(asked.primary, ctx.rawHeaders)
    const busy = pending.get(lockKey)
    if (use === 'stale-while-revalidate') {
      // Served now; one GET at a time revalidates it in the background (RFC 5861 section 3).
      const revalidate = busy === undefined && ctx.method === 'GET'
      if (revalidate) capture(ctx, asked, entry, lock(lockKey))
      ctx.stored = { answer: hit(entry!, age, 'STALE'), revalidate }
      return undefined
    }
    if (busy !== undefined && !waited) return busy.then(() => lookup(ctx, asked, true))
    // A stored entry here is stale: revalidated (or served on error) by the capture.
    capture(ctx, asked, entry, busy === undefined && ctx.method === 'GET' ? lock(lockKey) : noop)
    return undefined
  }

  class Capture implements ResponseTap {
    #chunks: Buffer[] | undefined
    #bytes = 0
    #entry: Omit<Entry, 'body' | 'size'> | undefined
    readonly #generation = store.generation

    constructor(
      readonly ctx: RequestContext,
      readonly asked: Asked,
      readonly stale: Entry | undefined,
      readonly revalidating: boolean,
      readonly release: () => void,
      readonly requestTime: number,
    ) {}

    substitute(status: number, headers: readonly string[]): Substitute | undefined {
      const stale = this.stale
      if (stale === undefined) return undefined
      if (status === 304 && this.revalidating) {
        this.#refresh(stale, headers)
        return hit(stale, currentAge(stale.age, Date.now()), 'HIT')
      }
      if (status >= 500) return this.rescue()
      return undefined
    }

    rescue(): Substitute | undefined {
      const s = this.stale
      if (s === undefined) return undefined
      const age = currentAge(s.age, Date.now())
      if (!staleIfError(s.directives, this.asked.directives, s.lifetime, age)) return undefined
      // The stored answer goes out instead (even after head(): a head the client could not be
      // sent): nothing of the upstream's is stored.
      this.#chunks = undefined
      this.#entry = undefined
      return hit(s, age, 'STALE')
    }

    /** RFC 9111 section 4.3.4: the 304's headers replace the stored ones of the same name. */
    #refresh(e: Entry, headers: readonly string[]): void {
      const fresh = storable(headers, this.ctx)
      const names = new Set<string>()
      for (let i = 0; i < fresh.length; i += 2) names.add(fresh[i]!.toLowerCase())
      const merged: string[] = []
      for (let i = 0; i < e.headers.length; i += 2) {
        if (!names.has(e.headers[i]!.toLowerCase())) merged.push(e.headers[i]!, e.headers[i + 1]!)
      }
      for (let i = 0; i < fresh.length; i += 2) {
        // A 304 describes the stored representation; its own framing is not the body's.
        const lower = fresh[i]!.toLowerCase()
        if (lower !== 'content-encoding' && lower !== 'content-type') merged.push(fresh[i]!, fresh[i + 1]!)
      }
      const facts = describe(merged, this.requestTime, Date.now(), rawHeader(headers, 'age'))
      e.headers = merged
      e.directives = facts.directives
      e.lifetime = facts.lifetime
      e.age = facts.age
      e.etag = facts.etag
      e.lastModified = facts.lastModified
      store.refreshed(e, this.ctx.rawHeaders)
    }

    head(status: number, headers: string[]): boolean {
      headers.push('x-cache', 'MISS')
      if (this.ctx.method !== 'GET') return this.#done()
      const kept = storable(headers, this.ctx)
      const facts = describe(kept, this.requestTime, Date.now(), rawHeader(headers, 'age'))
      const why = refusal({
        status,
        authorized: this.asked.authorized,
        requestDirectives: this.asked.directives,
        directives: facts.directives,
        expires: rawHeader(kept, 'expires'),
        vary: allOf(kept, 'vary'),
        setCookie: rawHeader(kept, 'set-cookie') !== undefined,
        hasValidator: facts.etag !== undefined || facts.lastModified !== undefined,
        lifetime: facts.lifetime,
      })
      const length = Number(rawHeader(headers, 'content-length') ?? -1)
      if (why !== undefined || length > cfg.max_entry_bytes) {
        log.debug(
          { middleware: name, request_id: this.ctx.requestId, reason: why ?? 'too large' },
          'not stored',
        )
        return this.#done()
      }
      this.#entry = {
        primary: this.asked.primary,
        path: this.asked.path,
        vary: varyNames(allOf(kept, 'vary')),
        status,
        headers: kept,
        directives: facts.directives,
        lifetime: facts.lifetime,
        age: facts.age,
        etag: facts.etag,
        lastModified: facts.lastModified,
      }
      this.#chunks = []
      return true
    }

    data(chunk: Buffer): void {
      if (this.#chunks === undefined) return
      this.#bytes += chunk.length
      if (this.#bytes > cfg.max_entry_bytes) {
        this.#done()
        return
      }
      this.#chunks.push(chunk)
    }

    close(complete: boolean): void {
      const e = this.#entry
      if (
        complete &&
        e !== undefined &&
        this.#chunks !== undefined &&
        store.generation === this.#generation
      ) {
        const body = Buffer.concat(this.#chunks, this.#bytes)
        store.put({ ...e, body, size: entrySize(e.headers, body.length, e.primary) }, this.ctx.rawHeaders)
      }
      this.#done()
    }

    /** Nothing (more) to store: waiting requests go on. */
    #done(): false {
      this.#chunks = undefined
      this.#entry = undefined
      this.release()
      return false
    }
  }

  const middleware: Middleware = (ctx) => {
    const raw = ctx.rawHeaders
    let cc: string | undefined
    let pragmaNoCache = false
    let authorized = false
    let conditional = false
    for (let i = 0; i < raw.length; i += 2) {
      const lower = raw[i]!.toLowerCase()
      switch (lower) {
        case 'cache-control':
          cc = cc === undefined ? raw[i + 1]! : `${cc},${raw[i + 1]!}`
          break
        case 'pragma':
          if (/(^|,)\s*no-cache\s*(,|$)/i.test(raw[i + 1]!)) pragmaNoCache = true
          break
        case 'authorization':
          authorized = true
          break
        case 'if-none-match':
        case 'if-modified-since':
          conditional = true
          break
        // Ranges, upgrades and request bodies go by: this cache stores whole GET answers only.
        case 'range':
        case 'upgrade':
        case 'content-length':
        case 'transfer-encoding':
          if (ctx.method === 'GET' || ctx.method === 'HEAD') return undefined
          break
        default:
          break
      }
    }
    const q = ctx.upstreamPath.indexOf('?')
    const primary = `${ctx.route ?? ''}\0${ctx.host?.toLowerCase() ?? ''}\0${ctx.path}${q < 0 ? '' : ctx.upstreamPath.slice(q)}`
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      // RFC 9111 section 4.4: an unsafe method that succeeds invalidates what is stored for its URI.
      if (ctx.method !== 'OPTIONS' && ctx.method !== 'TRACE')
        ctx.responseTap = new Invalidate(store, primary, ctx.path)
      return undefined
    }
    // RFC 9111 section 5.4: Pragma: no-cache counts only without Cache-Control.
    const directives = parseCacheControl(cc ?? (pragmaNoCache ? 'no-cache' : undefined))
    return lookup(ctx, { primary, path: ctx.path, directives, authorized, conditional }, false)
  }

  return {
    middleware,
    purge: (m) => store.purge(m),
    close: () => store.clear(),
    store,
  }
}

/** An unsafe request's tap: a success (2xx, 3xx) drops the stored responses of its URI. */
class Invalidate implements ResponseTap {
  constructor(
    readonly store: CacheStore,
    readonly primary: string,
    readonly path: string,
  ) {}
  substitute(): undefined {
    return undefined
  }
  rescue(): undefined {
    return undefined
  }
  head(status: number): boolean {
    if (status >= 200 && status < 400) this.store.invalidate(this.primary, this.path)
    return false
  }
  data(): void {}
  close(): void {}
}

const noop = (): void => undefined

/** A stored response as an answer: its headers, Age in whole seconds, X-Cache. */
function hit(e: Entry, ageMs: number, how: 'HIT' | 'STALE'): Substitute {
  return {
    status: e.status,
    headers: [...e.headers, 'age', String(Math.floor(ageMs / 1000)), 'x-cache', how],
    body: e.body,
  }
}

/**
 * The headers worth storing: not the exchange's own, nor what the chain adds per request
 * (ctx.responseHeaders, which it adds again on a hit). Those are removed as exact pairs, not by
 * name: CORS adds `Vary: Origin`, and the upstream's own Vary must stay.
 */
function storable(headers: readonly string[], ctx: RequestContext): string[] {
  const added = new Map<string, number>()
  const extra = ctx.responseHeaders
  for (let i = 0; i < extra.length; i += 2) {
    const pair = `${extra[i]!.toLowerCase()}\0${extra[i + 1]!}`
    added.set(pair, (added.get(pair) ?? 0) + 1)
  }
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase()
    if (NOT_STORED.has(lower)) continue
    if (added.size > 0) {
      const pair = `${lower}\0${headers[i + 1]!}`
      const n = added.get(pair)
      if (n !== undefined && n > 0) {
        added.set(pair, n - 1)
        continue
      }
    }
    out.push(headers[i]!, headers[i + 1]!)
  }
  return out
}

function describe(
  headers: readonly string[],
  requestTime: number,
  responseTime: number,
  age: string | undefined,
) {
  const directives = parseCacheControl(allOf(headers, 'cache-control'))
  const date = httpDate(rawHeader(headers, 'date'))
  return {
    directives,
    lifetime: freshnessLifetime(directives, rawHeader(headers, 'expires'), date, responseTime),
    age: { ageValue: deltaSeconds(age?.trim()) ?? 0, date, requestTime, responseTime },
    etag: rawHeader(headers, 'etag'),
    lastModified: rawHeader(headers, 'last-modified'),
  }
}

/** Every value of a header, joined with ',' (several Cache-Control lines are one list). */
function allOf(headers: readonly string[], lower: string): string | undefined {
  let v: string | undefined
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === lower) v = v === undefined ? headers[i + 1]! : `${v},${headers[i + 1]!}`
  }
  return v
}
