// Header rewriting on the way up and down: hop-by-hop headers dropped (RFC 9110 section 7.6.1),
// X-Forwarded-For/-Proto/-Host set, X-Request-Id kept when well formed or made. Works on Node's
// flat raw header arrays, lowercasing only names whose length could match a header we act on.

import { randomUUID } from 'node:crypto'
import { isIP } from 'node:net'

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // Connection-specific too (RFC 9113 section 3.2.1); an HTTP/2 client must never receive it.
  'http2-settings',
])

// Request headers the proxy replaces or must not pass on: `expect` because Node answers
// `100-continue` itself; the forwarding headers and X-Request-Id are rebuilt below.
const REQUEST_SPECIAL = new Set([
  ...HOP_BY_HOP,
  'host',
  'expect',
  'content-length',
  'cookie',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
  'x-real-ip',
  'forwarded',
])
const REQUEST_LENGTHS = new Set([...REQUEST_SPECIAL].map((n) => n.length))
const RESPONSE_LENGTHS = new Set([...HOP_BY_HOP].map((n) => n.length))

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,200}$/

export interface UpstreamRequestHead {
  /** Flat [name, value, ...] array for undici. */
  headers: string[]
  requestId: string
  /** The request carries a body (Content-Length > 0 or Transfer-Encoding; HTTP/1 only). */
  hasBody: boolean
  /** The declared Content-Length, or -1. */
  contentLength: number
  /** The Transfer-Encoding value as sent (HTTP/1 framing), if any. */
  transferEncoding: string | undefined
  /** Client's Host header (`:authority` over HTTP/2), if any. */
  host: string | undefined
  /** The client's address: the peer, or with trusted proxies in front, the one they name. */
  clientIp: string
  /** Set when the head must be refused (400): why. */
  problem: string | undefined
}

export interface RequestSide {
  /** The connection's peer address (clientIp() applied). */
  peer: string
  proto: 'http' | 'https'
  /** Whether a peer's forwarding headers are believed (server.trusted_proxies). */
  trusted: ((ip: string) => boolean) | undefined
  /** Header names only the proxy may send (lower case, `_` as `-`): removed from the request. */
  protectedHeaders: ReadonlySet<string>
  /** HTTP/2 downstream: `:authority` is the Host; cookie crumbs are joined. */
  h2: boolean
}

/**
 * Builds the upstream request headers from the client's raw headers. Connection-named headers
 * (`Connection: foo` makes `foo` hop-by-hop) are dropped too.
 *
 * Forwarding headers (as Traefik does): from a trusted proxy, X-Forwarded-For is extended and
 * X-Forwarded-Proto/-Host, Forwarded and X-Real-IP are kept; the client is the right-most
 * X-Forwarded-For hop that is not itself a trusted proxy. From anyone else every X-Forwarded-*,
 * Forwarded and X-Real-IP header is dropped and rebuilt from the connection, so a client cannot
 * choose the address that rate limits, logs and consistent hashing see.
 */
export function upstreamRequestHead(raw: readonly string[], side: RequestSide): UpstreamRequestHead {
  const out: string[] = []
  const trusted = side.trusted?.(side.peer) === true
  const guarded = side.protectedHeaders.size > 0
  const guardedLengths = guarded ? lengthsOf(side.protectedHeaders) : undefined
  let requestId: string | undefined
  let host: string | undefined
  let authority: string | undefined
  let problem: string | undefined
  let xff: string | undefined
  let xfProto: string | undefined
  let xfHost: string | undefined
  let cookie: string | undefined
  let hasBody = false
  let contentLength = -1
  let transferEncoding: string | undefined
  let connectionTokens: string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    if (name.charCodeAt(0) === 58 /* : */) {
      // HTTP/2 pseudo-headers: `:authority` is the Host (RFC 9113 section 8.3.1); the rest
      // (:method, :path, :scheme) travel in the HTTP/1.1 request line instead.
      if (name === ':authority') authority = value
      continue
    }
    if (guardedLengths?.has(name.length) && isProtected(name, side.protectedHeaders)) continue
    if (!REQUEST_LENGTHS.has(name.length) && !(name.length > 12 && isForwardingFamily(name))) {
      out.push(name, value)
      continue
    }
    const lower = name.toLowerCase()
    if (!REQUEST_SPECIAL.has(lower)) {
      // Other X-Forwarded-* (Port, Prefix, Server...): only a trusted proxy may send them.
      if (trusted || !lower.startsWith('x-forwarded-')) out.push(name, value)
      continue
    }
    switch (lower) {
      case 'host':
        // RFC 9112 section 3.2: a request with more than one Host is invalid.
        if (host !== undefined) problem = 'more than one Host header'
        host = value
        break
      case 'content-length':
        if (value !== '0') hasBody = true
        contentLength = Number(value)
        out.push(name, value)
        break
      case 'transfer-encoding':
        hasBody = true
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`
        break
      case 'cookie':
        // HTTP/2 may split cookies into crumbs (RFC 9113 section 8.2.3); HTTP/1.1 wants one.
        if (side.h2) cookie = cookie === undefined ? value : `${cookie}; ${value}`
        else out.push(name, value)
        break
      case 'x-request-id':
        if (requestId === undefined && REQUEST_ID.test(value)) requestId = value
        break
      case 'x-forwarded-for':
        if (trusted) xff = xff === undefined ? value : `${xff}, ${value}`
        break
      case 'x-forwarded-proto':
        if (trusted) xfProto ??= value
        break
      case 'x-forwarded-host':
        if (trusted) xfHost ??= value
        break
      case 'forwarded':
      case 'x-real-ip':
        if (trusted) out.push(name, value)
        break
      case 'connection':
        connectionTokens = namedByConnection(value, connectionTokens)
        break
      default:
        break
    }
  }
  if (authority !== undefined) {
    // RFC 9113 section 8.3.1: a Host that differs from :authority makes the request malformed.
    if (host !== undefined && host !== authority) problem = 'the host header differs from :authority'
    host = authority
  }
  const headers = withoutNamed(out, connectionTokens)
  if (cookie !== undefined) headers.push('cookie', cookie)
  requestId ??= randomUUID()
  if (host !== undefined) headers.push('host', host)
  const clientIp =
    trusted && xff !== undefined ? rightmostUntrusted(xff, side.trusted!, side.peer) : side.peer
  headers.push(
    'x-forwarded-for',
    xff === undefined ? side.peer : `${xff}, ${side.peer}`,
    'x-forwarded-proto',
    xfProto ?? side.proto,
    'x-request-id',
    requestId,
  )
  const forwardedHost = xfHost ?? host
  if (forwardedHost !== undefined) headers.push('x-forwarded-host', forwardedHost)
  return { headers, requestId, hasBody, contentLength, transferEncoding, host, clientIp, problem }
}

/** `x-forwarded-*` by its prefix, without lowercasing names that cannot be one. */
function isForwardingFamily(name: string): boolean {
  const c = name.charCodeAt(0)
  return (c === 120 || c === 88) /* x X */ && name.toLowerCase().startsWith('x-forwarded-')
}

const nameLengths = new WeakMap<ReadonlySet<string>, ReadonlySet<number>>()

/**
 * The lengths of the names in a set (the protected names, made once per config; a middleware's
 * response headers to drop, made once per middleware): a name of another length is not one of
 * them, and is not lowercased to find out (`_` as `-` keeps the length).
 */
function lengthsOf(names: ReadonlySet<string>): ReadonlySet<number> {
  let lengths = nameLengths.get(names)
  if (lengths === undefined) {
    lengths = new Set([...names].map((n) => n.length))
    nameLengths.set(names, lengths)
  }
  return lengths
}

/** Case and `_`/`-` variants alike: some servers (CGI, nginx's underscores) read them as one. */
function isProtected(name: string, names: ReadonlySet<string>): boolean {
  const lower = name.toLowerCase()
  return names.has(lower.includes('_') ? lower.replaceAll('_', '-') : lower)
}

/**
 * The client behind trusted proxies: walking X-Forwarded-For from the right, the first hop that
 * is not a trusted proxy. A hop that is not an IP address ends the walk at the hop before it.
 */
function rightmostUntrusted(xff: string, trusted: (ip: string) => boolean, peer: string): string {
  const hops = xff.split(',')
  let last = peer
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = clientIp(hops[i]!.trim())
    if (isIP(hop) === 0) return last
    if (!trusted(hop)) return hop
    last = hop
  }
  return last
}

/**
 * Upstream response headers (undici's raw Buffers) to a flat string array for writeHead, without
 * hop-by-hop headers, with X-Request-Id appended. `out.contentLength` gets the Content-Length
 * (-1 when absent), `out.fieldCount` how many entries at the start are the upstream's own fields.
 * Names are only lowercased when their length could match a header we act on.
 */
export function downstreamResponseHeaders(
  raw: readonly (Buffer | string)[],
  requestId: string,
  close: boolean,
  extra?: readonly string[],
  drop?: ReadonlySet<string>,
  out: { contentLength: number; fieldCount: number } = { contentLength: -1, fieldCount: 0 },
): string[] {
  const headers: string[] = []
  let connectionTokens: string[] | undefined
  out.contentLength = -1
  // A name of a length none of `drop`'s has is not lowercased to find out (cors drops six).
  const dropLengths = drop === undefined ? undefined : lengthsOf(drop)
  for (let i = 0; i < raw.length; i += 2) {
    const nb = raw[i]!
    const vb = raw[i + 1]!
    const len = nb.length
    const name = latin1(nb)
    if (dropLengths?.has(len) && drop!.has(name.toLowerCase())) continue
    if (RESPONSE_LENGTHS.has(len) || len === 12 || len === 14) {
      const lower = name.toLowerCase()
      if (HOP_BY_HOP.has(lower)) {
        // `keep-alive` and `close` name no other header: only parse other Connection values.
        if (lower === 'connection' && vb.length !== 10 && vb.length !== 5) {
          connectionTokens = namedByConnection(latin1(vb), connectionTokens)
        }
        continue
      }
      if (lower === 'x-request-id') continue
      if (lower === 'content-length') out.contentLength = Number(latin1(vb))
    }
    headers.push(name, latin1(vb))
  }
  const result = withoutNamed(headers, connectionTokens)
  // The upstream's own fields come first, as it sent them: the first `fieldCount` entries.
  out.fieldCount = result.length
  if (extra !== undefined) result.push(...extra)
  result.push('x-request-id', requestId)
  if (close) result.push('connection', 'close')
  return result
}

/**
 * A field from undici (a Buffer) or from the built-in client (already a latin1 string) as a
 * string. Buffer.prototype.latin1Slice is what toString('latin1') ends in, minus its argument
 * handling (undici calls it directly too); ten headers a response add up.
 */
function latin1(b: Buffer | string): string {
  if (typeof b === 'string') return b
  return (b as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(0, b.length)
}

/** Header names a `Connection` value lists (RFC 9110 section 7.6.1: they are hop-by-hop too). */
function namedByConnection(value: string, into: string[] | undefined): string[] | undefined {
  for (const t of value.split(',')) {
    const token = t.trim().toLowerCase()
    if (token && !HOP_BY_HOP.has(token)) {
      into ??= []
      into.push(token)
    }
  }
  return into
}

function withoutNamed(flat: string[], names: string[] | undefined): string[] {
  if (names === undefined) return flat
  const drop = new Set(names)
  const out: string[] = []
  for (let i = 0; i < flat.length; i += 2) {
    if (!drop.has(flat[i]!.toLowerCase())) out.push(flat[i]!, flat[i + 1]!)
  }
  return out
}

/** `::ffff:1.2.3.4` (IPv4-mapped) to `1.2.3.4`. */
export function clientIp(remote: string | undefined): string {
  if (remote === undefined) return 'unknown'
  return remote.startsWith('::ffff:') ? remote.slice(7) : remote
}

/** What a ServerResponse (HTTP/1 or the HTTP/2 compatibility one) offers writeResponseHead. */
interface HeadWriter {
  /** The own HTTP/1.1 server side's (H1Response): fields its next writeHead need not check. */
  checkedFields?: readonly string[] | undefined
  statusMessage: string
  writeHead(status: number, reason: string, headers: string[]): unknown
  writeHead(status: number, headers: string[]): unknown
  getHeaderNames(): string[]
  removeHeader(name: string): void
}

// Node's HTTP/2 layer refuses a second value for these (lib/internal/http2/util.js).
const H2_SINGLE_VALUE = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
])

/**
 * Writes the response head an upstream sent. Node validates what it writes (a reason phrase
 * with control characters, a second Content-Type for an HTTP/2 client...) and throws; an
 * upstream must not be able to leave the client hanging that way. The common case costs one
 * call; on a throw the head is cleaned (no reason phrase; for HTTP/2, first values only) and
 * written once more. Returns false when even that fails: the caller answers 502. `checked`:
 * fields a strict parser already held to the writer's rules (H1Response.checkedFields).
 */
export function writeResponseHead(
  res: HeadWriter,
  status: number,
  reason: string | undefined,
  headers: string[],
  h2: boolean,
  checked?: readonly string[],
): boolean {
  // Only the own server side takes it (a field of its class); node:http's and HTTP/2's
  // responses check every field themselves.
  if (checked !== undefined && 'checkedFields' in res) res.checkedFields = checked
  try {
    if (reason && !h2) res.writeHead(status, reason, headers)
    else res.writeHead(status, headers)
    return true
  } catch {
    resetHead(res)
  }
  try {
    res.writeHead(status, h2 ? firstValues(headers) : headers)
    return true
  } catch {
    resetHead(res)
    return false
  }
}

/** Forgets what a failed writeHead left behind (the reason phrase, HTTP/2's stored headers). */
export function resetHead(res: HeadWriter): void {
  res.statusMessage = ''
  for (const n of res.getHeaderNames()) res.removeHeader(n)
}

function firstValues(headers: string[]): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase()
    if (HOP_BY_HOP.has(lower)) continue
    if (H2_SINGLE_VALUE.has(lower)) {
      if (seen.has(lower)) continue
      seen.add(lower)
    }
    out.push(headers[i]!, headers[i + 1]!)
  }
  return out
}
