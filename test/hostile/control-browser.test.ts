// Web pages against a control API on loopback. A page in a browser on the proxy's host can send
// requests to http://127.0.0.1:8485 (CSRF: a no-cors POST needs no permission, even if it cannot
// read the answer), and a page whose domain is made to resolve to 127.0.0.1 (DNS rebinding) can
// read the answers too. Browsers always say who is asking (Origin, Sec-Fetch-Site, and the page's
// own domain in Host); these tests send those headers over raw sockets, as a browser would, and
// check that nothing is changed, reloaded or read, while clients that are not browsers (raw
// requests, fetch, the admin commands) keep working.

import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

interface Answer {
  status: number
  head: string
  body: string
}

/** One request over a fresh connection (Connection: close), read until the server closes. */
function raw(port: number, bytes: string): Promise<Answer> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    const timer = setTimeout(() => s.destroy(), 20_000)
    s.on('close', () => {
      clearTimeout(timer)
      const [head = '', body = ''] = out.split('\r\n\r\n', 2)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body })
    })
    s.on('error', () => undefined)
    s.write(bytes)
  })
}

interface Req {
  method?: string
  path: string
  /** Extra header lines, each `Name: value`. */
  headers?: string[]
  /** Host header value; `127.0.0.1:<port>` unless given. */
  host?: string
  body?: unknown
}

function request(port: number, r: Req): Promise<Answer> {
  const body = r.body === undefined ? '' : JSON.stringify(r.body)
  const lines = [
    `${r.method ?? 'GET'} ${r.path} HTTP/1.1`,
    `Host: ${r.host ?? `127.0.0.1:${port}`}`,
    ...(r.headers ?? []),
    ...(body ? ['Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`] : []),
    'Connection: close',
  ]
  return raw(port, `${lines.join('\r\n')}\r\n\r\n${body}`)
}

const config = (upstream: string, control: string) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${upstream}"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
control_api: ${control}
`

/** What a browser adds to a cross-site `fetch(url, {method: 'POST', mode: 'no-cors'})`. */
const CSRF = ['Origin: https://evil.example', 'Sec-Fetch-Site: cross-site', 'Sec-Fetch-Mode: no-cors']

describe('keyless control API on loopback: requests from web pages are refused', () => {
  let up: Upstream
  let proxy: RunningProxy
  let port: number
  const get = (path: string, host?: string) => request(port, { path, host })
  const upstreamNames = async () =>
    (
      JSON.parse((await get('/api/v1/upstreams')).body) as { upstreams: Array<{ name: string }> }
    ).upstreams.map((u) => u.name)
  const routeNames = async () =>
    (JSON.parse((await get('/api/v1/routes')).body) as { routes: Array<{ name: string }> }).routes.map(
      (r) => r.name,
    )

  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(config(up.address, '{ enabled: true, bind_address: "127.0.0.1:0" }'))
    port = proxy.controlPort!
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  const changes: Array<{ desc: string; req: (port: number) => Req }> = [
    {
      desc: 'a cross-site no-cors POST (Origin and Sec-Fetch-Site)',
      req: () => ({
        method: 'POST',
        path: '/api/v1/upstreams',
        headers: CSRF,
        body: { name: 'evil', servers: ['127.0.0.1:9'] },
      }),
    },
    {
      desc: 'a POST with a foreign Origin only (a browser without Fetch Metadata)',
      req: () => ({
        method: 'POST',
        path: '/api/v1/upstreams',
        headers: ['Origin: http://evil.example'],
        body: { name: 'evil', servers: ['127.0.0.1:9'] },
      }),
    },
    {
      desc: 'a POST with Sec-Fetch-Site: cross-site only',
      req: () => ({
        method: 'POST',
        path: '/api/v1/upstreams',
        headers: ['Sec-Fetch-Site: cross-site'],
        body: { name: 'evil', servers: ['127.0.0.1:9'] },
      }),
    },
    {
      desc: 'a POST from a page on another port of the same host',
      req: (p) => ({
        method: 'POST',
        path: '/api/v1/routes',
        headers: [`Origin: http://127.0.0.1:${p + 1}`, 'Sec-Fetch-Site: same-site'],
        body: { name: 'evil', path_pattern: '^/evil', upstream: 'api' },
      }),
    },
    {
      desc: 'a POST from a sandboxed frame (Origin: null)',
      req: () => ({
        method: 'POST',
        path: '/api/v1/routes',
        headers: ['Origin: null'],
        body: { name: 'evil', path_pattern: '^/evil', upstream: 'api' },
      }),
    },
    {
      desc: 'a DNS-rebinding page adding an upstream (its own domain as Host, same-origin to the browser)',
      req: (p) => ({
        method: 'POST',
        path: '/api/v1/upstreams',
        host: `rebind.evil.example:${p}`,
        headers: [`Origin: http://rebind.evil.example:${p}`, 'Sec-Fetch-Site: same-origin'],
        body: { name: 'evil', servers: ['127.0.0.1:9'] },
      }),
    },
    {
      desc: 'a cross-site DELETE of a route',
      req: () => ({ method: 'DELETE', path: '/api/v1/routes/api', headers: CSRF }),
    },
  ]
  for (const c of changes) {
    test(`${c.desc}: 403 JSON, and nothing changes`, async () => {
      const r = await request(port, c.req(port))
      assert.equal(r.status, 403, r.head)
      assert.match(r.head, /content-type: application\/json/i)
      assert.match(JSON.parse(r.body).error, /^refused /)
      assert.deepEqual(await upstreamNames(), ['api'])
      assert.deepEqual(await routeNames(), ['api'])
    })
  }

  test('a cross-site POST /api/v1/reload does not reload the file', async () => {
    const before = readFileSync(proxy.configFile, 'utf8')
    // The file now has a second upstream group: a reload would make it live.
    writeFileSync(
      proxy.configFile,
      before.replace('upstreams:\n', 'upstreams:\n  added_on_disk: { servers: ["127.0.0.1:9"] }\n'),
    )
    try {
      for (const headers of [CSRF, ['Origin: http://evil.example'], ['Sec-Fetch-Site: cross-site']]) {
        const r = await request(port, { method: 'POST', path: '/api/v1/reload', headers })
        assert.equal(r.status, 403, `${headers.join(', ')}: ${r.head}`)
      }
      const r = await request(port, {
        method: 'POST',
        path: '/api/v1/reload',
        host: `rebind.evil.example:${port}`,
        headers: ['Sec-Fetch-Site: same-origin'],
      })
      assert.equal(r.status, 403, r.head)
      assert.deepEqual(await upstreamNames(), ['api'])
      assert.ok(!proxy.logs.some((l) => String(l.msg).startsWith('config reload')), 'no reload was logged')
      // The same request from curl reloads.
      assert.equal((await request(port, { method: 'POST', path: '/api/v1/reload' })).status, 200)
      assert.deepEqual((await upstreamNames()).sort(), ['added_on_disk', 'api'])
    } finally {
      writeFileSync(proxy.configFile, before)
      assert.equal((await request(port, { method: 'POST', path: '/api/v1/reload' })).status, 200)
    }
  })

  const reads = ['/api/v1/config', '/api/v1/status', '/api/v1/upstreams', '/metrics', '/healthz']
  for (const path of reads) {
    test(`DNS rebinding: GET ${path} with the page's domain as Host is 403 and reveals nothing`, async () => {
      const r = await request(port, {
        path,
        host: `rebind.evil.example:${port}`,
        headers: ['Sec-Fetch-Site: same-origin', 'Sec-Fetch-Mode: cors'],
      })
      assert.equal(r.status, 403, r.head)
      assert.match(JSON.parse(r.body).error, /DNS rebinding/)
      assert.ok(!r.body.includes(up.address), 'the answer shows no config')
    })
  }

  test('DNS rebinding without any Fetch Metadata (an older browser) is refused too', async () => {
    const r = await request(port, { path: '/api/v1/config', host: 'rebind.evil.example' })
    assert.equal(r.status, 403, r.head)
  })

  const allowed: Array<{ desc: string; req: (port: number) => Req }> = [
    { desc: 'curl by address', req: () => ({ path: '/api/v1/config' }) },
    { desc: 'curl by localhost', req: (p) => ({ path: '/api/v1/config', host: `localhost:${p}` }) },
    { desc: 'an IPv6 Host', req: (p) => ({ path: '/api/v1/config', host: `[::1]:${p}` }) },
    {
      desc: 'the address typed in a browser',
      req: () => ({ path: '/api/v1/config', headers: ['Sec-Fetch-Site: none'] }),
    },
    {
      desc: 'a request from the API origin itself',
      req: (p) => ({
        path: '/api/v1/config',
        headers: [`Origin: http://127.0.0.1:${p}`, 'Sec-Fetch-Site: same-origin'],
      }),
    },
  ]
  for (const a of allowed) {
    test(`${a.desc}: 200`, async () => {
      const r = await request(port, a.req(port))
      assert.equal(r.status, 200, r.head)
      assert.ok(r.body.includes(up.address))
    })
  }

  test('a change from curl, and from fetch in Node, still works', async () => {
    const r = await request(port, {
      method: 'POST',
      path: '/api/v1/routes',
      body: { name: 'by_curl', path_pattern: '^/by-curl', upstream: 'api' },
    })
    assert.equal(r.status, 201, r.body)
    const f = await fetch(`${proxy.controlUrl}/api/v1/routes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'by_fetch', path_pattern: '^/by-fetch', upstream: 'api' }),
    })
    assert.equal(f.status, 201, await f.text())
    assert.deepEqual((await routeNames()).sort(), ['api', 'by_curl', 'by_fetch'])
    const del = await fetch(`${proxy.controlUrl}/api/v1/routes/by_fetch`, { method: 'DELETE' })
    assert.equal(del.status, 204)
    assert.equal((await request(port, { method: 'DELETE', path: '/api/v1/routes/by_curl' })).status, 204)
  })

  test('the admin commands (undici.request) still work', () => {
    const r = runCli(['status', '--control-url', proxy.controlUrl!])
    assert.equal(r.status, 0, r.stderr)
  })

  test('none of this was logged as a fault, and the process runs', () => {
    assert.equal(proxy.child.exitCode, null)
    assert.deepEqual(
      proxy.logs.filter((l) => l.level === 'error'),
      [],
    )
  })
})

describe('control API with an api_key: Origin is checked, Host is not', () => {
  const KEY = 'browser-key'
  let up: Upstream
  let proxy: RunningProxy
  let port: number
  const auth = `Authorization: Bearer ${KEY}`
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(
      config(up.address, `{ enabled: true, bind_address: "127.0.0.1:0", api_key: "${KEY}" }`),
    )
    port = proxy.controlPort!
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })
  const upstreamNames = async () =>
    (
      JSON.parse((await request(port, { path: '/api/v1/upstreams', headers: [auth] })).body) as {
        upstreams: Array<{ name: string }>
      }
    ).upstreams.map((u) => u.name)

  test('a DNS name as Host (a reverse proxy in front) is served', async () => {
    const r = await request(port, { path: '/api/v1/config', host: 'control.example.com', headers: [auth] })
    assert.equal(r.status, 200, r.head)
  })

  test('a page that knows the key still cannot post cross-site: 403, nothing added', async () => {
    const r = await request(port, {
      method: 'POST',
      path: '/api/v1/upstreams',
      headers: [auth, ...CSRF],
      body: { name: 'evil', servers: ['127.0.0.1:9'] },
    })
    assert.equal(r.status, 403, r.head)
    assert.deepEqual(await upstreamNames(), ['api'])
  })

  test('without the key the answer is 401, as for any unauthenticated request', async () => {
    const r = await request(port, { method: 'POST', path: '/api/v1/reload', headers: CSRF })
    assert.equal(r.status, 401, r.head)
  })

  test('a change with the key, from a client that is not a browser, is made', async () => {
    const r = await request(port, {
      method: 'POST',
      path: '/api/v1/upstreams',
      host: 'control.example.com',
      headers: [auth],
      body: { name: 'more', servers: ['127.0.0.1:9'] },
    })
    assert.equal(r.status, 201, r.body)
    assert.ok((await upstreamNames()).includes('more'))
  })
})

// The control API must not open files of a client's choosing: the TLS file fields of an upstream
// made the proxy read any path on its host, and the error said whether the file existed, could
// be read and was PEM. They are refused before anything is read, with the same answer whatever
// the path. Server addresses must be host:port with a real host, in the API and in the file.
describe('control API: no file paths, and only real host:port servers', () => {
  let up: Upstream
  let proxy: RunningProxy
  let port: number
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(config(up.address, '{ enabled: true, bind_address: "127.0.0.1:0" }'))
    port = proxy.controlPort!
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })
  const post = (body: unknown) => request(port, { method: 'POST', path: '/api/v1/upstreams', body })
  const upstreamNames = async () =>
    (
      JSON.parse((await request(port, { path: '/api/v1/upstreams' })).body) as {
        upstreams: Array<{ name: string }>
      }
    ).upstreams.map((u) => u.name)

  const FILES = 'file paths cannot be set through the control API; edit the config file and reload'
  test('ca_path, client_cert_path and client_key_path: the same 400 for a missing file, a readable one and a directory', async () => {
    const paths = () => ['/nonexistent/locci-probe.pem', proxy.configFile, proxy.dir, '/dev/zero']
    for (const field of ['ca_path', 'client_cert_path', 'client_key_path']) {
      const answers = new Set<string>()
      for (const path of paths()) {
        const body: Record<string, unknown> = {
          name: 'probe',
          servers: ['127.0.0.1:9'],
          tls: true,
          [field]: path,
        }
        if (field !== 'ca_path') {
          // mTLS needs both; the other one names a real file.
          body[field === 'client_cert_path' ? 'client_key_path' : 'client_cert_path'] = proxy.configFile
        }
        const r = await post(body)
        assert.equal(r.status, 400, `${field}: ${path}: ${r.body}`)
        const j = JSON.parse(r.body) as { error: string; fields: string[] }
        assert.equal(j.error, FILES)
        answers.add(r.body)
      }
      assert.equal(answers.size, 1, `${field}: the answer does not depend on the file`)
    }
    assert.deepEqual(await upstreamNames(), ['api'])
  })

  test('a file path for an existing group is refused the same way', async () => {
    const r = await post({ name: 'api', servers: ['127.0.0.1:9'], ca_path: proxy.configFile })
    assert.equal(r.status, 400, r.body)
    assert.equal(JSON.parse(r.body).error, FILES)
  })

  const servers: Array<{ desc: string; server: unknown; reason: RegExp }> = [
    { desc: 'braces', server: 'a{b}:80', reason: /the host must be a DNS name .*"a\{b\}:80"/ },
    { desc: 'an escaped reference', server: '$${X}:80', reason: /the host must be a DNS name/ },
    { desc: 'a reference', server: '${HOME}:80', reason: /the host must be a DNS name/ },
    { desc: 'a user part', server: 'user@127.0.0.1:80', reason: /the host must be a DNS name/ },
    { desc: 'an {address} with a space', server: { address: 'a b:80' }, reason: /no spaces/ },
    { desc: 'a name in brackets', server: '[localhost]:80', reason: /must be an IPv6 address/ },
  ]
  for (const c of servers) {
    test(`a server address with ${c.desc} is 400 with the reason, and nothing is added`, async () => {
      const r = await post({ name: 'bad', servers: [c.server] })
      assert.equal(r.status, 400, r.body)
      assert.match(JSON.parse(r.body).error, c.reason)
      const more = await post({ name: 'api', servers: ['127.0.0.1:9', c.server] })
      assert.equal(more.status, 400, more.body)
      assert.deepEqual(await upstreamNames(), ['api'])
      const view = await request(port, { path: '/api/v1/upstreams' })
      assert.ok(!view.body.includes('127.0.0.1:9'), 'no server of a refused request was added')
    })
  }

  test('a DNS name, an IPv4 and an IPv6 server are accepted', async () => {
    const r = await post({ name: 'good', servers: ['backend-1.internal:8080', '127.0.0.1:9', '[::1]:9'] })
    assert.equal(r.status, 201, r.body)
  })

  test('the config file is checked the same way', () => {
    const { file } = writeConfig(`mode: load_balancer
upstreams:
  a: { servers: ["a{b}:80", "127.0.0.1:9"] }
load_balancer: { upstream: a }
`)
    const r = runCli(['validate', '-c', file])
    assert.equal(r.status, 1, r.stdout + r.stderr)
    assert.match(r.stdout + r.stderr, /upstreams\.a\.servers\[0\]: the host must be a DNS name .*"a\{b\}:80"/)
  })
})
