// Compile-time side of the middlewares: every declaration (top-level `middlewares` and
// `api_gateway.middlewares`) checked by its type's schema and its own checks, reported at its
// key path with the config's other problems (a ConfigCheck, see config/compile.ts), and what
// the proxy derives from the valid ones: protected headers and WebSocket origins.

import { type ConfigCheck, declarationsOf, isRecord, reportIssue, resolveFrom } from '../config/compile'
import type { OriginPolicy } from '../config/snapshot'
import { didYouMean } from '../config/suggest'
import { checkApiKey } from './api-key/config'
import { checkAuthentication, claimHeaders } from './auth/config'
import { checkBasicAuth } from './basic-auth/config'
import { checkCache } from './cache/config'
import { checkCompress } from './compress/config'
import { checkCors } from './cors/config'
import { checkForwardAuth, forwardAuthHeaders } from './forward-auth/config'
import { checkHeaders } from './headers/config'
import { checkIpFilter } from './ip-filter/config'
import { checkRateLimiting } from './rate-limit/config'
import { checkRedirect } from './redirect/config'
import { checkRewrite } from './rewrite/config'
import { MIDDLEWARE_SCHEMAS, MIDDLEWARE_TYPES, type MiddlewareConfig, type MiddlewareType } from './schema'
import type { Report } from './types'

/** Validates every declaration; the valid ones, by name, go to `found`. */
export function checkMiddlewares(found: Map<string, MiddlewareConfig>): ConfigCheck {
  return (data, at, file) => {
    for (const [name, { raw, path: p }] of declarationsOf({ data })) {
      const type = isRecord(raw) && typeof raw.type === 'string' ? raw.type : name
      if (!(MIDDLEWARE_TYPES as readonly string[]).includes(type)) {
        at(
          isRecord(raw) && raw.type !== undefined ? [...p, 'type'] : p,
          isRecord(raw) && raw.type !== undefined
            ? `unknown middleware type "${type}"${didYouMean(type, MIDDLEWARE_TYPES) || ';'} use ${MIDDLEWARE_TYPES.join(', ')}`
            : `needs a type: ${MIDDLEWARE_TYPES.join(', ')} (or use one of those as its name)`,
        )
        continue
      }
      const kind = type as MiddlewareType
      const parsed = MIDDLEWARE_SCHEMAS[kind].safeParse(raw ?? {})
      if (!parsed.success) {
        for (const issue of parsed.error.issues) reportIssue(issue, at, MIDDLEWARE_SCHEMAS[kind], p)
        continue
      }
      const cfg = { kind, ...parsed.data } as MiddlewareConfig
      let ok = true
      const report: Report = (key, message) => {
        at(key === undefined ? p : typeof key === 'string' ? [...p, key] : [...p, ...key], message)
        ok = false
      }
      if (cfg.kind === 'authentication') checkAuthentication(cfg, report, (f) => resolveFrom(file, f))
      else if (cfg.kind === 'cors') checkCors(cfg, report)
      else if (cfg.kind === 'rate_limiting') checkRateLimiting(cfg, report)
      else if (cfg.kind === 'headers') checkHeaders(cfg, report)
      else if (cfg.kind === 'rewrite') checkRewrite(cfg, report)
      else if (cfg.kind === 'redirect') checkRedirect(cfg, report)
      else if (cfg.kind === 'ip_filter') checkIpFilter(cfg, report)
      else if (cfg.kind === 'basic_auth')
        Object.assign(cfg, { credentials: checkBasicAuth(cfg, report, (f) => resolveFrom(file, f)) })
      else if (cfg.kind === 'api_key')
        Object.assign(cfg, { consumers: checkApiKey(cfg, report, (f) => resolveFrom(file, f)) })
      else if (cfg.kind === 'forward_auth') checkForwardAuth(cfg, report)
      else if (cfg.kind === 'compress') checkCompress(cfg, report)
      else if (cfg.kind === 'cache') checkCache(cfg, report)
      if (ok) found.set(name, cfg)
    }
  }
}

/**
 * grpc_web turns a browser's call into a gRPC call, which only an HTTP/2 upstream can take: every
 * group a route (or the load balancer) with grpc_web sends to must say `protocol: h2c` or `h2`
 * (`auto` may settle on HTTP/1.1). Runs after checkMiddlewares, which fills `found`.
 */
export function checkGrpcWebUpstreams(found: ReadonlyMap<string, MiddlewareConfig>): ConfigCheck {
  return (data, at) => {
    const groups = isRecord(data.upstreams) ? data.upstreams : {}
    const check = (base: (string | number)[], holder: Record<string, unknown>) => {
      const names = Array.isArray(holder.middlewares) ? holder.middlewares : []
      if (!names.some((n) => typeof n === 'string' && found.get(n)?.kind === 'grpc_web')) return
      const targets: [(string | number)[], unknown][] = [[[...base, 'upstream'], holder.upstream]]
      if (Array.isArray(holder.upstreams)) {
        holder.upstreams.forEach((e, i) => {
          if (isRecord(e)) targets.push([[...base, 'upstreams', i, 'name'], e.name])
        })
      }
      for (const [key, name] of targets) {
        if (typeof name !== 'string') continue
        const g = groups[name]
        if (!isRecord(g)) continue // an unknown group is reported by the reference check
        if (g.protocol !== 'h2c' && g.protocol !== 'h2') {
          at(
            key,
            `grpc_web needs an HTTP/2 upstream: group "${name}" has protocol ${String(g.protocol ?? 'http1')}; set upstreams.${name}.protocol to h2c or h2`,
          )
        }
      }
    }
    const routes =
      isRecord(data.api_gateway) && isRecord(data.api_gateway.routes) ? data.api_gateway.routes : {}
    for (const [name, route] of Object.entries(routes)) {
      if (isRecord(route)) check(['api_gateway', 'routes', name], route)
    }
    if (isRecord(data.load_balancer)) check(['load_balancer'], data.load_balancer)
  }
}

/**
 * The headers only the proxy may send upstream, removed from every client request (lower case,
 * `_` as `-`): every `forward_claims` header of every authentication middleware (see
 * claimHeaders), basic_auth's `forward_user`, api_key's `consumer_header` and forward_auth's
 * `auth_response_headers` (see forwardAuthHeaders).
 */
export function protectedHeaders(middlewares: ReadonlyMap<string, MiddlewareConfig>): Set<string> {
  const out = new Set<string>()
  const add = (h: string) => out.add(h.toLowerCase().replaceAll('_', '-'))
  for (const m of middlewares.values()) {
    if (m.kind === 'authentication') for (const h of claimHeaders(m)) out.add(h)
    if (m.kind === 'basic_auth' && m.forward_user !== undefined) add(m.forward_user)
    if (m.kind === 'api_key') add(m.consumer_header)
    if (m.kind === 'forward_auth') for (const h of forwardAuthHeaders(m)) add(h)
  }
  return out
}

/**
 * The WebSocket origins a chain's cors middlewares allow: `*` if one allows any, undefined
 * (no policy) when the chain has no cors middleware. Used where no websocket_origins is written.
 */
export function corsOrigins(
  middlewares: ReadonlyMap<string, MiddlewareConfig>,
  chain: readonly string[],
): OriginPolicy {
  const allowed: string[] = []
  for (const name of chain) {
    const m = middlewares.get(name)
    if (m?.kind !== 'cors') continue
    if (m.allowed_origins === '*' || m.allowed_origins.includes('*')) return '*'
    allowed.push(...m.allowed_origins)
  }
  return allowed.length > 0 ? new Set(allowed) : undefined
}
