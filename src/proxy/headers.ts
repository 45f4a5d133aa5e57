// Header rewriting on the way up and down: hop-by-hop headers dropped (RFC 9110 section 7.6.1),
// X-Forwarded-For/-Proto/-Host set, X-Request-Id kept when well formed or made. Works on Node's
// flat raw header arrays, lowercasing only names whose length could match a header we act on.

import { randomUUID } from 'node:crypto'

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
])

// Request headers the proxy replaces or must not pass on: `expect` because Node answers
// `100-continue` itself; the X-Forwarded-* and X-Request-Id values are rebuilt below.
const REQUEST_SPECIAL = new Set([
  ...HOP_BY_HOP,
  'host',
  'expect',
  'content-length',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
])
const REQUEST_LENGTHS = new Set([...REQUEST_SPECIAL].map((n) => n.length))
const RESPONSE_LENGTHS = new Set([...HOP_BY_HOP].map((n) => n.length))

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,200}$/

export interface UpstreamRequestHead {
  /** Flat [name, value, ...] array for undici. */
  headers: string[]
  requestId: string
  /** The request carries a body (Content-Length > 0 or Transfer-Encoding). */
  hasBody: boolean
  /** Client's Host header, if any. */
  host: string | undefined
  clientIp: string
}

export interface ForwardedFor {
  clientIp: string
  proto: 'http' | 'https'
  /** Host header sent upstream instead of the client's one (upstream `sni`). */
  hostOverride: string | undefined
}

/**
 * Builds the upstream request headers from the client's raw headers. Connection-named headers
 * (`Connection: foo` makes `foo` hop-by-hop) are dropped too.
 */
export function upstreamRequestHead(raw: readonly string[], fwd: ForwardedFor): UpstreamRequestHead {
  const out: string[] = []
  let requestId: string | undefined
  let host: string | undefined
  let xff: string | undefined
  let hasBody = false
  let connectionTokens: string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    if (name.charCodeAt(0) === 58 /* : */) {
      // HTTP/2 pseudo-headers: `:authority` is the Host (RFC 9113 section 8.3.1); the rest
      // (:method, :path, :scheme) travel in the HTTP/1.1 request line instead.
      if (name === ':authority' && host === undefined) host = value
      continue
    }
    if (!REQUEST_LENGTHS.has(name.length)) {
      out.push(name, value)
      continue
    }
    const lower = name.toLowerCase()
    if (!REQUEST_SPECIAL.has(lower)) {
      out.push(name, value)
      continue
    }
    switch (lower) {
      case 'host':
        host = value
        break
      case 'content-length':
        if (value !== '0') hasBody = true
        out.push(name, value)
        break
      case 'transfer-encoding':
        hasBody = true
        break
      case 'x-request-id':
        if (requestId === undefined && REQUEST_ID.test(value)) requestId = value
        break
      case 'x-forwarded-for':
        xff = xff === undefined ? value : `${xff}, ${value}`
        break
      case 'connection':
        connectionTokens = namedByConnection(value, connectionTokens)
        break
      default:
        break
    }
  }
  const headers = withoutNamed(out, connectionTokens)
  requestId ??= randomUUID()
  const upstreamHost = fwd.hostOverride ?? host
  if (upstreamHost !== undefined) headers.push('host', upstreamHost)
  headers.push(
    'x-forwarded-for',
    xff === undefined ? fwd.clientIp : `${xff}, ${fwd.clientIp}`,
    'x-forwarded-proto',
    fwd.proto,
    'x-request-id',
    requestId,
  )
  if (host !== undefined) headers.push('x-forwarded-host', host)
  return { headers, requestId, hasBody, host, clientIp: fwd.clientIp }
}

/**
 * Upstream response headers (undici's raw Buffers) to a flat string array for writeHead, without
 * hop-by-hop headers, with X-Request-Id appended. `out.contentLength` gets the Content-Length
 * (-1 when absent). Names are only lowercased when their length could match a header we act on.
 */
export function downstreamResponseHeaders(
  raw: readonly Buffer[],
  requestId: string,
  close: boolean,
  extra?: readonly string[],
  drop?: ReadonlySet<string>,
  out: { contentLength: number } = { contentLength: -1 },
): string[] {
  const headers: string[] = []
  let connectionTokens: string[] | undefined
  out.contentLength = -1
  for (let i = 0; i < raw.length; i += 2) {
    const nb = raw[i]!
    const vb = raw[i + 1]!
    const len = nb.length
    const name = latin1(nb)
    if (drop?.has(name.toLowerCase())) continue
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
  if (extra !== undefined) result.push(...extra)
  result.push('x-request-id', requestId)
  if (close) result.push('connection', 'close')
  return result
}

/**
 * Buffer to a latin1 string. Buffer.prototype.latin1Slice is what toString('latin1') ends in,
 * minus its argument handling (undici calls it directly too); ten headers a response add up.
 */
function latin1(b: Buffer): string {
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
