// weighted: smooth weighted round robin (nginx's algorithm). Each pick adds every available
// peer's weight to its running weight, takes the largest, and subtracts the total from it. With
// weights 5:1:1 the order is a a b a c a a: the heavy server's turns are spread out, not bunched.

import type { Peer } from '../peer'
import { fallbacks, type Selector } from './index'

export class Weighted implements Selector {
  readonly #peers: readonly Peer[]

  constructor(peers: readonly Peer[]) {
    this.#peers = peers
  }

  candidates(_ctx: unknown, now: number): Peer[] {
    const peers = this.#peers
    let total = 0
    let best = -1
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i]!
      if (!p.available(now)) continue
      p.currentWeight += p.weight
      total += p.weight
      if (best < 0 || p.currentWeight > peers[best]!.currentWeight) best = i
    }
    if (best < 0) return []
    peers[best]!.currentWeight -= total
    return fallbacks(peers, best, now, [peers[best]!])
  }
}
