// OpenTelemetry tracing and X-Locci-Trace end to end: the real binary exports OTLP/HTTP to a
// receiver here (http/json decoded for the span tree; http/protobuf checked for its content type
// and a body, as no protobuf decoder for requests ships in node_modules), propagates W3C trace
// context to the upstream, keeps serving when the receiver is down, ignores malformed trace
// headers, and answers the debug header only with the exact secret.

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: { key: string; value: Record<string, unknown> }[]
  status?: { code?: number }
  /** The exporting process (resource attribute process.pid), added by the receiver. */
  pid?: number
}

interface Receiver {
  url: string
  /** Every span received from http/json exports. */
  spans: OtlpSpan[]
  /** Content type and size of every export request. */
  posts: { contentType: string; bytes: number }[]
  close(): Promise<void>
}

async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: '', spans: [], posts: [], close: async () => undefined }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const type = req.headers['content-type'] ?? ''
      r.posts.push({ contentType: type, bytes: body.length })
      if (type.startsWith('application/json')) {
        const doc = JSON.parse(body.toString()) as {
          resourceSpans: { resource: Pick<OtlpSpan, 'attributes'>; scopeSpans: { spans: OtlpSpan[] }[] }[]
        }
        for (const rs of doc.resourceSpans) {
          const pid = Number(attr(rs.resource as OtlpSpan, 'process.pid'))
          for (const ss of rs.scopeSpans) for (const span of ss.spans) r.spans.push({ ...span, pid })
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      } else {
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`
  r.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return r
}

function attr(s: OtlpSpan, key: string): unknown {
  const v = s.attributes.find((a) => a.key === key)?.value
  return v === undefined ? undefined : (v.stringValue ?? v.intValue)
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
}

function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
      })
      .on('error', reject)
  })
}

const SERVER = 2 // SPAN_KIND_SERVER in OTLP
const CLIENT = 3 // SPAN_KIND_CLIENT
const ERROR = 2 // STATUS_CODE_ERROR
const SECRET = 'a-debug-secret-of-some-length'
// Exports every 50 ms; OTEL_* of the machine running the tests must not change what is checked.
const FAST = {
  OTEL_BSP_SCHEDULE_DELAY: '50',
  DBG_SECRET: SECRET,
  OTEL_TRACES_SAMPLER: '',
  OTEL_SDK_DISABLED: '',
}

function config(o: {
  endpoint: string
  protocol?: string
  ratio?: number
  servers: string[]
  auth: string
  enabled?: boolean
}): string {
  return `mode: api_gateway
server:
  bind_address: 127.0.0.1:0
logging:
  access_log:
    format: json
    fields: [method, path, status, request_id, trace_id]
upstreams:
  app:
    servers: [${o.servers.map((s) => `"${s}"`).join(', ')}]
    retries: 1
    passive_health: { enabled: false }
middlewares:
  fa:
    type: forward_auth
    address: "http://${o.auth}/verify"
api_gateway:
  routes:
    api:
      path_pattern: /api/*
      upstream: app
      middlewares: [fa]
tracing:
  enabled: ${o.enabled ?? true}
  otlp_endpoint: ${o.endpoint}
  protocol: ${o.protocol ?? 'http/json'}
${o.ratio === undefined ? '' : `  sampling_ratio: ${o.ratio}\n`}debug_header:
  name: X-Dbg
  secret: \${DBG_SECRET}
`
}

const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c'
const CLIENT_SPAN = 'b7ad6b7169203331'

describe('tracing: http/json export, span tree, propagation, debug header', () => {
  let up: Upstream
  let auth: Upstream
  let rx: Receiver
  let proxy: RunningProxy
  let dead: number

  before(async () => {
    up = await startUpstream('app')
    auth = await startUpstream('auth')
    rx = await startReceiver()
    dead = await closedPort()
    proxy = await startProxy(
      config({ endpoint: rx.url, servers: [`127.0.0.1:${dead}`, up.address], auth: auth.address }),
      { env: FAST },
    )
  })
  after(async () => {
    await proxy?.stop()
    await Promise.all([up?.close(), auth?.close(), rx?.close()])
  })

  test('a client traceparent: SERVER span, middleware span, a failed and a good attempt, upstream sees ours', async () => {
    // Round robin: within two requests one starts on the closed port and is retried.
    let retried: OtlpSpan[] = []
    for (let i = 0; i < 2 && retried.length < 2; i++) {
      up.seen.length = 0
      const trace = `${CLIENT_TRACE.slice(0, 30)}${i}0`
      const a = await get(`${proxy.url}/api/x`, { traceparent: `00-${trace}-${CLIENT_SPAN}-01` })
      assert.equal(a.status, 200)
      const server = await until(
        () => rx.spans.find((s) => s.traceId === trace && s.kind === SERVER),
        'the SERVER span',
      )
      assert.equal(server.name, 'GET api')
      assert.equal(server.parentSpanId, CLIENT_SPAN)
      assert.equal(attr(server, 'http.request.method'), 'GET')
      assert.equal(attr(server, 'url.path'), '/api/x')
      assert.equal(attr(server, 'http.route'), 'api')
      assert.equal(attr(server, 'locci.upstream'), 'app')
      assert.equal(attr(server, 'server.address'), '127.0.0.1')
      assert.equal(Number(attr(server, 'http.response.status_code')), 200)
      const mw = await until(
        () => rx.spans.find((s) => s.traceId === trace && s.name === 'middleware fa'),
        'the forward_auth span',
      )
      assert.equal(mw.parentSpanId, server.spanId)
      const attempts = rx.spans.filter((s) => s.traceId === trace && s.kind === CLIENT)
      assert.ok(attempts.length >= 1)
      for (const c of attempts) assert.equal(c.parentSpanId, server.spanId)
      const good = attempts.find((c) => Number(attr(c, 'http.response.status_code')) === 200)!
      assert.equal(Number(attr(good, 'server.port')), up.port)
      assert.equal(attr(good, 'network.peer.address'), '127.0.0.1')
      // The upstream got our attempt span's context, not the client's.
      assert.equal(up.seen[0]!.headers.traceparent, `00-${trace}-${good.spanId}-01`)
      const line = await proxy.waitForLog((l) => l.trace_id === trace, 'the access line with trace_id')
      assert.equal(line.status, 200)
      if (attempts.length === 2) retried = attempts
    }
    assert.equal(retried.length, 2, 'one request was retried')
    const failed = retried.find((c) => Number(attr(c, 'server.port')) === dead)!
    assert.equal(failed.status?.code, ERROR)
    assert.equal(attr(failed, 'error.type'), 'connect_failed')
  })

  test('no traceparent: a new trace is started and propagated', async () => {
    up.seen.length = 0
    const a = await get(`${proxy.url}/api/new`)
    assert.equal(a.status, 200)
    const tp = String(up.seen[0]!.headers.traceparent)
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(tp)
    assert.ok(m, tp)
    await until(() => rx.spans.find((s) => s.traceId === m[1] && s.kind === SERVER), 'the new trace')
  })

  test('malformed traceparent and tracestate are ignored, never echoed', async () => {
    const hostile: Record<string, string>[] = [
      { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01-${'x'.repeat(600)}` },
      { traceparent: `00-${'z'.repeat(32)}-${CLIENT_SPAN}-01` },
      { traceparent: `ff-${CLIENT_TRACE}-${CLIENT_SPAN}-01` },
      { traceparent: `00-${'0'.repeat(32)}-${CLIENT_SPAN}-01` },
      { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: `k=${'v'.repeat(5000)},=bad,x` },
      { traceparent: 'garbage', tracestate: ',,,=,==' },
    ]
    for (const h of hostile) {
      up.seen.length = 0
      const a = await get(`${proxy.url}/api/h`, h)
      assert.equal(a.status, 200)
      const tp = String(up.seen[0]!.headers.traceparent)
      assert.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      if (h.traceparent !== `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`) assert.ok(!tp.includes(CLIENT_TRACE))
      const ts = up.seen[0]!.headers.tracestate
      assert.ok(ts === undefined || String(ts).length <= 512, 'tracestate bounded')
    }
  })

  test('X-Locci-Trace only with the exact secret; the debug header never goes upstream', async () => {
    up.seen.length = 0
    const ok = await get(`${proxy.url}/api/dbg`, { 'x-dbg': SECRET })
    const t = String(ok.headers['x-locci-trace'])
    assert.match(
      t,
      /^route=api; mw=fa:pass@[\d.]+ms; upstream=app; attempts=.*127\.0\.0\.1:\d+:200@[\d.]+ms; total=[\d.]+ms$/,
    )
    for (const wrong of [`${SECRET.slice(0, -1)}X`, 'short', `${SECRET}x`, '']) {
      const a = await get(`${proxy.url}/api/dbg`, { 'x-dbg': wrong })
      assert.equal(a.status, 200)
      assert.equal(a.headers['x-locci-trace'], undefined, `no trace for "${wrong}"`)
    }
    assert.equal(up.seen.length, 5)
    for (const s of up.seen) assert.equal(s.headers['x-dbg'], undefined)
    // A reply of the proxy's own (no route) carries it too.
    const nf = await get(`${proxy.url}/nowhere`, { 'x-dbg': SECRET })
    assert.equal(nf.status, 404)
    assert.match(String(nf.headers['x-locci-trace']), /^route=-; mw=-; upstream=-; attempts=-; total=/)
  })
})

describe('tracing: http/protobuf, sampling_ratio 0, receiver down', () => {
  let up: Upstream
  let auth: Upstream
  let rx: Receiver

  before(async () => {
    up = await startUpstream('app')
    auth = await startUpstream('auth')
    rx = await startReceiver()
  })
  after(async () => {
    await Promise.all([up?.close(), auth?.close(), rx?.close()])
  })

  test('http/protobuf arrives as protobuf, flushed at shutdown', async () => {
    const proxy = await startProxy(
      config({ endpoint: rx.url, protocol: 'http/protobuf', servers: [up.address], auth: auth.address }),
      // Nothing is exported before the stop: the flush at shutdown sends it.
      { env: { ...FAST, OTEL_BSP_SCHEDULE_DELAY: '600000' } },
    )
    try {
      assert.equal((await get(`${proxy.url}/api/p`)).status, 200)
    } finally {
      assert.equal(await proxy.stop(), 0)
    }
    const post = rx.posts.find((p) => p.contentType === 'application/x-protobuf')
    assert.ok(post, JSON.stringify(rx.posts))
    assert.ok(post.bytes > 0)
  })

  test('sampling_ratio 0: no spans, yet the upstream gets a valid unsampled traceparent', async () => {
    rx.posts.length = 0
    const proxy = await startProxy(
      config({ endpoint: rx.url, ratio: 0, servers: [up.address], auth: auth.address }),
      { env: FAST },
    )
    up.seen.length = 0
    try {
      assert.equal((await get(`${proxy.url}/api/s`)).status, 200)
      const tp = String(up.seen[0]!.headers.traceparent)
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/.exec(tp)
      assert.ok(m, tp)
      await proxy.waitForLog((l) => l.trace_id === m[1], 'the trace id in the access line')
    } finally {
      assert.equal(await proxy.stop(), 0)
    }
    assert.equal(rx.spans.length + rx.posts.filter((p) => p.bytes > 2).length, 0)
  })

  test('receiver down: requests keep being served, the failure is logged', async () => {
    const dead = await closedPort()
    const proxy = await startProxy(
      config({ endpoint: `http://127.0.0.1:${dead}/v1/traces`, servers: [up.address], auth: auth.address }),
      { env: FAST },
    )
    try {
      for (let i = 0; i < 40; i++) assert.equal((await get(`${proxy.url}/api/d${i}`)).status, 200)
      await proxy.waitForLog((l) => l.msg === 'trace export failed', 'the export failure')
      assert.equal((await get(`${proxy.url}/api/after`)).status, 200)
    } finally {
      assert.equal(await proxy.stop(), 0)
    }
  })
})

test('tracing turned on by a reload applies to the next requests', async () => {
  const up = await startUpstream('app')
  const auth = await startUpstream('auth')
  const rx = await startReceiver()
  const base = { endpoint: rx.url, servers: [up.address], auth: auth.address }
  const proxy = await startProxy(config({ ...base, enabled: false }), { env: FAST })
  try {
    assert.equal((await get(`${proxy.url}/api/before`)).status, 200)
    assert.equal(up.seen[0]!.headers.traceparent, undefined, 'tracing off: no traceparent added')
    writeFileSync(proxy.configFile, config(base))
    proxy.child.kill('SIGHUP')
    await proxy.waitForLog((l) => l.msg === 'tracing on', 'tracing turned on')
    const reloaded = await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the reload line')
    assert.deepEqual(reloaded.settings_changed, ['tracing'])
    up.seen.length = 0
    assert.equal((await get(`${proxy.url}/api/after`)).status, 200)
    const tp = String(up.seen[0]!.headers.traceparent)
    const traceId = tp.split('-')[1]
    await until(
      () => rx.spans.find((s) => s.traceId === traceId && s.kind === SERVER),
      'spans after the reload',
    )
  } finally {
    await proxy.stop()
    await Promise.all([up.close(), auth.close(), rx.close()])
  }
})

test('workers: each worker exports its own spans', async () => {
  const up = await startUpstream('app')
  const auth = await startUpstream('auth')
  const rx = await startReceiver()
  const yaml = config({ endpoint: rx.url, servers: [up.address], auth: auth.address }).replace(
    'server:\n',
    'server:\n  workers: 2\n',
  )
  const proxy = await startProxy(yaml, { env: FAST })
  try {
    for (let i = 0; i < 20; i++) assert.equal((await get(`${proxy.url}/api/w${i}`)).status, 200)
    const servers = await until(() => {
      const s = rx.spans.filter((x) => x.kind === SERVER)
      return s.length === 20 && s
    }, 'a SERVER span for every request')
    const pids = new Set(servers.map((s) => s.pid))
    assert.ok(!pids.has(proxy.child.pid), 'the primary serves no requests')
    for (const pid of pids) assert.ok(Number.isInteger(pid) && pid! > 0)
  } finally {
    await proxy.stop()
    await Promise.all([up.close(), auth.close(), rx.close()])
  }
})

test('WebSocket upgrade: the handshake attempt is a CLIENT span whose traceparent the server gets', async () => {
  const seen: http.IncomingHttpHeaders[] = []
  const ws = http.createServer((_req, res) => res.writeHead(404).end())
  ws.on('upgrade', (req, socket) => {
    seen.push(req.headers)
    socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
  })
  await new Promise<void>((resolve) => ws.listen(0, '127.0.0.1', resolve))
  const auth = await startUpstream('auth')
  const rx = await startReceiver()
  const wsAddress = `127.0.0.1:${(ws.address() as AddressInfo).port}`
  const proxy = await startProxy(config({ endpoint: rx.url, servers: [wsAddress], auth: auth.address }), {
    env: FAST,
  })
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${proxy.url}/api/ws`, {
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          'sec-websocket-version': '13',
          traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`,
        },
      })
      req.on('upgrade', (res, socket) => {
        socket.destroy()
        resolve(res.statusCode ?? 0)
      })
      req.on('response', (res) => resolve(res.statusCode ?? 0))
      req.on('error', reject)
      req.end()
    })
    assert.equal(status, 101)
    const attempt = await until(
      () => rx.spans.find((s) => s.traceId === CLIENT_TRACE && s.kind === CLIENT),
      'the handshake span',
    )
    assert.equal(Number(attr(attempt, 'http.response.status_code')), 101)
    assert.equal(seen[0]!.traceparent, `00-${CLIENT_TRACE}-${attempt.spanId}-01`)
  } finally {
    await proxy.stop()
    ws.closeAllConnections()
    await Promise.all([new Promise((r) => ws.close(r)), auth.close(), rx.close()])
  }
})
