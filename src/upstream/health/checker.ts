// Active health checks for one upstream group: probes every peer at `interval_secs`, the first
// round at start. A peer flips after `unhealthy_threshold` consecutive failures (or
// `healthy_threshold` successes); only flips are logged, never every tick.

import type { HealthCheckSpec } from '../../config/snapshot'
import type { Logger } from '../../observe/logger'
import type { UpstreamMetrics } from '../../observe/metrics'
import type { Peer } from '../peer'
import { grpcProbe } from './grpc-probe'
import { probe } from './probe'

export type HealthObserver = (peer: Peer, healthy: boolean) => void

export class HealthChecker {
  readonly spec: HealthCheckSpec
  #peers: readonly Peer[]
  readonly #log: Logger
  readonly #onChange: HealthObserver | undefined
  readonly #metrics: UpstreamMetrics | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  /** Consecutive results against the peer's current state, per peer. */
  readonly #streak = new WeakMap<Peer, number>()

  constructor(
    spec: HealthCheckSpec,
    peers: readonly Peer[],
    opts: { log: Logger; onChange?: HealthObserver; metrics?: UpstreamMetrics | undefined },
  ) {
    this.spec = spec
    this.#peers = peers
    this.#log = opts.log
    this.#onChange = opts.onChange
    this.#metrics = opts.metrics
  }

  start(): void {
    void this.#round()
  }

  /** Replaces the peer list (after a reload); health state lives on the peers themselves. */
  setPeers(peers: readonly Peer[]): void {
    this.#peers = peers
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
  }

  /** Runs one round now; resolves when every probe has answered or timed out. */
  async #round(): Promise<void> {
    if (this.#stopped) return
    await Promise.all(this.#peers.map((p) => this.checkPeer(p)))
    if (this.#stopped) return
    this.#timer = setTimeout(() => void this.#round(), this.spec.intervalMs)
    this.#timer.unref()
  }

  async checkPeer(peer: Peer): Promise<void> {
    const target = { host: peer.host, port: peer.port, tls: peer.tls }
    const result = await (this.spec.grpcService !== undefined
      ? grpcProbe(target, this.spec.grpcService, this.spec.timeoutMs)
      : probe(target, this.spec.path, this.spec.timeoutMs))
    if (this.#stopped) return
    this.#metrics?.healthCheck(peer.group, peer.address, result.ok)
    if (result.ok === peer.healthy) {
      this.#streak.set(peer, 0)
      return
    }
    const streak = (this.#streak.get(peer) ?? 0) + 1
    const needed = peer.healthy ? this.spec.unhealthyThreshold : this.spec.healthyThreshold
    if (streak < needed) {
      this.#streak.set(peer, streak)
      return
    }
    this.#streak.set(peer, 0)
    peer.healthy = result.ok
    const fields = { upstream: peer.group, server: peer.address, check: this.spec.path ? 'http' : 'tcp' }
    if (result.ok) this.#log.info(fields, 'upstream server healthy again; back in rotation')
    else this.#log.warn({ ...fields, reason: result.reason }, 'upstream server unhealthy; out of rotation')
    this.#onChange?.(peer, result.ok)
  }
}
