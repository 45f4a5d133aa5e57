// Middleware declarations: `rate_limiting`, `authentication` and `cors` under their own names
// (the guide's form), or any name with a `type` (`strict_limit: {type: rate_limiting, ...}`) so
// routes can use different settings of one kind. Each type's settings and checks live with the
// middleware (auth/config.ts, cors/config.ts, rate-limit/config.ts); validate.ts applies them.

import { type ApiKeyConfig, type ApiKeySettings, apiKey } from './api-key/config'
import { type AuthenticationConfig, authentication } from './auth/config'
import { type BasicAuthConfig, type BasicAuthSettings, basicAuth } from './basic-auth/config'
import { type CacheConfig, cacheSchema } from './cache/config'
import { type CompressConfig, compress } from './compress/config'
import { type CorsConfig, cors } from './cors/config'
import { type ForwardAuthConfig, forwardAuth } from './forward-auth/config'
import { type GrpcWebConfig, grpcWeb } from './grpc-web/config'
import { type HeadersConfig, headers } from './headers/config'
import { type IpFilterConfig, ipFilter } from './ip-filter/config'
import { type RateLimitingConfig, rateLimiting } from './rate-limit/config'
import { type RedirectConfig, redirect } from './redirect/config'
import { type RewriteConfig, rewrite } from './rewrite/config'

export type {
  ApiKeyConfig,
  AuthenticationConfig,
  BasicAuthConfig,
  CacheConfig,
  CorsConfig,
  ForwardAuthConfig,
  GrpcWebConfig,
  HeadersConfig,
  IpFilterConfig,
  RateLimitingConfig,
  RedirectConfig,
  RewriteConfig,
}

export const MIDDLEWARE_TYPES = [
  'rate_limiting',
  'authentication',
  'cors',
  'headers',
  'rewrite',
  'redirect',
  'ip_filter',
  'basic_auth',
  'api_key',
  'forward_auth',
  'compress',
  'cache',
  'grpc_web',
] as const
export type MiddlewareType = (typeof MIDDLEWARE_TYPES)[number]

export const MIDDLEWARE_SCHEMAS = {
  rate_limiting: rateLimiting,
  authentication,
  cors,
  headers,
  rewrite,
  redirect,
  ip_filter: ipFilter,
  basic_auth: basicAuth,
  api_key: apiKey,
  forward_auth: forwardAuth,
  compress,
  cache: cacheSchema,
  grpc_web: grpcWeb,
} as const

export type MiddlewareConfig =
  | ({ kind: 'rate_limiting' } & RateLimitingConfig)
  | ({ kind: 'authentication' } & AuthenticationConfig)
  | ({ kind: 'cors' } & CorsConfig)
  | ({ kind: 'headers' } & HeadersConfig)
  | ({ kind: 'rewrite' } & RewriteConfig)
  | ({ kind: 'redirect' } & RedirectConfig)
  | ({ kind: 'ip_filter' } & IpFilterConfig)
  // basic_auth and api_key carry the users and keys read from their files (validate.ts).
  | ({ kind: 'basic_auth' } & BasicAuthSettings)
  | ({ kind: 'api_key' } & ApiKeySettings)
  | ({ kind: 'forward_auth' } & ForwardAuthConfig)
  | ({ kind: 'compress' } & CompressConfig)
  | ({ kind: 'cache' } & CacheConfig)
  | ({ kind: 'grpc_web' } & GrpcWebConfig)
