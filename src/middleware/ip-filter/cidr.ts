// Address ranges (CIDR) for ip_filter, in one 128-bit space: an IPv4 address is its
// IPv4-mapped IPv6 form (::ffff:a.b.c.d, RFC 4291 section 2.5.5.2), so `10.0.0.0/8` also
// covers `::ffff:10.1.2.3` (however it is spelled) and `::/0` covers every IPv4 address.
// Parsed at load; a lookup for an IPv4 client is a loop over (network, mask) pairs of 32 bits.
// (node:net's BlockList does the same natively but costs about 5 µs a check from JavaScript.)

/** An address as four 32-bit words, most significant first. */
export type Words = readonly [number, number, number, number]

export interface Cidr {
  readonly words: Words
  readonly prefix: number
}

const V4 =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

function v4(s: string): number | undefined {
  const m = V4.exec(s)
  if (!m) return undefined
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0
}

/** An IPv4 or IPv6 address (a zone such as `%eth0` is ignored), or undefined. */
export function parseIp(text: string): Words | undefined {
  const pct = text.indexOf('%')
  const s = pct < 0 ? text : text.slice(0, pct)
  if (!s.includes(':')) {
    const a = v4(s)
    return a === undefined ? undefined : [0, 0, 0xffff, a]
  }
  const halves = s.split('::')
  if (halves.length > 2) return undefined
  const groups = (part: string): number[] | undefined => {
    if (part === '') return []
    const out: number[] = []
    const items = part.split(':')
    for (let i = 0; i < items.length; i++) {
      const g = items[i]!
      if (i === items.length - 1 && g.includes('.')) {
        const a = v4(g)
        if (a === undefined) return undefined
        out.push(a >>> 16, a & 0xffff)
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
        out.push(Number.parseInt(g, 16))
      } else {
        return undefined
      }
    }
    return out
  }
  const head = groups(halves[0]!)
  const tail = halves.length === 2 ? groups(halves[1]!) : []
  if (head === undefined || tail === undefined) return undefined
  // An embedded IPv4 address ends the address: only in the last part.
  if (halves.length === 2 && halves[0]!.includes('.')) return undefined
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  const all = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail]
  return [
    ((all[0]! << 16) | all[1]!) >>> 0,
    ((all[2]! << 16) | all[3]!) >>> 0,
    ((all[4]! << 16) | all[5]!) >>> 0,
    ((all[6]! << 16) | all[7]!) >>> 0,
  ]
}

function maskWord(prefix: number, word: number): number {
  const bits = Math.min(Math.max(prefix - word * 32, 0), 32)
  return bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a single address; a problem message when it is not one. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/')
  const addr = slash < 0 ? text : text.slice(0, slash)
  if (addr.includes('%')) return 'must not have a zone (%...)'
  const words = parseIp(addr)
  if (words === undefined) return 'is not an IPv4 or IPv6 address (or CIDR range such as 10.0.0.0/8)'
  const isV4 = !addr.includes(':')
  const max = isV4 ? 32 : 128
  let prefix = max
  if (slash >= 0) {
    const p = text.slice(slash + 1)
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > max) return `has a prefix length other than 0-${max}`
    prefix = Number(p)
  }
  const full = isV4 ? prefix + 96 : prefix
  for (let w = 0; w < 4; w++) {
    if ((words[w]! & ~maskWord(full, w)) >>> 0 !== 0) {
      const net = words.map((x, i) => (x & maskWord(full, i)) >>> 0) as unknown as Words
      return `has bits set beyond its /${prefix} prefix; the range is ${format(net, isV4)}/${prefix}`
    }
  }
  return { words, prefix: full }
}

function format(w: Words, isV4: boolean): string {
  if (isV4) return [w[3] >>> 24, (w[3] >>> 16) & 255, (w[3] >>> 8) & 255, w[3] & 255].join('.')
  const g: string[] = []
  for (const x of w) g.push((x >>> 16).toString(16), (x & 0xffff).toString(16))
  return g.join(':')
}

/** A set of ranges, asked about one address at a time. */
export class CidrSet {
  /** Ranges inside ::ffff:0:0/96, as (IPv4 network, IPv4 mask) pairs. */
  readonly #v4: Uint32Array
  /** Some range contains all of ::ffff:0:0/96 (as ::/0 does): every IPv4 address is in. */
  readonly #allV4: boolean
  /** Every range, as (network words, mask words) of 8 numbers. */
  readonly #v6: Uint32Array

  constructor(ranges: readonly Cidr[]) {
    const v4: number[] = []
    const v6: number[] = []
    let allV4 = false
    for (const r of ranges) {
      const masks = [0, 1, 2, 3].map((w) => maskWord(r.prefix, w))
      v6.push(...r.words, ...masks)
      const mapped = r.words[0] === 0 && r.words[1] === 0 && r.words[2] === 0xffff
      if (r.prefix >= 96 && mapped) v4.push(r.words[3], masks[3]!)
      else if (r.prefix < 96 && contains(r.words, masks, [0, 0, 0xffff, 0])) allV4 = true
    }
    this.#v4 = Uint32Array.from(v4)
    this.#v6 = Uint32Array.from(v6)
    this.#allV4 = allV4
  }

  has(ip: Words): boolean {
    if (ip[0] === 0 && ip[1] === 0 && ip[2] === 0xffff) {
      if (this.#allV4) return true
      const a = ip[3]
      const v4 = this.#v4
      for (let i = 0; i < v4.length; i += 2) if ((a & v4[i + 1]!) >>> 0 === v4[i]) return true
      return false
    }
    const v6 = this.#v6
    for (let i = 0; i < v6.length; i += 8) {
      if (
        (ip[0] & v6[i + 4]!) >>> 0 === v6[i] &&
        (ip[1] & v6[i + 5]!) >>> 0 === v6[i + 1] &&
        (ip[2] & v6[i + 6]!) >>> 0 === v6[i + 2] &&
        (ip[3] & v6[i + 7]!) >>> 0 === v6[i + 3]
      ) {
        return true
      }
    }
    return false
  }
}

function contains(net: Words, masks: number[], ip: Words): boolean {
  return ip.every((x, i) => (x & masks[i]!) >>> 0 === net[i])
}
