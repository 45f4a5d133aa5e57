// The rate_limiting declaration: its settings and the checks that span them.

import { z } from 'zod'
import { headerName } from '../header-name'
import type { Report } from '../types'

export const rateLimiting = z.strictObject({
  type: z.literal('rate_limiting').optional(),
  /** Refill rate of each bucket. */
  requests_per_minute: z.number().positive(),
  /** Bucket capacity: how many requests may come at once. */
  burst_size: z.number().int().positive(),
  /** Bucket per value of this header; requests without it (or with no key_header) per client IP. */
  key_header: headerName.optional(),
  /** Deprecated: has no effect; the client address comes from server.trusted_proxies. */
  trust_forwarded_for: z.boolean().optional(),
  store: z.enum(['memory', 'redis']).default('memory'),
  redis_url: z
    .string()
    .regex(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' })
    .optional(),
  /** When Redis cannot answer: `open` lets requests through (default), `closed` answers 503. */
  redis_failure: z.enum(['open', 'closed']).default('open'),
  /** Memory store: most buckets kept; the oldest are dropped beyond it. */
  max_keys: z.number().int().min(1).default(100_000),
})

export type RateLimitingConfig = z.output<typeof rateLimiting>

export function checkRateLimiting(cfg: RateLimitingConfig, report: Report): void {
  if (cfg.store === 'redis' && cfg.redis_url === undefined)
    report('redis_url', 'is required with store: redis')
  if (cfg.store === 'memory' && cfg.redis_url !== undefined)
    report('redis_url', 'is only used with store: redis')
}
