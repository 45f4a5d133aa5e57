// DNS discovery against a real DNS server (dnsmasq, test/helpers/dnsmasq.ts): a dns: name's
// addresses become peers without a reload and scale 2 -> 3 -> 2 under load with no failed
// request; a resolver that goes away keeps the last set and counts failures; srv: weights and
// priorities; active health checks per resolved peer; an answer of thousands of addresses is
// capped; a name with no address at start serves 503 until it has one.
// Upstreams listen on 127.0.0.2, 127.0.0.3... (Linux routes 127/8 to lo) on one shared port, so
// each A record is a different server.

import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type Dnsmasq, startDnsmasq } from '../helpers/dnsmasq'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'

interface Origin {
  host: string
  served: number
  healthy: boolean
  close(): Promise<void>
}

/** One HTTP server per host, all on the same port; each answers with its host. */
async function origins(hosts: readonly string[]): Promise<{ port: number; all: Origin[] }> {
  for (let attempt = 0; ; attempt++) {
    const all: Origin[] = []
    let port = 0
    try {
      for (const host of hosts) {
        const o = await listen(host, port)
        port = o.port
        all.push(o.origin)
      }
      return { port, all }
    } catch (err) {
      await Promise.all(all.map((o) => o.close()))
      if (attempt === 4) throw err
    }
  }
}

async function listen(host: string, port: number): Promise<{ port: number; origin: Origin }> {
  const sockets = new Set<Socket>()
  const origin: Origin = {
    host,
    served: 0,
    healthy: true,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
  const server = http.createServer((req, res) => {
    req.resume()
    if (req.url === '/health') {
      res.writeHead(origin.healthy ? 200 : 503).end()
      return
    }
    origin.served++
    res.writeHead(200, { 'content-type': 'text/plain' }).end(host)
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  return { port: (server.address() as AddressInfo).port, origin }
}

const config = (dns: Dnsmasq, group: string, extra = '') => `mode: load_balancer
server: { bind_address: "127.0.0.1:0", resolver: "${dns.address}" }
upstreams:
  g:
${group}
load_balancer: { upstream: g }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
${extra}`

interface GroupView {
  servers: Array<{ address: string; healthy: boolean }>
  discovery: Array<{ entry: string; addresses: string[]; error: string | null }> | null
}

async function group(p: RunningProxy): Promise<GroupView> {
  const res = await fetch(`${p.controlUrl}/api/v1/upstreams`)
  const body = (await res.json()) as { upstreams: Array<GroupView & { name: string }> }
  return body.upstreams.find((u) => u.name === 'g')!
}

const addresses = async (p: RunningProxy) => (await group(p)).servers.map((s) => s.address).sort()

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url)
  return { status: res.status, body: await res.text() }
}

describe('DNS discovery', () => {
  const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
  let port = 0
  let all: Origin[] = []
  before(async () => {
    ;({ port, all } = await origins(hosts))
  })
  after(async () => {
    await Promise.all(all.map((o) => o.close()))
  })
  const at = (i: number) => `${hosts[i]}:${port}`

  test('a name scales from 2 to 3 addresses and back under load; no request fails', async () => {
    const dns = await startDnsmasq([`${hosts[0]} svc.test`, `${hosts[1]} svc.test`])
    const p = await startProxy(config(dns, `    servers: ["dns:svc.test:${port}"]`))
    try {
      assert.deepEqual(await addresses(p), [at(0), at(1)], 'the first answer is there when it listens')
      const statuses = new Map<number, number>()
      let stop = false
      // Four clients, each at most 20000 requests: bounded even if a wait below never ends.
      const load = Promise.all(
        [0, 1, 2, 3].map(async () => {
          for (let i = 0; i < 20_000 && !stop; i++) {
            const r = await get(`${p.url}/`)
            statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
          }
        }),
      )
      try {
        await until(() => all[0]!.served > 20 && all[1]!.served > 20, 'load on both servers')
        await dns.setHosts([`${hosts[0]} svc.test`, `${hosts[1]} svc.test`, `${hosts[2]} svc.test`])
        await until(() => all[2]!.served > 20, 'the third address getting requests')
        assert.deepEqual(await addresses(p), [at(0), at(1), at(2)])
        // Back to two: the first address goes away while requests are in flight to it.
        await dns.setHosts([`${hosts[1]} svc.test`, `${hosts[2]} svc.test`])
        await until(async () => (await addresses(p)).length === 2, 'the set back to two addresses')
        assert.deepEqual(await addresses(p), [at(1), at(2)])
        const after = all[2]!.served
        await until(() => all[2]!.served > after + 50, 'more requests after the change')
      } finally {
        stop = true
        await load
      }
      assert.deepEqual([...statuses.keys()], [200], `every answer 200: ${JSON.stringify([...statuses])}`)
      const changed = p.logs.filter((l) => l.msg === 'dns: addresses changed')
      assert.ok(changed.length >= 2, 'each change is logged')
    } finally {
      await p.stop()
      await dns.stop()
    }
  })

  test('the resolver going away keeps the last set and counts failures; it recovers', async () => {
    const dns = await startDnsmasq([`${hosts[0]} svc.test`, `${hosts[1]} svc.test`])
    const p = await startProxy(config(dns, `    servers: ["dns:svc.test:${port}"]`))
    try {
      await dns.stop()
      const failures = async () => {
        const text = await (await fetch(`${p.controlUrl}/metrics`)).text()
        const m = /^locci_dns_resolution_failures_total\{upstream="g"\} (\d+)/m.exec(text)
        return m ? Number(m[1]) : 0
      }
      await until(async () => (await failures()) >= 2, 'failures counted', 20_000)
      const g = await group(p)
      assert.deepEqual(g.servers.map((s) => s.address).sort(), [at(0), at(1)], 'the last set is kept')
      assert.ok(g.discovery![0]!.error, 'the failure is shown')
      for (let i = 0; i < 10; i++) assert.equal((await get(`${p.url}/`)).status, 200)
      // Logged once per failure streak, not every round.
      const warned = p.logs.filter((l) => l.msg === 'dns: resolution failed; keeping the last addresses')
      assert.equal(warned.length, 1)
      await dns.setHosts([`${hosts[2]} svc.test`])
      await dns.restart()
      await until(async () => (await addresses(p)).join() === at(2), 'the new answer after recovery', 20_000)
      assert.equal((await group(p)).discovery![0]!.error, null)
      assert.ok(p.logs.some((l) => l.msg === 'dns: resolving again'))
    } finally {
      await p.stop()
      await dns.stop()
    }
  })

  test('srv: weights feed the weighted selector; a higher priority serves only when the lower is out', async () => {
    const dns = await startDnsmasq(
      [`${hosts[0]} a.test`, `${hosts[1]} b.test`, `${hosts[2]} c.test`],
      [
        `_http._tcp.svc.test,a.test,${port},0,5`,
        `_http._tcp.svc.test,b.test,${port},0,1`,
        `_http._tcp.svc.test,c.test,${port},10,1`,
      ],
    )
    const p = await startProxy(
      config(
        dns,
        `    strategy: weighted
    servers: ["srv:_http._tcp.svc.test"]
    health_check: { interval_secs: 0.2, timeout_secs: 1, path: /health }`,
      ),
    )
    try {
      assert.deepEqual(await addresses(p), [at(0), at(1), at(2)])
      const seen = new Map<string, number>()
      for (let i = 0; i < 60; i++) {
        const r = await get(`${p.url}/`)
        assert.equal(r.status, 200)
        seen.set(r.body, (seen.get(r.body) ?? 0) + 1)
      }
      assert.deepEqual(Object.fromEntries(seen), { [hosts[0]!]: 50, [hosts[1]!]: 10 })

      // The health check of one resolved peer takes it (only it) out of rotation.
      all[0]!.healthy = false
      await until(
        async () => (await group(p)).servers.find((s) => s.address === at(0))?.healthy === false,
        'a.test marked unhealthy',
      )
      assert.deepEqual(
        (await group(p)).servers.filter((s) => !s.healthy).map((s) => s.address),
        [at(0)],
      )
      for (let i = 0; i < 5; i++) assert.equal((await get(`${p.url}/`)).body, hosts[1])

      all[1]!.healthy = false
      await until(
        async () => (await group(p)).servers.filter((s) => s.healthy).length === 1,
        'b.test marked unhealthy',
      )
      for (let i = 0; i < 5; i++)
        assert.equal((await get(`${p.url}/`)).body, hosts[2], 'the fallback priority')
    } finally {
      all[0]!.healthy = true
      all[1]!.healthy = true
      await p.stop()
      await dns.stop()
    }
  })

  test('a name with no address at start: 503 until it has one', async () => {
    const dns = await startDnsmasq([])
    const p = await startProxy(config(dns, `    servers: ["dns:later.test:${port}"]`))
    try {
      assert.ok(
        p.logs.some((l) => l.msg === 'dns: the name resolves to no address; no server from it until it does'),
      )
      assert.equal((await get(`${p.url}/`)).status, 503)
      await dns.setHosts([`${hosts[1]} later.test`])
      await until(async () => (await get(`${p.url}/`)).status === 200, 'served once the name resolves')
    } finally {
      await p.stop()
      await dns.stop()
    }
  })

  test('the control API adds and removes a dns: server; a malformed one is refused', async () => {
    const dns = await startDnsmasq([`${hosts[0]} svc.test`, `${hosts[1]} other.test`])
    const p = await startProxy(config(dns, `    servers: ["dns:svc.test:${port}"]`))
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`${p.controlUrl}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
    try {
      const entry = `dns:other.test:${port}`
      assert.equal((await api('POST', '/api/v1/upstreams', { name: 'g', servers: [entry] })).status, 201)
      await until(async () => (await addresses(p)).length === 2, 'the added name resolved')
      assert.deepEqual(await addresses(p), [at(0), at(1)])
      const bad = await api('POST', '/api/v1/upstreams', { name: 'g', servers: ['dns:bad name:80'] })
      assert.equal(bad.status, 400)
      assert.match(await bad.text(), /must be a DNS name/)
      const del = await api('DELETE', `/api/v1/upstreams/g/servers/${encodeURIComponent(entry)}`)
      assert.equal(del.status, 204)
      assert.deepEqual(await addresses(p), [at(0)])
    } finally {
      await p.stop()
      await dns.stop()
    }
  })

  test('with workers, every worker serves the resolved peers and follows the primary health verdicts', async () => {
    const dns = await startDnsmasq([`${hosts[0]} svc.test`, `${hosts[1]} svc.test`])
    const yaml = config(
      dns,
      `    servers: ["dns:svc.test:${port}"]
    health_check: { interval_secs: 0.2, timeout_secs: 1, path: /health }`,
    ).replace('resolver:', 'workers: 2, resolver:')
    const p = await startProxy(yaml, { waitReady: false })
    try {
      const ready = await p.waitForLog((l) => l.msg === 'all workers listening', 'workers', 60_000)
      assert.ok(ready)
      const lines = await until(() => {
        const l = p.logs.filter((x) => x.msg === 'locci-proxy listening')
        return l.length === 2 ? l : undefined
      }, 'both listening lines')
      const url = String(lines[0]!.bind)
      // A fresh connection each time, so the kernel may hand it to either worker.
      const fresh = async () => {
        const res = await fetch(url, { headers: { connection: 'close' } })
        return { status: res.status, body: await res.text() }
      }
      const bodies = new Set<string>()
      for (let i = 0; i < 20; i++) bodies.add((await fresh()).body)
      assert.deepEqual([...bodies].sort(), [hosts[0], hosts[1]])
      all[0]!.healthy = false
      await until(
        () => p.logs.some((l) => l.msg === 'upstream server unhealthy; out of rotation'),
        'the primary marks one resolved peer down',
      )
      // Every worker heard it: no request reaches the unhealthy address any more.
      for (let i = 0; i < 20; i++) assert.equal((await fresh()).body, hosts[1])
      // Only the primary logs the changes (workers log at debug).
      const pids = new Set(p.logs.filter((l) => l.msg === 'dns: addresses changed').map((l) => l.pid))
      assert.equal(pids.size, 1)
    } finally {
      all[0]!.healthy = true
      await p.stop()
      await dns.stop()
    }
  })

  test('hostile: thousands of addresses are capped at 256 peers', async () => {
    const many = Array.from(
      { length: 3000 },
      (_, i) => `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255} big.test`,
    )
    const dns = await startDnsmasq(many)
    const p = await startProxy(config(dns, `    servers: ["dns:big.test:80"]`))
    try {
      const g = await group(p)
      assert.equal(g.servers.length, 256)
      assert.equal(g.discovery![0]!.addresses.length, 256)
      assert.ok(p.logs.some((l) => String(l.msg).includes('more addresses than 256')))
    } finally {
      await p.stop()
      await dns.stop()
    }
  })
})
