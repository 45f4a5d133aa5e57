// Hostile and malformed requests, sent as raw bytes: each gets the right 4xx, none reaches an
// upstream, and the proxy keeps serving. Conflicting Content-Length and Transfer-Encoding is the
// classic request-smuggling set-up (RFC 9112 section 6.3): a proxy and an upstream that disagree
// on where a body ends can be made to see two different requests, so the proxy must refuse it.

import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    s.on('end', () => resolve(out))
    s.on('close', () => resolve(out))
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(out) : reject(e)))
    s.write(bytes)
    setTimeout(() => s.end(), 3000).unref()
  })
}

describe('bad requests', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('u')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  u: { servers: ["${up.address}"] }
load_balancer: { upstream: u }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  const cases = [
    { desc: 'malformed request line', bytes: 'GET /a b c d\r\n\r\n', status: [400] },
    {
      desc: 'not HTTP at all',
      bytes: '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n',
      status: [400],
    },
    {
      desc: '100 KB of headers',
      bytes: `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 100 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(1000)}\r\n`).join('')}\r\n`,
      status: [431, 400],
    },
    {
      desc: 'Content-Length and Transfer-Encoding together (smuggling)',
      bytes:
        'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
      status: [400],
    },
    {
      desc: 'two different Content-Length values',
      bytes: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 9\r\n\r\nabcd',
      status: [400],
    },
    { desc: 'space before the header colon', bytes: 'GET / HTTP/1.1\r\nHost : x\r\n\r\n', status: [400] },
  ]

  for (const c of cases) {
    test(`${c.desc}: answered ${c.status.join(' or ')}, never forwarded`, async () => {
      const before = up.seen.length
      const res = await raw(proxy.port, c.bytes)
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(res)?.[1])
      assert.ok(c.status.includes(status), `got ${JSON.stringify(res.slice(0, 80))}`)
      assert.equal(up.seen.length, before, 'the upstream saw nothing')
      // The proxy keeps serving.
      const ok = await fetch(`${proxy.url}/still-up`)
      assert.equal(ok.status, 200)
      await ok.text()
    })
  }

  test('bad requests are logged with their reason and counted', async () => {
    const line = await proxy.waitForLog((l) => l.msg === 'bad request', 'a bad request line')
    assert.equal(line.error_type, 'bad_request')
    assert.ok(line.reason)
    const metrics = await (await fetch(`${proxy.controlUrl}/metrics`)).text()
    const n = Number(
      /locci_errors_total\{mode="load_balancer",error_type="bad_request"\} (\d+)/.exec(metrics)?.[1],
    )
    assert.ok(n >= cases.length, `counted: ${n}`)
  })
})
