// The attacker's paths. A gateway that checks one spelling of a path and forwards another lets a
// client past `excluded_paths` and route patterns as soon as the upstream normalizes what it
// gets (`/api/public/../secret` is `/api/secret` to almost every server). The proxy normalizes
// once, checks the normalized path, and forwards exactly that; what cannot be normalized safely
// (escaped slashes, backslashes, climbing above the root, `..;`) is refused with 400 before any
// middleware or upstream sees it.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawRequest } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'

describe('hostile paths', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('app')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  middlewares:
    authentication:
      jwt_secret: "0123456789abcdef0123456789abcdef"
      excluded_paths: ["/api/public/*"]
  routes:
    api: { path_pattern: "^/api/", upstream: app, middlewares: [authentication] }
    admin: { path_pattern: "^/admin", upstream: app, methods: [GET] }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  const get = (path: string) =>
    rawRequest(proxy.port, `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`)

  const cases: Array<{ desc: string; path: string; status: number; upstreamSees?: string }> = [
    {
      desc: 'an open path is served as it is',
      path: '/api/public/info',
      status: 200,
      upstreamSees: '/api/public/info',
    },
    { desc: 'dot-dot out of an excluded path needs a token', path: '/api/public/../secret', status: 401 },
    { desc: 'encoded dot-dot out of an excluded path', path: '/api/public/%2e%2e/secret', status: 401 },
    { desc: 'upper-case encoded dots', path: '/api/public/%2E%2E/secret', status: 401 },
    { desc: 'path parameters before dot-dot', path: '/api/public;/../secret', status: 401 },
    { desc: 'backslashes are refused', path: '/api/public\\..\\secret', status: 400 },
    { desc: 'encoded slashes are refused', path: '/api/public%2F..%2Fsecret', status: 400 },
    { desc: 'encoded backslashes are refused', path: '/api/public%5C..%5Csecret', status: 400 },
    { desc: 'dot-dot with parameters (Tomcat) is refused', path: '/api/public/..;/secret', status: 400 },
    { desc: 'climbing above the root is refused', path: '/%2e%2e/admin', status: 400 },
    { desc: 'plain climbing above the root is refused', path: '/../admin', status: 400 },
    { desc: 'a malformed escape is refused', path: '/api/public/%zz', status: 400 },
    {
      desc: 'merged slashes and dots reach the normalized path',
      path: '//api//public/./x/',
      status: 200,
      upstreamSees: '/api/public/x/',
    },
    {
      desc: 'encoded unreserved characters are decoded',
      path: '/api/public/%7Euser',
      status: 200,
      upstreamSees: '/api/public/~user',
    },
    {
      desc: 'dot-dot between open paths stays open and is forwarded normalized',
      path: '/api/public/a/../b?q=1',
      status: 200,
      upstreamSees: '/api/public/b?q=1',
    },
    { desc: 'routes match case-sensitively', path: '/API/public/x', status: 404 },
    {
      desc: 'a route reached through dot-dot still applies its methods',
      path: '/api/public/../../admin',
      status: 200,
      upstreamSees: '/admin',
    },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.path} -> ${c.status}`, async () => {
      const before = up.seen.length
      const r = await get(c.path)
      assert.equal(r.status, c.status, r.text.slice(0, 200))
      if (c.upstreamSees !== undefined) {
        assert.equal(
          up.seen.at(-1)?.url,
          c.upstreamSees,
          'the upstream gets exactly the path that was checked',
        )
      } else {
        assert.equal(up.seen.length, before, 'a refused path never reaches the upstream')
      }
    })
  }

  test('the proxy keeps serving after every refusal', async () => {
    assert.equal(proxy.child.exitCode, null)
    assert.equal((await get('/api/public/ok')).status, 200)
  })
})

describe('escaped_slashes: keep', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('app')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", escaped_slashes: keep }
upstreams:
  app: { servers: ["${up.address}"] }
load_balancer: { upstream: app }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('passes %2F through untouched (for upstreams that use it in identifiers)', async () => {
    const r = await rawRequest(
      proxy.port,
      'GET /files/a%2fb HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    )
    assert.equal(r.status, 200)
    assert.equal(up.seen.at(-1)?.url, '/files/a%2Fb')
  })

  test('still refuses climbing above the root', async () => {
    const r = await rawRequest(proxy.port, 'GET /a/../../b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
    assert.equal(r.status, 400)
  })
})
