// HTTP/1.1 inputs for the fuzz run, built as "binary strings" (one char per byte) so invalid
// UTF-8, NUL and CR/LF go on the wire exactly as chosen. Every input starts its headers with
// `x-fuzz-id: <class>.<iteration>` so a request that reaches an upstream can be traced back to
// the input that sent it, and says whether it carries a token the gateway may accept.

import { fuzzToken } from './jwt'
import type { Rng } from './prng'
import type { Step, WireInput } from './wire'

export interface H1Input extends WireInput {
  id: string
  /** The mutations chosen, for the failure message. */
  what: string[]
  /** Carries a token the gateway may accept; every other request to a protected path must be refused. */
  acceptable: boolean
}

/** UTF-8 bytes of `s` as a binary string. */
const u8 = (s: string) => Buffer.from(s, 'utf8').toString('latin1')
const bin = (s: string) => Buffer.from(s, 'latin1')

export const FORGED_IP = '6.6.6.6'
export const FORGED_HOST = 'forged.example'
export const FORGED_USER = 'forged-user'
export const SMUGGLED = 'x-fuzz-smuggled'

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'PRI']

function method(rng: Rng): string {
  return rng.weighted<() => string>([
    [10, () => rng.pick(METHODS)],
    [2, () => rng.pick(METHODS).toLowerCase()],
    [2, () => rng.str(rng.int(1, 12), "ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&'*+-.^_`|~")],
    [
      2,
      () =>
        rng
          .bytes(rng.int(1, 10))
          .toString('latin1')
          .replace(/[ \r\n]/g, ''),
    ],
    [1, () => 'G'.repeat(rng.int(1_000, 70_000))],
    [1, () => ''],
    [1, () => u8('GËT')],
    [1, () => 'GET\x00'],
  ])()
}

const PIECES = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2e',
  '.%2e',
  '%2e',
  '%2f',
  '%2F',
  '%5c',
  '\\',
  '..\\',
  ';',
  ';x=1',
  '..;',
  '',
  '%00',
  '\x00',
  '%',
  '%zz',
  '%ff%fe',
  u8('é'),
  u8('用户'),
  '\xff\xfe',
  '\xc0\xae\xc0\xae',
  '%c0%ae%c0%ae',
  'admin',
  'public',
  'ws',
  'x',
  '%252e%252e',
  '..%2f',
  '..%5c',
  '?q=..',
  '#frag',
  '\t',
  '~',
]

export function target(rng: Rng): string {
  return rng.weighted<() => string>([
    [12, () => originForm(rng)],
    [
      2,
      () =>
        `${rng.pick(['http', 'https', 'HTTP', 'ftp', 'ws'])}://${rng.pick(['127.0.0.1', 'absolute.example', '[::1]', 'a@b', '', '127.0.0.1:1'])}${originForm(rng)}`,
    ],
    [1, () => rng.pick(['127.0.0.1:80', 'absolute.example:443', '[::1]:1', ':0', 'a:b:c'])],
    [1, () => '*'],
    [1, () => `/${'a'.repeat(rng.int(8_000, 90_000))}`],
    [1, () => `/public/?${'q=1&'.repeat(rng.int(1_000, 10_000))}`],
    [1, () => ''],
    [
      1,
      () =>
        rng
          .bytes(rng.int(1, 40))
          .toString('latin1')
          .replace(/[ \r\n]/g, '_'),
    ],
  ])()
}

function originForm(rng: Rng): string {
  const base = rng.pick(['/', '/public/', '/public', '/admin', '/ws', '/ws/', '//', '/api/users/', ''])
  let s = base
  const n = rng.int(0, 6)
  for (let i = 0; i < n; i++) {
    s += rng.pick(PIECES)
    if (rng.chance(0.7)) s += rng.pick(['/', '/', '/', '\\', '%2f', '//'])
  }
  if (rng.chance(0.2)) s += rng.pick(['admin', 'secret', 'ws'])
  return s
}

function version(rng: Rng): string | undefined {
  return rng.weighted<() => string | undefined>([
    [14, () => 'HTTP/1.1'],
    [3, () => 'HTTP/1.0'],
    [1, () => undefined], // HTTP/0.9 style: no version at all
    [1, () => 'HTTP/2.0'],
    [1, () => 'HTTP/9.9'],
    [1, () => 'HTTP/1.01'],
    [1, () => 'http/1.1'],
    [1, () => 'HTTP/1.1 x'],
    [1, () => 'HTTP/'],
    [1, () => 'HTTP/1.1\x00'],
    [1, () => rng.str(rng.int(1, 20), 'HTP/0123456789.xyz ')],
  ])()
}

function lineEnd(rng: Rng): string {
  return rng.weighted([
    [20, '\r\n'],
    [2, '\n'],
    [1, '\r'],
    [1, '\r\r\n'],
  ])
}

function authorization(rng: Rng, what: string[]): { line: string | undefined; acceptable: boolean } {
  if (rng.chance(0.35)) return { line: undefined, acceptable: false }
  const t = fuzzToken(rng)
  const scheme = rng.weighted([
    [8, 'Bearer '],
    [1, 'bearer '],
    [1, 'Bearer  '],
    [1, 'Basic '],
    [1, ''],
  ])
  what.push(`token: ${t.what}${scheme === 'Bearer ' ? '' : ` (scheme ${JSON.stringify(scheme)})`}`)
  return { line: `Authorization: ${scheme}${t.token}`, acceptable: t.acceptable }
}

function head(requestLine: string, id: string, lines: string[], eol: string): string {
  return `${requestLine}${eol}x-fuzz-id: ${id}${eol}${lines.map((l) => l + eol).join('')}${eol}`
}

/** Class 1: the request line (method, target, version, separators). */
export function requestLineInput(rng: Rng, id: string): H1Input {
  const what: string[] = []
  const m = method(rng)
  const t = target(rng)
  const v = version(rng)
  const sep = rng.weighted([
    [20, ' '],
    [1, '  '],
    [1, '\t'],
    [1, ''],
  ])
  const eol = lineEnd(rng)
  what.push(`method ${JSON.stringify(m.slice(0, 40))}${m.length > 40 ? `…(${m.length})` : ''}`)
  what.push(`target ${JSON.stringify(t.slice(0, 120))}${t.length > 120 ? `…(${t.length})` : ''}`)
  what.push(`version ${JSON.stringify(v)} sep ${JSON.stringify(sep)} eol ${JSON.stringify(eol)}`)
  const line = v === undefined ? `${m}${sep}${t}` : `${m}${sep}${t}${sep}${v}`
  const lines = ['Host: 127.0.0.1']
  const auth = authorization(rng, what)
  if (auth.line) lines.push(auth.line)
  const body = rng.chance(0.2) ? rng.str(rng.int(0, 64)) : undefined
  if (body !== undefined) lines.push(`Content-Length: ${body.length}`)
  const pipelined = rng.chance(0.1)
  if (pipelined) what.push('a second request pipelined')
  let wire = head(line, id, lines, eol) + (body ?? '')
  if (pipelined) wire += head('GET /public/pipelined HTTP/1.1', `${id}.2`, ['Host: 127.0.0.1'], '\r\n')
  return { id, what, acceptable: auth.acceptable, steps: [bin(wire)], endWrite: rng.chance(0.7) }
}

type HeaderMutation = (rng: Rng, h: HeadBuilder) => void

interface HeadBuilder {
  lines: string[]
  what: string[]
  body: string
  /** Replaces the default `Host: 127.0.0.1`. */
  host: boolean
  acceptable: boolean
  target: string
  method: string
}

const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

const HEADER_MUTATIONS: readonly (readonly [number, string, HeaderMutation])[] = [
  [
    2,
    'Host twice',
    (rng, h) => h.lines.push(`Host: ${rng.pick(['127.0.0.1', 'other.example', 'other', ''])}`),
  ],
  [
    1,
    'no Host',
    (_r, h) => {
      h.host = false
    },
  ],
  [
    1,
    'odd Host',
    (rng, h) => {
      h.host = false
      h.lines.push(
        `Host: ${rng.pick(['', ' ', '127.0.0.1:99999', 'a b', '[::1', 'x'.repeat(5000), u8('hôst'), '127.0.0.1\x00evil', '@', 'a/b'])}`,
      )
    },
  ],
  [
    2,
    'Content-Length twice',
    (rng, h) => {
      h.body = rng.str(rng.int(0, 20))
      h.lines.push(`Content-Length: ${h.body.length}`, `Content-Length: ${h.body.length + rng.int(1, 9)}`)
    },
  ],
  [
    2,
    'odd Content-Length',
    (rng, h) => {
      h.body = rng.str(rng.int(0, 20))
      h.lines.push(
        `Content-Length: ${rng.pick(['-1', '+5', ' 5', '5, 5', '0x10', '99999999999999999999', '1e3', '', 'abc', `${h.body.length}\x00`, '18446744073709551616'])}`,
      )
    },
  ],
  [
    3,
    'CL and TE',
    (rng, h) => {
      const smuggled = `GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n${SMUGGLED}: 1\r\n\r\n`
      const chunk = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`
      h.body = chunk
      h.lines.push(
        `Content-Length: ${rng.pick([chunk.length, chunk.length + 10, 4, 0])}`,
        `Transfer-Encoding: ${rng.pick(['chunked', 'Chunked', ' chunked', 'chunked ', 'xchunked', 'chunked, identity', 'identity, chunked', 'chunked\x0b', '"chunked"'])}`,
      )
      if (rng.chance(0.3)) h.lines.push('Transfer-Encoding: chunked')
    },
  ],
  [
    1,
    'obs-fold',
    (rng, h) =>
      h.lines.push(
        `${rng.pick(['X-Folded', 'Authorization', 'X-User-Id', 'Content-Length', 'Transfer-Encoding'])}: a\r\n ${rng.pick(['b', 'chunked', FORGED_USER, '5'])}`,
      ),
  ],
  [
    2,
    'invalid name characters',
    (rng, h) =>
      h.lines.push(
        `${rng.pick(['X A', 'X:A', 'X\x00A', '\x7f', u8('Ünï'), '', ' X-Lead', 'X-Trail ', '(x)', 'x\ty'])}: v`,
      ),
  ],
  [
    2,
    'invalid value characters',
    (rng, h) =>
      h.lines.push(
        `X-Value: ${rng.pick(['a\x00b', '\x7f', 'a\rb', u8('ü用'), '\xff\xfe', 'a\x0bb', '\x1b[31m'])}`,
      ),
  ],
  [1, 'huge value', (rng, h) => h.lines.push(`X-Huge: ${'v'.repeat(rng.int(8_000, 90_000))}`)],
  [
    1,
    'many headers',
    (rng, h) => {
      const n = rng.int(100, 3_000)
      for (let i = 0; i < n; i++) h.lines.push(`X-Many-${i % 50}: ${i}`)
    },
  ],
  [
    3,
    'upgrade',
    (rng, h) => {
      h.target = rng.pick(['/ws', '/ws/chat', '/public/ws', '/admin', '/public/../ws'])
      h.method = rng.pick(['GET', 'GET', 'POST', 'CONNECT'])
      h.lines.push(
        `Connection: ${rng.pick(['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'close', 'Upgrade, HTTP2-Settings'])}`,
        `Upgrade: ${rng.pick(['websocket', 'WebSocket', 'h2c', 'garbage', '', 'websocket, h2c', 'TLS/1.0'])}`,
      )
      if (rng.chance(0.7))
        h.lines.push(`Sec-WebSocket-Key: ${rng.pick([WS_KEY, '', 'short', 'x'.repeat(200)])}`)
      if (rng.chance(0.7)) h.lines.push(`Sec-WebSocket-Version: ${rng.pick(['13', '8', 'x', ''])}`)
      if (rng.chance(0.2)) h.lines.push('HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA')
      // Bytes after the handshake: a masked text frame, garbage, or nothing.
      h.body = rng.pick([
        '',
        '\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58',
        rng.bytes(rng.int(1, 64)).toString('latin1'),
      ])
    },
  ],
  [
    2,
    'Expect',
    (rng, h) => {
      h.method = 'POST'
      h.lines.push(`Expect: ${rng.pick(['100-continue', '100-Continue', 'garbage', '200-ok'])}`)
      if (rng.chance(0.7)) {
        h.body = rng.str(rng.int(0, 30))
        h.lines.push(`Content-Length: ${h.body.length}`)
      }
    },
  ],
  [
    3,
    'forwarded forgeries',
    (rng, h) => {
      const n = rng.int(1, 4)
      for (let i = 0; i < n; i++) {
        h.lines.push(
          rng.pick([
            `X-Forwarded-For: ${FORGED_IP}`,
            `X-Forwarded-For: ${FORGED_IP}, 10.0.0.1`,
            'X-Forwarded-Proto: https',
            `X-Forwarded-Host: ${FORGED_HOST}`,
            `Forwarded: for=${FORGED_IP};proto=https;host=${FORGED_HOST}`,
            `X-Real-IP: ${FORGED_IP}`,
            `x-forwarded-for: ${FORGED_IP}`,
            `X-Forwarded-For: ${'1.2.3.4, '.repeat(rng.int(100, 2_000))}${FORGED_IP}`,
          ]),
        )
      }
    },
  ],
  [
    4,
    'authorization',
    (rng, h) => {
      const n = rng.int(1, 2)
      for (let i = 0; i < n; i++) {
        const t = fuzzToken(rng)
        h.what.push(`token: ${t.what}`)
        h.acceptable ||= t.acceptable
        h.lines.push(
          `${rng.pick(['Authorization', 'authorization', 'AUTHORIZATION'])}: ${rng.pick(['Bearer ', 'bearer ', 'Bearer\t', 'Basic '])}${t.token}`,
        )
      }
    },
  ],
  [
    3,
    'X-User-Id forgery',
    (rng, h) =>
      h.lines.push(
        `${rng.pick(['X-User-Id', 'x-user-id', 'X-USER-ID', 'X-User-Id '])}: ${FORGED_USER}${rng.pick(['', ', admin', '\t'])}`,
      ),
  ],
  [
    1,
    'hop-by-hop naming a header',
    (rng, h) =>
      h.lines.push(
        `Connection: ${rng.pick(['Authorization', 'X-User-Id', 'X-Forwarded-For', 'Host', 'Content-Length'])}`,
      ),
  ],
  [
    1,
    'odd X-Request-Id',
    (rng, h) => h.lines.push(`X-Request-Id: ${rng.pick(['', '\x01', 'a'.repeat(500), u8('ïd'), '../../x'])}`),
  ],
  [
    1,
    'CORS preflight',
    (rng, h) => {
      h.method = 'OPTIONS'
      h.lines.push(
        `Origin: ${rng.pick(['https://evil.example', 'null', '', u8('https://ü.example'), 'x'.repeat(3000)])}`,
        `Access-Control-Request-Method: ${rng.pick(['GET', 'DELETE', 'X', ''])}`,
      )
      if (rng.chance(0.5))
        h.lines.push(
          `Access-Control-Request-Headers: ${rng.pick(['authorization', 'x-user-id', '*', 'a,,b'])}`,
        )
    },
  ],
]

/** Class 2: header mutations on a well-formed request line. */
export function headerInput(rng: Rng, id: string): H1Input {
  const h: HeadBuilder = {
    lines: [],
    what: [],
    body: '',
    host: true,
    acceptable: false,
    target: rng.pick(['/', '/admin', '/public/x', '/api/users/1', '/ws']),
    method: rng.pick(['GET', 'GET', 'POST', 'PUT']),
  }
  const n = rng.int(1, 4)
  for (let i = 0; i < n; i++) {
    const [, name, mutate] = rng.weighted(HEADER_MUTATIONS.map((m) => [m[0], m] as const))
    h.what.push(name)
    mutate(rng, h)
  }
  if (h.host) h.lines.unshift('Host: 127.0.0.1')
  h.what.unshift(`${h.method} ${h.target}`)
  const wire = head(`${h.method} ${h.target} HTTP/1.1`, id, h.lines, '\r\n') + h.body
  return { id, what: h.what, acceptable: h.acceptable, steps: [bin(wire)], endWrite: rng.chance(0.6) }
}

/** Class 3: chunked bodies: bad sizes, missing CRLF, trailers, truncation and slow drip. */
export function chunkedInput(rng: Rng, id: string): H1Input {
  const what: string[] = []
  const t = rng.chance(0.5) ? fuzzToken(rng) : undefined
  if (t) what.push(`token: ${t.what}`)
  const path = rng.pick(['/public/upload', '/upload', '/ws'])
  const lines = ['Host: 127.0.0.1', 'Transfer-Encoding: chunked']
  if (t) lines.push(`Authorization: Bearer ${t.token}`)
  if (rng.chance(0.15)) lines.push('Expect: 100-continue')
  let body = ''
  const chunks = rng.int(0, 5)
  for (let i = 0; i < chunks; i++) {
    const data = rng.chance(0.2)
      ? `GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n${SMUGGLED}: 1\r\n\r\n`
      : rng.str(rng.int(0, 40))
    const kind = rng.weighted<string>([
      [10, 'ok'],
      [1, 'bad size'],
      [1, 'huge size'],
      [1, 'size too small'],
      [1, 'size too large'],
      [1, 'missing CRLF'],
      [1, 'LF only'],
      [1, 'extension'],
    ])
    if (kind !== 'ok') what.push(`chunk ${i}: ${kind}`)
    const hex = data.length.toString(16)
    switch (kind) {
      case 'bad size':
        body += `${rng.pick(['zz', '-1', '0x10', ' 5', '', '5 5', '+5', u8('５'), '\x00'])}\r\n${data}\r\n`
        break
      case 'huge size':
        body += `${rng.pick(['FFFFFFFFFFFF', 'FFFFFFFFFFFFFFFF', '1'.padEnd(40, '0'), '7fffffff'])}\r\n${data}\r\n`
        break
      case 'size too small':
        body += `${Math.max(0, data.length - rng.int(1, 5)).toString(16)}\r\n${data}\r\n`
        break
      case 'size too large':
        body += `${(data.length + rng.int(1, 50)).toString(16)}\r\n${data}\r\n`
        break
      case 'missing CRLF':
        body += `${hex}\r\n${data}`
        break
      case 'LF only':
        body += `${hex}\n${data}\n`
        break
      case 'extension':
        body += `${hex};${rng.pick(['a=b', 'a="b"', 'x'.repeat(5000), '\x00', '=', ';;'])}\r\n${data}\r\n`
        break
      default:
        body += `${hex}\r\n${data}\r\n`
    }
  }
  const ending = rng.weighted<string>([
    [8, 'last chunk'],
    [2, 'trailers'],
    [2, 'truncated'],
    [1, 'no final CRLF'],
  ])
  what.push(ending)
  if (ending === 'last chunk') body += '0\r\n\r\n'
  else if (ending === 'trailers') {
    body += `0\r\n${rng.pick([`X-Trailer: a\r\n`, `X-User-Id: ${FORGED_USER}\r\n`, 'Content-Length: 5\r\n', `X-Big: ${'t'.repeat(rng.int(100, 20_000))}\r\n`, 'Bad Trailer\r\n'])}\r\n`
  } else if (ending === 'truncated') body = body.slice(0, rng.int(0, body.length))
  else body += '0\r\n'
  const wire = bin(head(`${rng.pick(['POST', 'PUT', 'GET'])} ${path} HTTP/1.1`, id, lines, '\r\n') + body)
  const steps: Step[] = []
  const drip = rng.chance(0.25)
  if (drip) {
    // A slow client: a few bytes, a pause, repeated; then maybe a stall (the fuzzer's idle timeout ends it).
    what.push('slow drip')
    let at = 0
    while (at < wire.length && steps.length < 40) {
      const n = rng.int(1, 64)
      steps.push(wire.subarray(at, at + n), { pauseMs: rng.int(5, 60) })
      at += n
    }
    if (at < wire.length) steps.push(wire.subarray(at))
  } else steps.push(wire)
  const endWrite = ending !== 'truncated' && rng.chance(0.7)
  what.unshift(path)
  return { id, what, acceptable: t?.acceptable ?? false, steps, endWrite }
}
