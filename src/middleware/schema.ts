// Middleware declarations: `rate_limiting`, `authentication` and `cors` under their own names
// (the guide's form), or any name with a `type` (`strict_limit: {type: rate_limiting, ...}`) so
// routes can use different settings of one kind. Validated here into typed specs.

import { z } from 'zod'

export const MIDDLEWARE_TYPES = ['rate_limiting', 'authentication', 'cors'] as const
export type MiddlewareType = (typeof MIDDLEWARE_TYPES)[number]

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const headerName = z.string().regex(TOKEN, { message: 'is not a valid header name' })

const rateLimiting = z.strictObject({
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

const ALGS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const

const authentication = z.strictObject({
  type: z.literal('authentication').optional(),
  jwt_secret: z.string().min(1).optional(),
  public_key_path: z.string().min(1).optional(),
  jwks_url: z.url({ protocol: /^https?$/ }).optional(),
  /** Least time between two JWKS fetches (an unknown `kid` triggers one). */
  jwks_cooldown_secs: z.number().min(0).default(30),
  /** How long fetched keys are trusted before they are fetched again. */
  jwks_cache_secs: z.number().positive().default(600),
  /** Accepted `alg` values; defaults follow the key (HS* for a secret, the key's family otherwise). */
  algorithms: z.array(z.enum(ALGS)).min(1).optional(),
  issuer: z.string().optional(),
  audience: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
  clock_skew_secs: z.number().min(0).default(30),
  /** Refuse tokens without an `exp` claim (tokens that never expire). */
  require_exp: z.boolean().default(true),
  /** Paths that skip authentication: exact (`/health`) or a prefix (`/public/*`). */
  excluded_paths: z.array(z.string().regex(/^\//, { message: 'must start with "/"' })).default([]),
  /** Claims sent upstream as headers, e.g. `{sub: X-User-Id}`; clients cannot send these themselves. */
  forward_claims: z.record(z.string(), headerName).default({}),
  realm: z.string().default('locci-proxy'),
})

const cors = z.strictObject({
  type: z.literal('cors').optional(),
  allowed_origins: z.union([z.literal('*'), z.array(z.string().min(1)).min(1)]).default(['*']),
  allowed_methods: z.array(z.string().regex(TOKEN)).default(['GET', 'POST', 'PUT', 'DELETE']),
  allowed_headers: z.array(z.string().min(1)).default(['*']),
  expose_headers: z.array(headerName).default([]),
  allow_credentials: z.boolean().default(false),
  max_age_secs: z.number().int().min(0).optional(),
})

export const MIDDLEWARE_SCHEMAS = { rate_limiting: rateLimiting, authentication, cors } as const

export type RateLimitingConfig = z.output<typeof rateLimiting>
export type AuthenticationConfig = z.output<typeof authentication>
export type CorsConfig = z.output<typeof cors>

export type MiddlewareConfig =
  | ({ kind: 'rate_limiting' } & RateLimitingConfig)
  | ({ kind: 'authentication' } & AuthenticationConfig)
  | ({ kind: 'cors' } & CorsConfig)

/** The type a declaration names: its `type`, or its own name when that is a type. */
export function declaredType(name: string, raw: unknown): string | undefined {
  if (raw !== null && typeof raw === 'object' && 'type' in raw && typeof raw.type === 'string')
    return raw.type
  return (MIDDLEWARE_TYPES as readonly string[]).includes(name) ? name : undefined
}
