// The control API (auth, redaction, live health), TLS on the listener and to upstreams, and
// server.workers sharing one listener.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { describe, test } from 'node:test'
import { ROOT, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream } from '../helpers/upstream'

// biome-ignore lint/suspicious/noExplicitAny: JSON from the API, asserted field by field
type Json = any
const json = async (r: Response | Promise<Response>): Promise<Json> => (await r).json()

const CERTS = path.join(ROOT, 'test', 'fixtures', 'guide', 'certs')

describe('control API', () => {
  test('api_key guards every endpoint but /healthz; config is redacted; upstreams show health', async () => {
    const up = await startUpstream('u')
    const proxy = await startProxy(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  u:
    servers: ["${up.address}", "127.0.0.1:1"]
    health_check: { interval_secs: 0.2, timeout_secs: 1 }
api_gateway:
  routes:
    all: { path_pattern: "^/", upstream: u }
  middlewares:
    authentication: { jwt_secret: "\${JWT_SECRET}" }
control_api:
  enabled: true
  bind_address: "127.0.0.1:0"
  api_key: "\${ADMIN_KEY:-fallback}"
`,
      { env: { JWT_SECRET: 'jwt-very-secret', ADMIN_KEY: 'adm1n' } },
    )
    const c = proxy.controlUrl!
    const auth = { headers: { authorization: 'Bearer adm1n' } }
    try {
      assert.equal((await fetch(`${c}/healthz`)).status, 200)
      const denied = await fetch(`${c}/api/v1/status`)
      assert.equal(denied.status, 401)
      assert.match(denied.headers.get('www-authenticate')!, /^Bearer/)
      assert.equal(
        (await fetch(`${c}/api/v1/status`, { headers: { authorization: 'Bearer wrong' } })).status,
        401,
      )

      const status = await json(fetch(`${c}/api/v1/status`, auth))
      assert.equal(status.status, 'running')
      assert.equal(status.mode, 'api_gateway')
      assert.equal(status.gateway_enabled, true)
      assert.equal(status.lb_enabled, false)

      const configText = await (await fetch(`${c}/api/v1/config`, auth)).text()
      assert.ok(!configText.includes('jwt-very-secret'), 'jwt_secret is redacted')
      assert.ok(!configText.includes('adm1n'), 'api_key is redacted')
      assert.equal(JSON.parse(configText).api_gateway.middlewares.authentication.jwt_secret, '[REDACTED]')

      const servers = await until(async () => {
        const u = await json(fetch(`${c}/api/v1/upstreams`, auth))
        const s = u.upstreams[0].servers
        return s[1].healthy === false ? s : undefined
      }, 'the dead server to show unhealthy')
      assert.equal(servers[0].healthy, true)

      const routes = await json(fetch(`${c}/api/v1/routes`, auth))
      assert.equal(routes.routes[0].name, 'all')
      assert.equal((await fetch(`${c}/api/v1/nope`, auth)).status, 404)
    } finally {
      await proxy.stop()
      await up.close()
    }
  })
})

describe('TLS', () => {
  test('server.tls terminates HTTPS and tells the upstream X-Forwarded-Proto: https', async () => {
    const up = await startUpstream('u')
    const proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  tls:
    cert_path: ${path.join(CERTS, 'cert.pem')}
    key_path: ${path.join(CERTS, 'key.pem')}
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`)
    try {
      assert.ok(proxy.url.startsWith('https://'))
      const body = await new Promise<string>((resolve, reject) => {
        https
          .get(`${proxy.url}/secure`, { ca: readFileSync(path.join(CERTS, 'cert.pem')) }, (res) => {
            let b = ''
            res.on('data', (d) => {
              b += d
            })
            res.on('end', () => resolve(b))
          })
          .on('error', reject)
      })
      const seen = JSON.parse(body)
      assert.equal(seen.headers['x-forwarded-proto'], 'https')
    } finally {
      await proxy.stop()
      await up.close()
    }
  })

  test('an upstream with tls: true is verified; a self-signed server gets 502 and a logged reason', async () => {
    const server = https.createServer(
      { cert: readFileSync(path.join(CERTS, 'cert.pem')), key: readFileSync(path.join(CERTS, 'key.pem')) },
      (_req, res) => res.end('secret'),
    )
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as { port: number }).port
    const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  secure: { servers: ["127.0.0.1:${port}"], tls: true, sni: localhost }
load_balancer: { upstream: secure }
`)
    try {
      const res = await fetch(`${proxy.url}/`)
      assert.equal(res.status, 502)
      assert.ok(!(await res.text()).includes('secret'))
      const warn = await proxy.waitForLog((l) => l.msg === 'upstream error', 'the upstream error')
      assert.match(String(warn.err), /SELF_SIGNED|CERT|certificate/i)
    } finally {
      await proxy.stop()
      server.close()
    }
  })
})

describe('workers', () => {
  test('server.workers: 2 serves from two processes on one port and stops cleanly', async () => {
    const up = await startUpstream('u')
    const proxy = await startProxy(
      `mode: load_balancer
server: { bind_address: "127.0.0.1:0", workers: 2 }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`,
      { waitReady: false },
    )
    try {
      await proxy.waitForLog((l) => l.msg === 'all workers listening', 'workers ready', 20_000)
      // Each worker logs its own line, asynchronously: wait for both.
      const ready = await until(() => {
        const lines = proxy.logs.filter((l) => l.msg === 'locci-proxy listening')
        return lines.length === 2 ? lines : undefined
      }, 'both workers to log their listening line')
      assert.equal(new Set(ready.map((l) => l.pid)).size, 2)
      assert.equal(new Set(ready.map((l) => l.bind)).size, 1, 'one shared port')
      const url = String(ready[0]!.bind)
      const results = await Promise.all(
        Array.from({ length: 40 }, () => fetch(`${url}/w`).then((r) => r.status)),
      )
      assert.deepEqual(new Set(results), new Set([200]))
      assert.equal(await proxy.stop(), 0)
    } finally {
      await proxy.stop()
      await up.close()
    }
  })
})
