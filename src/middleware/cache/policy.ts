// The RFC 9111 rules of a shared cache, as pure functions of headers and clocks: Cache-Control
// parsing, whether a response may be stored (section 3), its freshness lifetime (4.2.1), its
// current age (4.2.3), whether it may be served fresh, stale or only after revalidation (4.2,
// 4.2.4, 5.2.1, RFC 5861), and the secondary key Vary makes (4.1). No heuristic freshness
// (4.2.2): a response is stored only with explicit freshness (s-maxage, max-age or Expires) or,
// with `no-cache`, a validator to revalidate it with. The conformance table is policy.test.ts.

/** Cache-Control directives by lower-case name; a value-less directive maps to ''. */
export type Directives = ReadonlyMap<string, string>

/**
 * Parses Cache-Control values (several header lines joined with ','). Tolerant: an unknown or
 * malformed directive is skipped, never an error. A directive given twice keeps its first value
 * and is recorded in the returned map under its name with a `#dup` suffix, so freshness can
 * treat the response as stale (RFC 9111 section 4.2.1: "either the first occurrence should be
 * used or the response should be considered stale").
 */
export function parseCacheControl(value: string | undefined): Directives {
  const out = new Map<string, string>()
  if (value === undefined) return out
  let i = 0
  const n = value.length
  while (i < n) {
    // One directive: a name, then optionally `=` and a token or quoted string, up to a comma.
    let j = i
    while (j < n && value[j] !== ',' && value[j] !== '=') j++
    const name = value.slice(i, j).trim().toLowerCase()
    let v = ''
    if (j < n && value[j] === '=') {
      j++
      while (j < n && (value[j] === ' ' || value[j] === '\t')) j++
      if (value[j] === '"') {
        // Quoted: commas inside (no-cache="a, b") do not end the directive.
        j++
        while (j < n && value[j] !== '"') {
          if (value[j] === '\\') j++
          v += value[j] ?? ''
          j++
        }
        j++
        while (j < n && value[j] !== ',') j++
      } else {
        const from = j
        while (j < n && value[j] !== ',') j++
        v = value.slice(from, j).trim()
      }
    }
    if (name !== '') {
      if (out.has(name)) out.set(`${name}#dup`, v)
      else out.set(name, v)
    }
    i = j + 1
  }
  return out
}

/**
 * RFC 9111 section 1.2.2: delta-seconds is digits only; a larger value than 2^31 means 2^31.
 * Anything else (negative, fractional, empty) is invalid: undefined.
 */
export function deltaSeconds(v: string | undefined): number | undefined {
  if (v === undefined || !/^[0-9]+$/.test(v)) return undefined
  return Math.min(Number(v), 2 ** 31)
}

/** An HTTP-date (any of RFC 9110's three forms, as Date.parse reads them) in ms, or undefined. */
export function httpDate(v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : t
}

/**
 * Statuses a cache may store: RFC 9110 section 15.1's heuristically cacheable ones, minus 206
 * (no ranges here) and 204 (a stored answer is written with Content-Length, which a 204 must
 * not carry).
 */
export const STORABLE_STATUS: ReadonlySet<number> = new Set([
  200, 203, 300, 301, 308, 404, 405, 410, 414, 501,
])

export interface StoreFacts {
  status: number
  /** The request carried Authorization. */
  authorized: boolean
  requestDirectives: Directives
  directives: Directives
  /** Response headers needed: Expires, Vary, Set-Cookie, ETag, Last-Modified (lower case names). */
  expires: string | undefined
  vary: string | undefined
  setCookie: boolean
  hasValidator: boolean
  /** freshnessLifetime() of the response. */
  lifetime: number
}

/**
 * Why a response is not stored (RFC 9111 section 3 and this cache's own safe choices), or
 * undefined when it may be. Set-Cookie: never stored (a cookie is one client's; storing it would
 * hand it to every client; nginx does the same by default).
 */
export function refusal(f: StoreFacts): string | undefined {
  const d = f.directives
  if (!STORABLE_STATUS.has(f.status)) return `status ${f.status}`
  if (f.requestDirectives.has('no-store')) return 'request no-store'
  if (d.has('no-store')) return 'no-store'
  // A shared cache never stores private (qualified or not: the conservative reading).
  if (d.has('private')) return 'private'
  if (f.setCookie) return 'set-cookie'
  if (f.vary !== undefined && varyNames(f.vary) === '*') return 'vary *'
  // Section 3.5: an authenticated request's answer only when the response allows it for all.
  if (f.authorized && !d.has('public') && !d.has('s-maxage') && !d.has('must-revalidate'))
    return 'authorization'
  if (f.lifetime > 0) return undefined
  // Stored to be revalidated every time (no-cache, or explicit zero freshness) needs a validator.
  if (explicitFreshness(d, f.expires) && f.hasValidator) return undefined
  return 'no explicit freshness'
}

/** Whether the response states its freshness (s-maxage, max-age or Expires, even zero or invalid). */
function explicitFreshness(d: Directives, expires: string | undefined): boolean {
  return d.has('s-maxage') || d.has('max-age') || expires !== undefined || d.has('no-cache')
}

/**
 * Freshness lifetime in ms (RFC 9111 section 4.2.1, shared cache): s-maxage, else max-age,
 * else Expires minus Date (the response time when Date is missing). A duplicated or invalid
 * value, an invalid Expires, or `no-cache` makes it 0 (stale: revalidate before use).
 */
export function freshnessLifetime(
  d: Directives,
  expires: string | undefined,
  date: number | undefined,
  responseTime: number,
): number {
  if (d.has('no-cache')) return 0
  for (const name of ['s-maxage', 'max-age']) {
    if (!d.has(name)) continue
    if (d.has(`${name}#dup`)) return 0
    return (deltaSeconds(d.get(name)) ?? 0) * 1000
  }
  if (expires === undefined) return 0
  const e = httpDate(expires)
  if (e === undefined) return 0
  return Math.max(0, e - (date ?? responseTime))
}

export interface AgeFacts {
  /** The response's Age header, in seconds (0 when absent or invalid). */
  ageValue: number
  date: number | undefined
  requestTime: number
  responseTime: number
}

/** Current age in ms (RFC 9111 section 4.2.3). */
export function currentAge(a: AgeFacts, now: number): number {
  const apparent = Math.max(0, a.responseTime - (a.date ?? a.responseTime))
  const delay = a.responseTime - a.requestTime
  const correctedAge = a.ageValue * 1000 + delay
  const initial = Math.max(apparent, correctedAge)
  return initial + (now - a.responseTime)
}

/** What may be done with a stored response for one request. */
export type Usability =
  /** Serve it as it is. */
  | 'fresh'
  /** Stale, but within stale-while-revalidate: serve it and revalidate. */
  | 'stale-while-revalidate'
  /** Revalidate first (conditional request); stale-if-error may still serve it on failure. */
  | 'revalidate'

/**
 * RFC 9111 section 4.2 and 5.2.1 (the request's no-cache, max-age, min-fresh), section 4.2.4
 * (no stale use when must-revalidate, proxy-revalidate, s-maxage or no-cache forbid it) and RFC
 * 5861 (stale-while-revalidate). max-stale is not honoured: this cache never serves stale on a
 * client's say-so.
 */
export function usability(stored: Directives, lifetime: number, age: number, request: Directives): Usability {
  if (request.has('no-cache')) return 'revalidate'
  const maxAge = deltaSeconds(request.get('max-age'))
  if (maxAge !== undefined && age >= maxAge * 1000) return 'revalidate'
  const minFresh = deltaSeconds(request.get('min-fresh')) ?? 0
  if (lifetime > age + minFresh * 1000) return 'fresh'
  const swr = deltaSeconds(stored.get('stale-while-revalidate'))
  if (swr !== undefined && staleAllowed(stored) && age < lifetime + swr * 1000)
    return 'stale-while-revalidate'
  return 'revalidate'
}

/** Whether a stale response may be served at all (RFC 9111 section 4.2.4). */
export function staleAllowed(d: Directives): boolean {
  return !(d.has('must-revalidate') || d.has('proxy-revalidate') || d.has('s-maxage') || d.has('no-cache'))
}

/** Whether stale-if-error (RFC 5861 section 4, from the response or the request) covers `age`. */
export function staleIfError(
  stored: Directives,
  request: Directives,
  lifetime: number,
  age: number,
): boolean {
  if (!staleAllowed(stored)) return false
  const sie = deltaSeconds(request.get('stale-if-error')) ?? deltaSeconds(stored.get('stale-if-error'))
  return sie !== undefined && age < lifetime + sie * 1000
}

/**
 * The header names a Vary value lists, lower case, sorted and joined with ',' ('' for none),
 * or '*' when it has `*` (never matched: not stored).
 */
export function varyNames(vary: string | undefined): string {
  if (vary === undefined) return ''
  const names = new Set<string>()
  for (const part of vary.split(',')) {
    const n = part.trim().toLowerCase()
    if (n === '*') return '*'
    if (n !== '') names.add(n)
  }
  return [...names].sort().join(',')
}

/**
 * The secondary key of a request for the `names` a stored response varies on (varyNames form):
 * each named header's values, joined as the request sent them with whitespace around commas
 * normalized (RFC 9111 section 4.1 allows that much); an absent header differs from an empty one.
 */
export function secondaryKey(names: string, raw: readonly string[]): string {
  if (names === '') return ''
  let key = ''
  for (const name of names.split(',')) {
    let value: string | undefined
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.toLowerCase() === name)
        value = value === undefined ? raw[i + 1]! : `${value},${raw[i + 1]!}`
    }
    key +=
      value === undefined
        ? '\0'
        : `\x01${value
            .split(',')
            .map((s) => s.trim())
            .join(',')}`
    key += '\n'
  }
  return key
}
