// Selectors: one per `strategy`. A selector orders a group's available peers for one request:
// the first is its choice, the rest are fallbacks for a retry (Pingora's candidate iterator).
// Peers that are unhealthy (active checks) or ejected (passive health) are never returned.

import type { HashKey, Strategy } from '../../config/snapshot'
import type { Peer } from '../peer'
import { ConsistentHash } from './consistent-hash'
import { LeastConnections } from './least-connections'
import { PowerOfTwo } from './random'
import { RoundRobin } from './round-robin'
import { Weighted } from './weighted'

/** What a selector may look at in the request. */
export interface SelectContext {
  clientIp: string
  /** Path without the query string. */
  path: string
  rawHeaders: readonly string[]
}

export interface Selector {
  /** Available peers in preference order; empty when none is available. */
  candidates(ctx: SelectContext, now: number): Peer[]
}

export function createSelector(
  strategy: Strategy,
  peers: readonly Peer[],
  hashKey: HashKey,
  cursor: number,
): Selector {
  switch (strategy) {
    case 'round_robin':
      return new RoundRobin(peers, cursor)
    case 'weighted':
      return new Weighted(peers)
    case 'least_connections':
      return new LeastConnections(peers, cursor)
    case 'random':
      return new PowerOfTwo(peers)
    case 'consistent_hash':
      return new ConsistentHash(peers, hashKey)
  }
}

/** The peers other than `first` that are available, in list order starting after `first`. */
export function fallbacks(peers: readonly Peer[], firstIndex: number, now: number, out: Peer[]): Peer[] {
  const n = peers.length
  for (let i = 1; i < n; i++) {
    const p = peers[(firstIndex + i) % n]!
    if (p.available(now)) out.push(p)
  }
  return out
}
