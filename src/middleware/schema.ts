// Middleware declarations: `rate_limiting`, `authentication` and `cors` under their own names
// (the guide's form), or any name with a `type` (`strict_limit: {type: rate_limiting, ...}`) so
// routes can use different settings of one kind. Each type's settings and checks live with the
// middleware (auth/config.ts, cors/config.ts, rate-limit/config.ts); validate.ts applies them.

import { type AuthenticationConfig, authentication } from './auth/config'
import { type CompressConfig, compress } from './compress/config'
import { type CorsConfig, cors } from './cors/config'
import { type RateLimitingConfig, rateLimiting } from './rate-limit/config'

export type { AuthenticationConfig, CorsConfig, RateLimitingConfig }

export const MIDDLEWARE_TYPES = ['rate_limiting', 'authentication', 'cors', 'compress'] as const
export type MiddlewareType = (typeof MIDDLEWARE_TYPES)[number]

export const MIDDLEWARE_SCHEMAS = {
  rate_limiting: rateLimiting,
  authentication,
  cors,
  compress,
} as const

export type MiddlewareConfig =
  | ({ kind: 'rate_limiting' } & RateLimitingConfig)
  | ({ kind: 'authentication' } & AuthenticationConfig)
  | ({ kind: 'cors' } & CorsConfig)
  | ({ kind: 'compress' } & CompressConfig)
