// server.connection_pool as an upstream sees it: connections reused, at most `max_idle` open
// per server (requests beyond wait for one), idle ones closed after `idle_timeout_secs`.

import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { test } from 'node:test'
import { startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'

/** An upstream that counts its open connections and answers after `delayMs`. */
async function countingUpstream(delayMs: number) {
  const open = new Set<Socket>()
  const stats = { accepted: 0, maxOpen: 0, closed: 0 }
  const server = http.createServer((_req, res) => {
    setTimeout(() => res.end('ok'), delayMs)
  })
  server.keepAliveTimeout = 60_000
  server.on('connection', (s: Socket) => {
    stats.accepted++
    open.add(s)
    stats.maxOpen = Math.max(stats.maxOpen, open.size)
    s.on('close', () => {
      open.delete(s)
      stats.closed++
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    stats,
    open,
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy()
        server.close(() => r())
      }),
  }
}

test('max_idle caps the connections per upstream server; extra requests wait, none fail', async () => {
  const up = await countingUpstream(200)
  const proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  connection_pool: { max_idle: 2, idle_timeout_secs: 30 }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`)
  try {
    const statuses = await Promise.all(
      Array.from({ length: 8 }, () => fetch(`${proxy.url}/`).then((r) => r.status)),
    )
    assert.deepEqual(statuses, Array(8).fill(200))
    assert.equal(up.stats.maxOpen, 2, 'never more than max_idle connections at once')
    assert.equal(up.stats.accepted, 2, 'the two connections were reused')
  } finally {
    await proxy.stop()
    await up.close()
  }
})

test('idle upstream connections are closed after idle_timeout_secs', async () => {
  const up = await countingUpstream(0)
  const proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  connection_pool: { idle_timeout_secs: 0.3 }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`)
  try {
    assert.equal((await fetch(`${proxy.url}/`)).status, 200)
    assert.equal(up.open.size, 1)
    const t0 = Date.now()
    await until(() => up.open.size === 0, 'the idle connection to be closed by the proxy', 5000)
    assert.ok(Date.now() - t0 >= 150, 'not closed straight away')
  } finally {
    await proxy.stop()
    await up.close()
  }
})
