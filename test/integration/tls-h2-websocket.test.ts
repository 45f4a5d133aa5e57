// The proxy as an edge: HTTPS with HTTP/2 and HTTP/1.1 by ALPN, certificates by SNI, the HTTP
// redirect, TLS to upstreams (SNI, CA file, skip-verify, mTLS), and WebSocket in both modes with
// middlewares on the handshake, close propagation and the idle timeout.

import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { SignJWT } from 'jose'
import { WebSocket, WebSocketServer } from 'ws'
import { makeCert, type TestCert } from '../helpers/certs'
import { h2Get } from '../helpers/h2'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const dir = mkdtempSync(path.join(tmpdir(), 'locci-tls-'))
let a: TestCert
let b: TestCert
let backend: TestCert
let client: TestCert
before(async () => {
  a = await makeCert(dir, 'a.test', ['a.test', 'localhost'])
  b = await makeCert(dir, 'b.test', ['b.test', '*.b.test'])
  backend = await makeCert(dir, 'backend.test')
  client = await makeCert(dir, 'client.test')
})

describe('TLS listener', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('web')
    proxy = await startProxy(`mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
  redirect_http_bind: "127.0.0.1:0"
  tls:
    cert_path: ${a.certPath}
    key_path: ${a.keyPath}
    certificates:
      - { cert_path: ${b.certPath}, key_path: ${b.keyPath} }
upstreams: { web: { servers: ["${up.address}"] } }
api_gateway:
  routes:
    all: { path_pattern: "^/", upstream: web }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('HTTP/2: routed and proxied like HTTP/1.1; :authority becomes Host; no h1-only headers', async () => {
    const res = await h2Get(
      proxy.url,
      '/h2/path?q=1',
      { ca: a.cert, servername: 'localhost' },
      { 'x-trace': 'h2' },
    )
    assert.equal(res.headers[':status'], 200)
    assert.equal(res.headers.connection, undefined)
    assert.equal(res.headers['keep-alive'], undefined)
    assert.ok(res.headers['x-request-id'])
    const seen = JSON.parse(res.body)
    assert.equal(seen.url, '/h2/path?q=1')
    assert.equal(seen.headers.host, `localhost:${proxy.port}`)
    assert.equal(seen.headers['x-forwarded-proto'], 'https')
    assert.equal(seen.headers['x-trace'], 'h2')
    const line = await proxy.waitForLog((l) => l.path === '/h2/path', 'access line')
    assert.equal(line.route, 'all')
  })

  test('HTTP/1.1 over TLS still works on the same port', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(`${proxy.url}/h1`, { ca: a.cert, servername: 'localhost' }, (res) => {
          let s = ''
          res.on('data', (d) => {
            s += d
          })
          res.on('end', () => resolve(s))
        })
        .on('error', reject)
    })
    assert.equal(JSON.parse(body).url, '/h1')
  })

  test('curl --http2 gets HTTP/2', {
    skip: spawnSync('curl', ['--version']).error ? 'curl not installed' : false,
  }, async () => {
    // Asynchronously: the upstream lives in this process and must keep answering meanwhile.
    const { stdout } = await promisify(execFile)('curl', [
      '-sk',
      '--http2',
      '-o',
      '/dev/null',
      '-w',
      '%{http_version} %{http_code}',
      `${proxy.url}/curl`,
    ])
    assert.equal(stdout, '2 200')
  })

  test('SNI picks the certificate; wildcards match one label; unknown names get the first', async () => {
    const subject = (servername: string) =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect(
          { port: proxy.port, host: '127.0.0.1', servername, rejectUnauthorized: false },
          () => {
            resolve(String(s.getPeerCertificate().subject.CN))
            s.destroy()
          },
        )
        s.on('error', reject)
      })
    assert.equal(await subject('a.test'), 'a.test')
    assert.equal(await subject('b.test'), 'b.test')
    assert.equal(await subject('api.b.test'), 'b.test')
    assert.equal(await subject('x.api.b.test'), 'a.test', 'a wildcard covers one label only')
    assert.equal(await subject('other.example'), 'a.test')
  })

  test('TLS 1.1 is refused (TLS 1.2 minimum)', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect(
        {
          port: proxy.port,
          host: '127.0.0.1',
          servername: 'localhost',
          rejectUnauthorized: false,
          maxVersion: 'TLSv1.1',
          minVersion: 'TLSv1',
        },
        () => resolve('connected'),
      )
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
    })
    assert.notEqual(outcome, 'connected')
  })

  test('redirect_http_bind answers 308 to the HTTPS URL of a name the certificates cover', async () => {
    const redirect = new URL(String(proxy.logs.find((l) => l.msg === 'locci-proxy listening')!.redirect_http))
    // node:http rather than fetch: fetch does not let a caller set Host.
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http
        .get(
          {
            host: '127.0.0.1',
            port: redirect.port,
            path: '/some/path?x=1',
            headers: { host: 'www.b.test' },
          },
          resolve,
        )
        .on('error', reject),
    )
    res.resume()
    assert.equal(res.statusCode, 308)
    assert.equal(res.headers.location, `https://www.b.test:${proxy.port}/some/path?x=1`)
  })
})

test('a mismatched certificate and key stop the start, naming the key file', () => {
  const { file } = writeConfig(`mode: load_balancer
server:
  tls: { cert_path: ${a.certPath}, key_path: ${b.keyPath} }
upstreams: { u: { servers: ["127.0.0.1:1"] } }
load_balancer: { upstream: u }
`)
  const r = runCli(['validate', file])
  assert.equal(r.status, 1)
  assert.ok(
    r.stderr.includes(
      `server.tls.key_path: the key in ${b.keyPath} does not belong to the certificate in ${a.certPath}`,
    ),
    r.stderr,
  )
})

describe('TLS to upstreams', () => {
  async function tlsUpstream(cert: TestCert, opts: https.ServerOptions = {}) {
    const s = https.createServer({ cert: cert.cert, key: cert.key, ...opts }, (req, res) => {
      const peer = (req.socket as tls.TLSSocket).getPeerCertificate()
      res.end(JSON.stringify({ host: req.headers.host, client: peer?.subject?.CN ?? null }))
    })
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    return { s, address: `127.0.0.1:${(s.address() as AddressInfo).port}` }
  }
  const lb = (upstream: string) => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  secure:
${upstream}
load_balancer: { upstream: secure }
`

  test('sni + ca_path: verified against the CA file, SNI and Host set to the sni name', async () => {
    const u = await tlsUpstream(backend)
    const proxy = await startProxy(
      lb(
        `    servers: ["${u.address}"]\n    tls: true\n    sni: backend.test\n    ca_path: ${backend.certPath}`,
      ),
    )
    try {
      const res = await fetch(`${proxy.url}/`)
      assert.equal(res.status, 200)
      assert.equal(JSON.parse(await res.text()).host, 'backend.test')
    } finally {
      await proxy.stop()
      u.s.close()
    }
  })

  test('a certificate for another name fails verification: 502 with the reason logged', async () => {
    const u = await tlsUpstream(backend)
    const proxy = await startProxy(
      lb(
        `    servers: ["${u.address}"]\n    tls: true\n    sni: wrong.test\n    ca_path: ${backend.certPath}`,
      ),
    )
    try {
      assert.equal((await fetch(`${proxy.url}/`)).status, 502)
      const warn = await proxy.waitForLog((l) => l.msg === 'upstream error', 'the reason')
      assert.match(String(warn.err), /ERR_TLS_CERT_ALTNAME_INVALID|altname|Hostname/i)
    } finally {
      await proxy.stop()
      u.s.close()
    }
  })

  test('tls_skip_verify must be asked for, and is logged at start', async () => {
    const u = await tlsUpstream(backend)
    const proxy = await startProxy(
      lb(`    servers: ["${u.address}"]\n    tls: true\n    tls_skip_verify: true`),
    )
    try {
      assert.equal((await fetch(`${proxy.url}/`)).status, 200)
      const warn = await proxy.waitForLog(
        (l) => String(l.msg).startsWith('tls_skip_verify'),
        'the start warning',
      )
      assert.equal(warn.level, 'warn')
    } finally {
      await proxy.stop()
      u.s.close()
    }
  })

  test('mTLS: the client certificate is presented; without it the server refuses', async () => {
    const u = await tlsUpstream(backend, { requestCert: true, rejectUnauthorized: true, ca: client.cert })
    const withCert = await startProxy(
      lb(
        `    servers: ["${u.address}"]\n    tls: true\n    sni: backend.test\n    ca_path: ${backend.certPath}\n    client_cert_path: ${client.certPath}\n    client_key_path: ${client.keyPath}`,
      ),
    )
    const without = await startProxy(
      lb(
        `    servers: ["${u.address}"]\n    tls: true\n    sni: backend.test\n    ca_path: ${backend.certPath}`,
      ),
    )
    try {
      const res = await fetch(`${withCert.url}/`)
      assert.equal(res.status, 200)
      assert.equal(JSON.parse(await res.text()).client, 'client.test')
      assert.equal((await fetch(`${without.url}/`)).status, 502)
    } finally {
      await withCert.stop()
      await without.stop()
      u.s.close()
    }
  })
})

describe('WebSocket', () => {
  let wss: WebSocketServer
  let upstreamCloses = 0
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise<void>((r) => wss.once('listening', r))
    wss.on('connection', (ws, req) => {
      ws.send(`hello ${req.url} ${req.headers['x-user-id'] ?? '-'}`)
      ws.on('message', (m) => ws.send(`echo:${m}`))
      ws.on('close', () => upstreamCloses++)
    })
  })
  after(() => wss.close())
  const wsAddress = () => `127.0.0.1:${(wss.address() as AddressInfo).port}`

  function open(url: string, headers: Record<string, string> = {}) {
    const ws = new WebSocket(url, { headers })
    const messages: string[] = []
    ws.on('message', (m) => messages.push(String(m)))
    const opened = new Promise<number>((resolve, reject) => {
      ws.once('open', () => resolve(101))
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('error', reject)
    })
    return { ws, messages, opened }
  }

  test('load_balancer mode: frames relayed both ways; closing the client closes the upstream side', async () => {
    const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { ws: { servers: ["${wsAddress()}"] } }
load_balancer: { upstream: ws }
`)
    try {
      const c = open(`ws://127.0.0.1:${proxy.port}/chat?room=1`)
      assert.equal(await c.opened, 101)
      c.ws.send('ping')
      await until(() => c.messages.length === 2, 'two messages')
      assert.deepEqual(c.messages, ['hello /chat?room=1 -', 'echo:ping'])
      const before = upstreamCloses
      c.ws.close()
      await until(() => upstreamCloses === before + 1, 'the upstream side to close')
      const line = await proxy.waitForLog(
        (l) => l.msg === 'request' && l.status === 101,
        'the access line at close',
      )
      assert.equal(line.path, '/chat')
    } finally {
      await proxy.stop()
    }
  })

  test('gateway mode: authentication applies to the handshake; claims reach the upstream', async () => {
    const secret = 'ws-secret-ws-secret-ws-secret-32b'
    const proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams: { ws: { servers: ["${wsAddress()}"] } }
api_gateway:
  routes:
    live: { path_pattern: "^/live", upstream: ws, middlewares: [authentication] }
  middlewares:
    authentication: { jwt_secret: "${secret}", forward_claims: { sub: X-User-Id } }
`)
    try {
      const denied = open(`ws://127.0.0.1:${proxy.port}/live`)
      assert.equal(await denied.opened, 401)
      const token = await new SignJWT({ sub: 'carol' })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(secret))
      const ok = open(`ws://127.0.0.1:${proxy.port}/live`, { authorization: `Bearer ${token}` })
      assert.equal(await ok.opened, 101)
      await until(() => ok.messages.length === 1, 'the greeting')
      assert.equal(ok.messages[0], 'hello /live carol')
      ok.ws.close()
      const nf = open(`ws://127.0.0.1:${proxy.port}/nowhere`)
      assert.equal(await nf.opened, 404)
    } finally {
      await proxy.stop()
    }
  })

  test('the upstream closing closes the client; an idle connection is closed after the timeout', async () => {
    const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", websocket_idle_timeout_secs: 0.5 }
upstreams: { ws: { servers: ["${wsAddress()}"] } }
load_balancer: { upstream: ws }
`)
    try {
      const c = open(`ws://127.0.0.1:${proxy.port}/a`)
      assert.equal(await c.opened, 101)
      for (const s of wss.clients) s.close()
      await until(() => c.ws.readyState === WebSocket.CLOSED, 'the client to see the close')
      const idle = open(`ws://127.0.0.1:${proxy.port}/b`)
      assert.equal(await idle.opened, 101)
      const t0 = Date.now()
      await until(() => idle.ws.readyState === WebSocket.CLOSED, 'the idle timeout', 5000)
      assert.ok(Date.now() - t0 >= 300)
    } finally {
      await proxy.stop()
    }
  })
})

test('a renewed certificate is picked up by a reload, without a restart', async () => {
  const up = await startUpstream('web')
  const certDir = mkdtempSync(path.join(tmpdir(), 'locci-renew-'))
  const first = await makeCert(certDir, 'renew.test')
  const proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  tls: { cert_path: ${first.certPath}, key_path: ${first.keyPath} }
upstreams: { web: { servers: ["${up.address}"] } }
load_balancer: { upstream: web }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  const serial = () =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect(
        { port: proxy.port, host: '127.0.0.1', servername: 'renew.test', rejectUnauthorized: false },
        () => {
          resolve(s.getPeerCertificate().serialNumber)
          s.destroy()
        },
      )
      s.on('error', reject)
    })
  try {
    const before = await serial()
    // The renewal writes new files over the old ones, as certbot and friends do.
    await makeCert(certDir, 'renew.test')
    const r = await fetch(`${proxy.controlUrl}/api/v1/reload`, { method: 'POST' })
    const body = (await r.json()) as { changes: { settings_changed: string[] } }
    assert.ok(body.changes.settings_changed.includes('certificates'))
    const after = await serial()
    assert.notEqual(after, before)
    assert.equal(await fetch(`${proxy.url.replace('https', 'http')}/`).catch(() => 'tls only'), 'tls only')
  } finally {
    await proxy.stop()
    await up.close()
  }
})
