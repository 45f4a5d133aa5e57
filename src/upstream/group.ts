// An upstream group at run time: its peers, the selector its `strategy` names, its passive
// health, retry budget and circuit breaker. `candidates()` yields available peers in preference order; the
// exchange tries them in turn when the retry policy allows (Pingora's select-with-fallbacks).

import type { RetryPolicy, UpstreamSpec } from '../config/snapshot'
import { setCookieValue, stickyToken } from '../config/sticky'
import type { Logger } from '../observe/logger'
import type { UpstreamMetrics } from '../observe/metrics'
import type { Breaker } from './circuit-breaker'
import type { DiscoveryView } from './discovery'
import { PassiveHealth } from './passive-health'
import type { Peer } from './peer'
import type { RetryBudget } from './retry-budget'
import { createSelector, fallbacks, type SelectContext, type Selector } from './selectors/index'
import { RoundRobin } from './selectors/round-robin'
import { stickyCookie } from './sticky'

export class UpstreamGroup {
  readonly name: string
  readonly spec: UpstreamSpec
  #peers: readonly Peer[]
  /** The Host header sent upstream instead of the client's (from `sni`), if any. */
  readonly hostOverride: string | undefined
  readonly tls: boolean
  readonly retry: RetryPolicy
  readonly budget: RetryBudget
  /** Per-server metrics (attempts); undefined where nobody collects them (tests). */
  readonly metrics: UpstreamMetrics | undefined
  /** Undefined without `circuit_breaker`; kept across reloads by the registry. */
  readonly breaker: Breaker | undefined
  /** dns: and srv: servers: what they resolve to now (upstream/discovery.ts); undefined without. */
  discovery: { view(): DiscoveryView[] } | undefined
  /** One selector per rank (SRV priority), lowest first; one for every group without srv: servers. */
  #tiers: Selector[]
  readonly #passive: PassiveHealth | undefined
  /** `sticky`: each peer's token to its index, and each peer's Set-Cookie value. */
  #sticky: StickyPeers | undefined

  constructor(
    spec: UpstreamSpec,
    peers: readonly Peer[],
    budget: RetryBudget,
    log: Logger,
    cursor = 0,
    metrics?: UpstreamMetrics,
    breaker?: Breaker,
  ) {
    this.breaker = breaker
    this.name = spec.name
    this.spec = spec
    this.#peers = peers
    this.tls = spec.tls
    this.hostOverride = spec.sni
    this.retry = spec.retry
    this.budget = budget
    this.metrics = metrics
    this.#tiers = tiers(spec, peers, cursor)
    this.#passive = spec.passiveHealth && new PassiveHealth(spec.passiveHealth, spec.name, log, metrics)
    this.#sticky = stickyPeers(spec, peers)
  }

  get peers(): readonly Peer[] {
    return this.#peers
  }

  /**
   * A new peer set without a reload (dns: and srv: servers re-resolved). Requests in flight keep
   * the Peer they picked; the next request picks from `peers`.
   */
  setPeers(peers: readonly Peer[]): void {
    const cursor = this.cursor
    this.#peers = peers
    this.#tiers = tiers(this.spec, peers, cursor)
    // Tokens are by address, so a client keeps its server across a change that keeps it.
    this.#sticky = stickyPeers(this.spec, peers)
  }

  /** Where round robin would go next (carried over to the group that replaces this one). */
  get cursor(): number {
    const s = this.#tiers[0]
    return s instanceof RoundRobin ? s.cursor : 0
  }

  /**
   * Available peers in preference order; empty when none is (the caller answers 503). With
   * `sticky`, the peer the client's cookie names comes first while it is available.
   */
  candidates(ctx: SelectContext, now: number): Peer[] {
    const i = this.#stickyIndex(ctx.rawHeaders)
    if (i >= 0) {
      const p = this.#peers[i]!
      if (p.available(now)) return fallbacks(this.#peers, i, now, [p])
    }
    const t = this.#tiers
    if (t.length === 1) return t[0]!.candidates(ctx, now)
    // SRV priorities: a higher rank only when every peer of the lower ones is out of rotation.
    for (const s of t) {
      const c = s.candidates(ctx, now)
      if (c.length > 0) return c
    }
    return []
  }

  /** The index of the peer the request's sticky cookie names; -1 without one (or without sticky). */
  #stickyIndex(raw: readonly string[]): number {
    const st = this.#sticky
    if (st === undefined) return -1
    const token = stickyCookie(raw, st.name)
    return token === undefined ? -1 : (st.byToken.get(token) ?? -1)
  }

  /**
   * The Set-Cookie value to send when `peer` answered a request with these headers: undefined
   * without sticky or when the client's cookie names that peer already.
   */
  stickyCookieFor(peer: Peer, raw: readonly string[]): string | undefined {
    const st = this.#sticky
    if (st === undefined) return undefined
    const i = this.peers.indexOf(peer)
    if (i < 0 || this.#stickyIndex(raw) === i) return undefined
    return st.setCookie[i]
  }

  /** An attempt on `peer` that got a non-5xx answer (`ms`: time to it) or a TCP connection. */
  reportSuccess(peer: Peer, ms?: number): void {
    this.#passive?.success(peer)
    this.breaker?.success(ms)
  }

  /** An attempt on `peer` that failed: a 5xx answer (`ms`: time to it), a timeout, an error. */
  reportFailure(peer: Peer, reason: string, ms?: number): void {
    this.#passive?.failure(peer, this.#peers, reason)
    this.breaker?.failure(ms)
  }

  availableCount(now = Date.now()): number {
    let c = 0
    for (const p of this.#peers) if (p.available(now)) c++
    return c
  }
}

function tiers(spec: UpstreamSpec, peers: readonly Peer[], cursor: number): Selector[] {
  if (peers.every((p) => p.rank === 0)) return [createSelector(spec.strategy, peers, spec.hashKey, cursor)]
  const ranks = [...new Set(peers.map((p) => p.rank))].sort((a, b) => a - b)
  return ranks.map((r, i) =>
    createSelector(
      spec.strategy,
      peers.filter((p) => p.rank === r),
      spec.hashKey,
      i === 0 ? cursor : 0,
    ),
  )
}

interface StickyPeers {
  readonly name: string
  readonly byToken: Map<string, number>
  readonly setCookie: string[]
}

/** `sticky`: each peer's token to its index, and each peer's Set-Cookie value. */
function stickyPeers(spec: UpstreamSpec, peers: readonly Peer[]): StickyPeers | undefined {
  const sticky = spec.sticky
  if (sticky === undefined) return undefined
  const tokens = peers.map((p) => stickyToken(`server\0${spec.name}`, p.address))
  return {
    name: sticky.name,
    byToken: new Map(tokens.map((t, i) => [t, i])),
    setCookie: tokens.map((t) => setCookieValue(sticky, t)),
  }
}
