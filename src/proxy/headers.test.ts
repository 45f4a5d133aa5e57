import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { addressMatcher } from '../config/address'
import { clientIp, downstreamResponseHeaders, upstreamRequestHead, writeResponseHead } from './headers'

const fwd = {
  peer: '192.0.2.7',
  proto: 'http' as const,
  trusted: undefined,
  protectedHeaders: new Set<string>(),
  h2: false,
}
/** The peer is a trusted load balancer (10.0.0.0/8). */
const behindLb = { ...fwd, peer: '10.1.2.3', trusted: addressMatcher(['10.0.0.0/8', '192.168.0.0/16']) }

function toMap(flat: string[]): Record<string, string> {
  const m: Record<string, string> = {}
  for (let i = 0; i < flat.length; i += 2) m[flat[i]!.toLowerCase()] = flat[i + 1]!
  return m
}

describe('upstreamRequestHead', () => {
  test('drops hop-by-hop headers and those named in Connection', () => {
    const h = upstreamRequestHead(
      [
        'Host',
        'example.com',
        'Connection',
        'keep-alive, X-Hop',
        'X-Hop',
        '1',
        'Keep-Alive',
        'timeout=5',
        'TE',
        'trailers',
        'Upgrade',
        'h2c',
        'Proxy-Authorization',
        'secret',
        'Expect',
        '100-continue',
        'Accept',
        'text/html',
      ],
      fwd,
    )
    const m = toMap(h.headers)
    for (const gone of [
      'connection',
      'x-hop',
      'keep-alive',
      'te',
      'upgrade',
      'proxy-authorization',
      'expect',
    ]) {
      assert.equal(m[gone], undefined, gone)
    }
    assert.equal(m.accept, 'text/html')
    assert.equal(m.host, 'example.com')
  })

  test('from an untrusted peer, forwarding headers are dropped and rebuilt', () => {
    const h = upstreamRequestHead(
      [
        'host',
        'real',
        'x-forwarded-for',
        '10.0.0.1',
        'X-Forwarded-For',
        '10.0.0.2',
        'x-forwarded-proto',
        'https',
        'x-forwarded-host',
        'evil',
        'X-Forwarded-Port',
        '1',
        'Forwarded',
        'for=1.2.3.4',
        'X-Real-IP',
        '1.2.3.4',
      ],
      fwd,
    )
    const m = toMap(h.headers)
    assert.equal(h.clientIp, '192.0.2.7')
    assert.equal(m['x-forwarded-for'], '192.0.2.7')
    assert.equal(m['x-forwarded-proto'], 'http')
    assert.equal(m['x-forwarded-host'], 'real')
    for (const gone of ['x-forwarded-port', 'forwarded', 'x-real-ip']) assert.equal(m[gone], undefined, gone)
  })

  const trustedCases = [
    { desc: 'one client behind the load balancer', xff: '203.0.113.9', client: '203.0.113.9' },
    {
      desc: 'the right-most untrusted hop wins over forged ones',
      xff: '1.1.1.1, 203.0.113.9',
      client: '203.0.113.9',
    },
    { desc: 'trusted hops are skipped', xff: '203.0.113.9, 192.168.1.1', client: '203.0.113.9' },
    { desc: 'every hop trusted: the left-most', xff: '10.9.9.9, 192.168.1.1', client: '10.9.9.9' },
    { desc: 'a hop that is no address stops the walk', xff: '203.0.113.9, garbage', client: '10.1.2.3' },
    { desc: 'IPv4-mapped hops are unwrapped', xff: '::ffff:203.0.113.9', client: '203.0.113.9' },
  ]
  for (const c of trustedCases) {
    test(`from a trusted proxy: ${c.desc}`, () => {
      const h = upstreamRequestHead(
        ['host', 'h', 'x-forwarded-for', c.xff, 'x-forwarded-proto', 'https'],
        behindLb,
      )
      assert.equal(h.clientIp, c.client)
      const m = toMap(h.headers)
      assert.equal(m['x-forwarded-for'], `${c.xff}, 10.1.2.3`)
      assert.equal(m['x-forwarded-proto'], 'https', 'X-Forwarded-Proto from a trusted proxy is kept')
    })
  }

  test('headers only the proxy may send are removed, in every spelling', () => {
    const side = { ...fwd, protectedHeaders: new Set(['x-user-id']) }
    const m = toMap(
      upstreamRequestHead(['X-User-Id', 'a', 'x_user_id', 'b', 'X_USER-ID', 'c', 'x-user', 'd'], side)
        .headers,
    )
    assert.deepEqual(
      Object.keys(m).filter((k) => k.startsWith('x_') || k.startsWith('x-user')),
      ['x-user'],
    )
  })

  test('a second Host header is a problem', () => {
    assert.match(upstreamRequestHead(['host', 'a', 'Host', 'b'], fwd).problem ?? '', /more than one Host/)
    assert.equal(upstreamRequestHead(['host', 'a'], fwd).problem, undefined)
  })

  test('HTTP/2: :authority is the Host; a differing host header is a problem; cookies are joined', () => {
    const h2 = { ...fwd, h2: true }
    const ok = upstreamRequestHead([':authority', 'a.test', 'cookie', 'x=1', 'cookie', 'y=2'], h2)
    assert.equal(ok.problem, undefined)
    assert.equal(toMap(ok.headers).host, 'a.test')
    assert.equal(toMap(ok.headers).cookie, 'x=1; y=2')
    assert.equal(upstreamRequestHead([':authority', 'a.test', 'host', 'a.test'], h2).problem, undefined)
    assert.match(upstreamRequestHead([':authority', 'a.test', 'host', 'evil'], h2).problem ?? '', /differs/)
  })

  test('request ID: kept when well formed, made otherwise', () => {
    assert.equal(upstreamRequestHead(['x-request-id', 'req-1.2_3'], fwd).requestId, 'req-1.2_3')
    assert.match(upstreamRequestHead(['x-request-id', 'has space'], fwd).requestId, /^[0-9a-f-]{36}$/)
    assert.match(upstreamRequestHead(['x-request-id', 'x'.repeat(300)], fwd).requestId, /^[0-9a-f-]{36}$/)
    assert.match(upstreamRequestHead([], fwd).requestId, /^[0-9a-f-]{36}$/)
  })

  test('hasBody from Content-Length or Transfer-Encoding', () => {
    assert.equal(upstreamRequestHead(['content-length', '0'], fwd).hasBody, false)
    assert.equal(upstreamRequestHead(['Content-Length', '5'], fwd).hasBody, true)
    assert.equal(upstreamRequestHead(['transfer-encoding', 'chunked'], fwd).hasBody, true)
    assert.equal(upstreamRequestHead([], fwd).hasBody, false)
  })
})

describe('downstreamResponseHeaders', () => {
  const b = (...xs: string[]) => xs.map((x) => Buffer.from(x, 'latin1'))
  const fields = [
    'Content-Type',
    'text/plain',
    'Content-Length',
    '2',
    'Connection',
    'keep-alive, X-Internal',
    'X-Internal',
    '1',
    'Transfer-Encoding',
    'chunked',
    'Keep-Alive',
    'timeout=5',
    'X-Request-Id',
    'upstream-made',
    'X-Latin1',
    'caf\xe9',
  ]
  // undici hands Buffers, the built-in client strings: the same answer either way.
  for (const [form, raw] of [
    ['Buffers', b(...fields)],
    ['strings', fields],
  ] as const) {
    test(`drops hop-by-hop headers, replaces X-Request-Id (fields as ${form})`, () => {
      const out = { contentLength: 0, fieldCount: -1 }
      const list = downstreamResponseHeaders(raw, 'rid', false, ['x-extra', '1'], undefined, out)
      // The upstream's own fields first (three kept of what it sent), then what the proxy adds.
      assert.equal(out.fieldCount, 6)
      assert.deepEqual(list.slice(out.fieldCount), ['x-extra', '1', 'x-request-id', 'rid'])
      const headers = toMap(list)
      assert.deepEqual(headers, {
        'content-type': 'text/plain',
        'content-length': '2',
        'x-latin1': 'caf\xe9',
        'x-extra': '1',
        'x-request-id': 'rid',
      })
      assert.equal(out.contentLength, 2)
    })
  }
  test('asks the client to close while draining', () => {
    assert.equal(toMap(downstreamResponseHeaders([], 'r', true)).connection, 'close')
  })
})

describe('writeResponseHead', () => {
  function fakeRes(refuse: (status: number, reason: unknown, headers: string[]) => boolean) {
    const calls: Array<[number, string[]]> = []
    const res = {
      statusMessage: '',
      stored: ['x'],
      writeHead(status: number, a: unknown, b?: string[]) {
        const headers = (Array.isArray(a) ? a : b) as string[]
        if (typeof a === 'string') res.statusMessage = a
        if (refuse(status, a, headers)) throw new Error('refused')
        calls.push([status, headers])
      },
      getHeaderNames: () => res.stored,
      removeHeader: (n: string) => {
        res.stored = res.stored.filter((x) => x !== n)
      },
    }
    return { res, calls }
  }
  test('a reason phrase Node refuses is dropped, not fatal', () => {
    const { res, calls } = fakeRes((_s, reason) => typeof reason === 'string')
    assert.equal(writeResponseHead(res, 200, 'bad\u0001', ['a', '1'], false), true)
    assert.deepEqual(calls, [[200, ['a', '1']]])
    assert.equal(res.statusMessage, '')
    assert.deepEqual(res.stored, [])
  })
  test('HTTP/2: duplicate single-value and connection headers are dropped on the second try', () => {
    const { res, calls } = fakeRes((_s, _r, h) => h.length > 4)
    const headers = ['Content-Type', 'a', 'content-type', 'b', 'http2-settings', 'x', 'set-cookie', 'c']
    assert.equal(writeResponseHead(res, 200, undefined, headers, true), true)
    assert.deepEqual(calls, [[200, ['Content-Type', 'a', 'set-cookie', 'c']]])
  })
  test('false when even the cleaned head is refused', () => {
    const { res } = fakeRes(() => true)
    assert.equal(writeResponseHead(res, 200, 'x', [], false), false)
  })
})

test('clientIp unwraps IPv4-mapped addresses', () => {
  assert.equal(clientIp('::ffff:127.0.0.1'), '127.0.0.1')
  assert.equal(clientIp('::1'), '::1')
})
