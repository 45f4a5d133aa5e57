import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { startDnsmasq } from '../../test/helpers/dnsmasq'
import { record } from '../../test/helpers/h1'
import { until } from '../../test/helpers/until'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { Logger } from '../observe/logger'
import type { UpstreamMetrics } from '../observe/metrics'
import { refreshMs } from './discovery'
import { UpstreamRegistry } from './registry'

const quiet = { info() {}, warn() {}, error() {}, debug() {} } as unknown as Logger

function snapshot(servers: string, resolver: string) {
  const r = compile(
    parseConfigText(
      'c.yaml',
      `mode: load_balancer
server: { resolver: "${resolver}" }
upstreams: { g: { servers: [${servers}] } }
load_balancer: { upstream: g }
`,
      {},
    ),
  )
  assert.ok(r.ok)
  return r.snapshot
}

function counting(): { metrics: UpstreamMetrics; failures: () => number } {
  let n = 0
  const metrics = {
    attempt() {},
    retry() {},
    ejection() {},
    healthCheck() {},
    mirror() {},
    mirrorDropped() {},
    dnsFailure: () => {
      n++
    },
  }
  return { metrics, failures: () => n }
}

describe('dns discovery', () => {
  test('TTLs are kept between the floor and the ceiling; TTL 0 is the floor', () => {
    assert.equal(refreshMs(0, 1000, 30_000), 1000)
    assert.equal(refreshMs(5000, 1000, 30_000), 5000)
    assert.equal(refreshMs(86_400_000, 1000, 30_000), 30_000)
    assert.equal(refreshMs(Number.POSITIVE_INFINITY, 1000, 30_000), 30_000)
    assert.equal(refreshMs(undefined, 1000, 30_000), 1000)
  })

  test('hostile: a resolver that never answers times out; the group starts empty, the failure counted', async () => {
    const sink = dgram.createSocket('udp4')
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()))
    sink.on('message', () => {}) // swallowed: no answer ever
    const { metrics, failures } = counting()
    const registry = new UpstreamRegistry(quiet, undefined, { metrics })
    try {
      const s = snapshot('"dns:svc.test:80"', `127.0.0.1:${sink.address().port}`)
      const groups = registry.build(s)
      registry.activate(s, groups)
      await registry.discovered()
      const g = groups.get('g')!
      assert.equal(g.peers.length, 0)
      const [view] = g.discovery!.view()
      assert.match(view!.error!, /ETIMEOUT|ECONNREFUSED|timeout/i)
      assert.equal(failures(), 1)
    } finally {
      registry.destroy()
      sink.close()
    }
  })

  test('hostile: SRV records that point at themselves or at another SRV name cannot loop', async () => {
    const dns = await startDnsmasq(
      ['127.0.0.2 a.test'],
      [
        '_http._tcp.loop.test,_http._tcp.loop.test,80,0,1',
        '_http._tcp.loop.test,_http._tcp.other.test,80,0,1',
        '_http._tcp.other.test,_http._tcp.loop.test,80,0,1',
        '_http._tcp.loop.test,a.test,8080,0,1',
        // No target: "service not offered here" (target ".").
        '_http._tcp.none.test',
      ],
    )
    const registry = new UpstreamRegistry(quiet)
    try {
      const s = snapshot('"srv:_http._tcp.loop.test", "srv:_http._tcp.none.test"', dns.address)
      const groups = registry.build(s)
      registry.activate(s, groups)
      await registry.discovered()
      const g = groups.get('g')!
      assert.deepEqual(
        g.peers.map((p) => p.address),
        ['127.0.0.2:8080'],
      )
      assert.deepEqual(
        g.discovery!.view().map((v) => [v.entry, v.addresses, v.error]),
        [
          ['srv:_http._tcp.loop.test', ['127.0.0.2:8080'], null],
          ['srv:_http._tcp.none.test', [], null],
        ],
      )
    } finally {
      registry.destroy()
      await dns.stop()
    }
  })

  test('an address that leaves the answer drains: its request in flight completes, then its pool closes', async () => {
    const server = http.createServer((_req, res) => setTimeout(() => res.end('late but whole'), 300))
    await new Promise<void>((r) => server.listen(0, '127.0.0.2', r))
    const port = (server.address() as AddressInfo).port
    // TTL 0: re-resolved at the 1 s floor, not in a loop.
    const dns = await startDnsmasq(['127.0.0.2 svc.test'], [], { ttl: 0 })
    const registry = new UpstreamRegistry(quiet)
    try {
      const s = snapshot(`"dns:svc.test:${port}"`, dns.address)
      const groups = registry.build(s)
      registry.activate(s, groups)
      await registry.discovered()
      const g = groups.get('g')!
      const peer = g.peers[0]!
      assert.equal(peer.address, `127.0.0.2:${port}`)
      const pending = record(peer.pool, { path: '/', method: 'GET' }).then((o) => o.body.toString())
      await dns.setHosts(['127.0.0.3 svc.test'])
      await until(() => g.peers[0]?.address === `127.0.0.3:${port}`, 'the new address', 10_000)
      assert.equal(
        g.candidates({ clientIp: '', path: '/', rawHeaders: [] }, Date.now())[0]?.address,
        `127.0.0.3:${port}`,
      )
      assert.equal(await pending, 'late but whole')
      await until(() => peer.pool.closed, 'the old pool closed')
    } finally {
      registry.destroy()
      server.close()
      await dns.stop()
    }
  })
})
