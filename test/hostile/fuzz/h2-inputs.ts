// HTTP/2 inputs: raw frame sequences (sent after a valid TLS + ALPN h2 handshake and the client
// preface) and odd requests made with node:http2's own client. The HPACK encoder here writes
// literal fields without Huffman coding (RFC 7541 section 6.2.2), enough to say anything.

import http2 from 'node:http2'
import type { Rng } from './prng'

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

export const T = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const
const END_STREAM = 0x1
const ACK = 0x1
const END_HEADERS = 0x4
const PADDED = 0x8
const PRIORITY_FLAG = 0x20

export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer,
  length = payload.length,
): Buffer {
  const h = Buffer.alloc(9)
  h.writeUIntBE(length & 0xffffff, 0, 3)
  h[3] = type
  h[4] = flags
  h.writeUInt32BE(stream >>> 0, 5)
  return Buffer.concat([h, payload])
}

function hpackInt(value: number, prefixBits: number, firstByteFlags: number): Buffer {
  const max = (1 << prefixBits) - 1
  if (value < max) return Buffer.from([firstByteFlags | value])
  const out = [firstByteFlags | max]
  let v = value - max
  while (v >= 128) {
    out.push((v % 128) + 128)
    v = Math.floor(v / 128)
  }
  out.push(v)
  return Buffer.from(out)
}

/** A literal header field without indexing, new name, no Huffman. */
export function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1')
  const v = Buffer.from(value, 'latin1')
  return Buffer.concat([Buffer.from([0]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v])
}

export function block(fields: [string, string][]): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)))
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

function settings(rng: Rng): Buffer {
  const n = rng.int(0, 6)
  const parts: Buffer[] = []
  for (let i = 0; i < n; i++) {
    const b = Buffer.alloc(6)
    b.writeUInt16BE(rng.pick([1, 2, 3, 4, 5, 6, 8, 9, 0, 0xffff, rng.int(0, 0xffff)]))
    b.writeUInt32BE(
      rng.pick([
        0,
        1,
        2,
        16_383,
        16_384,
        65_535,
        2 ** 24 - 1,
        2 ** 24,
        2 ** 31 - 1,
        2 ** 31,
        2 ** 32 - 1,
        rng.u32(),
      ]),
    )
    parts.push(b)
  }
  return Buffer.concat(parts)
}

function fields(rng: Rng, id: string): [string, string][] {
  const f: [string, string][] = [
    [':method', rng.pick(['GET', 'GET', 'POST', 'CONNECT', 'get', '', 'G E T'])],
    [':scheme', rng.pick(['https', 'https', 'http', 'ftp', ''])],
    [
      ':path',
      rng.pick([
        '/',
        '/fuzz',
        '',
        '*',
        'no-slash',
        '/public/../x',
        '/%2e%2e/',
        '/\x00',
        `/${'p'.repeat(20_000)}`,
      ]),
    ],
    [':authority', rng.pick(['127.0.0.1', 'localhost', '', 'a b', 'x'.repeat(3_000)])],
    ['x-fuzz-id', id],
  ]
  const edits = rng.int(0, 3)
  for (let i = 0; i < edits; i++) {
    rng.pick<() => void>([
      () => f.splice(rng.int(0, 3), 1), // a pseudo-header missing
      () => f.push([':path', '/dup']),
      () => f.push([':unknown', 'x']),
      () => f.push([':protocol', 'websocket']),
      () => f.push(['Upper-Case', 'v']),
      () => f.push(['connection', 'keep-alive']),
      () => f.push(['te', rng.pick(['trailers', 'gzip'])]),
      () => f.push(['transfer-encoding', 'chunked']),
      () => f.push(['host', 'other.example']),
      () => f.push(['content-length', rng.pick(['0', '5', '-1', 'x', '99999999999'])]),
      () => f.push(['cookie', 'a=1'], ['cookie', 'b=2']),
      () => f.push(['x-bad', 'a\r\nb']),
      () => f.push(['', 'empty-name']),
      () => f.push(['x-huge', 'h'.repeat(rng.int(10_000, 70_000))]),
      () => {
        f.push([':method', 'GET']) // pseudo after regular
      },
    ])()
  }
  return f
}

/** Invalid HPACK: indexes beyond the tables, truncated literals, huge integers, size updates mid-block. */
function badHpack(rng: Rng): Buffer {
  return rng.pick<() => Buffer>([
    () => Buffer.from([0x80]), // index 0
    () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), // index far beyond the table
    () => Buffer.from([0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f]), // name length 2^35
    () => Buffer.from([0x00, 0x05, 0x61]), // truncated name
    () => Buffer.from([0x82, 0x3f, 0xe1, 0xff, 0xff, 0x0f]), // table size update after a field
    () => Buffer.from([0x3f, 0xff, 0xff, 0xff, 0xff, 0x0f]), // table size update too large
    () => Buffer.from([0x00, 0x81, 0xff, 0x01, 0x61]), // invalid Huffman name
    () => rng.bytes(rng.int(1, 200)),
  ])()
}

export interface H2RawInput {
  id: string
  what: string[]
  bytes: Buffer
}

/** Class 4: a valid preface, then 1..12 mutated frames (some of them floods). */
export function h2FramesInput(rng: Rng, id: string): H2RawInput {
  const what: string[] = []
  const out: Buffer[] = [PREFACE, frame(T.SETTINGS, 0, 0, rng.chance(0.3) ? settings(rng) : Buffer.alloc(0))]
  let stream = 1
  const nextStream = () => {
    const s = stream
    stream += 2
    return s
  }
  const n = rng.int(1, 12)
  let budget = 1_500_000
  for (let i = 0; i < n && budget > 0; i++) {
    const kind = rng.weighted<string>([
      [4, 'request'],
      [2, 'settings'],
      [2, 'bad hpack'],
      [1, 'continuation flood'],
      [1, 'rapid reset'],
      [2, 'window update'],
      [1, 'priority self-dependency'],
      [2, 'data on closed/idle stream'],
      [1, 'ping flood'],
      [1, 'goaway'],
      [1, 'bad padding'],
      [1, 'oversize frame'],
      [1, 'unknown/odd frame'],
      [1, 'stream id abuse'],
    ])
    what.push(kind)
    const before = out.length
    switch (kind) {
      case 'request': {
        const s = nextStream()
        const f = fields(rng, id)
        const endStream = rng.chance(0.5)
        out.push(frame(T.HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), s, block(f)))
        if (!endStream) {
          out.push(frame(T.DATA, rng.chance(0.7) ? END_STREAM : 0, s, rng.bytes(rng.int(0, 2_000))))
        }
        break
      }
      case 'settings':
        out.push(
          rng.pick<() => Buffer>([
            () => frame(T.SETTINGS, 0, 0, settings(rng)),
            () => frame(T.SETTINGS, 0, 0, rng.bytes(rng.int(1, 11))), // length not a multiple of 6
            () => frame(T.SETTINGS, 0, rng.int(1, 9), settings(rng)), // on a stream
            () => frame(T.SETTINGS, ACK, 0, settings(rng)), // ACK with a payload
            () =>
              Buffer.concat(
                Array.from({ length: rng.int(100, 2_000) }, () => frame(T.SETTINGS, 0, 0, Buffer.alloc(0))),
              ),
          ])(),
        )
        break
      case 'bad hpack':
        out.push(frame(T.HEADERS, END_HEADERS | END_STREAM, nextStream(), badHpack(rng)))
        break
      case 'continuation flood': {
        const s = nextStream()
        out.push(
          frame(
            T.HEADERS,
            0,
            s,
            block([
              [':method', 'GET'],
              [':path', '/'],
            ]),
          ),
        )
        const count = rng.int(200, 3_000)
        for (let k = 0; k < count; k++)
          out.push(frame(T.CONTINUATION, 0, s, rng.chance(0.5) ? Buffer.alloc(0) : literal(`x-c${k}`, 'v')))
        if (rng.chance(0.3)) out.push(frame(T.CONTINUATION, END_HEADERS, s, Buffer.alloc(0)))
        break
      }
      case 'rapid reset': {
        const count = rng.int(50, 600)
        for (let k = 0; k < count; k++) {
          const s = nextStream()
          out.push(frame(T.HEADERS, END_HEADERS | END_STREAM, s, block(fields(rng, id).slice(0, 5))))
          out.push(frame(T.RST_STREAM, 0, s, u32(rng.pick([0, 8, 0xffffffff]))))
        }
        break
      }
      case 'window update':
        out.push(
          frame(
            T.WINDOW_UPDATE,
            0,
            rng.pick([0, 1, stream, 999]),
            u32(rng.pick([0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1])),
            rng.chance(0.1) ? rng.int(0, 8) : 4,
          ),
        )
        if (rng.chance(0.5)) out.push(frame(T.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1)))
        break
      case 'priority self-dependency': {
        const s = nextStream()
        const p = Buffer.alloc(5)
        p.writeUInt32BE((s | (rng.chance(0.5) ? 0x80000000 : 0)) >>> 0)
        p[4] = rng.int(0, 255)
        if (rng.chance(0.5)) out.push(frame(T.PRIORITY, 0, s, p, rng.chance(0.2) ? 4 : 5))
        else
          out.push(
            frame(
              T.HEADERS,
              END_HEADERS | END_STREAM | PRIORITY_FLAG,
              s,
              Buffer.concat([p, block(fields(rng, id))]),
            ),
          )
        break
      }
      case 'data on closed/idle stream':
        out.push(
          frame(
            T.DATA,
            rng.chance(0.5) ? END_STREAM : 0,
            rng.pick([0, 1, stream, stream + 100, 2]),
            rng.bytes(rng.int(0, 500)),
          ),
        )
        break
      case 'ping flood': {
        const count = rng.int(200, 5_000)
        const wrongLength = rng.chance(0.2)
        for (let k = 0; k < count; k++) out.push(frame(T.PING, 0, 0, rng.bytes(wrongLength ? 7 : 8)))
        break
      }
      case 'goaway': {
        const p = Buffer.concat([
          u32(rng.pick([0, stream, 2 ** 31 - 1])),
          u32(rng.int(0, 13)),
          rng.bytes(rng.int(0, 50)),
        ])
        out.push(frame(T.GOAWAY, 0, rng.pick([0, 0, 1]), p))
        break
      }
      case 'bad padding': {
        const payload = Buffer.concat([
          Buffer.from([rng.int(10, 255)]),
          block([
            [':method', 'GET'],
            [':path', '/'],
            [':scheme', 'https'],
          ]),
        ])
        out.push(
          frame(rng.pick([T.HEADERS, T.DATA]), PADDED | END_HEADERS | END_STREAM, nextStream(), payload),
        )
        break
      }
      case 'oversize frame':
        out.push(
          frame(rng.pick([T.DATA, T.HEADERS, T.PING]), 0, nextStream(), rng.bytes(rng.int(16_385, 40_000))),
        )
        break
      case 'unknown/odd frame':
        out.push(
          rng.pick<() => Buffer>([
            () => frame(rng.int(10, 255), rng.int(0, 255), rng.int(0, 5), rng.bytes(rng.int(0, 100))),
            () => frame(T.PUSH_PROMISE, END_HEADERS, 1, Buffer.concat([u32(2), block([[':path', '/']])])),
            () => frame(T.RST_STREAM, 0, 0, u32(1)),
            () => frame(T.RST_STREAM, 0, 1, rng.bytes(3)),
            () => frame(T.CONTINUATION, END_HEADERS, 1, block([['a', 'b']])),
            () =>
              frame(
                rng.int(0, 9),
                rng.int(0, 255),
                rng.u32(),
                rng.bytes(rng.int(0, 64)),
                rng.int(0, 0xffffff),
              ),
          ])(),
        )
        break
      case 'stream id abuse': {
        const s = rng.pick([0, 2, 1, 2 ** 31 - 1, 2 ** 31 + 1])
        out.push(frame(T.HEADERS, END_HEADERS | END_STREAM, s, block(fields(rng, id))))
        break
      }
    }
    for (let k = before; k < out.length; k++) budget -= out[k]!.length
  }
  return { id, what, bytes: Buffer.concat(out) }
}

export interface H2ClientInput {
  id: string
  what: string[]
  headers: http2.OutgoingHttpHeaders
  /** Request body chunks (written without a content-length). */
  body: Buffer[]
  /** Send trailers after the body. */
  trailers: boolean
  /** Abandon the stream (RST_STREAM CANCEL) after this many ms. */
  cancelAfterMs: number | undefined
}

/** Class 5: requests node:http2's client will send, with odd pseudo-headers and fields. */
export function h2ClientInput(rng: Rng, id: string): H2ClientInput {
  const what: string[] = []
  const headers: http2.OutgoingHttpHeaders = { 'x-fuzz-id': id }
  const edits = rng.int(1, 4)
  for (let i = 0; i < edits; i++) {
    const name = rng.pick([
      'CONNECT',
      'no :path',
      'odd :path',
      ':authority and another host',
      'cookies',
      'odd method',
      'uppercase name',
      'huge header',
      'many headers',
      'odd :scheme',
      'forwarded forgeries',
    ])
    what.push(name)
    switch (name) {
      case 'CONNECT':
        headers[':method'] = 'CONNECT'
        headers[':authority'] = rng.pick(['127.0.0.1:1', 'localhost:443', 'x'])
        break
      case 'no :path':
        headers[':path'] = undefined
        break
      case 'odd :path':
        headers[':path'] = rng.pick([
          '/../../etc/passwd',
          '//x',
          '/%2e%2e/',
          '/a?b#c',
          '/\\x',
          `/${'q'.repeat(rng.int(1_000, 30_000))}`,
          '/public/%2F..',
        ])
        break
      case ':authority and another host':
        headers[':authority'] = '127.0.0.1'
        headers.host = rng.pick(['other.example', '', 'x'.repeat(300)])
        break
      case 'cookies':
        headers.cookie = Array.from({ length: rng.int(2, 60) }, (_, k) => `c${k}=${rng.str(rng.int(0, 30))}`)
        break
      case 'odd method':
        headers[':method'] = rng.pick(['PRI', 'TRACE', 'PURGE', 'M-SEARCH', 'get', 'X'.repeat(200)])
        break
      case 'uppercase name':
        headers['X-Upper'] = 'v'
        break
      case 'huge header':
        headers['x-huge'] = 'h'.repeat(rng.int(5_000, 60_000))
        break
      case 'many headers':
        for (let k = 0; k < rng.int(50, 400); k++) headers[`x-many-${k}`] = String(k)
        break
      case 'odd :scheme':
        headers[':scheme'] = rng.pick(['http', 'ftp', 'x'])
        break
      case 'forwarded forgeries':
        headers['x-forwarded-for'] = '6.6.6.6'
        headers['x-forwarded-proto'] = 'http'
        headers.forwarded = 'for=6.6.6.6'
        break
    }
  }
  const body: Buffer[] = []
  if (rng.chance(0.4)) {
    what.push('body without content-length')
    headers[':method'] ??= 'POST'
    for (let k = rng.int(1, 5); k > 0; k--) body.push(rng.bytes(rng.int(0, 20_000)))
  }
  const trailers = rng.chance(0.15)
  if (trailers) what.push('trailers')
  const cancelAfterMs = rng.chance(0.15) ? rng.int(0, 50) : undefined
  if (cancelAfterMs !== undefined) what.push(`cancel after ${cancelAfterMs} ms`)
  return { id, what, headers, body, trailers, cancelAfterMs }
}

export interface H2ClientResult {
  status: number | undefined
  error: string | undefined
  ms: number
}

/** One node:http2 session per input; everything ends within `capMs`. */
export function h2ClientRequest(port: number, input: H2ClientInput, capMs: number): Promise<H2ClientResult> {
  const t0 = Date.now()
  return new Promise((resolve) => {
    let done = false
    let status: number | undefined
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      rejectUnauthorized: false,
      servername: 'localhost',
    })
    const finish = (error?: string) => {
      if (done) return
      done = true
      clearTimeout(cap)
      session.destroy()
      resolve({ status, error, ms: Date.now() - t0 })
    }
    const cap = setTimeout(() => finish('cap'), capMs)
    session.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message))
    session.on('close', () => finish())
    let req: http2.ClientHttp2Stream
    try {
      req = session.request(input.headers, { endStream: false, waitForTrailers: input.trailers })
    } catch (e) {
      finish(`client refused: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
      return
    }
    req.on('response', (h) => {
      status = Number(h[':status'])
    })
    req.on('data', () => {})
    req.on('end', () => finish())
    req.on('close', () => finish())
    req.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message))
    req.on('wantTrailers', () => {
      try {
        req.sendTrailers({ 'x-trailer': 'a', 'x-user-id': 'forged-user' })
      } catch {
        req.close()
      }
    })
    for (const b of input.body) req.write(b)
    req.end()
    if (input.cancelAfterMs !== undefined) {
      setTimeout(() => {
        if (!done) req.close(http2.constants.NGHTTP2_CANCEL)
      }, input.cancelAfterMs)
    }
  })
}
