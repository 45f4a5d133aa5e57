// `explain` and the proxy must give the same answer for the same request: explain is how users
// find out what the proxy will do, so when the two disagree, explain lies. Each row of the table
// goes to the real proxy (against upstreams that say who answered), to GET /api/v1/explain and to
// `locci-proxy explain --json`, and the three must agree on the status, the route, the upstream
// group and the path the upstream sees. The rows pin what the proxy does, so the table also
// documents routing: preflights with and without a cors middleware on the route, authentication
// and its excluded_paths, 404, 405 with Allow, normalized paths, Host and absolute-form targets,
// and load_balancer mode with and without cors.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import http from 'node:http'
import { after, before, describe, test } from 'node:test'
import { SignJWT } from 'jose'
import { BIN, type RunningProxy, startProxy } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

const SECRET = 'explain-agrees-secret-explain-agrees'
const KEY = 'adm'
const ORIGIN = 'https://app.example'

interface Row {
  desc: string
  method: string
  /** The request target sent to the proxy. */
  target: string
  /** The path given to explain; defaults to `target`. */
  explainPath?: string
  headers?: Record<string, string>
  /** A valid bearer token is added. */
  token?: boolean
  /**
   * Also ask `locci-proxy explain` (a process each, ~1-2 s): the CLI and the API call the same
   * explain(), so the CLI takes one row of each kind of answer.
   */
  cli?: boolean
  /** What the proxy answers (pinned), and the upstream group behind a forwarded answer. */
  want: { status: number; upstream?: string; allow?: string }
}

/** What one side says happens to a request. */
interface Verdict {
  status: number
  route: string | null
  /** The upstream group that answered (null when the proxy answered itself). */
  upstream: string | null
  /** The request target the upstream saw. */
  upstreamPath: string | null
  allow: string | null
}

const preflight = (method: string, extra: Record<string, string> = {}) => ({
  origin: ORIGIN,
  'access-control-request-method': method,
  ...extra,
})

const GATEWAY_ROWS: Row[] = [
  {
    desc: 'GET on a cors route is forwarded',
    method: 'GET',
    target: '/cors/x',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'a preflight on a route with cors is answered by the proxy',
    cli: true,
    method: 'OPTIONS',
    target: '/cors/x',
    headers: preflight('POST'),
    want: { status: 204 },
  },
  {
    desc: 'the method a preflight asks about is case-insensitive',
    method: 'OPTIONS',
    target: '/cors/x',
    headers: preflight('post'),
    want: { status: 204 },
  },
  {
    desc: 'a preflight for a method no route allows is routed by OPTIONS: 405 with Allow',
    method: 'OPTIONS',
    target: '/cors/x',
    headers: preflight('DELETE'),
    want: { status: 405, allow: 'GET, POST' },
  },
  {
    desc: 'OPTIONS with Origin but no Access-Control-Request-Method is not a preflight',
    method: 'OPTIONS',
    target: '/cors/x',
    headers: { origin: ORIGIN },
    want: { status: 405, allow: 'GET, POST' },
  },
  {
    desc: 'OPTIONS with Access-Control-Request-Method but no Origin is not a preflight',
    method: 'OPTIONS',
    target: '/cors/x',
    headers: { 'access-control-request-method': 'GET' },
    want: { status: 405, allow: 'GET, POST' },
  },
  {
    desc: 'a preflight on a route without cors is routed by OPTIONS: 405 when the route does not allow it',
    cli: true,
    method: 'OPTIONS',
    target: '/plain',
    headers: preflight('GET'),
    want: { status: 405, allow: 'GET' },
  },
  {
    desc: 'GET on a route without middlewares',
    method: 'GET',
    target: '/plain',
    want: { status: 200, upstream: 'b' },
  },
  {
    desc: 'HEAD is a method of its own: 405 on a GET-only route',
    method: 'HEAD',
    target: '/plain',
    want: { status: 405, allow: 'GET' },
  },
  {
    desc: 'a preflight on a route without cors that allows every method is forwarded',
    method: 'OPTIONS',
    target: '/any/x',
    headers: preflight('GET'),
    want: { status: 200, upstream: 'c' },
  },
  {
    desc: 'TRACE is refused (405) unless allowed, whatever the route',
    cli: true,
    method: 'TRACE',
    target: '/any/x',
    want: { status: 405, allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' },
  },
  {
    desc: 'a preflight is answered before authentication runs',
    method: 'OPTIONS',
    target: '/private/x',
    headers: preflight('POST', { 'access-control-request-headers': 'authorization' }),
    want: { status: 204 },
  },
  {
    desc: 'authentication without a token: 401',
    method: 'GET',
    target: '/private/x',
    want: { status: 401 },
  },
  {
    desc: 'authentication with a valid token: forwarded',
    cli: true,
    method: 'GET',
    target: '/private/x',
    token: true,
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'authentication with a Basic header: 401',
    method: 'GET',
    target: '/private/x',
    headers: { authorization: 'Basic YTpi' },
    want: { status: 401 },
  },
  {
    desc: 'an exact excluded path skips authentication',
    method: 'GET',
    target: '/private/health',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'an excluded prefix covers the paths below it',
    method: 'GET',
    target: '/private/pub/doc',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'an excluded prefix covers itself',
    method: 'GET',
    target: '/private/pub',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'an excluded prefix does not cover a longer segment',
    method: 'GET',
    target: '/private/pubx',
    want: { status: 401 },
  },
  {
    desc: 'a dot segment cannot climb out of an excluded prefix (normalized first)',
    cli: true,
    method: 'GET',
    target: '/private/pub/../x',
    want: { status: 401 },
  },
  {
    desc: 'a preflight on a route with authentication but no cors meets authentication: 401',
    cli: true,
    method: 'OPTIONS',
    target: '/secure/x',
    headers: preflight('GET'),
    want: { status: 401 },
  },
  {
    desc: 'an excluded path on a route without cors',
    method: 'GET',
    target: '/secure/open',
    want: { status: 200, upstream: 'b' },
  },
  {
    desc: 'a preflight asking for a method whose route has cors: 204',
    method: 'OPTIONS',
    target: '/mix',
    headers: preflight('POST'),
    want: { status: 204 },
  },
  {
    desc: 'a preflight asking for a method no route allows falls back to the OPTIONS route, forwarded',
    cli: true,
    method: 'OPTIONS',
    target: '/mix',
    headers: preflight('GET'),
    want: { status: 200, upstream: 'b' },
  },
  { desc: 'POST on the POST route', method: 'POST', target: '/mix', want: { status: 200, upstream: 'a' } },
  {
    desc: 'Allow lists the methods of every route whose pattern matches',
    method: 'GET',
    target: '/mix',
    want: { status: 405, allow: 'POST, OPTIONS' },
  },
  {
    desc: 'longest pattern first, strip_prefix keeps the query',
    cli: true,
    method: 'GET',
    target: '/api/v2/users?x=1',
    want: { status: 200, upstream: 'c' },
  },
  {
    desc: 'a dot segment is removed before routing',
    method: 'GET',
    target: '/api/./v2/users',
    want: { status: 200, upstream: 'c' },
  },
  {
    desc: 'runs of slashes become one before routing',
    method: 'GET',
    target: '//api/v2//users',
    want: { status: 200, upstream: 'c' },
  },
  {
    desc: 'strip_prefix of the whole path leaves /',
    method: 'GET',
    target: '/api/v2',
    want: { status: 200, upstream: 'c' },
  },
  {
    desc: 'an escaped unreserved character is decoded before routing',
    method: 'GET',
    target: '/api/x%41',
    want: { status: 200, upstream: 'a' },
  },
  { desc: 'patterns are case-sensitive', method: 'GET', target: '/API/x', want: { status: 404 } },
  { desc: 'no pattern matches: 404', cli: true, method: 'GET', target: '/nothing', want: { status: 404 } },
  { desc: 'a path climbing above the root: 400', method: 'GET', target: '/%2e%2e/x', want: { status: 400 } },
  { desc: 'an escaped slash: 400', cli: true, method: 'GET', target: '/api/a%2Fb', want: { status: 400 } },
  {
    desc: 'a method route with a longer pattern does not hide a shorter one allowing the method',
    method: 'GET',
    target: '/items/special',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'POST on the longer pattern',
    method: 'POST',
    target: '/items/special',
    want: { status: 200, upstream: 'b' },
  },
  {
    desc: 'POST where only GET is allowed',
    method: 'POST',
    target: '/items',
    want: { status: 405, allow: 'GET' },
  },
  {
    desc: 'the Host header does not take part in routing',
    method: 'GET',
    target: '/api/x',
    headers: { host: 'other.example' },
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'an absolute-form target is routed by its path',
    method: 'GET',
    target: 'http://other.example/api/v2/y?q=1',
    explainPath: '/api/v2/y?q=1',
    want: { status: 200, upstream: 'c' },
  },
]

const LB_CORS_ROWS: Row[] = [
  {
    desc: 'load_balancer: authentication without a token',
    method: 'GET',
    target: '/x',
    want: { status: 401 },
  },
  {
    desc: 'load_balancer: a valid token is forwarded to the one group',
    method: 'GET',
    target: '/x?y=2',
    token: true,
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'load_balancer: an excluded prefix',
    method: 'GET',
    target: '/public/x',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'load_balancer: excluded_paths see the normalized path',
    cli: true,
    method: 'GET',
    target: '/x/../public/y',
    want: { status: 200, upstream: 'a' },
  },
  {
    desc: 'load_balancer: a preflight is answered by cors',
    cli: true,
    method: 'OPTIONS',
    target: '/x',
    headers: preflight('PUT'),
    want: { status: 204 },
  },
  {
    desc: 'load_balancer: OPTIONS that is not a preflight meets authentication',
    method: 'OPTIONS',
    target: '/x',
    headers: { origin: ORIGIN },
    want: { status: 401 },
  },
  { desc: 'load_balancer: a bad path', method: 'GET', target: '/%2e%2e', want: { status: 400 } },
  {
    desc: 'load_balancer: TRACE',
    method: 'TRACE',
    target: '/x',
    want: { status: 405, allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' },
  },
]

const LB_PLAIN_ROWS: Row[] = [
  {
    desc: 'load_balancer without cors: a preflight meets authentication',
    cli: true,
    method: 'OPTIONS',
    target: '/x',
    headers: preflight('GET'),
    want: { status: 401 },
  },
  {
    desc: 'load_balancer without cors: a preflight on an excluded path is forwarded',
    method: 'OPTIONS',
    target: '/public/x',
    headers: preflight('GET'),
    want: { status: 200, upstream: 'b' },
  },
  {
    desc: 'load_balancer without cors: GET',
    method: 'GET',
    target: '/public/x',
    want: { status: 200, upstream: 'b' },
  },
]

const CONTROL = `control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: "${KEY}" }`
const AUTH = (excluded: string) => `    authentication:
      jwt_secret: "${SECRET}"
      excluded_paths: ${excluded}`
const CORS = `    cors:
      allowed_origins: ["${ORIGIN}"]
      allowed_methods: [GET, POST]`

const gatewayConfig = (a: Upstream, b: Upstream, c: Upstream) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
${CONTROL}
upstreams:
  a: { servers: ["${a.address}"] }
  b: { servers: ["${b.address}"] }
  c: { servers: ["${c.address}"] }
api_gateway:
  routes:
    cors_open: { path_pattern: "^/cors", methods: [GET, POST], upstream: a, middlewares: [cors] }
    plain: { path_pattern: "^/plain", methods: [GET], upstream: b }
    any: { path_pattern: "^/any", upstream: c }
    private: { path_pattern: "^/private", upstream: a, middlewares: [cors, authentication] }
    secure: { path_pattern: "^/secure", upstream: b, middlewares: [authentication] }
    mix_post: { path_pattern: "^/mix", methods: [POST], upstream: a, middlewares: [cors] }
    mix_options: { path_pattern: "^/mix", methods: [OPTIONS], upstream: b }
    v2: { path_pattern: "^/api/v2", upstream: c, strip_prefix: true }
    api: { path_pattern: "^/api", upstream: a }
    items: { path_pattern: "^/items", methods: [GET], upstream: a }
    items_special: { path_pattern: "^/items/special", methods: [POST], upstream: b }
  middlewares:
${CORS}
${AUTH('[/private/health, /private/pub/*, /secure/open]')}
`

const lbConfig = (group: string, up: Upstream, middlewares: string) => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
${CONTROL}
upstreams:
  ${group}: { servers: ["${up.address}"] }
load_balancer: { upstream: ${group}, middlewares: ${middlewares} }
middlewares:
${CORS}
${AUTH('[/public/*]')}
`

const bearer = () =>
  new SignJWT({ sub: 'alice' })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(SECRET))

/** Sends the row to the proxy with node:http, which sends the target as written. */
function throughProxy(
  proxy: RunningProxy,
  row: Row,
  headers: Record<string, string>,
  id: string,
): Promise<Verdict> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: proxy.port,
        method: row.method,
        path: row.target,
        headers: { ...headers, 'x-request-id': id, connection: 'close' },
        agent: false,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          body += d
        })
        res.on('end', async () => {
          const from = res.headers['x-upstream']
          const seen = from === undefined ? undefined : (JSON.parse(body) as { url: string })
          // The access line names the route; it is written once the answer is complete.
          const line = await proxy.waitForLog((l) => l.request_id === id && l.status !== undefined, id)
          resolve({
            status: res.statusCode!,
            route: (line?.route as string | undefined) ?? null,
            upstream: (from as string | undefined) ?? null,
            upstreamPath: seen?.url ?? null,
            allow: (res.headers.allow as string | undefined) ?? null,
          })
        })
      },
    )
    req.on('error', reject)
    req.end()
  })
}

// biome-ignore lint/suspicious/noExplicitAny: explain's JSON, read field by field
type Json = any

/** What explain says, in the same terms: a forward is the upstream's 200. */
function fromExplain(e: Json): Verdict {
  const forwarded = e.outcome === 'forward'
  return {
    status: forwarded ? 200 : e.status,
    route: e.route ?? null,
    upstream: forwarded ? e.upstream : null,
    upstreamPath: forwarded ? e.upstream_path : null,
    allow: e.allow ?? null,
  }
}

function headerList(headers: Record<string, string>): string[] {
  return Object.entries(headers)
    .filter(([k]) => k !== 'host')
    .map(([k, v]) => `${k}: ${v}`)
}

async function viaApi(proxy: RunningProxy, method: string, path: string, headers: string[]): Promise<Json> {
  const q = new URLSearchParams({ method, path })
  for (const h of headers) q.append('header', h)
  const res = await fetch(`${proxy.controlUrl}/api/v1/explain?${q}`, {
    headers: { authorization: `Bearer ${KEY}` },
  })
  assert.equal(res.status, 200, await res.clone().text())
  return res.json()
}

function viaCli(configFile: string, method: string, path: string, headers: string[]): Promise<Json> {
  const args = [BIN, '-c', configFile, 'explain', method, path, '--json']
  for (const h of headers) args.push('-H', h)
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`explain ${method} ${path}: ${err.message}\n${stderr}`))
      else resolve(JSON.parse(stdout))
    })
  })
}

/** Runs `f` over `items`, at most `limit` at a time, keeping the order of the results. */
async function pooled<T, R>(items: readonly T[], limit: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await f(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

function table(
  name: string,
  rows: Row[],
  start: (ups: Record<string, Upstream>) => Promise<RunningProxy>,
): void {
  describe(name, () => {
    const ups: Record<string, Upstream> = {}
    let proxy: RunningProxy
    let token: string
    let cli: Map<Row, Json>
    const headersOf = (row: Row) => ({
      ...row.headers,
      ...(row.token ? { authorization: `Bearer ${token}` } : {}),
    })
    before(async () => {
      for (const n of ['a', 'b', 'c']) ups[n] = await startUpstream(n)
      proxy = await start(ups)
      token = await bearer()
      // The CLI is a process per row: run them ahead, a few at a time.
      const some = rows.filter((r) => r.cli)
      const answers = await pooled(some, 4, (row) =>
        viaCli(proxy.configFile, row.method, row.explainPath ?? row.target, headerList(headersOf(row))),
      )
      cli = new Map(some.map((row, i) => [row, answers[i]]))
    })
    after(async () => {
      await proxy?.stop()
      for (const u of Object.values(ups)) await u.close()
    })

    rows.forEach((row, i) => {
      test(row.desc, async () => {
        const id = `explain-${name.replace(/\W+/g, '-')}-${i}`
        const got = await throughProxy(proxy, row, headersOf(row), id)
        assert.equal(got.status, row.want.status, 'the proxy answers as pinned')
        assert.equal(got.upstream, row.want.upstream ?? null, 'the pinned upstream answered')
        if (row.want.allow !== undefined) assert.equal(got.allow, row.want.allow)
        const api = fromExplain(
          await viaApi(proxy, row.method, row.explainPath ?? row.target, headerList(headersOf(row))),
        )
        assert.deepEqual(api, got, 'GET /api/v1/explain agrees with the proxy')
        if (row.cli)
          assert.deepEqual(fromExplain(cli.get(row)), got, 'locci-proxy explain agrees with the proxy')
      })
    })
  })
}

table('api_gateway', GATEWAY_ROWS, (u) => startProxy(gatewayConfig(u.a!, u.b!, u.c!)))
table('load_balancer with cors and authentication', LB_CORS_ROWS, (u) =>
  startProxy(lbConfig('a', u.a!, '[cors, authentication]')),
)
table('load_balancer with authentication only', LB_PLAIN_ROWS, (u) =>
  startProxy(lbConfig('b', u.b!, '[authentication]')),
)
