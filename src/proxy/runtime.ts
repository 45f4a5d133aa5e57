// What the proxy runs on: a Plan (the config's snapshot plus what the folders that own them built
// from it: route table, validated middleware settings) and the live objects made for it (upstream
// groups, middleware chains). compilePlan() is the one path from a config file to a Plan, used by
// start, `validate`, reload and control-API changes. The store holds the one mutable reference:
// a request calls current() once at entry and keeps what it got, to the end.

import { type CompileResult, compile, type Overrides } from '../config/compile'
import { readConfigFile, type SourceDocument } from '../config/load'
import type { OriginPolicy, Snapshot } from '../config/snapshot'
import type { Chain } from '../middleware/registry'
import type { MiddlewareConfig } from '../middleware/schema'
import {
  checkGrpcWebUpstreams,
  checkMiddlewares,
  corsOrigins,
  protectedHeaders,
} from '../middleware/validate'
import { checkRoutePatterns, RouteTable } from '../routing/route-table'
import type { UpstreamGroup } from '../upstream/group'

export interface Plan {
  readonly snapshot: Snapshot
  /** Every valid middleware declaration, by name, with its type's settings. */
  readonly middlewares: ReadonlyMap<string, MiddlewareConfig>
  /** api_gateway mode: the compiled route table. */
  readonly routes: RouteTable | undefined
  /** load_balancer mode: origins that may open a WebSocket (see OriginPolicy). */
  readonly lbOrigins: OriginPolicy
  /**
   * Header names (lower case, `_` as `-`) that the proxy alone may send upstream: every
   * `forward_claims` header of every authentication middleware. Removed from every request.
   */
  readonly protectedHeaders: ReadonlySet<string>
}

export type PlanResult = { ok: true; plan: Plan } | Extract<CompileResult, { ok: false }>

/** Validates `source` (with the checks routing and middleware own) and builds its Plan. */
export function compilePlan(source: SourceDocument, overrides: Overrides = {}): PlanResult {
  const middlewares = new Map<string, MiddlewareConfig>()
  const r = compile(source, overrides, [
    checkMiddlewares(middlewares),
    checkGrpcWebUpstreams(middlewares),
    checkRoutePatterns,
  ])
  if (!r.ok) return r
  const { snapshot } = r
  const mode = snapshot.mode
  const plan: Plan = {
    snapshot,
    middlewares,
    routes:
      mode.kind === 'api_gateway'
        ? new RouteTable(mode.routes, (chain) => corsOrigins(middlewares, chain))
        : undefined,
    lbOrigins:
      mode.kind === 'load_balancer'
        ? (mode.websocketOrigins ?? corsOrigins(middlewares, mode.middlewares))
        : undefined,
    protectedHeaders: withDebugHeader(protectedHeaders(middlewares), snapshot),
  }
  return { ok: true, plan: Object.freeze(plan) }
}

/** The debug header never goes upstream, whether or not it carried the secret. */
function withDebugHeader(names: Set<string>, snapshot: Snapshot): Set<string> {
  if (snapshot.debugHeader !== undefined) names.add(snapshot.debugHeader.name.replaceAll('_', '-'))
  return names
}

/** Reads `file` (with `${VAR}` from `env`) and compiles it. */
export function loadPlan(file: string, overrides: Overrides = {}, env = process.env): PlanResult {
  return compilePlan(readConfigFile(file, env), overrides)
}

export interface Runtime extends Plan {
  readonly groups: ReadonlyMap<string, UpstreamGroup>
  /** Middleware chains by route name (LB_CHAIN in load_balancer mode); absent: none. */
  readonly chains: ReadonlyMap<string, Chain>
}

export class RuntimeStore {
  #current: Runtime

  constructor(initial: Runtime) {
    this.#current = initial
  }

  current(): Runtime {
    return this.#current
  }

  swap(next: Runtime): Runtime {
    const prev = this.#current
    this.#current = next
    return prev
  }
}
