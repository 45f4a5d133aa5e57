// Route resolution: which route a request gets (or 404, or 405 with Allow), and whether the proxy
// answers it itself as a CORS preflight. The pipeline's #route phase calls resolve() for every
// request; `explain` (explain.ts) calls the same function with a trace, and middlewarePlan() to
// say what each middleware will do. So explain cannot disagree with the proxy: a routing rule is
// added here, once, for both.

import type { Snapshot } from '../config/snapshot'
import { bearerToken, pathExclusion } from '../middleware/auth/index'
import { basicToken } from '../middleware/basic-auth/index'
import { answersPreflights, isPreflight } from '../middleware/cors/index'
import type { MiddlewareConfig } from '../middleware/schema'
import { rawHeader } from '../middleware/types'
import type { Route, RouteMatch, RouteTable, RouteTrace } from './route-table'

/** What resolution reads: the compiled config (a Plan, proxy/runtime.ts; a Runtime is one). */
export interface RoutingPlan {
  readonly snapshot: Snapshot
  /** api_gateway mode: the route table; undefined in load_balancer mode. */
  readonly routes: RouteTable | undefined
  readonly middlewares: ReadonlyMap<string, MiddlewareConfig>
}

/**
 * The routing decision. `route`: the route's whole middleware chain runs, then its upstream
 * group. `load_balancer`: the load_balancer middlewares run, then its upstream group.
 * `preflight`: a CORS preflight that the chain's cors middlewares answer (204); no other
 * middleware and no upstream sees it (`route` is undefined in load_balancer mode).
 * `no_route` (404) and `method_not_allowed` (405 + Allow) are answered by the proxy.
 */
export type Resolution =
  | RouteMatch
  | { readonly kind: 'load_balancer' }
  | { readonly kind: 'preflight'; readonly route: Route | undefined }

/** Told how resolve() walks the route table; only `explain` passes one. */
export interface ResolveTrace {
  /** A walk over the table begins, for `method`; `why` says why, unless it is the request's own. */
  pass(method: string, why: string | undefined): void
  /** Each route the walk tries, in order (RouteTable.match). */
  readonly route: RouteTrace
}

const LOAD_BALANCER: Resolution = Object.freeze({ kind: 'load_balancer' })
const LB_PREFLIGHT: Resolution = Object.freeze({ kind: 'preflight', route: undefined })

/** The Allow header of the 405 for a method that refusesMethod() refuses. */
export const ROUTABLE_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/**
 * Methods the proxy refuses (405, Allow: ROUTABLE_METHODS) before it looks at the path. CONNECT
 * asks for a tunnel (forward proxying), which a reverse proxy does not offer. TRACE echoes the
 * request back, cookies and credentials included (cross-site tracing), unless server.allow_trace.
 */
export function refusesMethod(method: string, allowTrace: boolean): boolean {
  return method === 'CONNECT' || (method === 'TRACE' && !allowTrace)
}

/**
 * Resolves a request: `method` as received (upper case), `path` normalized (normalize-path.ts)
 * without the query string, the client's raw headers. A CORS preflight (cors/index.ts
 * isPreflight) is routed by the method it asks about when the route it lands on has a cors
 * middleware; otherwise it is routed again as the OPTIONS request it is, and answered 204 only if
 * that route has a cors middleware. Allocates nothing except for a 405 or a preflight.
 */
export function resolve(
  plan: RoutingPlan,
  method: string,
  path: string,
  rawHeaders: readonly string[],
  trace?: ResolveTrace,
): Resolution {
  const table = plan.routes
  const preflight = isPreflight(method, rawHeaders)
  if (table === undefined) {
    return preflight && chainAnswersPreflights(lbMiddlewares(plan), plan) ? LB_PREFLIGHT : LOAD_BALANCER
  }
  if (!preflight) {
    if (trace !== undefined) trace.pass(method, undefined)
    return table.match(method, path, trace?.route)
  }
  const asked = rawHeader(rawHeaders, 'access-control-request-method')!.toUpperCase()
  if (trace !== undefined) trace.pass(asked, 'a CORS preflight is routed by the method it asks about')
  const m = table.match(asked, path, trace?.route)
  if (m.kind === 'route' && chainAnswersPreflights(m.route.middlewares, plan)) {
    return { kind: 'preflight', route: m.route }
  }
  if (trace !== undefined) {
    trace.pass(
      method,
      m.kind === 'route'
        ? `route ${m.route.name} has no cors middleware to answer the preflight, so it is routed as the OPTIONS request it is`
        : `no route takes ${asked} on this path, so the preflight is routed as the OPTIONS request it is`,
    )
  }
  const o = table.match(method, path, trace?.route)
  if (o.kind === 'route' && chainAnswersPreflights(o.route.middlewares, plan)) {
    return { kind: 'preflight', route: o.route }
  }
  return o
}

function chainAnswersPreflights(names: readonly string[], plan: RoutingPlan): boolean {
  for (const name of names) if (answersPreflights(plan.middlewares.get(name)!)) return true
  return false
}

function lbMiddlewares(plan: RoutingPlan): readonly string[] {
  const mode = plan.snapshot.mode
  return mode.kind === 'load_balancer' ? mode.middlewares : []
}

/** The route a resolution takes: undefined in load_balancer mode, null for a 404 or 405. */
function routeOf(d: Resolution): Route | undefined | null {
  switch (d.kind) {
    case 'no_route':
    case 'method_not_allowed':
      return null
    case 'load_balancer':
      return undefined
    case 'route':
    case 'preflight':
      return d.route
  }
}

/** The middlewares a resolution runs, by name, in order (none for a 404 or 405). */
export function middlewaresOf(plan: RoutingPlan, d: Resolution): readonly string[] {
  const route = routeOf(d)
  return route === null ? [] : route === undefined ? lbMiddlewares(plan) : route.middlewares
}

/** The upstream group a resolution sends to (undefined for a 404 or 405). */
export function upstreamOf(plan: RoutingPlan, d: Resolution): string | undefined {
  const route = routeOf(d)
  if (route === null) return undefined
  if (route !== undefined) return route.upstream
  const mode = plan.snapshot.mode
  return mode.kind === 'load_balancer' ? mode.upstream : undefined
}

/** What one middleware will do with the request, as far as can be known without running it. */
export interface Step {
  readonly name: string
  readonly type: MiddlewareConfig['kind']
  /**
   * `runs`: sees the request and may still answer it (a rate limit, a token that fails to
   * verify); `answers`: answers it (the 204 of a preflight); `refuses`: refuses it for certain
   * (401 without a bearer token); `skipped`: lets it pass untouched; `not_reached`: an earlier
   * middleware answers first.
   */
  readonly action: 'runs' | 'answers' | 'refuses' | 'skipped' | 'not_reached'
  /** The status of `answers` and `refuses`. */
  readonly status: number | null
  readonly note: string
}

/**
 * The middleware chain of a resolution, step by step, decided with the predicates the
 * middlewares themselves use (answersPreflights, pathExclusion, bearerToken). For `explain`; the
 * proxy runs the chain instead.
 */
export function middlewarePlan(
  plan: RoutingPlan,
  d: Resolution,
  path: string,
  rawHeaders: readonly string[],
): Step[] {
  const steps: Step[] = []
  let answered: string | undefined
  for (const name of middlewaresOf(plan, d)) {
    const cfg = plan.middlewares.get(name)!
    const step = (action: Step['action'], status: number | null, note: string) =>
      steps.push({ name, type: cfg.kind, action, status, note })
    if (answered !== undefined) {
      if (d.kind === 'preflight' && !answersPreflights(cfg)) step('skipped', null, 'does not see preflights')
      else step('not_reached', null, `not reached: ${answered} answers first`)
      continue
    }
    if (d.kind === 'preflight') {
      if (answersPreflights(cfg)) {
        step('answers', 204, 'answers this preflight itself (204); nothing is forwarded')
        answered = name
      } else step('skipped', null, 'does not see preflights')
      continue
    }
    switch (cfg.kind) {
      case 'authentication': {
        if (pathExclusion(cfg.excluded_paths)(path)) {
          step('skipped', null, 'skipped: the path is in excluded_paths')
          break
        }
        const header = rawHeader(rawHeaders, 'authorization')
        if (bearerToken(header) !== undefined) {
          step('runs', null, 'verifies the bearer token')
          break
        }
        step(
          'refuses',
          401,
          header === undefined
            ? 'refuses this request (401): no Authorization: Bearer token'
            : 'refuses this request (401): the Authorization header is not a well-formed Bearer token',
        )
        answered = name
        break
      }
      case 'rate_limiting':
        step(
          'runs',
          null,
          `${cfg.burst_size} at once, ${cfg.requests_per_minute}/min per ${cfg.key_header ? `${cfg.key_header} (else client IP)` : 'client IP'} (${cfg.store})`,
        )
        break
      case 'cors':
        step('runs', null, 'adds CORS headers to the response for an allowed Origin')
        break
      case 'basic_auth':
        if (basicToken(rawHeader(rawHeaders, 'authorization')) !== undefined) {
          step('runs', null, 'checks the user name and password')
          break
        }
        step('refuses', 401, 'refuses this request (401): no Authorization: Basic credentials')
        answered = name
        break
      case 'api_key':
        if (rawHeader(rawHeaders, cfg.header.toLowerCase()) !== undefined || cfg.query_param !== undefined) {
          step(
            'runs',
            null,
            `checks the API key in ${cfg.header}${cfg.query_param ? ` or ?${cfg.query_param}` : ''}`,
          )
          break
        }
        step('refuses', 401, `refuses this request (401): no ${cfg.header} header`)
        answered = name
        break
      case 'forward_auth':
        step('runs', null, `asks ${cfg.address}; passes on a 2xx answer`)
        break
      case 'cache':
        step(
          'runs',
          null,
          'GET and HEAD: a fresh stored response answers once the chain passes the request; otherwise the answer may be stored',
        )
        break
    }
  }
  return steps
}
