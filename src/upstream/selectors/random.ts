// random: power of two choices. Two available peers drawn at random (weighted), the one with
// fewer requests in flight per unit of weight wins. Nearly as good as least_connections at
// spreading load, with none of its herding when many proxies share the same view.

import type { Peer } from '../peer'
import type { Selector } from './index'

export class PowerOfTwo implements Selector {
  readonly #peers: readonly Peer[]
  readonly #random: () => number

  constructor(peers: readonly Peer[], random: () => number = Math.random) {
    this.#peers = peers
    this.#random = random
  }

  candidates(_ctx: unknown, now: number): Peer[] {
    const avail = this.#peers.filter((p) => p.available(now))
    if (avail.length <= 1) return avail
    const a = this.#pick(avail, undefined)
    const b = this.#pick(avail, a)
    const first = a.inFlight / a.weight <= b.inFlight / b.weight ? a : b
    const second = first === a ? b : a
    const out = [first, second]
    for (const p of avail) if (p !== first && p !== second) out.push(p)
    return out
  }

  /** A weighted random draw, leaving out `not`. */
  #pick(peers: Peer[], not: Peer | undefined): Peer {
    let total = 0
    for (const p of peers) if (p !== not) total += p.weight
    let r = this.#random() * total
    for (const p of peers) {
      if (p === not) continue
      r -= p.weight
      if (r < 0) return p
    }
    return peers.find((p) => p !== not)!
  }
}
