// round_robin: the next available peer in server order. The cursor moves past the peer chosen,
// so with one worker the cycle follows the order the servers are written in.

import type { Peer } from '../peer'
import { fallbacks, type Selector } from './index'

export class RoundRobin implements Selector {
  readonly #peers: readonly Peer[]
  cursor: number

  constructor(peers: readonly Peer[], cursor: number) {
    this.#peers = peers
    this.cursor = cursor % Math.max(1, peers.length)
  }

  candidates(_ctx: unknown, now: number): Peer[] {
    const peers = this.#peers
    const n = peers.length
    for (let i = 0; i < n; i++) {
      const idx = (this.cursor + i) % n
      const p = peers[idx]!
      if (!p.available(now)) continue
      this.cursor = (idx + 1) % n
      return fallbacks(peers, idx, now, [p])
    }
    return []
  }
}
