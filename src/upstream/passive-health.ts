// Passive health (outlier ejection): a peer that fails `consecutive_failures` times in a row
// (connect failures, timeouts, resets, 5xx answers) leaves the rotation for a cool-down that
// grows with each repeat offence (base × offences, capped at max). Works with or without active
// health checks. It never ejects the last available peer of a group: that would turn a sick
// group into a 503 for every request, so it keeps the peer and says so in the log instead.
// Nor does it eject more than `max_ejection_percent` of the group at once (rounded down: 1 of 2
// or 3, 2 of 4): when most peers fail together the fault is usually shared (a database, a bad
// deploy) and ejecting them would pile all traffic onto the few left.

import type { PassiveHealthSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import type { UpstreamMetrics } from '../observe/metrics'
import type { Peer } from './peer'

export class PassiveHealth {
  readonly #spec: PassiveHealthSpec
  readonly #group: string
  readonly #log: Logger
  readonly #metrics: UpstreamMetrics | undefined

  constructor(spec: PassiveHealthSpec, group: string, log: Logger, metrics?: UpstreamMetrics) {
    this.#spec = spec
    this.#group = group
    this.#log = log
    this.#metrics = metrics
  }

  success(peer: Peer): void {
    peer.consecutiveFailures = 0
  }

  failure(peer: Peer, peers: readonly Peer[], reason: string, now = Date.now()): void {
    if (++peer.consecutiveFailures < this.#spec.consecutiveFailures) return
    peer.consecutiveFailures = 0
    if (peer.ejectedUntil > now) return
    const fields = { upstream: this.#group, server: peer.address, reason }
    if (!peers.some((p) => p !== peer && p.available(now))) {
      this.#log.warn(
        fields,
        'upstream server keeps failing but is the last one available in its group; not ejecting it',
      )
      return
    }
    const maxEjected = Math.floor((peers.length * this.#spec.maxEjectionPercent) / 100)
    const ejected = peers.filter((p) => p !== peer && p.ejectedUntil > now).length
    if (ejected + 1 > maxEjected) {
      this.#log.warn(
        { ...fields, ejected, max_ejected: maxEjected, max_ejection_percent: this.#spec.maxEjectionPercent },
        'upstream server keeps failing but ejecting it would take its group past max_ejection_percent; not ejecting it',
      )
      return
    }
    // Offences are forgotten once a peer has stayed in rotation for a full max cool-down.
    if (peer.ejectedUntil !== 0 && now - peer.ejectedUntil > this.#spec.maxEjectionMs) peer.ejections = 0
    peer.ejections++
    const ms = Math.min(this.#spec.baseEjectionMs * peer.ejections, this.#spec.maxEjectionMs)
    peer.ejectedUntil = now + ms
    this.#metrics?.ejection(this.#group, peer.address)
    this.#log.warn(
      { ...fields, ejection_secs: ms / 1000, ejections: peer.ejections },
      'upstream server ejected after consecutive failures',
    )
    const until = peer.ejectedUntil
    setTimeout(() => {
      // A later ejection may have replaced this one.
      if (peer.ejectedUntil === until) {
        this.#log.info(
          { upstream: this.#group, server: peer.address },
          'ejected upstream server back in rotation',
        )
      }
    }, ms).unref()
  }
}
