// The control API against hostile and clumsy clients, byte by byte over raw sockets. Whatever a
// client sends (an odd request target, bad percent-encoding, a body that is not JSON, too big,
// too slow or cut off), it gets a 4xx JSON answer or a closed connection, the process keeps
// running, and the next ordinary request is served. The key is checked before anything else:
// an unauthenticated request gets 401 whatever else is wrong with it, and reaches no handler.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

interface Answer {
  status: number
  head: string
  body: string
  ms: number
}

/** Writes `bytes`, then reads until the server closes (or `giveUpMs`); `hold` keeps the socket open. */
function raw(port: number, bytes: string | Buffer, giveUpMs = 20_000): Promise<Answer> {
  return new Promise((resolve) => {
    const started = Date.now()
    const s = net.connect(port, '127.0.0.1')
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    const done = () => {
      clearTimeout(timer)
      const [head = '', body = ''] = out.split('\r\n\r\n', 2)
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
      resolve({ status, head, body, ms: Date.now() - started })
    }
    const timer = setTimeout(() => s.destroy(), giveUpMs)
    s.on('close', done)
    s.on('error', () => undefined)
    s.write(bytes)
  })
}

const KEY = 'adm-key'
const auth = `Authorization: Bearer ${KEY}\r\n`
const get = (target: string, withKey: boolean, method = 'GET') =>
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${withKey ? auth : ''}Connection: close\r\n\r\n`
const post = (target: string, body: string, type: string, withKey: boolean) =>
  `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${withKey ? auth : ''}Content-Type: ${type}\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`

const ODD_TARGETS: Array<{ desc: string; method?: string; target: string; want: number }> = [
  { desc: 'a scheme-relative target with a bad port', target: '//a:99999/', want: 404 },
  { desc: 'an absolute URL cut short', target: 'http://[::1', want: 400 },
  { desc: 'the asterisk form', method: 'OPTIONS', target: '*', want: 400 },
  { desc: 'the absolute form of a real endpoint', target: 'http://control/api/v1/status', want: 200 },
  { desc: 'a 10 KB path', target: `/${'a'.repeat(10_000)}`, want: 404 },
  {
    desc: 'bad percent-encoding in a route name',
    method: 'DELETE',
    target: '/api/v1/routes/%E0%A4%A',
    want: 400,
  },
  {
    desc: 'bad percent-encoding in a server address',
    method: 'DELETE',
    target: '/api/v1/upstreams/api/servers/%FF%',
    want: 400,
  },
  { desc: 'bad percent-encoding in the query', target: '/api/v1/explain?path=/%E0%A4%A', want: 200 },
]

describe('control API with an api_key', () => {
  let up: Upstream
  let proxy: RunningProxy
  let port: number
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${up.address}"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: "${KEY}" }
`)
    port = proxy.controlPort!
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  const statusStillAnswers = async () => {
    const r = await raw(port, get('/api/v1/status', true))
    assert.equal(r.status, 200, `GET /api/v1/status after the hostile request: ${r.head}`)
  }

  for (const c of ODD_TARGETS) {
    test(`${c.desc}: 401 without the key, ${c.want} JSON with it, and the API keeps serving`, async () => {
      const anon = await raw(port, get(c.target, false, c.method))
      assert.equal(anon.status, 401, anon.head)
      const known = await raw(port, get(c.target, true, c.method))
      assert.equal(known.status, c.want, known.head)
      assert.match(known.head, /content-type: application\/json/i)
      JSON.parse(known.body)
      await statusStillAnswers()
    })
  }

  const BODIES: Array<{ desc: string; body: string; type: string; want: number; error: RegExp }> = [
    {
      desc: 'invalid JSON',
      body: '{"name": "x", ',
      type: 'application/json',
      want: 400,
      error: /not valid JSON/,
    },
    {
      desc: 'a text/plain body',
      body: '{"name":"x"}',
      type: 'text/plain',
      want: 415,
      error: /application\/json/,
    },
    {
      desc: 'a form body',
      body: 'name=x&path_pattern=%5E%2Fx',
      type: 'application/x-www-form-urlencoded',
      want: 415,
      error: /application\/json/,
    },
    {
      desc: 'JSON nested 10 000 levels deep',
      body: `${'['.repeat(10_000)}${']'.repeat(10_000)}`,
      type: 'application/json',
      want: 400,
      error: /nested deeper/,
    },
    { desc: 'a JSON array', body: '[1, 2]', type: 'application/json', want: 400, error: /JSON object/ },
    { desc: 'JSON null', body: 'null', type: 'application/json', want: 400, error: /JSON object/ },
  ]
  for (const b of BODIES) {
    test(`POST /api/v1/routes with ${b.desc}: 401 without the key, ${b.want} with it`, async () => {
      const anon = await raw(port, post('/api/v1/routes', b.body, b.type, false))
      assert.equal(anon.status, 401, 'the key is checked before the body is looked at')
      const known = await raw(port, post('/api/v1/routes', b.body, b.type, true))
      assert.equal(known.status, b.want, known.head)
      assert.match(JSON.parse(known.body).error, b.error)
      await statusStillAnswers()
    })
  }

  test('an unauthenticated, valid change reaches no handler', async () => {
    const body = JSON.stringify({ name: 'sneaky', path_pattern: '^/sneaky', upstream: 'api' })
    assert.equal((await raw(port, post('/api/v1/routes', body, 'application/json', false))).status, 401)
    const routes = await raw(port, get('/api/v1/routes', true))
    assert.doesNotMatch(routes.body, /sneaky/)
  })

  test('a body declared larger than 1 MiB is refused with 413 before it is read', async () => {
    const r = await raw(
      port,
      `POST /api/v1/routes HTTP/1.1\r\nHost: c\r\n${auth}Content-Type: application/json\r\nContent-Length: ${4 * 1024 * 1024}\r\n\r\n{`,
    )
    assert.equal(r.status, 413, r.head)
    assert.match(r.head, /connection: close/i)
    await statusStillAnswers()
  })

  test('a chunked body that grows past 1 MiB is cut off with 413', async () => {
    const chunk = 'a'.repeat(64 * 1024)
    const chunks = Array.from({ length: 20 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('')
    const r = await raw(
      port,
      `POST /api/v1/routes HTTP/1.1\r\nHost: c\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`,
    )
    assert.equal(r.status, 413, r.head)
    await statusStillAnswers()
  })

  test('a client that leaves in the middle of its body does not disturb the API', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.write(
          `POST /api/v1/upstreams HTTP/1.1\r\nHost: c\r\n${auth}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name":`,
        )
        setTimeout(() => s.destroy(), 100)
      })
      s.on('close', () => resolve())
      s.on('error', () => undefined)
    })
    await statusStillAnswers()
  })

  test('a body that does not arrive within 10 s gets 408 while other requests are served', async () => {
    const s = net.connect(port, '127.0.0.1')
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    s.on('error', () => undefined)
    const closed = new Promise<void>((resolve) => s.on('close', () => resolve()))
    const started = Date.now()
    s.write(
      `POST /api/v1/routes HTTP/1.1\r\nHost: c\r\n${auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na`,
    )
    await statusStillAnswers()
    const giveUp = setTimeout(() => s.destroy(), 25_000)
    await closed
    clearTimeout(giveUp)
    const elapsed = Date.now() - started
    assert.match(out, /^HTTP\/1\.1 408/, `the slow client got: ${out.slice(0, 100)}`)
    assert.ok(elapsed >= 9_000, `answered after ${elapsed} ms, not before the deadline`)
    await statusStillAnswers()
  })

  test('none of this ended the process or was logged as a fault of the proxy', async () => {
    assert.equal(proxy.child.exitCode, null)
    await statusStillAnswers()
    const faults = proxy.logs.filter((l) => l.level === 'error')
    assert.deepEqual(faults, [], 'client mistakes are 4xx, not errors of the proxy')
  })
})

describe('control API without an api_key (loopback)', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${up.address}"] }
load_balancer: { upstream: api }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  for (const c of ODD_TARGETS) {
    test(`${c.desc}: ${c.want}, and the API keeps serving`, async () => {
      const r = await raw(proxy.controlPort!, get(c.target, false, c.method))
      assert.equal(r.status, c.want, r.head)
      const status = await raw(proxy.controlPort!, get('/api/v1/status', false))
      assert.equal(status.status, 200)
      assert.equal(proxy.child.exitCode, null)
    })
  }
})

// A client of the control API must not be able to read the proxy's environment: the config file
// expands `${VAR}`, and values sent through the API used to land in the same document unescaped,
// so `"${SECRET}"` came back expanded in an error message, in GET /api/v1/config or in the file.
describe('values sent through the control API are taken literally, never expanded', () => {
  const SECRET = 's3cr3t-from-the-env-9f1c'
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${up.address}"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
control_api: { enabled: true, bind_address: "127.0.0.1:0", persist: true }
`,
      { env: { LOCCI_TEST_SECRET: SECRET } },
    )
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${proxy.controlUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: r.status, text: await r.text() }
  }
  const ref = '${LOCCI_TEST_SECRET}'
  const refDefault = '${LOCCI_TEST_SECRET:-x}'
  const attempts: Array<{ desc: string; path: string; body: unknown; want: number }> = [
    {
      desc: 'a route whose pattern is a reference (accepted, kept literal)',
      path: '/api/v1/routes',
      body: { name: 'r1', path_pattern: `^/x/${ref}`, upstream: 'api' },
      want: 201,
    },
    {
      desc: 'a route pattern that is only a reference (a valid regular expression, kept literal)',
      path: '/api/v1/routes',
      body: { name: 'r2', path_pattern: ref, upstream: 'api' },
      want: 201,
    },
    {
      desc: 'a route upstream that is a reference',
      path: '/api/v1/routes',
      body: { name: 'r3', path_pattern: '^/r3', upstream: refDefault },
      want: 400,
    },
    {
      desc: 'route methods that are references',
      path: '/api/v1/routes',
      body: { name: 'r4', path_pattern: '^/r4', upstream: 'api', methods: [ref] },
      want: 400,
    },
    {
      desc: 'route middlewares that are references',
      path: '/api/v1/routes',
      body: { name: 'r5', path_pattern: '^/r5', upstream: 'api', middlewares: [ref] },
      want: 400,
    },
    {
      desc: 'a new upstream whose server is a reference',
      path: '/api/v1/upstreams',
      body: { name: 'u1', servers: [`${ref}:80`] },
      // `${LOCCI_TEST_SECRET}` is no host name (braces): refused, and not expanded in the answer.
      want: 400,
    },
    {
      desc: 'a server added to an upstream as a reference',
      path: '/api/v1/upstreams',
      body: { name: 'api', servers: [`${refDefault}:80`] },
      want: 400,
    },
    {
      desc: 'a server given as {address} with a reference',
      path: '/api/v1/upstreams',
      body: { name: 'api', servers: [{ address: `127.0.0.1:${ref}` }] },
      want: 400,
    },
    {
      desc: 'a new upstream with a reference in its health check path (accepted, kept literal)',
      path: '/api/v1/upstreams',
      body: { name: 'u2', servers: ['127.0.0.1:9'], health_check: { path: `/h/${ref}` } },
      want: 201,
    },
    {
      desc: 'a new upstream with a reference in a number field',
      path: '/api/v1/upstreams',
      body: { name: 'u3', servers: ['127.0.0.1:9'], max_ejection_secs: ref },
      want: 400,
    },
  ]
  for (const a of attempts) {
    test(`${a.desc}: ${a.want}, and the variable's value is not in the answer`, async () => {
      const r = await call('POST', a.path, a.body)
      assert.equal(r.status, a.want, r.text)
      assert.ok(!r.text.includes(SECRET), `the answer leaks the variable: ${r.text}`)
    })
  }

  test('what was accepted reads back literally, in the views, the config, the file and after a reload', async () => {
    for (const path of ['/api/v1/routes', '/api/v1/upstreams', '/api/v1/config']) {
      const r = await call('GET', path)
      assert.ok(!r.text.includes(SECRET), `${path} leaks the variable`)
    }
    const routes = JSON.parse((await call('GET', '/api/v1/routes')).text) as {
      routes: Array<{ name: string; path_pattern: string }>
    }
    assert.equal(routes.routes.find((x) => x.name === 'r1')?.path_pattern, `^/x/${ref}`)
    assert.equal(routes.routes.find((x) => x.name === 'r2')?.path_pattern, ref)
    const ups = JSON.parse((await call('GET', '/api/v1/upstreams')).text) as {
      upstreams: Array<{ name: string; servers: Array<{ address: string }> }>
    }
    assert.equal(
      ups.upstreams.find((u) => u.name === 'u1'),
      undefined,
    )
    const config = JSON.parse((await call('GET', '/api/v1/config')).text)
    assert.equal(config.upstreams.u2.health_check.path, `/h/${ref}`)
    const file = readFileSync(proxy.configFile, 'utf8')
    assert.ok(!file.includes(SECRET))
    assert.equal((await call('POST', '/api/v1/reload')).status, 200)
    const reloaded = JSON.parse((await call('GET', '/api/v1/config')).text)
    assert.equal(
      reloaded.api_gateway.routes.r1.path_pattern,
      `^/x/${ref}`,
      'the persisted file keeps it literal',
    )
    assert.equal(reloaded.upstreams.u2.health_check.path, `/h/${ref}`)
    assert.ok(!proxy.logs.some((l) => JSON.stringify(l).includes(SECRET)), 'nor is it logged')
  })
})

// The control API changes routes and upstreams, so one that other hosts can reach must ask for a
// key: without api_key a non-loopback bind_address is a config problem (start and validate
// refuse it), unless insecure: true says it is meant, which is then logged on every start.
describe('a control API reachable from other hosts needs an api_key', () => {
  const config = (control: string) => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { a: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: a }
control_api: ${control}
`
  test('start and validate refuse 0.0.0.0 without api_key, and say what to write', () => {
    const { file } = writeConfig(config('{ enabled: true, bind_address: "0.0.0.0:0" }'))
    for (const args of [
      ['validate', '-c', file],
      ['-c', file],
    ]) {
      const r = runCli(args)
      assert.notEqual(r.status, 0, `${args[0]} must fail`)
      assert.notEqual(r.status, null, `${args[0]} must not start a proxy`)
      const out = r.stdout + r.stderr
      assert.match(out, /control_api\.api_key: is required/)
      assert.match(out, /api_key: \$\{LOCCI_API_KEY\}/)
      assert.match(out, /insecure: true/)
    }
  })

  test('insecure: true is warned about on start', async () => {
    const proxy = await startProxy(config('{ enabled: true, bind_address: "127.0.0.1:0", insecure: true }'))
    try {
      const warning = await proxy.waitForLog(
        (l) => l.level === 'warn' && String(l.msg).startsWith('control_api.insecure'),
        'the insecure warning',
      )
      assert.equal(warning.control_api, proxy.controlUrl)
    } finally {
      await proxy.stop()
    }
  })

  test('no warning with a key', async () => {
    const proxy = await startProxy(
      config('{ enabled: true, bind_address: "127.0.0.1:0", api_key: k, insecure: true }'),
    )
    try {
      // A round trip after the listening line, so a warning written with it has arrived.
      assert.equal((await fetch(`${proxy.controlUrl}/healthz`)).status, 200)
      assert.ok(!proxy.logs.some((l) => String(l.msg).startsWith('control_api.insecure')))
    } finally {
      await proxy.stop()
    }
  })
})
