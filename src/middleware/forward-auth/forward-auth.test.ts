// forward_auth through the in-process harness against a real node:http auth service on
// 127.0.0.1: what the service is asked, what a 2xx lets through, how a refusal is relayed, and
// what the client gets when the service is down, slow or answers too much.

import assert from 'node:assert/strict'
import http from 'node:http'
import type net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type Gateway, gateway } from '../../../test/helpers/gateway'
import { closedPort, startUpstream, type Upstream } from '../../../test/helpers/upstream'
import { checkForwardAuth, type ForwardAuthConfig, forwardAuth as schema } from './config'

interface Asked {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: string
}

describe('forward_auth (in-process, real auth service)', () => {
  let app: Upstream
  let auth: http.Server
  let authPort: number
  let gw: Gateway
  let dead: number
  const asked: Asked[] = []

  before(async () => {
    app = await startUpstream('app')
    auth = http.createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        asked.push({ method: req.method!, url: req.url!, headers: req.headers, body })
        const uri = String(req.headers['x-forwarded-uri'])
        if (uri.startsWith('/app/ok') || uri.startsWith('/only/')) {
          res.writeHead(200, { 'X-User': 'alice', 'X-Other': 'not copied', 'content-length': '2' })
          return res.end('ok')
        }
        if (uri.startsWith('/app/login')) {
          res.writeHead(302, { location: 'https://login.example/?next=%2Fapp', 'set-cookie': ['a=1', 'b=2'] })
          return res.end()
        }
        if (uri.startsWith('/app/huge')) {
          res.writeHead(403)
          return res.end(Buffer.alloc(70 * 1024, 'x'))
        }
        if (uri.startsWith('/app/slow')) return // never answers
        res.writeHead(401, {
          'www-authenticate': 'Bearer realm="sso"',
          'content-type': 'application/json',
          'keep-alive': 'timeout=5',
          'x-request-id': 'from-the-auth-service',
        })
        res.end('{"error":"who are you"}')
      })
    })
    await new Promise<void>((r) => auth.listen(0, '127.0.0.1', r))
    authPort = (auth.address() as net.AddressInfo).port
    dead = await closedPort()
    gw = await gateway(`
mode: api_gateway
server: {bind_address: "127.0.0.1:0"}
logging: {level: info}
upstreams:
  app: {servers: ["${app.address}"]}
middlewares:
  sso:
    type: forward_auth
    address: "http://127.0.0.1:${authPort}/check?from=proxy"
    timeout_secs: 0.5
    auth_response_headers: [X-User]
  narrow:
    type: forward_auth
    address: "http://127.0.0.1:${authPort}/check"
    auth_request_headers: [Cookie]
    auth_response_headers: [X-User]
  down: {type: forward_auth, address: "http://127.0.0.1:${dead}/", timeout_secs: 2}
api_gateway:
  routes:
    app: {path_pattern: "^/app", upstream: app, middlewares: [sso]}
    only: {path_pattern: "^/only", upstream: app, middlewares: [narrow]}
    down: {path_pattern: "^/down", upstream: app, middlewares: [down]}
    open: {path_pattern: "^/open", upstream: app}
`)
  })

  after(async () => {
    await gw.close()
    await app.close()
    auth.closeAllConnections()
    await new Promise<void>((r) => auth.close(() => r()))
  })

  test('a 2xx lets the request through with the listed answer headers; the service is asked a GET without body', async () => {
    const before = app.seen.length
    const r = await gw.request('POST', '/app/ok/x?q=1', {
      headers: { authorization: 'Bearer t', 'x-user': 'forged', 'content-type': 'text/plain' },
      body: 'payload',
    })
    assert.equal(r.status, 200)
    const a = asked.at(-1)!
    assert.equal(a.method, 'GET')
    assert.equal(a.url, '/check?from=proxy')
    assert.equal(a.body, '')
    assert.equal(a.headers['content-length'], undefined)
    assert.equal(a.headers.host, `127.0.0.1:${authPort}`)
    assert.equal(a.headers['x-forwarded-method'], 'POST')
    assert.equal(a.headers['x-forwarded-uri'], '/app/ok/x?q=1')
    assert.equal(a.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(a.headers['x-forwarded-proto'], 'http')
    assert.match(String(a.headers['x-forwarded-host']), /^127\.0\.0\.1:\d+$/)
    assert.equal(a.headers.authorization, 'Bearer t')
    assert.equal(a.headers['x-user'], undefined, 'a forged X-User never reaches the auth service')
    assert.equal(app.seen.length, before + 1)
    const seen = app.seen.at(-1)!
    assert.equal(seen.headers['x-user'], 'alice')
    assert.equal(seen.headers['x-other'], undefined)
    assert.equal(seen.body, 'payload')
  })

  test('auth_request_headers: only those client headers (and the forwarding ones) are sent', async () => {
    const r = await gw.request('GET', '/only/x', { headers: { cookie: 's=1', authorization: 'Basic x' } })
    assert.equal(r.status, 200)
    const a = asked.at(-1)!
    assert.equal(a.headers.cookie, 's=1')
    assert.equal(a.headers.authorization, undefined)
    assert.equal(a.headers['x-forwarded-uri'], '/only/x')
    assert.ok(a.headers['x-request-id'])
  })

  test("a refusal is relayed: the service's status, body and headers, hop-by-hop and its request id dropped", async () => {
    const before = app.seen.length
    const r = await gw.request('GET', '/app/private', { headers: { 'x-request-id': 'mine-1' } })
    assert.equal(r.status, 401)
    assert.equal(r.body, '{"error":"who are you"}')
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="sso"')
    assert.equal(r.headers['content-type'], 'application/json')
    assert.equal(r.headers['x-request-id'], 'mine-1')
    assert.notEqual(r.headers['keep-alive'], 'timeout=5', "the service's Keep-Alive is not relayed")
    assert.equal(app.seen.length, before, 'the upstream is never asked')
    const line = gw.access().at(-1)!
    assert.equal(line.status, 401)
  })

  test('a redirect to a login page is relayed with its Location and every Set-Cookie', async () => {
    const r = await gw.request('GET', '/app/login')
    assert.equal(r.status, 302)
    assert.equal(r.headers.location, 'https://login.example/?next=%2Fapp')
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2'])
  })

  test('a refusal body over 64 KiB is not relayed: 502 forward_auth_error', async () => {
    const r = await gw.request('GET', '/app/huge')
    assert.equal(r.status, 502)
    assert.equal(r.body, '502 invalid answer from the authentication service\n')
  })

  test('an auth service that does not answer within timeout_secs: 504 forward_auth_timeout', async () => {
    const t = Date.now()
    const r = await gw.request('GET', '/app/slow')
    assert.equal(r.status, 504)
    assert.equal(r.body, '504 authentication service timed out\n')
    assert.ok(Date.now() - t < 5000)
    assert.ok(gw.logs().some((l) => l.error_type === 'forward_auth_timeout' && l.middleware === 'sso'))
  })

  test('an auth service nobody listens for: 503 forward_auth_unavailable', async () => {
    const r = await gw.request('GET', '/down/x')
    assert.equal(r.status, 503)
    assert.equal(r.body, '503 authentication service unavailable\n')
  })

  test('auth_response_headers cannot be forged on a route without forward_auth', async () => {
    const r = await gw.request('GET', '/open/x', { headers: { 'x-user': 'admin', x_user: 'admin' } })
    assert.equal(r.status, 200)
    assert.equal(app.seen.at(-1)!.headers['x-user'], undefined)
    assert.equal(app.seen.at(-1)!.headers.x_user, undefined)
  })
})

describe('forward_auth declarations', () => {
  const cases: Array<{ desc: string; cfg: Partial<ForwardAuthConfig>; problems: RegExp[] }> = [
    { desc: 'an http address', cfg: {}, problems: [] },
    {
      desc: 'credentials in the address',
      cfg: { address: 'http://u:p@127.0.0.1:1/' },
      problems: [/^address: must not hold a user name or password/],
    },
    {
      desc: 'auth_request_headers naming Host',
      cfg: { auth_request_headers: ['Host'] },
      problems: [/^auth_request_headers: Host is never sent/],
    },
    {
      desc: 'auth_response_headers naming a hop-by-hop header',
      cfg: { auth_response_headers: ['Connection'] },
      problems: [/^auth_response_headers: Connection is a hop-by-hop header/],
    },
    {
      desc: 'auth_response_headers naming X-Forwarded-User',
      cfg: { auth_response_headers: ['X-Forwarded-User'] },
      problems: [/^auth_response_headers: X-Forwarded-User is a forwarding header/],
    },
    {
      desc: 'auth_response_headers naming Authorization',
      cfg: { auth_response_headers: ['Authorization'] },
      problems: [],
    },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.problems.length ? 'refused' : 'accepted'}`, () => {
      const cfg = schema.parse({ address: 'http://127.0.0.1:1/auth', ...c.cfg })
      const problems: string[] = []
      checkForwardAuth(cfg, (key, message) => problems.push(`${key ?? '.'}: ${message}`))
      assert.equal(problems.length, c.problems.length, problems.join('\n'))
      for (const [i, re] of c.problems.entries()) assert.match(problems[i]!, re)
    })
  }

  test('an address that is not http(s) is refused by the schema', () => {
    assert.equal(schema.safeParse({ address: 'ftp://127.0.0.1/' }).success, false)
  })
})
