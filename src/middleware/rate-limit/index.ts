// rate_limiting: a token bucket per key (the `key_header` value, else the client IP): `burst_size`
// requests at once, refilled at `requests_per_minute`. Over the limit: 429 with Retry-After.
// Every answer carries RateLimit-Limit / -Remaining / -Reset. With `store: redis` the buckets
// live in Redis; when Redis cannot answer, `redis_failure: open` (default) lets the request
// through and logs it, `closed` answers 503.

import { createHash } from 'node:crypto'
import type Redis from 'ioredis'
import type { Logger } from '../../observe/logger'
import { type Middleware, type Reply, type RequestContext, rawHeader } from '../types'
import type { RateLimitingConfig } from './config'
import { bucketKey, MemoryStore } from './memory-store'
import { RedisStore } from './redis-store'
import type { TakeResult } from './token-bucket'

/** Buckets kept elsewhere (the primary process, with several workers). */
export type SharedStore = (
  store: string,
  burst: number,
  perMs: number,
  maxKeys: number,
) => {
  take(key: string): Promise<TakeResult>
}

export interface RateLimiter {
  middleware: Middleware
  close(): void
}

export function rateLimiting(
  name: string,
  cfg: RateLimitingConfig,
  log: Logger,
  redis: (url: string) => Redis,
  countError: (type: string) => void = () => undefined,
  shared?: SharedStore,
): RateLimiter {
  const perMs = cfg.requests_per_minute / 60_000
  const burst = cfg.burst_size
  const keyHeader = cfg.key_header?.toLowerCase()
  const limit = String(burst)
  if (cfg.trust_forwarded_for !== undefined) {
    log.warn(
      { middleware: name, setting: 'trust_forwarded_for' },
      'trust_forwarded_for is deprecated and has no effect (anyone could forge X-Forwarded-For): list your load balancers under server.trusted_proxies instead, e.g. trusted_proxies: ["10.0.0.0/8"]',
    )
  }

  const keyOf = (ctx: RequestContext): string => {
    if (keyHeader) {
      const v = rawHeader(ctx.rawHeaders, keyHeader)
      if (v !== undefined && v !== '') return `h:${v}`
    }
    // The one resolved client address (server.trusted_proxies decides whom to believe).
    return `ip:${ctx.clientIp}`
  }

  /** The RateLimit-* fields of a take, pushed onto `out`. */
  const rateHeaders = (out: string[], r: TakeResult): string[] => {
    out.push(
      'ratelimit-limit',
      limit,
      'ratelimit-remaining',
      String(r.remaining),
      'ratelimit-reset',
      String(r.resetSecs),
    )
    return out
  }

  const decide = (ctx: RequestContext, r: TakeResult): Reply | undefined => {
    if (r.allowed) {
      rateHeaders(ctx.responseHeaders, r)
      return undefined
    }
    const headers = rateHeaders([], r)
    headers.push('retry-after', String(r.retryAfterSecs))
    return { status: 429, kind: 'rate_limited', headers }
  }

  if (cfg.store === 'memory' && shared) {
    // One bucket per key for the whole instance: every worker asks the primary.
    // A short id (not the config itself) travels with every take.
    const id = createHash('sha1')
      .update(`${name}\0${JSON.stringify(cfg)}`)
      .digest('base64url')
      .slice(0, 12)
    const store = shared(id, burst, perMs, cfg.max_keys)
    return {
      // Hashed here, not only in the primary's store: a 16 KB key would cross IPC every request.
      middleware: (ctx) => store.take(bucketKey(keyOf(ctx))).then((r) => decide(ctx, r)),
      close: () => undefined,
    }
  }
  if (cfg.store === 'memory') {
    const store = new MemoryStore(burst, perMs, cfg.max_keys)
    return {
      middleware: (ctx) => decide(ctx, store.take(keyOf(ctx), Date.now())),
      close: () => store.close(),
    }
  }

  const store = new RedisStore(redis(cfg.redis_url!), `locci:rl:${name}:`, burst, perMs)
  let failures = 0
  let lastLog = 0
  const onFailure = (err: Error): Reply | undefined => {
    failures++
    // A fail-open request ends as a 200 and is not counted as an error otherwise.
    if (cfg.redis_failure === 'open') countError('rate_limiter_unavailable')
    const now = Date.now()
    if (now - lastLog > 10_000) {
      lastLog = now
      log.warn(
        {
          middleware: name,
          error_type: 'rate_limiter_unavailable',
          err: err.message,
          failures,
          redis_failure: cfg.redis_failure,
        },
        cfg.redis_failure === 'open'
          ? 'rate limiter store unavailable; letting requests through'
          : 'rate limiter store unavailable; refusing requests',
      )
    }
    return cfg.redis_failure === 'open'
      ? undefined
      : { status: 503, kind: 'rate_limiter_unavailable', headers: [] }
  }
  return {
    // Long keys (a client-chosen header value) are hashed: Redis keeps one key per bucket.
    middleware: (ctx) =>
      store.take(bucketKey(keyOf(ctx))).then(
        (r) => decide(ctx, r),
        (err: Error) => onFailure(err),
      ),
    close: () => undefined,
  }
}
