// The pipeline, exchange, retry and preflight logic through the in-process harness
// (test/helpers/gateway.ts): a gateway from a YAML string, in this process, against real
// node:http upstreams on 127.0.0.1. Each case takes milliseconds.

import assert from 'node:assert/strict'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type Gateway, gateway } from '../../test/helpers/gateway'
import { rawHeaderOf, rawRequest, scriptedUpstream } from '../../test/helpers/raw'
import { until } from '../../test/helpers/until'
import { closedPort, startUpstream, type Upstream } from '../../test/helpers/upstream'
import { parseConfigText } from '../config/load'
import { MiddlewareRegistry } from '../middleware/registry'
import { AccessLog } from '../observe/access-log'
import { UpstreamRegistry } from '../upstream/registry'
import { Pipeline } from './pipeline'
import { compilePlan, RuntimeStore } from './runtime'

describe('pipeline (in-process)', () => {
  let a: Upstream
  let b: Upstream
  let gw: Gateway
  let dead: number

  before(async () => {
    a = await startUpstream('a')
    b = await startUpstream('b')
    dead = await closedPort()
    gw = await gateway(`
mode: api_gateway
server: {bind_address: "127.0.0.1:0", max_body_bytes: 1000}
logging: {level: info}
upstreams:
  a: {servers: ["${a.address}"]}
  b: {servers: ["${b.address}"]}
  flaky: {servers: ["127.0.0.1:${dead}", "${b.address}"], retries: 1}
  gone: {servers: ["127.0.0.1:${dead}"], retries: 0}
middlewares:
  cors: {allowed_origins: ["https://app.example"], allowed_methods: [GET, PUT]}
  authentication: {jwt_secret: "0123456789abcdef0123456789abcdef", excluded_paths: ["/private/open"]}
api_gateway:
  routes:
    api: {path_pattern: "^/api", upstream: a, strip_prefix: true}
    items: {path_pattern: "^/items", upstream: b, methods: [GET]}
    browser: {path_pattern: "^/browser", upstream: a, middlewares: [cors]}
    private: {path_pattern: "^/private", upstream: b, middlewares: [authentication]}
    flaky: {path_pattern: "^/flaky", upstream: flaky}
    gone: {path_pattern: "^/gone", upstream: gone}
`)
  })

  after(async () => {
    await gw.close()
    await a.close()
    await b.close()
  })

  test('routes to the matching upstream and strips the prefix', async () => {
    const r = await gw.request('GET', '/api/users?x=1')
    assert.equal(r.status, 200)
    assert.equal(JSON.parse(r.body).server, 'a')
    assert.equal(a.seen.at(-1)?.url, '/users?x=1')
  })

  test('no route: 404; a route without the method: 405 with Allow', async () => {
    assert.equal((await gw.request('GET', '/nothing')).status, 404)
    const r = await gw.request('POST', '/items/1')
    assert.equal(r.status, 405)
    assert.equal(r.headers.allow, 'GET')
  })

  test('a CORS preflight on a cors route is answered by the gateway and never forwarded', async () => {
    const before = a.seen.length
    const r = await gw.request('OPTIONS', '/browser/x', {
      headers: { origin: 'https://app.example', 'access-control-request-method': 'PUT' },
    })
    assert.equal(r.status, 204)
    assert.equal(r.headers['access-control-allow-origin'], 'https://app.example')
    assert.equal(a.seen.length, before)
  })

  test('authentication refuses a request without a token, but not on an excluded path', async () => {
    const refused = await gw.request('GET', '/private/x')
    assert.equal(refused.status, 401)
    assert.match(String(refused.headers['www-authenticate']), /^Bearer/)
    const open = await gw.request('GET', '/private/open')
    assert.equal(open.status, 200)
    assert.equal(JSON.parse(open.body).server, 'b')
  })

  test('a refused connection is retried on the next server', async () => {
    // Round robin over [dead, b]: whichever comes first, every request ends on b.
    for (let i = 0; i < 4; i++) {
      const r = await gw.request('GET', '/flaky')
      assert.equal(r.status, 200, r.body)
      assert.equal(JSON.parse(r.body).server, 'b')
    }
  })

  test('without retries left, a refused connection is a 502 with its error kind', async () => {
    const r = await gw.request('GET', '/gone')
    assert.equal(r.status, 502)
    const line = gw.access().find((l) => l.path === '/gone')
    assert.equal(line?.error_type, 'connect_failed')
  })

  test('a declared body larger than max_body_bytes is refused before any upstream sees it', async () => {
    const before = a.seen.length
    const r = await gw.request('POST', '/api/upload', { body: 'x'.repeat(2000) })
    assert.equal(r.status, 413)
    assert.equal(a.seen.length, before)
  })

  test('every request gets one access line with its route and upstream', async () => {
    await gw.request('GET', '/api/one')
    const line = gw.access().find((l) => l.path === '/api/one')
    assert.equal(line?.route, 'api')
    assert.equal(line?.upstream, 'a')
    assert.equal(line?.status, 200)
  })
})

test('a request whose connection closed before it was handled is not forwarded (no X-Forwarded-For: unknown)', async () => {
  const up = await startUpstream('u')
  const yaml = `mode: load_balancer\nupstreams: { u: { servers: ["${up.address}"] } }\nload_balancer: { upstream: u }\n`
  const r = compilePlan(parseConfigText('t.yaml', yaml, {}))
  assert.ok(r.ok)
  const quiet = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false } as never
  const { snapshot } = r.plan
  const upstreams = new UpstreamRegistry(quiet)
  const store = new RuntimeStore({
    ...r.plan,
    groups: upstreams.build(snapshot),
    chains: new MiddlewareRegistry(quiet).build(snapshot, r.plan.middlewares),
  })
  const lines: string[] = []
  const access = new AccessLog({ logger: quiet, format: 'json', flush() {}, writeLine: (l) => lines.push(l) })
  access.configure({
    format: 'json',
    output: 'stdout',
    fields: ['status', 'attempts', 'error_type'],
    includeQuery: false,
  })
  const pipeline = new Pipeline({ store, log: quiet, access })
  // The connection is gone by the time the handler runs, its 'close' not yet delivered (as
  // under load, when a client sends a request and leaves).
  const server = http.createServer((req, res) => {
    req.socket.destroy()
    pipeline.handle(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const port = (server.address() as AddressInfo).port
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('GET /x HTTP/1.1\r\nHost: h\r\n\r\n'))
      s.on('close', () => resolve())
      s.on('error', () => undefined)
    })
    await until(() => lines.length > 0 || undefined, 'the access line')
    assert.equal(
      lines[0],
      '{"status":499,"attempts":0,"error_type":"client_aborted"}\n',
      'no upstream attempt',
    )
    assert.equal(up.seen.length, 0, 'the upstream got nothing')
    assert.equal(pipeline.inFlight, 0)
  } finally {
    server.close()
    upstreams.destroy()
    await up.close()
  }
})

test("the built-in client's response fields are not checked again by the own server side; the proxy's own are", async () => {
  // Raw sockets on both sides: nothing but the proxy runs a regular expression over these fields.
  const up = await scriptedUpstream(
    () => 'HTTP/1.1 200 OK\r\nx-up-field: q7w8e9\r\ncontent-length: 2\r\n\r\nok',
    { keepOpen: true },
  )
  const gw = await gateway(`
mode: load_balancer
server: {bind_address: "127.0.0.1:0"}
upstreams: {u: {servers: ["${up.address}"]}}
load_balancer: {upstream: u}
`)
  const tested: string[] = []
  const original = RegExp.prototype.test
  RegExp.prototype.test = function (this: RegExp, v: string) {
    tested.push(v)
    return original.call(this, v)
  }
  let r: Awaited<ReturnType<typeof rawRequest>>
  try {
    r = await rawRequest(
      Number(new URL(gw.url).port),
      'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n',
    )
  } finally {
    RegExp.prototype.test = original
    await gw.close()
    await up.close()
  }
  assert.equal(rawHeaderOf(r.text, 'x-up-field'), 'q7w8e9')
  const requestId = rawHeaderOf(r.text, 'x-request-id')!
  assert.ok(tested.includes(requestId), "the proxy's own X-Request-Id is checked")
  if (process.env.LOCCI_HTTP1_SERVER === 'node') return // node:http checks every field itself
  // undici hands its fields as Buffers, with no parser's word on them: checked like any other.
  const undici = process.env.LOCCI_UPSTREAM_CLIENT === 'undici'
  assert.equal(tested.includes('x-up-field'), undici)
  assert.equal(tested.includes('q7w8e9'), undici)
})
