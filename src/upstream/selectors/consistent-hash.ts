// consistent_hash: a hash ring with virtual nodes (160 per unit of weight). A request's key
// (client IP, path, a header or a cookie) lands on the ring; the first available peer clockwise
// owns it. When a peer leaves, only the keys it owned move (about 1/N of them); the rest stay.

import type { HashKey } from '../../config/snapshot'
import type { Peer } from '../peer'
import type { SelectContext, Selector } from './index'

const VNODES = 160

export class ConsistentHash implements Selector {
  readonly #peers: readonly Peer[]
  readonly #key: HashKey
  readonly #points: Uint32Array
  /** Index into #peers of the peer owning each point. */
  readonly #owners: Uint16Array

  constructor(peers: readonly Peer[], key: HashKey) {
    this.#peers = peers
    this.#key = key
    const ring: Array<[number, number]> = []
    peers.forEach((p, i) => {
      for (let v = 0; v < VNODES * p.weight; v++) ring.push([hash32(`${p.address}#${v}`), i])
    })
    ring.sort((a, b) => a[0] - b[0])
    this.#points = Uint32Array.from(ring, (r) => r[0])
    this.#owners = Uint16Array.from(ring, (r) => r[1])
  }

  candidates(ctx: SelectContext, now: number): Peer[] {
    const h = hash32(keyOf(this.#key, ctx))
    const points = this.#points
    // First point at or after h (wrapping to 0).
    let lo = 0
    let hi = points.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid]! < h) lo = mid + 1
      else hi = mid
    }
    const out: Peer[] = []
    const seen = new Set<number>()
    for (let i = 0; i < points.length && seen.size < this.#peers.length; i++) {
      const owner = this.#owners[(lo + i) % points.length]!
      if (seen.has(owner)) continue
      seen.add(owner)
      const p = this.#peers[owner]!
      if (p.available(now)) out.push(p)
    }
    return out
  }
}

/** The request's hash key; a missing header or cookie falls back to the client IP. */
export function keyOf(key: HashKey, ctx: SelectContext): string {
  switch (key.kind) {
    case 'client_ip':
      return ctx.clientIp
    case 'path':
      return ctx.path
    case 'header':
      return headerValue(ctx.rawHeaders, key.name) ?? ctx.clientIp
    case 'cookie': {
      const cookies = headerValue(ctx.rawHeaders, 'cookie')
      return (cookies && cookieValue(cookies, key.name)) ?? ctx.clientIp
    }
  }
}

/** The first value of a header (`lowerName` in lower case), or undefined. */
export function headerValue(raw: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === lowerName.length && raw[i]!.toLowerCase() === lowerName) return raw[i + 1]
  }
  return undefined
}

function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** FNV-1a over UTF-16 code units, finished with murmur3's avalanche so nearby keys spread out. */
export function hash32(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
