// least_connections: the available peer with the fewest requests in flight relative to its
// weight; ties go round robin, so idle peers share the load instead of the first one taking all.

import type { Peer } from '../peer'
import type { Selector } from './index'

export class LeastConnections implements Selector {
  readonly #peers: readonly Peer[]
  #cursor: number

  constructor(peers: readonly Peer[], cursor: number) {
    this.#peers = peers
    this.#cursor = cursor % Math.max(1, peers.length)
  }

  candidates(_ctx: unknown, now: number): Peer[] {
    const peers = this.#peers
    const n = peers.length
    const out: Peer[] = []
    for (let i = 0; i < n; i++) {
      const p = peers[(this.#cursor + i) % n]!
      if (p.available(now)) out.push(p)
    }
    if (out.length === 0) return out
    // Stable sort keeps the round-robin order among equals.
    out.sort((a, b) => a.inFlight / a.weight - b.inFlight / b.weight)
    this.#cursor = (peers.indexOf(out[0]!) + 1) % n
    return out
  }
}
