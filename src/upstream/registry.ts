// Builds the run-time upstream groups for a snapshot and owns their live state across snapshots:
// a server that survives a config change keeps its Peer (pool, health); removed servers' pools
// are closed after their in-flight requests; health checkers follow the groups they watch. A
// group whose retry budget or circuit breaker settings did not change keeps that state too.

import type { CircuitBreakerSpec, Snapshot } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import type { UpstreamMetrics } from '../observe/metrics'
import { type BreakerLink, FollowerBreaker } from './breaker-follower'
import { type Breaker, type BreakerState, CircuitBreaker, type OutcomeBatch } from './circuit-breaker'
import { defaultUpstreamClient, type UpstreamClientKind } from './client'
import { UpstreamGroup } from './group'
import { HealthChecker } from './health/checker'
import { Peer, peerKey } from './peer'
import { RetryBudget } from './retry-budget'

/** A transition of the primary's breaker `key` (group name and settings), for the workers. */
export interface BreakerEvent {
  group: string
  key: string
  state: BreakerState
  openedAt: number
}

export class UpstreamRegistry {
  readonly #log: Logger
  readonly #onHealth: ((group: string, peer: Peer, healthy: boolean) => void) | undefined
  readonly #healthChecks: boolean
  readonly #client: UpstreamClientKind
  readonly #metrics: UpstreamMetrics | undefined
  #peers = new Map<string, Peer>()
  #checkers = new Map<string, HealthChecker>()
  #groups = new Map<string, UpstreamGroup>()
  #budgets = new Map<string, RetryBudget>()
  /** By group name and settings: an open breaker stays open across a reload that keeps both. */
  #breakers = new Map<string, Breaker>()
  readonly #breakerLink: ((group: string, key: string) => BreakerLink) | undefined
  readonly #onBreaker: ((e: BreakerEvent) => void) | undefined

  /**
   * `onHealth` hears every health transition (the primary passes them to workers);
   * `healthChecks: false` leaves checking to someone else (a worker, told by the primary);
   * `metrics` hears attempts, retries, ejections and health checks per server.
   * Circuit breakers: with `breakerLink` (a worker) the primary holds them and this registry's
   * are followers; `onBreaker` (the primary) hears every transition of its own.
   * `client`: the peers' pools (upstream/client.ts; default: the built-in one when it can run).
   */
  constructor(
    log: Logger,
    onHealth?: (group: string, peer: Peer, healthy: boolean) => void,
    opts: {
      healthChecks?: boolean
      client?: UpstreamClientKind
      metrics?: UpstreamMetrics
      breakerLink?: (group: string, key: string) => BreakerLink
      onBreaker?: (e: BreakerEvent) => void
    } = {},
  ) {
    this.#breakerLink = opts.breakerLink
    this.#onBreaker = opts.onBreaker
    this.#log = log
    this.#onHealth = onHealth
    this.#healthChecks = opts.healthChecks ?? true
    this.#client = opts.client ?? defaultUpstreamClient()
    this.#metrics = opts.metrics
  }

  groups(): Iterable<UpstreamGroup> {
    return this.#groups.values()
  }

  /** A health verdict from elsewhere (the primary's checkers). */
  setHealth(group: string, address: string, healthy: boolean): void {
    const peer = this.#groups.get(group)?.peers.find((p) => p.address === address)
    if (peer) peer.healthy = healthy
  }

  #newBreaker(group: string, key: string, spec: CircuitBreakerSpec): Breaker {
    if (this.#breakerLink) return new FollowerBreaker(spec, this.#breakerLink(group, key))
    const on = this.#onBreaker
    const b: CircuitBreaker = new CircuitBreaker(spec, group, {
      log: this.#log,
      ...(on ? { onChange: (state: BreakerState) => on({ group, key, state, openedAt: b.openedAt }) } : {}),
    })
    return b
  }

  /** The primary: a worker's outcomes for the breaker `key`. */
  applyOutcomes(key: string, batch: OutcomeBatch): void {
    const b = this.#breakers.get(key)
    if (b instanceof CircuitBreaker) b.apply(batch)
  }

  /** The primary: whether a worker may send a probe through the half-open breaker `key`. */
  grantProbe(key: string): boolean {
    const b = this.#breakers.get(key)
    return b instanceof CircuitBreaker && b.admit()
  }

  /** A worker: the primary's breaker `key` changed state. */
  setBreaker(e: BreakerEvent): void {
    const b = this.#breakers.get(e.key)
    if (b instanceof FollowerBreaker) b.set(e.state, e.openedAt)
  }

  /** The primary: every breaker not closed, for a worker that just started. */
  trippedBreakers(): BreakerEvent[] {
    const out: BreakerEvent[] = []
    for (const g of this.#groups.values()) {
      const b = g.breaker
      if (b && b.state !== 'closed' && g.spec.circuitBreaker) {
        out.push({
          group: g.name,
          key: breakerKey(g.name, g.spec.circuitBreaker),
          state: b.state,
          openedAt: b.openedAt,
        })
      }
    }
    return out
  }

  /** Groups for `snapshot`; call `activate` once the snapshot is live. */
  build(snapshot: Snapshot): Map<string, UpstreamGroup> {
    const groups = new Map<string, UpstreamGroup>()
    for (const spec of snapshot.upstreams.values()) {
      const t = spec.tlsOptions
      const tls = {
        enabled: spec.tls,
        servername: spec.sni,
        ca: t?.ca,
        cert: t?.cert,
        key: t?.key,
        skipVerify: t?.skipVerify ?? false,
        fingerprint: t?.fingerprint,
      }
      const peers = spec.peers.map((p) => {
        const key = peerKey(spec.name, p, tls, snapshot.pool, spec)
        return this.#peers.get(key) ?? new Peer(spec.name, p, tls, snapshot.pool, this.#client, spec)
      })
      const b = spec.retryBudget
      const budgetKey = `${spec.name}|${b.percent}|${b.minPerSec}`
      let budget = this.#budgets.get(budgetKey)
      if (!budget) {
        const metrics = this.#metrics
        const name = spec.name
        budget = new RetryBudget(b.percent, b.minPerSec, metrics && (() => metrics.retry(name)))
        this.#budgets.set(budgetKey, budget)
      }
      const cb = spec.circuitBreaker
      let breaker: Breaker | undefined
      if (cb) {
        const key = breakerKey(spec.name, cb)
        breaker = this.#breakers.get(key)
        if (!breaker) {
          breaker = this.#newBreaker(spec.name, key, cb)
          this.#breakers.set(key, breaker)
        }
      }
      groups.set(
        spec.name,
        new UpstreamGroup(
          spec,
          peers,
          budget,
          this.#log,
          this.#groups.get(spec.name)?.cursor ?? 0,
          this.#metrics,
          breaker,
        ),
      )
    }
    return groups
  }

  /** Makes `groups` the live set: starts and stops health checks, retires peers no longer used. */
  activate(snapshot: Snapshot, groups: Map<string, UpstreamGroup>): void {
    const live = new Map<string, Peer>()
    for (const g of groups.values()) for (const p of g.peers) live.set(p.key, p)
    for (const [key, peer] of this.#peers) if (!live.has(key)) void peer.close()
    this.#peers = live
    this.#groups = groups
    const breakers = new Set<Breaker>()
    for (const g of groups.values()) if (g.breaker) breakers.add(g.breaker)
    for (const [key, b] of this.#breakers) {
      if (breakers.has(b)) continue
      b.dispose()
      this.#breakers.delete(key)
    }

    const wanted = new Set(
      this.#healthChecks
        ? withFallbacks(snapshot.activeUpstreams, groups).filter((n) => groups.get(n)?.spec.healthCheck)
        : [],
    )
    for (const [name, checker] of this.#checkers) {
      const g = groups.get(name)
      if (!wanted.has(name) || !g || !sameCheck(checker, g)) {
        checker.stop()
        this.#checkers.delete(name)
      } else {
        checker.setPeers(g.peers)
      }
    }
    for (const name of wanted) {
      if (this.#checkers.has(name)) continue
      const g = groups.get(name)!
      const onChange = this.#onHealth
      const checker = new HealthChecker(g.spec.healthCheck!, g.peers, {
        log: this.#log,
        metrics: this.#metrics,
        ...(onChange ? { onChange: (peer: Peer, healthy: boolean) => onChange(name, peer, healthy) } : {}),
      })
      this.#checkers.set(name, checker)
      checker.start()
    }
  }

  stopHealthChecks(): void {
    for (const c of this.#checkers.values()) c.stop()
    this.#checkers.clear()
  }

  #disposeBreakers(): void {
    for (const b of this.#breakers.values()) b.dispose()
  }

  async close(): Promise<void> {
    this.stopHealthChecks()
    this.#disposeBreakers()
    await Promise.all([...this.#peers.values()].map((p) => p.close()))
  }

  destroy(): void {
    this.stopHealthChecks()
    this.#disposeBreakers()
    for (const p of this.#peers.values()) p.destroy()
  }
}

function breakerKey(name: string, spec: CircuitBreakerSpec): string {
  return `${name}|${JSON.stringify(spec)}`
}

/** The active groups and the fallbacks they may send requests to (checked like them). */
function withFallbacks(active: readonly string[], groups: Map<string, UpstreamGroup>): string[] {
  const out = new Set<string>()
  for (const name of active) {
    for (let n: string | undefined = name; n !== undefined && !out.has(n); ) {
      out.add(n)
      n = groups.get(n)?.spec.circuitBreaker?.fallback
    }
  }
  return [...out]
}

function sameCheck(c: HealthChecker, g: UpstreamGroup): boolean {
  return JSON.stringify(c.spec) === JSON.stringify(g.spec.healthCheck)
}
