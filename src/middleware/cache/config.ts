// The cache declaration. Only the memory store exists: `store: redis` is refused at load with a
// message saying so (rather than accepted and not applied), and so is any Redis setting.

import { z } from 'zod'
import type { Report } from '../types'

export const cacheSchema = z.strictObject({
  type: z.literal('cache').optional(),
  /** Where responses are kept: `memory` (per process; per worker with server.workers > 1). */
  store: z.enum(['memory', 'redis']).default('memory'),
  /** Total bytes of stored responses (bodies, headers, bookkeeping); least recently used go first. */
  max_bytes: z
    .number()
    .int()
    .min(1)
    .default(64 * 1024 * 1024),
  /** A response larger than this is sent to the client but not stored. */
  max_entry_bytes: z
    .number()
    .int()
    .min(1)
    .default(1024 * 1024),
})

export type CacheConfig = z.output<typeof cacheSchema>

export function checkCache(cfg: CacheConfig, report: Report): void {
  if (cfg.store === 'redis')
    report('store', 'redis is not available yet for the cache: use store: memory (one cache per process)')
  if (cfg.max_entry_bytes > cfg.max_bytes) report('max_entry_bytes', 'is larger than max_bytes')
}
