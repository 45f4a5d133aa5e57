// An upstream group at run time: its peers and its selector. `candidates()` yields peers in the
// order the strategy prefers them, healthy ones only; the pipeline tries them in turn and moves
// on after a connect failure (Pingora's select-with-fallbacks).

import type { UpstreamSpec } from '../config/snapshot'
import type { Peer } from './peer'

export class UpstreamGroup {
  readonly name: string
  readonly spec: UpstreamSpec
  readonly peers: readonly Peer[]
  /** The Host header sent upstream instead of the client's (from `sni`), if any. */
  readonly hostOverride: string | undefined
  readonly tls: boolean
  #cursor = 0

  constructor(spec: UpstreamSpec, peers: readonly Peer[], cursor = 0) {
    this.name = spec.name
    this.spec = spec
    this.peers = peers
    this.tls = spec.tls
    this.hostOverride = spec.sni
    this.#cursor = cursor % Math.max(1, peers.length)
  }

  get cursor(): number {
    return this.#cursor
  }

  /**
   * Round robin: the healthy peers, starting at the next one in turn. Advancing the cursor once per
   * request (not per healthy peer) keeps the cycle in server order with one worker.
   * Returns an empty array when no peer is healthy (the caller answers 503).
   */
  candidates(): Peer[] {
    const peers = this.peers
    const n = peers.length
    const start = this.#cursor
    const out: Peer[] = []
    for (let i = 0; i < n; i++) {
      const idx = (start + i) % n
      const p = peers[idx]!
      if (!p.healthy) continue
      if (out.length === 0) this.#cursor = (idx + 1) % n
      out.push(p)
    }
    return out
  }

  healthyCount(): number {
    let c = 0
    for (const p of this.peers) if (p.healthy) c++
    return c
  }
}
