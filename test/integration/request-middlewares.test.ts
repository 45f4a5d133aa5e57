// headers, rewrite, redirect and ip_filter on the wire: the real binary, driven by curl, in
// front of a real upstream; declarations in both sections, named instances, load_balancer
// mode, and `validate` pointing at a bad setting's line.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

const run = promisify(execFile)

/** curl's response: status, lower-case headers (last value wins), body. */
async function curl(
  args: string[],
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const { stdout } = await run('curl', ['-sS', '-i', '--max-time', '10', ...args], { encoding: 'latin1' })
  // With -L there are several heads: the last one is the final answer.
  const blocks = stdout.split(/\r\n\r\n/)
  let i = 0
  while (i + 1 < blocks.length && /^HTTP\/\S+ 3\d\d/.test(blocks[i]!) && /^HTTP\//.test(blocks[i + 1]!)) i++
  const [statusLine, ...lines] = blocks[i]!.split('\r\n')
  const headers: Record<string, string> = {}
  for (const l of lines) {
    const c = l.indexOf(':')
    headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim()
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: blocks.slice(i + 1).join('\r\n\r\n') }
}

describe('request middlewares on the wire (api_gateway)', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${up.address}"] }
middlewares:
  headers:
    request:
      set: { X-Client-IP: "\${client_ip}", Authorization: "Bearer \${UPSTREAM_TOKEN}" }
      remove: [X-Debug]
    response:
      set: { Cache-Control: no-store }
      add: { X-Route: "\${route}" }
      remove: [X-Upstream]
    frame_deny: true
    content_type_nosniff: true
  local: { type: ip_filter, allow: [127.0.0.0/8, "::1"] }
api_gateway:
  middlewares:
    v2: { type: rewrite, regex: "^/v1/(.*)", replacement: "/v2/$1" }
    to_docs: { type: redirect, regex: "^/help/(.*)", replacement: "/docs/$1", status: 301 }
  routes:
    api: { path_pattern: "^/api", upstream: api, strip_prefix: true, middlewares: [local, headers, v2] }
    help: { path_pattern: "^/help", upstream: api, middlewares: [to_docs] }
    docs: { path_pattern: "^/docs", upstream: api, middlewares: [headers] }
`,
      { env: { UPSTREAM_TOKEN: 'secret-token' } },
    )
  })
  after(async () => {
    await proxy?.stop()
    await up.close()
  })

  test('curl: request headers set from variables and the environment, a client header removed', async () => {
    const r = await curl([
      '-H',
      'X-Debug: 1',
      '-H',
      'X_Debug: 1',
      '-H',
      'Authorization: Bearer forged',
      `${proxy.url}/api/x`,
    ])
    assert.equal(r.status, 200)
    const seen = up.seen.at(-1)!
    assert.equal(seen.headers['x-client-ip'], '127.0.0.1')
    assert.equal(seen.headers.authorization, 'Bearer secret-token')
    assert.equal(seen.headers['x-debug'], undefined)
    assert.ok(!seen.rawHeaders.some((h) => h.toLowerCase() === 'x_debug'), 'the _ variant is removed too')
  })

  test('curl: response headers set, added and removed, presets present', async () => {
    const r = await curl([`${proxy.url}/api/x`])
    assert.equal(r.headers['cache-control'], 'no-store')
    assert.equal(r.headers['x-route'], 'api')
    assert.equal(r.headers['x-upstream'], undefined)
    assert.equal(r.headers['x-frame-options'], 'DENY')
    assert.equal(r.headers['x-content-type-options'], 'nosniff')
  })

  test('curl: rewrite after strip_prefix, the query kept', async () => {
    await curl(['--path-as-is', `${proxy.url}/api/v1/users?page=2`])
    assert.equal(up.seen.at(-1)!.url, '/v2/users?page=2')
  })

  test('curl -L follows a redirect to the rewritten path, query kept', async () => {
    const r = await curl(['-L', `${proxy.url}/help/intro?lang=en`])
    assert.equal(r.status, 200)
    assert.equal(up.seen.at(-1)!.url, '/docs/intro?lang=en')
    const first = await curl([`${proxy.url}/help/intro?lang=en`])
    assert.equal(first.status, 301)
    assert.equal(first.headers.location, '/docs/intro?lang=en')
  })
})

describe('request middlewares on the wire (load_balancer)', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('lb')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  web: { servers: ["${up.address}"] }
middlewares:
  blocked: { type: ip_filter, deny: [127.0.0.0/8, "::1"] }
  secure: { type: headers, frame_deny: true }
load_balancer: { upstream: web, middlewares: [secure, blocked] }
`)
  })
  after(async () => {
    await proxy?.stop()
    await up.close()
  })

  test('curl: a denied client gets 403 with a short body (and headers listed before it)', async () => {
    const before = up.seen.length
    const r = await curl([`${proxy.url}/anything`])
    assert.equal(r.status, 403)
    assert.equal(r.body, '403 client address not allowed\n')
    assert.equal(r.headers['x-frame-options'], 'DENY')
    assert.equal(up.seen.length, before)
  })
})

test('validate: a bad headers value and a bad range are reported at their lines', () => {
  const { file } = writeConfig(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["127.0.0.1:1"] }
middlewares:
  tag:
    type: headers
    request:
      set: { X-Who: "\${client_addr}" }
  office: { type: ip_filter, allow: [10.1.2.3/8] }
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: api, middlewares: [tag, office] }
`)
  const r = runCli(['validate', file])
  assert.notEqual(r.status, 0)
  const out = r.stdout + r.stderr
  assert.match(
    out,
    /:9:\d+: middlewares\.tag\.request\.set\.X-Who: \$\{client_addr\} is neither a headers variable/,
  )
  assert.match(
    out,
    /:10(:\d+)?: middlewares\.office\.allow\[0\]: "10\.1\.2\.3\/8" has bits set beyond its \/8 prefix/,
  )
})
