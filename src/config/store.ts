// The one mutable reference: the live snapshot and the upstream groups built for it, swapped
// together in a single assignment. A request calls current() once at entry and keeps what it got.

import type { Chain } from '../middleware/registry'
import type { UpstreamGroup } from '../upstream/group'
import type { Snapshot } from './snapshot'

export interface Runtime {
  readonly snapshot: Snapshot
  readonly groups: ReadonlyMap<string, UpstreamGroup>
  /** Middleware chains by route name (LB_CHAIN in load_balancer mode); absent: none. */
  readonly chains: ReadonlyMap<string, Chain>
}

export class SnapshotStore {
  #current: Runtime

  constructor(initial: Runtime) {
    this.#current = initial
  }

  current(): Runtime {
    return this.#current
  }

  swap(next: Runtime): Runtime {
    const prev = this.#current
    this.#current = next
    return prev
  }
}
