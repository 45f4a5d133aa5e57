// Builds each route's middleware chain for a snapshot and owns the middlewares' live state
// (token buckets, JWKS caches, Redis connections) across snapshots: a declaration that did not
// change keeps its instance, so a reload does not reset rate limits.

import type Redis from 'ioredis'
import { resolveFrom } from '../config/compile'
import { maskString } from '../config/redact'
import type { Snapshot } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import { apiKey } from './api-key/index'
import { authentication } from './auth/index'
import { basicAuth } from './basic-auth/index'
import { cache } from './cache/index'
import type { PurgeMatch } from './cache/memory-store'
import { compress } from './compress/index'
import { answersPreflights, cors } from './cors/index'
import { forwardAuth } from './forward-auth/index'
import { grpcWeb } from './grpc-web/index'
import { headers } from './headers/index'
import { ipFilter } from './ip-filter/index'
import { rateLimiting, type SharedStore } from './rate-limit/index'
import { redirect } from './redirect/index'
import { rewrite } from './rewrite/index'
import type { MiddlewareConfig } from './schema'
import type { Middleware } from './types'

export interface Chain {
  readonly middlewares: readonly Middleware[]
  /** The chain's cors middlewares: the only ones that see a CORS preflight. */
  readonly preflight: readonly Middleware[]
  /** The middlewares' names, in the same order (traces name them). */
  readonly names: readonly string[]
  readonly preflightNames: readonly string[]
}

interface Live {
  middleware: Middleware
  /** answersPreflights(): the middleware is in the chain's `preflight` list. */
  cors: boolean
  close(): void
  /** A cache's purge: drops matching entries, returns how many. */
  purge?: (m: PurgeMatch) => number | Promise<number>
}

/** Chain key for load_balancer mode (routes use their names). */
export const LB_CHAIN = ''

export class MiddlewareRegistry {
  readonly #log: Logger
  #live = new Map<string, Live>()
  readonly #redis = new Map<string, Redis>()
  readonly #countError: (type: string) => void

  readonly #shared: SharedStore | undefined

  constructor(log: Logger, countError: (type: string) => void = () => undefined, shared?: SharedStore) {
    this.#log = log
    this.#countError = countError
    this.#shared = shared
  }

  /**
   * Chains for `snapshot`, by route name (LB_CHAIN in load_balancer mode), from the validated
   * declarations `middlewares` (middleware/validate.ts); unchanged ones are reused.
   */
  build(snapshot: Snapshot, middlewares: ReadonlyMap<string, MiddlewareConfig>): Map<string, Chain> {
    const next = new Map<string, Live>()
    const instance = (name: string): Live => {
      const cfg = middlewares.get(name)!
      const key = `${name}\0${JSON.stringify(cfg)}`
      let live = next.get(key) ?? this.#live.get(key)
      if (!live) live = { ...this.#create(name, cfg, snapshot.file), cors: answersPreflights(cfg) }
      next.set(key, live)
      return live
    }
    const chainOf = (names: readonly string[]): Chain => {
      const lives = names.map(instance)
      return {
        middlewares: lives.map((l) => l.middleware),
        preflight: lives.filter((l) => l.cors).map((l) => l.middleware),
        names,
        preflightNames: names.filter((_, i) => lives[i]!.cors),
      }
    }
    const chains = new Map<string, Chain>()
    const mode = snapshot.mode
    if (mode.kind === 'api_gateway') {
      for (const r of mode.routes) if (r.middlewares.length > 0) chains.set(r.name, chainOf(r.middlewares))
    } else if (mode.middlewares.length > 0) chains.set(LB_CHAIN, chainOf(mode.middlewares))
    for (const [key, live] of this.#live) if (!next.has(key)) live.close()
    this.#live = next
    return chains
  }

  #create(name: string, cfg: MiddlewareConfig, file: string): Omit<Live, 'cors'> {
    switch (cfg.kind) {
      case 'rate_limiting': {
        const rl = rateLimiting(
          name,
          cfg,
          this.#log,
          (url) => this.#redisFor(url),
          this.#countError,
          this.#shared,
        )
        return { middleware: rl.middleware, close: rl.close }
      }
      case 'authentication': {
        const keyPath = cfg.public_key_path === undefined ? undefined : resolveFrom(file, cfg.public_key_path)
        return {
          middleware: authentication(name, cfg, keyPath, this.#log),
          close: () => undefined,
        }
      }
      case 'cors':
        return { middleware: cors(cfg), close: () => undefined }
      case 'headers':
        return { middleware: headers(cfg), close: () => undefined }
      case 'rewrite':
        return { middleware: rewrite(cfg, this.#log), close: () => undefined }
      case 'redirect':
        return { middleware: redirect(cfg, this.#log), close: () => undefined }
      case 'ip_filter':
        return { middleware: ipFilter(cfg), close: () => undefined }
      case 'basic_auth':
        return { middleware: basicAuth(name, cfg, this.#log), close: () => undefined }
      case 'api_key':
        return { middleware: apiKey(cfg), close: () => undefined }
      case 'forward_auth':
        return forwardAuth(name, cfg, this.#log)
      case 'compress':
        return { middleware: compress(cfg), close: () => undefined }
      case 'cache':
        return cache(name, cfg, this.#log, (url) => this.#redisFor(url))
      case 'grpc_web':
        return { middleware: grpcWeb(), close: () => undefined }
    }
  }

  /**
   * Drops the entries every live cache holds for a path or under a prefix; returns how many.
   * Rejects when a Redis store could not be purged (the caller must not report success).
   */
  async purge(m: PurgeMatch): Promise<number> {
    const counts = await Promise.all([...this.#live.values()].map((live) => live.purge?.(m) ?? 0))
    return counts.reduce((a, b) => a + b, 0)
  }

  /** One connection per Redis URL, failing fast while Redis is away (no offline queue). */
  #redisFor(url: string): Redis {
    let r = this.#redis.get(url)
    if (r) return r
    // Loaded on first use: ioredis costs ~8 MiB of RSS that a proxy without Redis never needs.
    const Client = (require('ioredis') as typeof import('ioredis')).default
    r = new Client(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 500,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    })
    let lastLog = 0
    r.on('error', (err: Error) => {
      const now = Date.now()
      if (now - lastLog > 10_000) {
        lastLog = now
        this.#log.warn({ redis: maskString(url), err: err.message }, 'redis connection error')
      }
    })
    r.on('ready', () => this.#log.info({ redis: maskString(url) }, 'redis connected'))
    this.#redis.set(url, r)
    return r
  }

  close(): void {
    for (const live of this.#live.values()) live.close()
    this.#live.clear()
    for (const r of this.#redis.values()) r.disconnect()
    this.#redis.clear()
  }
}
