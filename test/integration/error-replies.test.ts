// Failures that are not an upstream's fault are not reported as one, and the proxy's own
// replies read the same whichever path writes them (observe/errors.ts, proxy/raw-response.ts).

import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { generateKeyPair, SignJWT } from 'jose'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawRequest } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'

/**
 * A JWKS host that never answers: it closes every connection at once. It keeps its port, so no
 * server of a test file running beside this one can take it and answer instead (a port bound
 * and closed could be reused at once: a CI run got 401, a JWKS fetched from someone else).
 */
async function closingServer(): Promise<net.Server> {
  const s = net.createServer((c) => c.destroy())
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return s
}

describe('error replies', () => {
  let up: Upstream
  let proxy: RunningProxy
  let token = ''
  let jwks: net.Server
  before(async () => {
    jwks = await closingServer()
    const { privateKey } = await generateKeyPair('RS256')
    token = await new SignJWT({ sub: 'u' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setExpirationTime('10m')
      .sign(privateKey)
    up = await startUpstream('app')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  middlewares:
    authentication: { jwks_url: "http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks" }
  routes:
    secure: { path_pattern: "^/secure", upstream: app, middlewares: [authentication] }
    open: { path_pattern: "^/", upstream: app }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
    jwks.close()
  })

  test('an unreachable JWKS is a 503 auth_unavailable, not logged as an upstream error', async () => {
    const res = await fetch(`${proxy.url}/secure/x`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(res.status, 503)
    assert.equal(await res.text(), '503 token verification keys unavailable\n')
    const access = await proxy.waitForLog(
      (l) => l.msg === 'request' && l.path === '/secure/x',
      'the access line',
    )
    assert.equal(access.error_type, 'auth_unavailable')
    assert.equal(access.upstream, undefined, 'no upstream group is blamed')
    await proxy.waitForLog((l) => l.msg === 'cannot fetch the JWKS to verify tokens', 'the middleware line')
    assert.deepEqual(
      proxy.logs.filter((l) => l.msg === 'upstream error'),
      [],
      'no upstream error line',
    )
  })

  test('HTTP/1.1 CONNECT gets the same 405 with Allow as over HTTP/2', async () => {
    const before = up.seen.length
    const r = await rawRequest(
      proxy.port,
      'CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n',
    )
    assert.equal(r.status, 405)
    assert.match(r.text, /\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/)
    assert.match(r.text, /\r\nconnection: close\r\n/)
    assert.ok(r.text.endsWith('\r\n\r\n405 method not allowed for this path\n'), r.text)
    assert.equal(up.seen.length, before, 'never reaches the upstream')
  })

  test('a CONNECT whose client resets the connection is no uncaught error', async () => {
    // Reset at once, or just after: before the 405 is written, or while it is.
    for (let i = 0; i < 40; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(proxy.port, '127.0.0.1', () => {
          s.write(
            `CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n${'x'.repeat(i % 2 ? 0 : 100_000)}`,
          )
          if (i % 4 < 2) s.resetAndDestroy()
          else setImmediate(() => s.resetAndDestroy())
          resolve()
        })
        s.on('error', () => resolve())
      })
    }
    // The proxy still answers, and has logged nothing uncaught.
    assert.equal((await rawRequest(proxy.port, 'GET / HTTP/1.1\r\nHost: t\r\n\r\n')).status, 200)
    assert.deepEqual(
      proxy.logs.filter((l) => /uncaught/i.test(String(l.msg))),
      [],
      'no uncaught exception',
    )
  })
})
