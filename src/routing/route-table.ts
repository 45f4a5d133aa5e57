// The compiled `api_gateway.routes`: patterns compiled once at load, ordered longest pattern first
// (ties keep file order). `match` is the only thing route resolution (resolve.ts) calls.

import type { OriginPolicy, RetryCondition } from '../config/snapshot'
import { compilePattern } from './pattern'

export interface Route {
  readonly name: string
  readonly pattern: string
  readonly regex: RegExp
  /** Upper-case method names; null means every method. */
  readonly methods: ReadonlySet<string> | null
  readonly upstream: string
  readonly stripPrefix: boolean
  /** Upstream timeout for this route; undefined falls back to server.upstream_timeout_secs. */
  readonly timeoutMs: number | undefined
  readonly middlewares: readonly string[]
  /** Overrides of the upstream group's retry policy (either part may be absent). */
  readonly retries: number | undefined
  readonly retryOn: ReadonlySet<RetryCondition> | undefined
  /** Largest request body for this route; undefined falls back to server.max_body_bytes. */
  readonly maxBodyBytes: number | undefined
  /** Origins that may open a WebSocket on this route. */
  readonly websocketOrigins: OriginPolicy
}

export interface RouteInput {
  name: string
  path_pattern: string
  methods?: string[] | undefined
  upstream: string
  strip_prefix: boolean
  timeout_secs?: number | undefined
  middlewares: string[]
  retries?: number | undefined
  retry_on?: RetryCondition[] | undefined
  max_body_bytes?: number | undefined
  websocketOrigins?: OriginPolicy
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

  /** Patterns must already be valid (schema.ts checks them); an invalid one throws here. */
  constructor(inputs: readonly RouteInput[]) {
    const compiled = inputs.map((r, index) => {
      const regex = compilePattern(r.path_pattern)
      if (typeof regex === 'string') throw new Error(`route ${r.name}: ${regex}`)
      const route: Route = {
        name: r.name,
        pattern: r.path_pattern,
        regex,
        methods: r.methods ? new Set(r.methods.map((m) => m.toUpperCase())) : null,
        upstream: r.upstream,
        stripPrefix: r.strip_prefix,
        timeoutMs: r.timeout_secs !== undefined ? r.timeout_secs * 1000 : undefined,
        middlewares: r.middlewares,
        retries: r.retries,
        retryOn: r.retry_on ? new Set(r.retry_on) : undefined,
        maxBodyBytes: r.max_body_bytes,
        websocketOrigins: r.websocketOrigins,
      }
      return { route, index }
    })
    // Array.prototype.sort is stable, so equal lengths keep the order written in the file.
    compiled.sort((a, b) => b.route.pattern.length - a.route.pattern.length)
    this.routes = compiled.map((c) => c.route)
    this.#hits = this.routes.map((route) => Object.freeze({ kind: 'route', route }))
  }

  /**
   * The first route, longest pattern first, whose pattern matches `path` (normalized, without
   * the query string) and whose methods include `method` (upper case); else 405 with every
   * method of the routes whose pattern matched, else 404.
   */
  match(method: string, path: string, trace?: RouteTrace): RouteMatch {
    let allow: Set<string> | null = null
    const routes = this.routes
    for (let i = 0; i < routes.length; i++) {
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
