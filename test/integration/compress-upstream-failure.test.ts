// compress (and grpc_web) when the upstream fails after its head but before the transformer had
// any output for the client: the head is held until then (proxy/forward.ts), so the client gets
// the proxy's 502/504 (a gRPC status for gRPC-Web) like for any upstream failure, or, when the
// retry policy allows, the next server's answer, instead of a connection closed under a head it
// never received.

import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import net, { type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'

const BODY = JSON.stringify(Array.from({ length: 300 }, (_, i) => ({ id: i, name: `user ${i}` })))
const DECLARED = 5000

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** Reads a whole answer into `resolve`; a cut body rejects. */
function collect(res: http.IncomingMessage, resolve: (a: Answer) => void, reject: (e: Error) => void): void {
  const chunks: Buffer[] = []
  res.on('data', (c: Buffer) => chunks.push(c))
  res.on('error', reject)
  res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
}

/** One GET through a fresh connection; rejects when the connection ends without a whole answer. */
function get(url: string, accept: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { 'accept-encoding': accept } }, (res) =>
      collect(res, resolve, reject),
    )
    req.on('error', reject)
  })
}

/**
 * A raw upstream that answers each request with a JSON head declaring DECLARED bytes and the
 * first 200 of them, then (`cut`) destroys the connection or (`stall`) sends nothing more. 200
 * bytes are far from what brotli or deflate need to emit a block: the compressor has no output yet
 * (gzip's header is held back with it, middleware/compress).
 */
async function brokenUpstream(
  how: 'cut' | 'stall',
): Promise<{ server: net.Server; address: string; hits: () => number }> {
  let hits = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', () => {
      hits++
      socket.write(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${DECLARED}\r\n\r\n${BODY.slice(0, 200)}`,
        () => {
          if (how === 'cut') socket.destroy()
        },
      )
    })
  })
  server.on('close', () => {
    for (const s of sockets) s.destroy()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits }
}

async function goodUpstream(): Promise<{ server: http.Server; address: string }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(BODY),
      'cache-control': 'max-age=300',
    })
    res.end(BODY)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}` }
}

/** The proxy's own error reply: its status, plain text body, X-Request-Id, nothing compressed. */
function assertErrorReply(a: Answer, status: number, text: string): void {
  assert.equal(a.status, status)
  assert.match(String(a.headers['content-type']), /^text\/plain/)
  assert.equal(a.body.toString(), `${status} ${text}\n`)
  assert.ok(a.headers['x-request-id'])
  assert.equal(a.headers['content-encoding'], undefined)
}

describe('compress: the upstream failing before the first compressed byte', () => {
  let cut: Awaited<ReturnType<typeof brokenUpstream>>
  let stall: Awaited<ReturnType<typeof brokenUpstream>>
  let good: Awaited<ReturnType<typeof goodUpstream>>
  let proxy: RunningProxy

  before(async () => {
    cut = await brokenUpstream('cut')
    stall = await brokenUpstream('stall')
    good = await goodUpstream()
    // `retried` lists the cutting server first; round robin still starts anywhere, so the test
    // below counts the cutting server's hits instead of assuming an order.
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  cut: { servers: ["${cut.address}"] }
  stall: { servers: ["${stall.address}"] }
  retried: { servers: ["${cut.address}", "${good.address}"], retries: 1 }
  good: { servers: ["${good.address}"] }
api_gateway:
  middlewares:
    compress: { encodings: [br, gzip] }
    cache: {}
  routes:
    cut: { path_pattern: "^/cut", upstream: cut, middlewares: [compress] }
    stall: { path_pattern: "^/stall", upstream: stall, timeout_secs: 0.5, middlewares: [compress] }
    retried: { path_pattern: "^/retried", upstream: retried, middlewares: [compress] }
    good: { path_pattern: "^/good", upstream: good, middlewares: [compress] }
    cached: { path_pattern: "^/cached", upstream: good, middlewares: [cache, compress] }
`)
  })

  after(async () => {
    await proxy?.stop()
    for (const s of [cut?.server, stall?.server, good?.server]) {
      if (s instanceof http.Server) s.closeAllConnections()
      await new Promise<void>((r) => (s === undefined ? r() : s.close(() => r())))
    }
  })

  for (const coding of ['br', 'gzip']) {
    test(`${coding}: a connection cut after 200 of 5000 bytes: 502, the proxy's reply, not a closed connection`, async () => {
      const a = await get(`${proxy.url}/cut`, coding)
      assertErrorReply(a, 502, 'upstream server closed the connection')
      const id = a.headers['x-request-id']
      const line = await proxy.waitForLog(
        (l) => l.request_id === id && l.status !== undefined,
        'its access line',
      )
      assert.equal(line.status, 502)
      assert.equal(line.error_type, 'upstream_reset')
    })
  }

  // Also gzip's case where its header, which zlib emits at the first write, would have gone out
  // long before the timeout had it not been held back with the head (middleware/compress).
  for (const coding of ['br', 'gzip']) {
    test(`${coding}: a body that stalls past the route timeout: 504`, async () => {
      const a = await get(`${proxy.url}/stall`, coding)
      assertErrorReply(a, 504, 'upstream server timed out')
    })
  }

  test('a GET cut by one server goes to the next: its compressed answer decodes to the body', async () => {
    const before = cut.hits()
    // Round robin: within two requests one starts at the cutting server.
    for (let i = 0; i < 2; i++) {
      const a = await get(`${proxy.url}/retried/${i}`, 'br')
      assert.equal(a.status, 200)
      assert.equal(a.headers['content-encoding'], 'br')
      assert.equal(zlib.brotliDecompressSync(a.body).toString(), BODY)
    }
    assert.ok(cut.hits() > before, 'the cutting server was tried')
  })

  test('an answer that arrives whole is compressed as before (br and gzip)', async () => {
    const br = await get(`${proxy.url}/good`, 'br')
    assert.equal(br.status, 200)
    assert.equal(br.headers['content-encoding'], 'br')
    assert.equal(zlib.brotliDecompressSync(br.body).toString(), BODY)
    const gz = await get(`${proxy.url}/good`, 'gzip')
    assert.equal(gz.headers['content-encoding'], 'gzip')
    assert.equal(zlib.gunzipSync(gz.body).toString(), BODY)
  })

  test('with cache on the route, what is stored is what the client was sent: the compressed bytes', async () => {
    const miss = await get(`${proxy.url}/cached`, 'br')
    assert.equal(miss.headers['x-cache'], 'MISS')
    assert.equal(zlib.brotliDecompressSync(miss.body).toString(), BODY)
    // Stored once the first response is over on the proxy's side.
    const hit = await until(async () => {
      const a = await get(`${proxy.url}/cached`, 'br')
      return a.headers['x-cache'] === 'HIT' && a
    }, 'a cache hit')
    assert.equal(hit.headers['content-encoding'], 'br')
    assert.equal(zlib.brotliDecompressSync(hit.body).toString(), BODY)
  })
})

describe('grpc_web: the upstream stalling after its head, before any message', () => {
  let upstream: http2.Http2Server
  const sessions = new Set<http2.ServerHttp2Session>()
  let proxy: RunningProxy

  before(async () => {
    // An h2c server that answers every call's head and then sends nothing more.
    upstream = http2.createServer()
    upstream.on('session', (session) => {
      sessions.add(session)
      session.on('close', () => sessions.delete(session))
    })
    upstream.on('stream', (stream) => {
      stream.on('error', () => {})
      stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const port = (upstream.address() as AddressInfo).port
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  echo: { servers: ["127.0.0.1:${port}"], protocol: h2c, retries: 0 }
api_gateway:
  middlewares:
    grpc_web: {}
  routes:
    echo: { path_pattern: "^/", upstream: echo, timeout_secs: 0.5, middlewares: [grpc_web] }
`)
  })

  after(async () => {
    await proxy?.stop()
    for (const s of sessions) s.destroy()
    await new Promise<void>((r) => upstream.close(() => r()))
  })

  test('past the route timeout the page gets DEADLINE_EXCEEDED it can read, not a closed connection', async () => {
    const a = await new Promise<Answer>((resolve, reject) => {
      const req = http.request(
        `${proxy.url}/locci.test.Echo/Unary`,
        { method: 'POST', agent: false, headers: { 'content-type': 'application/grpc-web+proto' } },
        (res) => collect(res, resolve, reject),
      )
      req.on('error', reject)
      // An empty EchoRequest message: flag 0, length 0.
      req.end(Buffer.alloc(5))
    })
    assert.equal(a.status, 200)
    assert.equal(a.headers['content-type'], 'application/grpc-web+proto')
    assert.equal(a.headers['grpc-status'], '4')
    assert.ok(a.headers['x-request-id'])
  })
})
