// quickHead against llhttp (Node's binding, as the client drives it): every head quickHead reads
// must be one llhttp reads the same, over hand-picked heads and a bounded, seeded run of mutated
// ones. H1_QUICK_SEED=<n> replays a run.

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { prng } from '../../../test/helpers/prng'
import { parserBinding } from './binding'
import { type QuickHead, quickHead } from './quick-head'

interface Read {
  status: number
  reason: string
  fields: string[]
  keepAlive: boolean
}

/** What llhttp makes of `text` (a whole head), or an error code. */
function llhttp(text: string): Read | string {
  const b = parserBinding()!
  const p = new b.Parser()
  p.initialize(b.RESPONSE, {}, 65536, 0)
  let flushed: string[] = []
  let got: Read | undefined
  p[b.kOnHeaders] = (h: string[]) => {
    flushed = flushed.concat(h)
    return 0
  }
  p[b.kOnHeadersComplete] = (
    _major: number,
    _minor: number,
    headers: string[] | undefined,
    _m: unknown,
    _u: unknown,
    status: number,
    reason: string,
    _upgrade: boolean,
    keepAlive: boolean,
  ) => {
    got = { status, reason, fields: headers ?? flushed, keepAlive }
    return 1
  }
  try {
    const r = p.execute(Buffer.from(text, 'latin1'))
    if (typeof r !== 'number') return r.code
    return got ?? 'no head'
  } finally {
    p.close()
  }
}

const quick = (text: string): QuickHead | undefined => {
  const b = Buffer.from(text, 'latin1')
  return quickHead(b, b.length)
}

describe('quickHead', () => {
  test('the plain heads upstreams send are read, as llhttp reads them', () => {
    for (const text of [
      'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 15:23:50 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n',
      'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n',
      'HTTP/1.1 200 \r\nContent-Length: 10\r\nConnection: close\r\n\r\n',
      'HTTP/1.1 204 No Content\r\nX-A:b\r\n\r\n',
      'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\n',
      'HTTP/1.1 503 Busy\r\nX-Empty:\r\nX-Tab: a\tb\r\nX-Latin: caf\xe9\r\nContent-Length: 007\r\n\r\n',
    ]) {
      const q = quick(text)
      assert.ok(q, JSON.stringify(text))
      assert.deepEqual(q, llhttp(text), JSON.stringify(text))
    }
  })

  test('anything else is left to llhttp', () => {
    for (const text of [
      'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n', // another version
      'HTTP/1.1 100 Continue\r\n\r\n', // 1xx
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n',
      'HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n', // no space after the status
      'HTTP/1.1 200 OK\r\n\r\n', // body to the connection's end
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length:  2\r\n\r\n', // two spaces: llhttp trims them
      'HTTP/1.1 200 OK\r\nContent-Length: 2 \r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length:\t2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\n', // obs-fold
      'HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\n: a\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX-\xe9: a\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\nY: b\r\nContent-Length: 2\r\n\r\n', // bare LF
      'HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nConnection: close, x\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n',
      `HTTP/1.1 200 OK\r\n${'X: y\r\n'.repeat(70)}Content-Length: 2\r\n\r\n`, // many fields
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\n', // not CRLF CRLF
    ]) {
      assert.equal(quick(text), undefined, JSON.stringify(text))
    }
  })

  test('a seeded run of mutated heads: whatever quickHead reads, llhttp reads the same', () => {
    const seed = Number(process.env.H1_QUICK_SEED ?? 20261201)
    const rand = prng(seed)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
    const bases = [
      'HTTP/1.1 200 OK\r\nServer: x\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n',
      'HTTP/1.1 204 No Content\r\nVary: Origin\r\n\r\n',
      'HTTP/1.1 301 Moved\r\nLocation: /a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    ]
    const bits = [
      ' ',
      '\t',
      '\r',
      '\n',
      ':',
      ',',
      '\x00',
      '\x01',
      '\x7f',
      '\x80',
      '\xff',
      '0',
      '9',
      'a',
      'Z',
      '-',
      '"',
    ]
    const lines = [
      'Content-Length: 5',
      'Content-Length: 05',
      'content-length:5',
      'Transfer-Encoding: chunked',
      'Connection: close',
      'Connection: Keep-Alive',
      'connection: upgrade',
      'Proxy-Connection: keep-alive',
      'Upgrade: x',
      'X-A:',
      'X-B:  b',
      ' X-C: c',
    ]
    let read = 0
    const runs = 3000
    for (let n = 0; n < runs; n++) {
      let s = pick(bases)
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) {
        const body = s.length - 4
        const at = Math.floor(rand() * body)
        switch (Math.floor(rand() * 4)) {
          case 0:
            s = s.slice(0, at) + pick(bits) + s.slice(at + 1)
            break
          case 1:
            s = s.slice(0, at) + pick(bits) + s.slice(at)
            break
          case 2:
            s = s.slice(0, at) + s.slice(at + 1)
            break
          default: {
            const line = s.indexOf('\r\n') + 2
            s = `${s.slice(0, line)}${pick(lines)}\r\n${s.slice(line)}`
          }
        }
      }
      // Only what the client would hand over: a head that ends at its first empty line.
      if (!s.endsWith('\r\n\r\n') || headEnd(s) !== s.length) continue
      const q = quick(s)
      if (q === undefined) continue
      read++
      assert.deepEqual(q, llhttp(s), `seed ${seed}, case ${n}: ${JSON.stringify(s)}`)
    }
    // The run must have exercised the quick path (a generator that only made refused heads
    // would prove nothing).
    assert.ok(read > runs / 10, `only ${read} of ${runs} heads were read quickly`)
  })
})

/** Where the head at the start of `s` ends (pool.ts's headEnd on a string). */
function headEnd(s: string): number {
  const i = s.indexOf('\n\r\n')
  const j = (i === -1 ? s : s.slice(0, i + 1)).indexOf('\n\n')
  if (j !== -1) return j + 2
  return i === -1 ? -1 : i + 3
}
