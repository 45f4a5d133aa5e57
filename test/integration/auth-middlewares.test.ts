// basic_auth, api_key and forward_auth on the real binary, as an operator uses them: an htpasswd
// file made by the real `htpasswd` tool (Debian apache2-utils) and checked with the real curl,
// a changed file picked up by SIGHUP, refused hashes named at their line by `validate`, API keys
// from the environment and in the query string, and an auth service on 127.0.0.1.

import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { request } from 'undici'
import { type RunningProxy, runCli, spawnProxy, startProxy, writeConfig } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const HTPASSWD = spawnSync('htpasswd', ['-nbB', 'x', 'y']).status === 0
const NO_HTPASSWD = HTPASSWD
  ? false
  : 'the htpasswd tool is missing: install Debian apache2-utils (apt-get install -y apache2-utils)'
const CURL = spawnSync('curl', ['--version']).status === 0

/** Runs the real htpasswd on `file` (`-b`: password from the command line). */
function htpasswd(args: string[]): void {
  const r = spawnSync('htpasswd', args, { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
}

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`

describe('basic_auth with an htpasswd file', { skip: NO_HTPASSWD }, () => {
  let up: Upstream
  let proxy: RunningProxy
  let users: string

  before(async () => {
    up = await startUpstream('app')
    const { dir, file } = writeConfig('placeholder')
    users = path.join(dir, 'users.htpasswd')
    htpasswd(['-cbB', users, 'alice', 'first password'])
    htpasswd(['-bB', '-C', '6', users, 'bob', 'bobs-pw'])
    writeFileSync(
      file,
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
logging: { level: info }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  middlewares:
    staff: { type: basic_auth, users_file: users.htpasswd, realm: Staff, forward_user: X-Remote-User }
  routes:
    staff: { path_pattern: "^/staff", upstream: app, middlewares: [staff] }
    open: { path_pattern: "^/open", upstream: app }
`,
    )
    proxy = await spawnProxy(['-c', file], { cwd: dir }, dir, file)
  })

  after(async () => {
    await proxy?.stop()
    await up?.close()
  })

  test('curl -u with the right password gets through; the upstream sees the user, not the password', async (t) => {
    if (!CURL) return t.skip('curl is missing')
    // Not spawnSync: the upstream runs in this process and must answer while curl waits.
    const curl = promisify(execFile)
    const { stdout } = await curl('curl', ['-s', '-u', 'alice:first password', `${proxy.url}/staff/a`])
    assert.equal(JSON.parse(stdout).server, 'app')
    const seen = up.seen.at(-1)!
    assert.equal(seen.headers['x-remote-user'], 'alice')
    assert.equal(seen.headers.authorization, undefined)
  })

  test('a wrong password, an unknown user or none: 401 with the Basic challenge of the realm', async () => {
    for (const authorization of [basic('alice', 'nope'), basic('mallory', 'first password'), undefined]) {
      const r = await request(`${proxy.url}/staff/a`, { headers: authorization ? { authorization } : {} })
      assert.equal(r.statusCode, 401)
      assert.equal(r.headers['www-authenticate'], 'Basic realm="Staff", charset="UTF-8"')
      assert.equal(await r.body.text(), '401 a valid user name and password are required\n')
    }
  })

  test('a client cannot send X-Remote-User itself, on any route', async () => {
    await (await request(`${proxy.url}/open/x`, { headers: { 'x-remote-user': 'alice' } })).body.text()
    assert.equal(up.seen.at(-1)!.headers['x-remote-user'], undefined)
    const r = await request(`${proxy.url}/staff/x`, {
      headers: { authorization: basic('bob', 'bobs-pw'), 'x-remote-user': 'alice' },
    })
    assert.equal(r.statusCode, 200)
    await r.body.text()
    assert.deepEqual(up.seen.at(-1)!.rawHeaders.filter((h) => /^x-remote-user$/i.test(h)).length, 1)
    assert.equal(up.seen.at(-1)!.headers['x-remote-user'], 'bob')
  })

  test('a password changed with htpasswd works after SIGHUP, and the old one no longer does', async () => {
    const get = async (pw: string) => {
      const r = await request(`${proxy.url}/staff/a`, { headers: { authorization: basic('alice', pw) } })
      await r.body.text()
      return r.statusCode
    }
    assert.equal(await get('first password'), 200)
    htpasswd(['-bB', users, 'alice', 'second password'])
    const reloads = proxy.logs.filter((l) => String(l.msg).startsWith('config reloaded')).length
    proxy.child.kill('SIGHUP')
    // The reload summary says "nothing changed": it compares the config files, not users_file.
    await until(
      () => proxy.logs.filter((l) => String(l.msg).startsWith('config reloaded')).length > reloads,
      'the reload',
    )
    assert.equal(await get('second password'), 200)
    assert.equal(await get('first password'), 401, 'the cached old password is gone with the old instance')
  })
})

describe('basic_auth refuses weak hashes at config time', { skip: NO_HTPASSWD }, () => {
  test('`validate` names the users_file line of an MD5 hash and of a plain-text password', () => {
    const { dir, file } = writeConfig('placeholder')
    const users = path.join(dir, 'users')
    htpasswd(['-cbm', users, 'alice', 'pw'])
    htpasswd(['-bp', users, 'bob', 'pw'])
    writeFileSync(
      file,
      `mode: load_balancer
upstreams:
  app: { servers: ["127.0.0.1:1"] }
load_balancer: { upstream: app, middlewares: [basic_auth] }
middlewares:
  basic_auth:
    users_file: users
`,
    )
    const r = runCli(['validate', file])
    assert.equal(r.status, 1)
    assert.match(
      r.stderr,
      new RegExp(
        `${file}:7: middlewares\\.basic_auth\\.users_file: users line 1: user "alice" has an MD5 hash, which is refused .*htpasswd -B`,
      ),
    )
    assert.match(
      r.stderr,
      /users line 2: user "bob" has no password hash \(a plain-text password is refused\)/,
    )
  })
})

describe('api_key and forward_auth', () => {
  let up: Upstream
  let auth: http.Server
  let proxy: RunningProxy
  const KEY = 'key-from-the-environment-0123'

  before(async () => {
    up = await startUpstream('app')
    auth = http.createServer((req, res) => {
      const ok = req.headers.cookie === 'session=good'
      res.writeHead(ok ? 204 : 403, ok ? { 'x-auth-user': 'carol' } : { 'content-type': 'text/plain' })
      res.end(ok ? undefined : 'no session')
    })
    await new Promise<void>((r) => auth.listen(0, '127.0.0.1', r))
    proxy = await startProxy(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${up.address}"] }
middlewares:
  keys:
    type: api_key
    query_param: api_key
    keys: [{ consumer: billing, key: "\${BILLING_KEY}" }]
  sso:
    type: forward_auth
    address: "http://127.0.0.1:${(auth.address() as AddressInfo).port}/verify"
    auth_response_headers: [X-Auth-User]
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: app, middlewares: [keys] }
    web: { path_pattern: "^/web", upstream: app, middlewares: [sso] }
`,
      { env: { BILLING_KEY: KEY } },
    )
  })

  after(async () => {
    await proxy?.stop()
    await up?.close()
    auth?.closeAllConnections()
    await new Promise<void>((r) => (auth ? auth.close(() => r()) : r()))
  })

  test('a key from ${VAR} in the query string: through, without the key, other parameters intact', async () => {
    const r = await request(`${proxy.url}/api/items?page=2&api_key=${KEY}&sort=name`)
    assert.equal(r.statusCode, 200)
    await r.body.text()
    const seen = up.seen.at(-1)!
    assert.equal(seen.url, '/api/items?page=2&sort=name')
    assert.equal(seen.headers['x-consumer-username'], 'billing')
  })

  test('the same key in X-API-Key: through, the header not forwarded; a wrong key: 401', async () => {
    const ok = await request(`${proxy.url}/api/items`, { headers: { 'x-api-key': KEY } })
    assert.equal(ok.statusCode, 200)
    await ok.body.text()
    assert.equal(up.seen.at(-1)!.headers['x-api-key'], undefined)
    const bad = await request(`${proxy.url}/api/items`, { headers: { 'x-api-key': `${KEY}0` } })
    assert.equal(bad.statusCode, 401)
    assert.equal(await bad.body.text(), '401 a valid API key is required\n')
  })

  test("forward_auth: a good session passes with the service's user header; a bad one gets its 403", async () => {
    const ok = await request(`${proxy.url}/web/home`, { headers: { cookie: 'session=good' } })
    assert.equal(ok.statusCode, 200)
    await ok.body.text()
    assert.equal(up.seen.at(-1)!.headers['x-auth-user'], 'carol')
    const before = up.seen.length
    const no = await request(`${proxy.url}/web/home`, {
      headers: { cookie: 'session=bad', 'x-auth-user': 'root' },
    })
    assert.equal(no.statusCode, 403)
    assert.equal(await no.body.text(), 'no session')
    assert.equal(up.seen.length, before)
  })
})
