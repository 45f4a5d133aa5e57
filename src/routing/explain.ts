// `locci-proxy explain` and GET /api/v1/explain: what the proxy would do with a request, with the
// reasons. A thin wrapper: the path is normalized and refused methods are checked with the
// functions the pipeline uses, the route comes from resolve() (resolve.ts) with a trace that
// records every pattern tried (longest first) and why it missed, and the middlewares from
// middlewarePlan(); then the upstream group, which of its servers are in rotation, and the path
// the server will see after strip_prefix.

import type { SplitSpec } from '../config/snapshot'
import type { UpstreamGroup } from '../upstream/group'
import { normalizePath, withNormalizedPath } from './normalize-path'
import {
  middlewarePlan,
  type ResolveTrace,
  ROUTABLE_METHODS,
  type RoutingPlan,
  refusesMethod,
  resolve,
  upstreamOf,
} from './resolve'
import { type Route, type RouteTry, stripPrefix } from './route-table'

export interface Explanation {
  method: string
  /** The path asked about, without the query string. */
  path: string
  /** The path routes, middlewares and the upstream see (normalize-path.ts); null if refused. */
  normalized_path: string | null
  mode: string
  /** What the proxy does: forward, or answer itself with this status. */
  outcome:
    | 'forward'
    | 'bad_request'
    | 'no_route'
    | 'method_not_allowed'
    | 'preflight'
    | 'unauthorized'
    | 'no_available_server'
  status: number | null
  allow: string | null
  /** Each walk over the route table: a preflight may take two (resolve.ts says why). */
  walks: Array<{ method: string; why: string | null }>
  /** Every route tried, in order, with the method of its walk. */
  tried: Array<{ route: string; pattern: string; method: string; result: string }>
  route: string | null
  middlewares: Array<{ name: string; type: string; action: string; note: string | null }>
  upstream: string | null
  strategy: string | null
  servers: Array<{ address: string; in_rotation: boolean | null }>
  upstream_path: string | null
  /** Why, in order: normalization, each walk over the routes, the outcome. */
  reasons: string[]
}

export function explain(
  plan: RoutingPlan,
  groups: ReadonlyMap<string, UpstreamGroup> | undefined,
  method: string,
  url: string,
  headers: readonly string[] = [],
): Explanation {
  const { snapshot } = plan
  method = method.toUpperCase()
  const q = url.indexOf('?')
  const rawPath = q < 0 ? url : url.slice(0, q)
  const e: Explanation = {
    method,
    path: rawPath,
    normalized_path: null,
    mode: snapshot.mode.kind,
    outcome: 'forward',
    status: null,
    allow: null,
    walks: [],
    tried: [],
    route: null,
    middlewares: [],
    upstream: null,
    strategy: null,
    servers: [],
    upstream_path: null,
    reasons: [],
  }
  const answer = (outcome: Explanation['outcome'], status: number, reason: string): Explanation => {
    e.outcome = outcome
    e.status = status
    e.reasons.push(reason)
    return e
  }

  if (refusesMethod(method, snapshot.limits.allowTrace)) {
    e.allow = ROUTABLE_METHODS
    return answer('method_not_allowed', 405, `${method} is never routed (405)`)
  }
  const normalized = normalizePath(rawPath, snapshot.limits.escapedSlashes === 'keep')
  if (!normalized.ok) return answer('bad_request', 400, `the path is refused: ${normalized.reason}`)
  const path = normalized.path
  e.normalized_path = path
  if (path !== rawPath) e.reasons.push(`the path is normalized to ${path} before routing`)

  const d = resolve(plan, method, path, headers, plan.routes && tracer(e, plan.routes.routes))
  if (d.kind === 'no_route') return answer('no_route', 404, 'no route matches this path (404)')
  if (d.kind === 'method_not_allowed') {
    e.allow = d.allow
    return answer('method_not_allowed', 405, `no route matching this path allows ${method} (405)`)
  }
  e.upstream = upstreamOf(plan, d)!
  const route = d.kind === 'load_balancer' ? undefined : d.route
  if (route === undefined) e.reasons.push(`load_balancer mode: every request goes to ${e.upstream}`)
  else {
    e.route = route.name
    e.reasons.push(`route ${route.name} takes it`)
  }
  const split = route !== undefined ? route.split : (snapshot.mode as { split?: SplitSpec }).split
  if (split !== undefined) {
    const shares = split.groups.map((g, i) => `${g} ${split.weights[i]}`).join(', ')
    e.reasons.push(
      `a weighted split (${shares}) picks the group per request; the first, ${e.upstream}, is shown`,
    )
  }

  const steps = middlewarePlan(plan, d, path, headers)
  e.middlewares = steps.map((s) => ({ name: s.name, type: s.type, action: s.action, note: s.note }))
  const stop = steps.find((s) => s.action === 'answers' || s.action === 'refuses')
  if (d.kind === 'preflight') answer('preflight', 204, `a CORS preflight: ${stop!.name} answers it (204)`)
  else if (stop !== undefined)
    answer('unauthorized', stop.status!, `${stop.name} refuses it (${stop.status})`)
  else {
    const target = withNormalizedPath(url, rawPath, path)
    // As the pipeline does: strip_prefix on the normalized path, the query kept as sent.
    e.upstream_path = route?.stripPrefix ? stripPrefix(route.regex, target) : target
  }

  const spec = snapshot.upstreams.get(e.upstream)!
  e.strategy = spec.strategy
  const live = groups?.get(spec.name)
  const now = Date.now()
  // The live group's peers include the addresses dns: and srv: servers resolved to.
  e.servers = live
    ? live.peers.map((p) => ({ address: p.address, in_rotation: p.available(now) }))
    : spec.peers.map((p) => ({ address: p.address, in_rotation: null }))
  if (e.outcome === 'forward') {
    if (live && live.availableCount(now) === 0) {
      return answer('no_available_server', 503, `no server of ${e.upstream} is in rotation (503)`)
    }
    e.reasons.push(`forwarded to ${e.upstream}; the server sees ${e.upstream_path}`)
  }
  return e
}

/** Records resolve()'s walks over the route table as `tried` entries and reasons. */
function tracer(e: Explanation, routes: readonly Route[]): ResolveTrace {
  let method = ''
  let from = 0
  const results: Record<RouteTry, (r: Route) => string> = {
    matched: () => 'matched',
    no_match: () => 'pattern does not match the path',
    method_not_in_methods: (r) =>
      `pattern matches, but ${method} is not in its methods (${[...r.methods!].join(', ')})`,
  }
  return {
    pass(m, why) {
      method = m
      from = e.tried.length
      e.walks.push({ method: m, why: why ?? null })
      if (why !== undefined) e.reasons.push(why)
    },
    route(r, result) {
      e.tried.push({ route: r.name, pattern: r.pattern, method, result: results[result](r) })
      if (result !== 'matched') return
      // A walk stops at the route that matched: the rest are not tried.
      const notTried = `not tried: ${r.name} matched first (its pattern is longer or earlier in the file)`
      for (const rest of routes.slice(e.tried.length - from))
        e.tried.push({ route: rest.name, pattern: rest.pattern, method, result: notTried })
    },
  }
}

export function renderExplanation(e: Explanation): string {
  const out: string[] = [`${e.method} ${e.path}   (mode ${e.mode})`]
  if (e.normalized_path !== null && e.normalized_path !== e.path)
    out.push(`  normalized path: ${e.normalized_path}`)
  // Every walk lists each route once (those after a match as "not tried").
  const per = e.walks.length === 0 ? 0 : e.tried.length / e.walks.length
  const w = Math.max(0, ...e.tried.map((t) => t.route.length))
  const pw = Math.max(0, ...e.tried.map((t) => t.pattern.length))
  e.walks.forEach((walk, i) => {
    if (walk.why !== null) out.push(`  ${walk.why}:`)
    out.push(
      walk.why === null
        ? '  routes, longest pattern first:'
        : `  routes for ${walk.method}, longest pattern first:`,
    )
    for (const t of e.tried.slice(i * per, (i + 1) * per))
      out.push(`    ${t.route.padEnd(w)}  ${t.pattern.padEnd(pw)}  ${t.result}`)
  })
  if (e.outcome === 'bad_request') return [...out, `  => 400: ${e.reasons.at(-1)}`].join('\n')
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
  else if (e.outcome === 'unauthorized') {
    out.push(`  => ${e.status}: refused by ${e.middlewares.find((m) => m.action === 'refuses')?.name}`)
  } else if (e.outcome === 'no_available_server') out.push('  => 503: no server of the group is in rotation')
  else out.push(`  => forwarded; the server sees: ${e.upstream_path}`)
  return out.join('\n')
}
