// A client that leaves while a middleware is still deciding (here: the JWKS to verify its token
// is slow to arrive) must not leave a request in flight for ever. The response object's 'close'
// has already happened when the request reaches the upstream; found by the fuzz run, where such a
// request waited for a 'drain' that could never come and a later SIGTERM waited out the grace
// period.

import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

describe('a client gone before the middleware chain finished', () => {
  let jwks: http.Server
  let jwksHits = 0
  let token = ''
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256')
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
    token = await new SignJWT({ sub: 'u' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setExpirationTime('10m')
      .sign(privateKey)
    // The key set answers after 700 ms: long enough for the client to have left.
    jwks = http.createServer((_req, res) => {
      jwksHits++
      setTimeout(() => res.end(JSON.stringify({ keys: [jwk] })), 700)
    })
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r))
    up = await startUpstream('app')
    // A body of many chunks: writing it to a closed client used to wait for 'drain' for ever.
    up.behaviour = { kind: 'stream', chunks: 50, size: 64 * 1024, gapMs: 1 }
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0", shutdown_timeout_secs: 60 }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  middlewares:
    authentication: { jwks_url: "http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks" }
  routes:
    api: { path_pattern: "^/", upstream: app, middlewares: [authentication] }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop('SIGKILL')
    await up.close()
    jwks.close()
  })

  const inFlight = async () =>
    ((await (await fetch(`${proxy.controlUrl}/api/v1/status`)).json()) as { requests_in_flight: number })
      .requests_in_flight

  test('its request ends (499) instead of staying in flight', async () => {
    const s = net.connect(proxy.port, '127.0.0.1')
    await new Promise((r) => s.once('connect', r))
    s.write(`GET /big HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${token}\r\n\r\n`)
    await until(() => jwksHits > 0, 'the proxy to ask for the key set', 10_000)
    s.destroy()
    await proxy.waitForLog((l) => l.msg === 'request' && l.path === '/big', 'the access line', 15_000)
    await until(async () => (await inFlight()) === 0, 'no request in flight', 10_000)
  })

  test('SIGTERM exits at once', async () => {
    const t0 = Date.now()
    assert.equal(await proxy.stop(), 0)
    assert.ok(Date.now() - t0 < 20_000, `stopped in ${Date.now() - t0} ms (grace period 60 s)`)
  })
})
