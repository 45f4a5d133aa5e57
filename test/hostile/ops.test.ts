// The ops listener (server.ops_bind_address) against hostile and clumsy clients, byte by byte
// over raw sockets. It has no key, so anyone who reaches the port can send it anything: an odd
// request target, a method that would change something, a body (never read), a head too big or
// too slow. Each gets a 4xx JSON answer or a closed connection, nothing changes, the process
// keeps running, and the next probe is answered.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawRequest } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'

/** Writes `bytes` and reads until the server closes (or `giveUpMs`): every answer, split up. */
async function raw(port: number, bytes: string, giveUpMs = 20_000) {
  const started = Date.now()
  const r = await rawRequest(port, bytes, giveUpMs)
  const [head = '', body = ''] = r.text.split('\r\n\r\n', 2)
  const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]))
  return { status: r.status, head, body, statuses, ms: Date.now() - started }
}

const req = (method: string, target: string, extra = '') =>
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`

const CASES: Array<{ desc: string; bytes: string; want: number; allow?: boolean }> = [
  { desc: 'a scheme-relative target with a bad port', bytes: req('GET', '//a:99999/'), want: 404 },
  { desc: 'an absolute URL cut short', bytes: req('GET', 'http://[::1'), want: 400 },
  { desc: 'the asterisk form', bytes: req('OPTIONS', '*'), want: 400 },
  { desc: 'the absolute form of /readyz', bytes: req('GET', 'http://ops/readyz'), want: 200 },
  { desc: 'a query on /healthz', bytes: req('GET', '/healthz?verbose=1&x=%E0%A4%A'), want: 200 },
  { desc: 'a 10 KB path', bytes: req('GET', `/${'a'.repeat(10_000)}`), want: 404 },
  { desc: 'bad percent-encoding in the path', bytes: req('GET', '/readyz%E0%A4%A'), want: 404 },
  { desc: 'a control API path', bytes: req('GET', '/api/v1/config'), want: 404 },
  { desc: 'a path that only looks like /metrics', bytes: req('GET', '/metrics/../api/v1/config'), want: 404 },
  { desc: 'POST /metrics', bytes: req('POST', '/metrics', 'Content-Length: 0\r\n'), want: 405, allow: true },
  { desc: 'DELETE /readyz', bytes: req('DELETE', '/readyz'), want: 405, allow: true },
  {
    desc: 'PUT /healthz with a body',
    bytes: req('PUT', '/healthz', 'Content-Length: 2\r\n').concat('{}'),
    want: 405,
    allow: true,
  },
  { desc: 'TRACE /healthz', bytes: req('TRACE', '/healthz'), want: 405, allow: true },
  { desc: 'OPTIONS /metrics', bytes: req('OPTIONS', '/metrics'), want: 405, allow: true },
  { desc: 'a method Node does not know', bytes: req('BREW', '/healthz'), want: 400 },
  {
    desc: 'both Content-Length and Transfer-Encoding',
    bytes: req('GET', '/healthz', 'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n'),
    want: 400,
  },
  { desc: 'a 64 KB header', bytes: req('GET', '/healthz', `X-Big: ${'b'.repeat(64 * 1024)}\r\n`), want: 431 },
  { desc: 'a NUL in the target', bytes: req('GET', '/healthz\0'), want: 400 },
]

describe('ops listener under hostile input', () => {
  let up: Upstream
  let proxy: RunningProxy
  let port: number
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", ops_bind_address: "127.0.0.1:0" }
upstreams: { api: { servers: ["${up.address}"], health_check: { interval_secs: 1, path: /health } } }
load_balancer: { upstream: api }
`)
    const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')
    port = Number(new URL(String(line?.ops)).port)
  })
  after(async () => {
    // Both, even when the proxy did not start: an open upstream would keep the file running.
    await proxy?.stop()
    await up?.close()
  })

  for (const c of CASES) {
    test(`${c.desc}: ${c.want}, and the next probe is answered`, async () => {
      const a = await raw(port, c.bytes)
      assert.equal(a.status, c.want, a.head)
      if (c.allow) assert.match(a.head, /\r\nallow: GET, HEAD\r\n/i)
      assert.ok(a.body.length < 1000, 'a long target is not echoed back whole')
      if (c.want < 431 && c.want !== 400) assert.match(a.head, /content-type: application\/json/i)
      assert.equal((await raw(port, req('GET', '/readyz'))).status, 200)
    })
  }

  test('a body sent to a probe is not read: the answer comes at once and the connection closes', async () => {
    // A declared 1 GB body that never comes: waiting for it would hold the connection open.
    const a = await raw(port, req('GET', '/healthz', 'Content-Length: 1000000000\r\n').concat('xx'), 10_000)
    assert.equal(a.status, 200)
    assert.match(a.head, /\r\nconnection: close\r\n/i)
    assert.ok(a.ms < 5000, `answered and closed in ${a.ms} ms`)
  })

  test('pipelined probes are each answered', async () => {
    const keep = (t: string) => `GET ${t} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`
    const a = await raw(port, keep('/healthz') + keep('/readyz') + keep('/nope') + req('GET', '/metrics'))
    assert.deepEqual(a.statuses, [200, 200, 404, 200])
  })

  test('a request head that never ends is cut off, and probes are answered meanwhile', async () => {
    const slow = raw(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ', 30_000)
    assert.equal((await raw(port, req('GET', '/readyz'))).status, 200)
    const a = await slow
    assert.ok(a.ms < 25_000, `the slow head was cut off after ${a.ms} ms`)
    assert.ok(a.status === 0 || a.status === 408, a.head)
  })

  test('none of this ended the process, changed the config, or was logged as a fault', async () => {
    assert.equal(proxy.child.exitCode, null)
    const r = await fetch(proxy.url)
    assert.equal(r.status, 200)
    await r.text()
    const faults = proxy.logs.filter((l) => l.level === 'error' || l.level === 'fatal')
    assert.deepEqual(faults, [])
  })
})
