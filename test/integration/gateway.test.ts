// api_gateway mode end to end: longest pattern first, methods, 404, 405 with Allow,
// strip_prefix keeping the query, per-route timeouts over the server default.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

describe('api gateway', () => {
  let users: Upstream
  let web: Upstream
  let slow: Upstream
  let proxy: RunningProxy
  before(async () => {
    users = await startUpstream('users')
    web = await startUpstream('web')
    slow = await startUpstream('slow')
    slow.behaviour = { kind: 'delay', ms: 1500 }
    proxy = await startProxy(`mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
  upstream_timeout_secs: 0.5
upstreams:
  users_service: { servers: ["${users.address}"] }
  web_service: { servers: ["${web.address}"] }
  slow_service: { servers: ["${slow.address}"] }
api_gateway:
  routes:
    web_app:
      path_pattern: "^/"
      upstream: web_service
    users_api:
      path_pattern: "^/api/users"
      methods: [GET, POST]
      upstream: users_service
      strip_prefix: true
    users_admin:
      path_pattern: "^/api/users/admin"
      methods: [DELETE]
      upstream: users_service
    slow_patient:
      path_pattern: "^/slow/patient"
      upstream: slow_service
      timeout_secs: 5
    slow_default:
      path_pattern: "^/slow"
      upstream: slow_service
    api_only_get:
      path_pattern: "^/only/get$"
      methods: [get]
      upstream: users_service
`)
  })
  after(async () => {
    await proxy.stop()
    await Promise.all([users.close(), web.close(), slow.close()])
  })

  const call = async (path: string, method = 'GET') => {
    const res = await fetch(`${proxy.url}${path}`, { method })
    const text = await res.text()
    return {
      status: res.status,
      headers: res.headers,
      text,
      json: text.startsWith('{') ? JSON.parse(text) : undefined,
    }
  }

  test('the longest pattern wins over a catch-all written first', async () => {
    assert.equal((await call('/api/users/7')).json.server, 'users')
    assert.equal((await call('/index.html')).json.server, 'web')
  })

  test('strip_prefix removes the matched part and keeps the query string', async () => {
    assert.equal((await call('/api/users/7?expand=true&x=1')).json.url, '/7?expand=true&x=1')
    assert.equal((await call('/api/users')).json.url, '/', 'an empty path becomes /')
    assert.equal((await call('/api/users?q=1')).json.url, '/?q=1')
    assert.equal((await call('/index.html?a=b')).json.url, '/index.html?a=b', 'no strip: path unchanged')
  })

  test('a method no matching route allows gets 405 with Allow listing what would work', async () => {
    // /only/get matches api_only_get (GET) and the catch-all ^/ (any method), so PUT goes to web.
    assert.equal((await call('/only/get', 'PUT')).json.server, 'web')
    // /api/users/admin matches users_admin (DELETE) and users_api (GET, POST); nothing allows PATCH
    // except the catch-all, which is shorter and matches every method, so it answers.
    assert.equal((await call('/api/users/admin', 'PATCH')).json.server, 'web')
  })

  test('methods are matched case-insensitively in the file (get == GET)', async () => {
    assert.equal((await call('/only/get')).json.server, 'users')
  })

  test('route timeout_secs overrides server.upstream_timeout_secs', async () => {
    const t = await call('/slow/x')
    assert.equal(t.status, 504, 'server default of 0.5 s applies')
    const ok = await call('/slow/patient')
    assert.equal(ok.status, 200, 'route timeout of 5 s applies')
    const line = await proxy.waitForLog(
      (l) => l.path === '/slow/patient' && l.msg === 'request',
      'access line',
    )
    assert.equal(line.route, 'slow_patient')
    assert.equal(line.upstream, 'slow_service')
  })
})

describe('api gateway without a catch-all', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('u')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  u: { servers: ["${up.address}"] }
api_gateway:
  routes:
    read:
      path_pattern: "^/items"
      methods: [GET]
      upstream: u
    write:
      path_pattern: "^/items/"
      methods: [POST, PUT]
      upstream: u
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('no route gives 404; a matched path with the wrong method gives 405 and Allow', async () => {
    const nf = await fetch(`${proxy.url}/nope`)
    assert.equal(nf.status, 404)
    assert.match(await nf.text(), /^404 /)
    const na = await fetch(`${proxy.url}/items/1`, { method: 'DELETE' })
    assert.equal(na.status, 405)
    assert.equal(na.headers.get('allow'), 'POST, PUT, GET')
    assert.equal(up.seen.length, 0, 'nothing reached the upstream')
    const line = await proxy.waitForLog((l) => l.status === 405, '405 access line')
    assert.equal(line.error_type, 'method_not_allowed')
  })
})
