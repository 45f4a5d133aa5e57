import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { clientIp, downstreamResponseHeaders, upstreamRequestHead } from './headers'

const fwd = { clientIp: '192.0.2.7', proto: 'http' as const, hostOverride: undefined }

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

  test('X-Forwarded-For appends the client; Proto and Host are set', () => {
    const m = toMap(
      upstreamRequestHead(['host', 'h:1', 'x-forwarded-for', '10.0.0.1', 'X-Forwarded-For', '10.0.0.2'], fwd)
        .headers,
    )
    assert.equal(m['x-forwarded-for'], '10.0.0.1, 10.0.0.2, 192.0.2.7')
    assert.equal(m['x-forwarded-proto'], 'http')
    assert.equal(m['x-forwarded-host'], 'h:1')
  })

  test('a client cannot forge X-Forwarded-Proto or -Host', () => {
    const m = toMap(
      upstreamRequestHead(['host', 'real', 'x-forwarded-proto', 'https', 'x-forwarded-host', 'evil'], fwd)
        .headers,
    )
    assert.equal(m['x-forwarded-proto'], 'http')
    assert.equal(m['x-forwarded-host'], 'real')
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

  test('sni overrides the Host sent upstream', () => {
    const m = toMap(
      upstreamRequestHead(['host', 'client'], { ...fwd, hostOverride: 'backend.internal' }).headers,
    )
    assert.equal(m.host, 'backend.internal')
    assert.equal(m['x-forwarded-host'], 'client')
  })
})

describe('downstreamResponseHeaders', () => {
  const b = (...xs: string[]) => xs.map((x) => Buffer.from(x, 'latin1'))
  test('drops hop-by-hop headers, replaces X-Request-Id', () => {
    const out = toMap(
      downstreamResponseHeaders(
        b(
          'Content-Type',
          'text/plain',
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
        ),
        'rid',
        false,
      ),
    )
    assert.deepEqual(out, { 'content-type': 'text/plain', 'x-request-id': 'rid' })
  })
  test('asks the client to close while draining', () => {
    assert.equal(toMap(downstreamResponseHeaders([], 'r', true)).connection, 'close')
  })
})

test('clientIp unwraps IPv4-mapped addresses', () => {
  assert.equal(clientIp('::ffff:127.0.0.1'), '127.0.0.1')
  assert.equal(clientIp('::1'), '::1')
})
