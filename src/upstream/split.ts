// A weighted split between upstream groups (`upstreams` on a route or the load balancer): which
// group one request goes to. The running sums are made once at config load (config/compile.ts
// splitSpec); a pick is the next point of an even sequence (or a hash of the sticky key) and a scan of a list of a
// few groups, with no allocation unless a cookie must be set.

import type { SplitSpec } from '../config/snapshot'
import { hash32, headerValue } from './selectors/consistent-hash'
import { stickyCookie } from './sticky'

/** Set in pickGroup's answer when the client must be sent the split's cookie. */
export const SET_COOKIE = 1 << 20

/**
 * The index of the group in `split.groups` for this request, with SET_COOKIE added when the
 * split is sticky by cookie and the client's cookie did not name a group it may stay on (missing,
 * forged, a group no longer in the split or ramped down to weight 0).
 * Sticky by header or client address: the key is hashed to a point of [0, total), so clients
 * keep their group while the weights stay; a ramp moves only the clients between the old and
 * the new boundary. A missing header falls back to an unsticky pick.
 * Unsticky picks follow the split's WeylSequence (config/sequence.ts): shares close to the
 * weights over any run of requests, in each worker.
 */
export function pickGroup(split: SplitSpec, clientIp: string, rawHeaders: readonly string[]): number {
  const st = split.sticky
  if (st === undefined) return at(split, split.sequence.next() * split.total)
  switch (st.kind) {
    case 'cookie': {
      const token = stickyCookie(rawHeaders, st.cookie.name)
      const i = token === undefined ? undefined : st.byToken.get(token)
      if (i !== undefined && split.weights[i]! > 0) return i
      return at(split, split.sequence.next() * split.total) | SET_COOKIE
    }
    case 'header': {
      const v = headerValue(rawHeaders, st.name)
      return at(split, v === undefined ? split.sequence.next() * split.total : point(split, v))
    }
    case 'client_ip':
      return at(split, point(split, clientIp))
  }
}

/** `key`'s place in [0, total): the same for the same key in every worker and after restarts. */
function point(split: SplitSpec, key: string): number {
  return (hash32(key) / 0x1_0000_0000) * split.total
}

/** The group whose share holds `p` (groups of weight 0 hold nothing). */
function at(split: SplitSpec, p: number): number {
  const c = split.cumulative
  const last = c.length - 1
  for (let i = 0; i < last; i++) if (p < c[i]!) return i
  return last
}
