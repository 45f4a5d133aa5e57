// `locci-proxy explain` and GET /api/v1/explain: what the proxy would do with a request, worked
// out from a snapshot the same way the pipeline does, with the reasons: every pattern tried
// (longest first) and why it missed, the middlewares in order, the upstream group and which of its
// servers are in rotation, and the path the server will see after strip_prefix.

import type { Snapshot } from '../config/snapshot'
import { isPreflight } from '../middleware/cors/index'
import type { MiddlewareConfig } from '../middleware/schema'
import { rawHeader } from '../middleware/types'
import type { UpstreamGroup } from '../upstream/group'
import { type RouteTable, stripPrefix } from './route-table'

export interface Explanation {
  method: string
  path: string
  mode: string
  /** What the proxy does: forward, or answer itself with this status. */
  outcome: 'forward' | 'no_route' | 'method_not_allowed' | 'preflight' | 'no_available_server'
  status: number | null
  allow: string | null
  tried: Array<{ route: string; pattern: string; result: string }>
  route: string | null
  middlewares: Array<{ name: string; type: string; note: string | null }>
  upstream: string | null
  strategy: string | null
  servers: Array<{ address: string; in_rotation: boolean | null }>
  upstream_path: string | null
}

/** What explain reads: the compiled config (a Plan, see proxy/runtime.ts). */
export interface ExplainInput {
  readonly snapshot: Snapshot
  readonly routes: RouteTable | undefined
  readonly middlewares: ReadonlyMap<string, MiddlewareConfig>
}

export function explain(
  plan: ExplainInput,
  groups: ReadonlyMap<string, UpstreamGroup> | undefined,
  method: string,
  url: string,
  headers: readonly string[] = [],
): Explanation {
  const { snapshot } = plan
  method = method.toUpperCase()
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  const e: Explanation = {
    method,
    path,
    mode: snapshot.mode.kind,
    outcome: 'forward',
    status: null,
    allow: null,
    tried: [],
    route: null,
    middlewares: [],
    upstream: null,
    strategy: null,
    servers: [],
    upstream_path: url,
  }
  const preflight = isPreflight(method, headers)
  let middlewares: readonly string[]
  if (plan.routes) {
    const asked = preflight ? rawHeader(headers, 'access-control-request-method')!.toUpperCase() : method
    let allow: string[] = []
    let chosen: string | undefined
    for (const r of plan.routes.routes) {
      let result: string
      if (chosen !== undefined)
        result = `not tried: ${chosen} matched first (its pattern is longer or earlier in the file)`
      else if (!r.regex.test(path)) result = 'pattern does not match the path'
      else if (r.methods !== null && !r.methods.has(asked)) {
        result = `pattern matches, but ${asked} is not in its methods (${[...r.methods].join(', ')})`
        allow = [...new Set([...allow, ...r.methods])]
      } else {
        result = 'matched'
        chosen = r.name
      }
      e.tried.push({ route: r.name, pattern: r.pattern, result })
    }
    if (chosen === undefined) {
      e.outcome = allow.length ? 'method_not_allowed' : 'no_route'
      e.status = allow.length ? 405 : 404
      e.allow = allow.length ? allow.join(', ') : null
      e.upstream_path = null
      return e
    }
    const route = plan.routes.routes.find((r) => r.name === chosen)!
    e.route = route.name
    e.upstream = route.upstream
    if (route.stripPrefix) e.upstream_path = stripPrefix(route.regex, url)
    middlewares = route.middlewares
  } else if (snapshot.mode.kind === 'load_balancer') {
    e.upstream = snapshot.mode.upstream
    middlewares = snapshot.mode.middlewares
  } else return e

  for (const name of middlewares) {
    const cfg = plan.middlewares.get(name)!
    let note: string | null = null
    if (cfg.kind === 'cors' && preflight) note = 'answers this preflight itself (204); nothing is forwarded'
    else if (preflight) note = 'does not see preflights'
    else if (cfg.kind === 'authentication') {
      const excluded = cfg.excluded_paths.some((p) =>
        p.endsWith('/*') ? path === p.slice(0, -2) || path.startsWith(`${p.slice(0, -1)}`) : p === path,
      )
      note = excluded
        ? 'skipped: the path is in excluded_paths'
        : rawHeader(headers, 'authorization') === undefined
          ? 'refuses this request (401): no Authorization: Bearer token'
          : 'verifies the bearer token'
    } else if (cfg.kind === 'rate_limiting') {
      note = `${cfg.burst_size} at once, ${cfg.requests_per_minute}/min per ${cfg.key_header ? `${cfg.key_header} (else client IP)` : 'client IP'} (${cfg.store})`
    }
    e.middlewares.push({ name, type: cfg.kind, note })
  }
  if (preflight && e.middlewares.some((m) => m.type === 'cors')) {
    e.outcome = 'preflight'
    e.status = 204
    e.upstream_path = null
  }

  const spec = snapshot.upstreams.get(e.upstream!)!
  e.strategy = spec.strategy
  const live = groups?.get(spec.name)
  const now = Date.now()
  e.servers = spec.peers.map((p) => {
    const peer = live?.peers.find((x) => x.address === p.address)
    return { address: p.address, in_rotation: peer ? peer.available(now) : null }
  })
  if (e.outcome === 'forward' && live && !e.servers.some((s) => s.in_rotation)) {
    e.outcome = 'no_available_server'
    e.status = 503
  }
  return e
}

export function renderExplanation(e: Explanation): string {
  const out: string[] = [`${e.method} ${e.path}   (mode ${e.mode})`]
  if (e.tried.length) {
    out.push('  routes, longest pattern first:')
    const w = Math.max(...e.tried.map((t) => t.route.length))
    const pw = Math.max(...e.tried.map((t) => t.pattern.length))
    for (const t of e.tried) out.push(`    ${t.route.padEnd(w)}  ${t.pattern.padEnd(pw)}  ${t.result}`)
  }
  if (e.outcome === 'no_route') return [...out, '  => 404: no route matches this path'].join('\n')
  if (e.outcome === 'method_not_allowed')
    return [...out, `  => 405: method not allowed (Allow: ${e.allow})`].join('\n')
  if (e.route) out.push(`  route: ${e.route}`)
  out.push(
    `  middlewares:${e.middlewares.length ? '' : ' none'}`,
    ...e.middlewares.map(
      (m, i) =>
        `    ${i + 1}. ${m.name}${m.name === m.type ? '' : ` (${m.type})`}${m.note ? `: ${m.note}` : ''}`,
    ),
  )
  out.push(`  upstream: ${e.upstream} (${e.strategy})`)
  for (const s of e.servers) {
    out.push(
      `    ${s.address}${s.in_rotation === null ? '' : s.in_rotation ? '  in rotation' : '  OUT of rotation'}`,
    )
  }
  if (e.outcome === 'preflight') out.push('  => 204: CORS preflight answered by the proxy')
  else if (e.outcome === 'no_available_server') out.push('  => 503: no server of the group is in rotation')
  else out.push(`  => forwarded; the server sees: ${e.upstream_path}`)
  return out.join('\n')
}
