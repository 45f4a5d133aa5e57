import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'
import { redact } from '../config/redact'
import type { Peer } from '../upstream/peer'
import { debugRequested, MAX_TRACE_HEADER, RequestTrace, TRACE_HEADER } from './trace'

const debug = { name: 'x-dbg', digest: createHash('sha256').update('s3cret-s3cret-s3cret').digest('hex') }

test('the debug header counts only with exactly the secret', () => {
  assert.equal(debugRequested(['X-Dbg', 's3cret-s3cret-s3cret'], debug), true)
  for (const v of [
    's3cret-s3cret-s3cre',
    's3cret-s3cret-s3cret ',
    'S3cret-s3cret-s3cret',
    '',
    'x'.repeat(10_000),
  ])
    assert.equal(debugRequested(['x-dbg', v], debug), false, v)
  assert.equal(debugRequested(['x-other', 's3cret-s3cret-s3cret'], debug), false)
  // The first field decides (a second one cannot add a guess).
  assert.equal(debugRequested(['x-dbg', 'wrong', 'x-dbg', 's3cret-s3cret-s3cret'], debug), false)
})

function summary(t: RequestTrace, current?: string): string {
  const h = t.responseHeaders([], current)!
  assert.equal(h[0], TRACE_HEADER)
  return h[1]!
}

test('X-Locci-Trace: route, middleware verdicts, attempts with outcome', () => {
  const t = new RequestTrace(undefined, true, [], 'GET', undefined, performance.now())
  t.routed('GET', '/a', 'api', 'app')
  t.ran('auth', performance.now(), undefined)
  t.waits('limit', performance.now())({ status: 429, kind: 'rate_limited', headers: [] })
  const peer = { address: '10.0.0.1:80', host: '10.0.0.1', port: 80 } as Peer
  const headers: string[] = []
  t.attemptStart(peer, 'GET', 'app', headers)
  assert.deepEqual(headers, [], 'no traceparent without tracing')
  t.attemptEnd(0, 'connect_failed')
  t.attemptStart({ ...peer, address: '10.0.0.2:80' } as Peer, 'GET', 'app', headers)
  assert.match(
    summary(t, '200'),
    /^route=api; mw=auth:pass@[\d.]+ms,limit:429@[\d.]+ms; upstream=app; attempts=10\.0\.0\.1:80:connect_failed@[\d.]+ms,10\.0\.0\.2:80:200@[\d.]+ms; total=[\d.]+ms$/,
  )
})

test('X-Locci-Trace is header-safe and bounded whatever the names', () => {
  const t = new RequestTrace(undefined, true, [], 'GET', undefined, performance.now())
  t.routed('GET', '/', 'r\r\nX-Evil: 1; a,b=c é', 'u')
  for (let i = 0; i < 200; i++) t.ran(`mw-${'n'.repeat(30)}-${i}`, performance.now(), undefined)
  const s = summary(t)
  assert.ok(s.length <= MAX_TRACE_HEADER)
  assert.match(s, /^[\x20-\x7e]*$/)
  assert.ok(s.startsWith('route=r__X-Evil:_1__a_b=c__; mw='), s)
})

test('without X-Locci-Trace asked, the response headers are untouched', () => {
  const t = new RequestTrace(undefined, false, [], 'GET', undefined, performance.now())
  const extra = ['a', 'b']
  assert.equal(t.responseHeaders(extra, '200'), extra)
})

test('debug_header.secret is redacted from config dumps', () => {
  const out = redact({ debug_header: { name: 'X-Dbg', secret: 'abc' } }) as {
    debug_header: Record<string, string>
  }
  assert.deepEqual(out.debug_header, { name: 'X-Dbg', secret: '[REDACTED]' })
})
