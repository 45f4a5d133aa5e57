// cors: answers preflights itself (204, never forwarded) and adds Access-Control-* headers to
// responses for allowed origins; a disallowed origin gets no CORS headers at all, so the browser
// blocks it. Responses always carry `Vary: Origin` (caches must not mix origins). The upstream's
// own Access-Control-* headers are replaced, so the proxy's policy is the one browsers see.
// Everything is joined once, here, not per request.

import type { MiddlewareConfig } from '../schema'
import { dropResponseHeaders, type Middleware, type Reply, type RequestContext, rawHeader } from '../types'
import type { CorsConfig } from './config'

const UPSTREAM_CORS = new Set([
  'access-control-allow-origin',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-allow-credentials',
  'access-control-expose-headers',
  'access-control-max-age',
])

export function isPreflight(method: string, raw: readonly string[]): boolean {
  return (
    method === 'OPTIONS' &&
    rawHeader(raw, 'origin') !== undefined &&
    rawHeader(raw, 'access-control-request-method') !== undefined
  )
}

/**
 * Whether a middleware answers CORS preflights itself. A preflight on a chain with such a
 * middleware meets only those (the registry's Chain.preflight) and is answered 204; on a chain
 * without one it is an ordinary OPTIONS request. Route resolution (routing/resolve.ts) asks the
 * same question of the snapshot, so `explain` and the chains cannot disagree.
 */
export function answersPreflights(cfg: MiddlewareConfig): boolean {
  return cfg.kind === 'cors'
}

export function cors(cfg: CorsConfig): Middleware {
  const anyOrigin = cfg.allowed_origins === '*' || cfg.allowed_origins.includes('*')
  const origins = new Set(cfg.allowed_origins === '*' ? [] : cfg.allowed_origins)
  const methods = cfg.allowed_methods.map((m) => m.toUpperCase()).join(', ')
  const anyHeader = cfg.allowed_headers.includes('*')
  const headers = cfg.allowed_headers.join(', ')
  const expose = cfg.expose_headers.join(', ')
  const maxAge = cfg.max_age_secs === undefined ? undefined : String(cfg.max_age_secs)

  const allowOrigin = (origin: string | undefined): string | undefined => {
    if (origin === undefined) return undefined
    if (anyOrigin) return cfg.allow_credentials ? origin : '*'
    return origins.has(origin) ? origin : undefined
  }

  return (ctx: RequestContext): Reply | undefined => {
    const origin = rawHeader(ctx.rawHeaders, 'origin')
    const allowed = allowOrigin(origin)
    if (isPreflight(ctx.method, ctx.rawHeaders)) {
      const out = ['vary', 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers']
      if (allowed !== undefined) {
        const requested = rawHeader(ctx.rawHeaders, 'access-control-request-headers')
        out.push('access-control-allow-origin', allowed, 'access-control-allow-methods', methods)
        // `*` is literal when credentials are allowed (Fetch standard), so echo what was asked.
        const allowHeaders = anyHeader && (cfg.allow_credentials || requested) ? (requested ?? '') : headers
        if (allowHeaders !== '') out.push('access-control-allow-headers', allowHeaders)
        if (cfg.allow_credentials) out.push('access-control-allow-credentials', 'true')
        if (maxAge !== undefined) out.push('access-control-max-age', maxAge)
      }
      return { status: 204, kind: undefined, headers: out }
    }
    ctx.responseHeaders.push('vary', 'Origin')
    // The proxy's policy is the only one browsers see: an origin it refuses must not be let in
    // by the upstream's own Access-Control-* headers.
    dropResponseHeaders(ctx, UPSTREAM_CORS)
    if (allowed === undefined) return undefined
    ctx.responseHeaders.push('access-control-allow-origin', allowed, 'access-control-allow-methods', methods)
    if (headers !== '') ctx.responseHeaders.push('access-control-allow-headers', headers)
    if (cfg.allow_credentials) ctx.responseHeaders.push('access-control-allow-credentials', 'true')
    if (expose !== '') ctx.responseHeaders.push('access-control-expose-headers', expose)
    return undefined
  }
}
