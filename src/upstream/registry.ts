// Builds the run-time upstream groups for a snapshot and owns their live state across snapshots:
// a server that survives a config change keeps its Peer (pool, health); removed servers' pools
// are closed after their in-flight requests; health checkers follow the groups they watch. A
// group whose retry budget or circuit breaker settings did not change keeps that state too.
// A group's dns: and srv: servers are resolved by its GroupDiscovery (kept while their settings
// stay the same); each new answer replaces the group's peers in place, without a reload.

import type { CircuitBreakerSpec, PoolSpec, Snapshot, UpstreamSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import type { UpstreamMetrics } from '../observe/metrics'
import { type BreakerLink, FollowerBreaker } from './breaker-follower'
import { type Breaker, type BreakerState, CircuitBreaker, type OutcomeBatch } from './circuit-breaker'
import { defaultUpstreamClient, type UpstreamClientKind } from './client'
import { discoveryKey, GroupDiscovery } from './discovery'
import { UpstreamGroup } from './group'
import { HealthChecker } from './health/checker'
import { Peer, type PeerTls, peerKey } from './peer'
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
  /** The live groups' discoveries, by group name. */
  #discoveries = new Map<string, GroupDiscovery>()
  /** The discovery `build` chose for each group it built (started by `activate`). */
  readonly #discoveryOf = new WeakMap<UpstreamGroup, GroupDiscovery>()
  /** The pool settings of the live snapshot (for peers discovery adds between reloads). */
  #pool: PoolSpec | undefined
  /** Where the primary runs the checks: its "unhealthy" verdicts, for peers resolved later here. */
  readonly #unhealthy = new Set<string>()

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
    if (healthy) this.#unhealthy.delete(`${group}\0${address}`)
    else this.#unhealthy.add(`${group}\0${address}`)
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
      const discovery = spec.discovery && this.#discoveryFor(spec)
      const peers = this.#peersOf(spec, snapshot.pool, discovery)
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
      const group = new UpstreamGroup(
        spec,
        peers,
        budget,
        this.#log,
        this.#groups.get(spec.name)?.cursor ?? 0,
        this.#metrics,
        breaker,
      )
      if (discovery) {
        group.discovery = discovery
        this.#discoveryOf.set(group, discovery)
      }
      groups.set(spec.name, group)
    }
    return groups
  }

  /** The live discovery when its settings did not change, else a new one (seeded from the old). */
  #discoveryFor(spec: UpstreamSpec): GroupDiscovery {
    const live = this.#discoveries.get(spec.name)
    if (live && live.key === discoveryKey(spec.discovery!)) return live
    const d: GroupDiscovery = new GroupDiscovery(
      spec.name,
      spec.discovery!,
      {
        log: this.#log,
        report: this.#healthChecks,
        metrics: this.#metrics,
        onChange: () => this.#rediscovered(spec.name, d),
      },
      live,
    )
    return d
  }

  /** The written host:port servers, then what dns: and srv: servers resolve to (each address once). */
  #peersOf(spec: UpstreamSpec, pool: PoolSpec, discovery: GroupDiscovery | undefined): Peer[] {
    const t = spec.tlsOptions
    const tls: PeerTls = {
      enabled: spec.tls,
      servername: spec.sni,
      ca: t?.ca,
      cert: t?.cert,
      key: t?.key,
      skipVerify: t?.skipVerify ?? false,
      fingerprint: t?.fingerprint,
    }
    const peers = spec.peers.map((p) => {
      const key = peerKey(spec.name, p, tls, pool, spec)
      return this.#peers.get(key) ?? new Peer(spec.name, p, tls, pool, this.#client, spec)
    })
    if (!discovery) return peers
    const seen = new Set(peers.map((p) => p.address))
    for (const p of discovery.peers()) {
      if (seen.has(p.address)) continue
      seen.add(p.address)
      // TLS to a resolved address verifies the name it was found by (unless the group sets sni).
      const ptls = spec.tls && !spec.sni ? { ...tls, servername: p.name } : tls
      const key = peerKey(spec.name, p, ptls, pool, spec)
      let peer = this.#peers.get(key)
      if (!peer) {
        peer = new Peer(spec.name, p, ptls, pool, this.#client, spec)
        if (this.#unhealthy.has(`${spec.name}\0${p.address}`)) peer.healthy = false
      }
      peers.push(peer)
    }
    return peers
  }

  /** A live discovery's answer changed: the group's peers are replaced in place. */
  #rediscovered(name: string, d: GroupDiscovery): void {
    const g = this.#groups.get(name)
    if (this.#discoveries.get(name) !== d || !g || !this.#pool) return
    g.setPeers(this.#peersOf(g.spec, this.#pool, d))
    this.#retire(this.#groups)
    this.#checkers.get(name)?.setPeers(g.peers)
  }

  /** Keeps the peers `groups` use; the others' pools close once their requests in flight end. */
  #retire(groups: Map<string, UpstreamGroup>): void {
    const live = new Map<string, Peer>()
    for (const g of groups.values()) for (const p of g.peers) live.set(p.key, p)
    for (const [key, peer] of this.#peers) if (!live.has(key)) void peer.close()
    this.#peers = live
  }

  /** Resolves when every group's dns: and srv: servers have had their first answer (or failure). */
  discovered(): Promise<void> {
    return Promise.all([...this.#discoveries.values()].map((d) => d.start())).then(() => undefined)
  }

  /** Makes `groups` the live set: starts and stops health checks, retires peers no longer used. */
  activate(snapshot: Snapshot, groups: Map<string, UpstreamGroup>): void {
    this.#pool = snapshot.pool
    const discoveries = new Map<string, GroupDiscovery>()
    for (const g of groups.values()) {
      const d = this.#discoveryOf.get(g)
      if (!d) continue
      discoveries.set(g.name, d)
      // An answer may have come to the live discovery since `build`.
      if (this.#discoveries.get(g.name) === d) g.setPeers(this.#peersOf(g.spec, snapshot.pool, d))
    }
    for (const [name, d] of this.#discoveries) if (discoveries.get(name) !== d) d.stop()
    this.#discoveries = discoveries
    this.#retire(groups)
    this.#groups = groups
    for (const d of discoveries.values()) void d.start()
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
    for (const d of this.#discoveries.values()) d.stop()
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
