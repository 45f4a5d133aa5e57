// The cache declaration: a memory store per process, or `store: redis` shared by every instance
// that names the same Redis (and key_prefix).

import { z } from 'zod'
import type { Report } from '../types'

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024

export const cacheSchema = z.strictObject({
  type: z.literal('cache').optional(),
  /** Where responses are kept: `memory` (per process; per worker with server.workers > 1) or `redis`. */
  store: z.enum(['memory', 'redis']).default('memory'),
  /**
   * Memory store: total bytes of stored responses (bodies, headers, bookkeeping); least recently
   * used go first. Absent: 64 MiB. A Redis store is bounded by Redis's own maxmemory.
   */
  max_bytes: z.number().int().min(1).optional(),
  /** A response larger than this is sent to the client but not stored. */
  max_entry_bytes: z
    .number()
    .int()
    .min(1)
    .default(1024 * 1024),
  redis_url: z
    .string()
    .regex(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' })
    .optional(),
  /**
   * Redis store: prefix of every key (absent: `locci:cache:NAME:`). Proxies share entries when
   * they use the same Redis and prefix; two caches with one prefix share entries too.
   */
  key_prefix: z.string().min(1).optional(),
})

export type CacheConfig = z.output<typeof cacheSchema>

/** max_bytes as it applies to the memory store. */
export function memoryMaxBytes(cfg: CacheConfig): number {
  return cfg.max_bytes ?? DEFAULT_MAX_BYTES
}

export function checkCache(cfg: CacheConfig, report: Report): void {
  if (cfg.store === 'redis') {
    if (cfg.redis_url === undefined) report('redis_url', 'is required with store: redis')
    if (cfg.max_bytes !== undefined)
      report('max_bytes', "only applies to store: memory (a Redis store is bounded by Redis's maxmemory)")
  } else {
    if (cfg.redis_url !== undefined) report('redis_url', 'is only used with store: redis')
    if (cfg.key_prefix !== undefined) report('key_prefix', 'is only used with store: redis')
  }
  if (cfg.max_entry_bytes > memoryMaxBytes(cfg) && cfg.store === 'memory')
    report('max_entry_bytes', 'is larger than max_bytes')
}
