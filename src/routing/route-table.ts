// The compiled `api_gateway.routes`: patterns compiled once at load, ordered longest pattern first
// (ties keep file order). `match` is the only thing route resolution (resolve.ts) calls.

import type { ConfigCheck } from '../config/compile'
import { compilePattern } from '../config/pattern'
import type { OriginPolicy, RouteSpec } from '../config/snapshot'
import { literalPrefix, PrefixIndex } from './prefix-index'

export interface Route extends RouteSpec {
  readonly regex: RegExp
  /** Origins that may open a WebSocket on this route: its own list, else its cors middlewares'. */
  readonly websocketOrigins: OriginPolicy
}

export type RouteMatch =
  | { readonly kind: 'route'; readonly route: Route }
  /** Some route's pattern matched the path, but none allowed the method. */
  | { readonly kind: 'method_not_allowed'; readonly allow: string }
  | { readonly kind: 'no_route' }

const NO_ROUTE: RouteMatch = Object.freeze({ kind: 'no_route' })

/** Why one route did or did not take a request, for `explain`. */
export type RouteTry = 'matched' | 'no_match' | 'method_not_in_methods'

/** Told about each route `match` tries, in order; it tries none after the one that matched. */
export type RouteTrace = (route: Route, result: RouteTry) => void

export class RouteTable {
  readonly routes: readonly Route[]
  /** One frozen match per route (same index): matching allocates nothing. */
  readonly #hits: readonly RouteMatch[]
  /** The routes a path may match by their patterns' literal prefixes (prefix-index.ts). */
  readonly #index: PrefixIndex

  /**
   * `specs` in the order they are tried (config/compile.ts orders them); patterns must already be
   * valid (checkRoutePatterns ran at compile), an invalid one throws here. `origins` gives a
   * route without websocket_origins of its own the origins its middlewares allow.
   */
  constructor(specs: readonly RouteSpec[], origins: (middlewares: readonly string[]) => OriginPolicy) {
    this.routes = specs.map((r) => {
      const regex = compilePattern(r.pattern)
      if (typeof regex === 'string') throw new Error(`route ${r.name}: ${regex}`)
      return { ...r, regex, websocketOrigins: r.websocketOrigins ?? origins(r.middlewares) }
    })
    this.#hits = this.routes.map((route) => Object.freeze({ kind: 'route', route }))
    this.#index = new PrefixIndex(this.routes.map((r) => literalPrefix(r.regex)))
  }

  /**
   * The first route, longest pattern first, whose pattern matches `path` (normalized, without
   * the query string) and whose methods include `method` (upper case); else 405 with every
   * method of the routes whose pattern matched, else 404. Only the routes whose literal prefix
   * the path starts with are tested (a route it does not start with cannot match), unless
   * `trace` wants to hear about every route.
   */
  match(method: string, path: string, trace?: RouteTrace): RouteMatch {
    let allow: Set<string> | null = null
    const routes = this.routes
    const tried = trace === undefined ? this.#index.candidates(path) : undefined
    const n = tried === undefined ? routes.length : tried.length
    for (let k = 0; k < n; k++) {
      const i = tried === undefined ? k : tried[k]!
      const route = routes[i]!
      if (!route.regex.test(path)) {
        if (trace !== undefined) trace(route, 'no_match')
        continue
      }
      if (route.methods === null || route.methods.has(method)) {
        if (trace !== undefined) trace(route, 'matched')
        return this.#hits[i]!
      }
      if (trace !== undefined) trace(route, 'method_not_in_methods')
      allow ??= new Set()
      for (const m of route.methods) allow.add(m)
    }
    if (allow === null) return NO_ROUTE
    return { kind: 'method_not_allowed', allow: [...allow].join(', ') }
  }
}

/**
 * strip_prefix: removes the part of the path the route's pattern matched; the query string is
 * kept, an empty result becomes `/`, and the result always starts with `/`.
 */
export function stripPrefix(regex: RegExp, url: string): string {
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  const query = q < 0 ? '' : url.slice(q)
  const m = regex.exec(path)
  let rest = m ? path.slice(0, m.index) + path.slice(m.index + m[0].length) : path
  if (rest === '') rest = '/'
  else if (rest[0] !== '/') rest = `/${rest}`
  return rest + query
}

/** Every route's path_pattern compiles (and passes the ReDoS check); reported where it is written. */
export const checkRoutePatterns: ConfigCheck = (data, at) => {
  const gw = data.api_gateway
  const routes = gw !== null && typeof gw === 'object' ? (gw as Record<string, unknown>).routes : undefined
  if (routes === null || typeof routes !== 'object') return
  for (const [name, route] of Object.entries(routes)) {
    const p =
      route !== null && typeof route === 'object'
        ? (route as Record<string, unknown>).path_pattern
        : undefined
    if (typeof p !== 'string' || p === '') continue
    const re = compilePattern(p)
    if (typeof re === 'string') at(['api_gateway', 'routes', name, 'path_pattern'], re)
  }
}
