// headers, rewrite, redirect and ip_filter at the request level, through the in-process harness
// (test/helpers/gateway.ts): a gateway from YAML against a real node:http upstream that echoes
// what it received.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type Gateway, gateway } from '../../test/helpers/gateway'
import { closedPort, startUpstream, type Upstream } from '../../test/helpers/upstream'

describe('request middlewares (in-process)', () => {
  let up: Upstream
  let gw: Gateway
  let dead: number

  before(async () => {
    up = await startUpstream('api')
    dead = await closedPort()
    gw = await gateway(
      `
mode: api_gateway
server: {bind_address: "127.0.0.1:0"}
logging: {level: info}
upstreams:
  api: {servers: ["${up.address}"]}
  gone: {servers: ["127.0.0.1:${dead}"], retries: 0}
middlewares:
  tag:
    type: headers
    request:
      set: {X-Client: "\${client_ip}", X-Trace: "\${request_id}/\${route}/\${upstream}/\${host}", X-Role: "guest"}
      add: {X-Extra: ["one", "two"]}
      remove: [X-Internal]
    response:
      set: {Content-Type: "text/x-set", Cache-Control: "no-store"}
      add: {X-Served-By: "\${upstream}"}
      remove: [X-Upstream]
  secure: {type: headers, frame_deny: true, content_type_nosniff: true, referrer_policy: no-referrer, hsts: {max_age_secs: 600, include_subdomains: true}}
  authentication: {jwt_secret: "0123456789abcdef0123456789abcdef"}
  to_new: {type: rewrite, regex: "^/old/(.*)", replacement: "/new/$1"}
  v2: {type: rewrite, regex: "^/v1/(.*)", replacement: "/v2/$1"}
  joined: {type: rewrite, regex: "^/files/([^/-]*)-([^/]*)$", replacement: "/static/$1$2"}
  slashes: {type: rewrite, regex: "^/slash(.*)", replacement: "/s/$1"}
  escape: {type: rewrite, regex: "^/esc/(%2)0(.*)$", replacement: "/e/$1F$2"}
  moved: {type: redirect, regex: "^/moved/(.*)", replacement: "/new/$1", status: 301}
  go: {type: redirect, regex: "^/go(.*)", replacement: "/$1"}
  elsewhere: {type: redirect, scheme: https, host: example.com, port: 8443, status: 308}
  same_host: {type: redirect, host: example.com}
  local_only: {type: ip_filter, allow: ["127.0.0.0/8"]}
  no_local: {type: ip_filter, allow: ["0.0.0.0/0", "::/0"], deny: ["127.0.0.1"]}
  private_only: {type: ip_filter, allow: ["10.0.0.0/8"]}
api_gateway:
  routes:
    tagged: {path_pattern: "^/tagged", upstream: api, middlewares: [tag]}
    tagged_gone: {path_pattern: "^/down", upstream: gone, middlewares: [tag]}
    secured_first: {path_pattern: "^/sec-first", upstream: api, middlewares: [secure, authentication]}
    secured_last: {path_pattern: "^/sec-last", upstream: api, middlewares: [authentication, secure]}
    secured: {path_pattern: "^/secure", upstream: api, middlewares: [secure]}
    old: {path_pattern: "^/old", upstream: api, middlewares: [to_new]}
    stripped: {path_pattern: "^/api", upstream: api, strip_prefix: true, middlewares: [v2]}
    files: {path_pattern: "^/files", upstream: api, middlewares: [joined]}
    slash: {path_pattern: "^/slash", upstream: api, middlewares: [slashes]}
    esc: {path_pattern: "^/esc", upstream: api, middlewares: [escape]}
    moved: {path_pattern: "^/moved", upstream: api, middlewares: [moved]}
    go: {path_pattern: "^/go", upstream: api, middlewares: [go]}
    elsewhere: {path_pattern: "^/elsewhere", upstream: api, middlewares: [elsewhere]}
    same_host: {path_pattern: "^/same", upstream: api, middlewares: [same_host]}
    local: {path_pattern: "^/local", upstream: api, middlewares: [local_only]}
    no_local: {path_pattern: "^/nolocal", upstream: api, middlewares: [no_local]}
    private: {path_pattern: "^/private", upstream: api, middlewares: [private_only]}
`,
    )
  })

  after(async () => {
    await gw?.close()
    await up.close()
  })

  const seenBy = (r: { body: string }) =>
    JSON.parse(r.body) as { url: string; headers: Record<string, string | string[]> }

  test('headers: request set replaces the client value (any case, _ for -), add keeps, remove removes', async () => {
    const r = await gw.request('GET', '/tagged/x', {
      headers: {
        'x-role': 'admin',
        x_role: 'admin',
        'x-extra': 'client',
        'x-internal': 'secret',
        x_internal: 's',
      },
    })
    assert.equal(r.status, 200)
    const h = seenBy(r).headers
    assert.equal(h['x-role'], 'guest')
    assert.equal(h.x_role, undefined)
    assert.equal(h['x-extra'], 'client, one, two')
    assert.equal(h['x-internal'], undefined)
    assert.equal(h.x_internal, undefined)
  })

  test('headers: variables are filled per request', async () => {
    const r = await gw.request('GET', '/tagged/vars', {
      headers: { 'x-request-id': 'req-42', host: 'api.example' },
    })
    const h = seenBy(r).headers
    assert.equal(h['x-client'], '127.0.0.1')
    assert.equal(h['x-trace'], 'req-42/tagged/api/api.example')
  })

  test('headers: response set replaces the upstream header, remove drops it, add adds', async () => {
    const r = await gw.request('GET', '/tagged/resp')
    assert.equal(r.headers['content-type'], 'text/x-set')
    assert.equal(r.headers['cache-control'], 'no-store')
    assert.equal(r.headers['x-served-by'], 'api')
    assert.equal(r.headers['x-upstream'], undefined)
  })

  test("headers: response headers go on the proxy's own 502, which keeps its text/plain type", async () => {
    const r = await gw.request('GET', '/down')
    assert.equal(r.status, 502)
    assert.equal(r.headers['cache-control'], 'no-store')
    assert.equal(r.headers['x-served-by'], 'gone')
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8')
  })

  test('headers: presets on a plain HTTP request, without HSTS (RFC 6797 section 7.2)', async () => {
    const r = await gw.request('GET', '/secure')
    assert.equal(r.headers['x-frame-options'], 'DENY')
    assert.equal(r.headers['x-content-type-options'], 'nosniff')
    assert.equal(r.headers['referrer-policy'], 'no-referrer')
    assert.equal(r.headers['strict-transport-security'], undefined)
  })

  test('headers: a client cannot claim HTTPS to get HSTS (X-Forwarded-Proto from an untrusted peer)', async () => {
    const r = await gw.request('GET', '/secure', { headers: { 'x-forwarded-proto': 'https' } })
    assert.equal(r.headers['strict-transport-security'], undefined)
  })

  test('headers: listed before authentication, its response headers go on the 401 too; after it, not', async () => {
    const first = await gw.request('GET', '/sec-first')
    assert.equal(first.status, 401)
    assert.equal(first.headers['x-frame-options'], 'DENY')
    const last = await gw.request('GET', '/sec-last')
    assert.equal(last.status, 401)
    assert.equal(last.headers['x-frame-options'], undefined)
  })

  test('rewrite: the upstream sees the new path, the query kept', async () => {
    const r = await gw.request('GET', '/old/a/b?q=1&r=%20')
    assert.equal(r.status, 200)
    assert.equal(seenBy(r).url, '/new/a/b?q=1&r=%20')
  })

  test('rewrite: runs after strip_prefix', async () => {
    const r = await gw.request('GET', '/api/v1/users?x=1')
    assert.equal(seenBy(r).url, '/v2/users?x=1')
  })

  test('rewrite: a result with a dot segment made from the path is refused, not resolved', async () => {
    const before = up.seen.length
    for (const p of ['/files/.-.', '/files/%2e-%2E', '/files/.-', '/files/..;x-y']) {
      const r = await gw.request('GET', p)
      assert.equal(r.status, 400, p)
    }
    assert.equal(up.seen.length, before, 'nothing reached the upstream')
    const ok = await gw.request('GET', '/files/a-b')
    assert.equal(seenBy(ok).url, '/static/ab')
  })

  test('rewrite: the result is normalized again (// merged)', async () => {
    const r = await gw.request('GET', '/slash/x')
    assert.equal(seenBy(r).url, '/s/x')
  })

  test('rewrite: an escaped slash assembled by the replacement is refused (400)', async () => {
    const before = up.seen.length
    const r = await gw.request('GET', '/esc/%20x')
    assert.equal(r.status, 400)
    assert.equal(up.seen.length, before)
  })

  test('redirect: a relative Location from the path, the query kept, nothing forwarded', async () => {
    const before = up.seen.length
    const r = await gw.request('GET', '/moved/a?b=1')
    assert.equal(r.status, 301)
    assert.equal(r.headers.location, '/new/a?b=1')
    assert.equal(up.seen.length, before)
  })

  test('redirect: a replacement cannot make a protocol-relative Location (//evil)', async () => {
    const r = await gw.request('GET', '/go/evil.example/x')
    assert.equal(r.status, 302)
    assert.equal(r.headers.location, '/evil.example/x')
  })

  test("redirect: the configured host, never the client's Host header", async () => {
    const r = await gw.request('POST', '/elsewhere/p?q=1', { headers: { host: 'evil.example' } })
    assert.equal(r.status, 308)
    assert.equal(r.headers.location, 'https://example.com:8443/elsewhere/p?q=1')
  })

  test('redirect: a Location that is the request URL itself passes the request on (no loop)', async () => {
    const loop = await gw.request('GET', '/same/x', { headers: { host: 'example.com' } })
    assert.equal(loop.status, 200)
    const other = await gw.request('GET', '/same/x', { headers: { host: 'www.example.com' } })
    assert.equal(other.status, 302)
    assert.equal(other.headers.location, 'http://example.com/same/x')
  })

  test('ip_filter: an allowed client passes; a denied one gets 403 with a short body', async () => {
    assert.equal((await gw.request('GET', '/local')).status, 200)
    const r = await gw.request('GET', '/nolocal')
    assert.equal(r.status, 403)
    assert.equal(r.body, '403 client address not allowed\n')
    const line = gw.access().find((l) => l.path === '/nolocal')
    assert.equal(line?.error_type, 'ip_not_allowed')
  })

  test('ip_filter: a forged X-Forwarded-For from an untrusted client changes nothing', async () => {
    const before = up.seen.length
    const r = await gw.request('GET', '/private', { headers: { 'x-forwarded-for': '10.1.2.3' } })
    assert.equal(r.status, 403)
    assert.equal(up.seen.length, before)
  })
})

describe('request middlewares behind a trusted proxy (in-process)', () => {
  let up: Upstream
  let gw: Gateway

  before(async () => {
    up = await startUpstream('api')
    gw = await gateway(`
mode: api_gateway
server: {bind_address: "127.0.0.1:0", trusted_proxies: ["127.0.0.1/32"]}
upstreams:
  api: {servers: ["${up.address}"]}
middlewares:
  private_only: {type: ip_filter, allow: ["10.0.0.0/8"], deny: ["10.0.0.66"]}
  secure: {type: headers, hsts: {max_age_secs: 600, include_subdomains: true}}
  elsewhere: {type: redirect, host: example.com}
api_gateway:
  routes:
    private: {path_pattern: "^/private", upstream: api, middlewares: [private_only]}
    secure: {path_pattern: "^/secure", upstream: api, middlewares: [secure]}
    elsewhere: {path_pattern: "^/elsewhere", upstream: api, middlewares: [elsewhere]}
`)
  })

  after(async () => {
    await gw?.close()
    await up.close()
  })

  const cases: Array<{ desc: string; xff: string; status: number }> = [
    { desc: 'the client a trusted proxy names is allowed', xff: '10.1.2.3', status: 200 },
    { desc: 'in its IPv4-mapped form too', xff: '::ffff:10.1.2.3', status: 200 },
    { desc: 'a client outside allow is refused', xff: '192.0.2.1', status: 403 },
    { desc: 'deny wins over allow', xff: '10.0.0.66', status: 403 },
    { desc: 'a forged left-most hop does not count', xff: '10.1.2.3, 192.0.2.1', status: 403 },
  ]
  for (const c of cases) {
    test(`ip_filter: ${c.desc}`, async () => {
      const r = await gw.request('GET', '/private', { headers: { 'x-forwarded-for': c.xff } })
      assert.equal(r.status, c.status)
    })
  }

  test('headers: HSTS on a request a trusted proxy says came over HTTPS', async () => {
    const r = await gw.request('GET', '/secure', { headers: { 'x-forwarded-proto': 'https' } })
    assert.equal(r.headers['strict-transport-security'], 'max-age=600; includeSubDomains')
  })

  test('redirect: keeps the scheme the client used (from the trusted proxy)', async () => {
    const r = await gw.request('GET', '/elsewhere?x=1', { headers: { 'x-forwarded-proto': 'https' } })
    assert.equal(r.status, 302)
    assert.equal(r.headers.location, 'https://example.com/elsewhere?x=1')
  })
})
