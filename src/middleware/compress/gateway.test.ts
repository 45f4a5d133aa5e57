// compress through the in-process harness (test/helpers/gateway.ts): the whole request path,
// the Exchange's response transformer included, against a real node:http upstream. Bodies are
// read raw (undici does not decode) and decoded here with Node's zlib.

import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'
import { request } from 'undici'
import { type Gateway, gateway } from '../../../test/helpers/gateway'
import { until } from '../../../test/helpers/until'

/** Hex of pseudo-random bytes, 128 KiB: enough literals for deflate to emit a first block. */
const NOISE = Array.from({ length: 16_384 }, (_, i) =>
  ((i * 2654435761) >>> 0).toString(16).padStart(8, '0'),
).join('')
const JSON_BODY = JSON.stringify(
  Array.from({ length: 300 }, (_, i) => ({ id: i, name: `user ${i}`, email: `u${i}@example.com` })),
)

describe('compress (in-process)', () => {
  let upstream: http.Server
  let gw: Gateway
  /** The SSE response the test is driving, and whether its client went away. */
  let events: http.ServerResponse | undefined
  let eventsClosed = false
  /** Drops the /drop connection; called once the client has the head (zlib answers asynchronously). */
  let drop: (() => void) | undefined

  before(async () => {
    upstream = http.createServer((req, res) => {
      const url = req.url ?? ''
      if (url === '/json') {
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(JSON_BODY),
          etag: '"v1"',
          vary: 'Origin',
          'accept-ranges': 'bytes',
        })
        res.end(req.method === 'HEAD' ? undefined : JSON_BODY)
      } else if (url === '/pre-encoded') {
        const gz = zlib.gzipSync(JSON_BODY)
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          'content-length': gz.length,
        })
        res.end(gz)
      } else if (url === '/not-modified') {
        res.writeHead(304, { etag: '"v1"' })
        res.end()
      } else if (url === '/events') {
        events = res
        eventsClosed = false
        res.on('close', () => {
          eventsClosed = !res.writableFinished
        })
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: first\n\n')
      } else if (url === '/drop') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000000' })
        res.write(NOISE)
        drop = () => req.socket.destroy()
      } else {
        res.writeHead(404).end()
      }
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const port = (upstream.address() as AddressInfo).port
    gw = await gateway(`
mode: api_gateway
server: {bind_address: "127.0.0.1:0"}
logging: {level: info}
upstreams:
  app: {servers: ["127.0.0.1:${port}"]}
middlewares:
  compress: {encodings: [br, gzip], levels: {gzip: 5}}
api_gateway:
  routes:
    app: {path_pattern: "^/", upstream: app, middlewares: [compress]}
`)
  })

  after(async () => {
    events?.destroy()
    await gw.close()
    upstream.closeAllConnections()
    await new Promise<void>((r) => upstream.close(() => r()))
  })

  async function raw(path: string, headers: Record<string, string>, method = 'GET') {
    const res = await request(`${gw.url}${path}`, { method, headers })
    const body = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, headers: res.headers, body }
  }

  for (const [coding, decode] of [
    ['gzip', zlib.gunzipSync],
    ['br', zlib.brotliDecompressSync],
  ] as const) {
    test(`${coding}: the body decodes to the upstream's, and the head says what was done`, async () => {
      const r = await raw('/json', { 'accept-encoding': coding })
      assert.equal(r.status, 200)
      assert.equal(r.headers['content-encoding'], coding)
      assert.equal(decode(r.body).toString(), JSON_BODY)
      assert.ok(r.body.length < JSON_BODY.length / 4, `${r.body.length} bytes on the wire`)
      assert.equal(r.headers['content-length'], undefined)
      assert.equal(r.headers['transfer-encoding'], 'chunked')
      assert.equal(r.headers['accept-ranges'], undefined)
      assert.equal(r.headers.etag, 'W/"v1"')
      assert.equal(r.headers.vary, 'Origin, Accept-Encoding')
    })
  }

  test('a client that accepts nothing we offer gets the body as it is, with Vary', async () => {
    const r = await raw('/json', { 'accept-encoding': 'deflate' })
    assert.equal(r.headers['content-encoding'], undefined)
    assert.equal(r.body.toString(), JSON_BODY)
    assert.equal(r.headers['content-length'], String(Buffer.byteLength(JSON_BODY)))
    assert.equal(r.headers.etag, '"v1"')
    assert.equal(r.headers.vary, 'Origin, Accept-Encoding')
  })

  test('HEAD keeps the upstream head (Content-Length, strong ETag)', async () => {
    const r = await raw('/json', { 'accept-encoding': 'gzip' }, 'HEAD')
    assert.equal(r.headers['content-encoding'], undefined)
    assert.equal(r.headers['content-length'], String(Buffer.byteLength(JSON_BODY)))
    assert.equal(r.headers.etag, '"v1"')
  })

  test('a response the upstream encoded passes untouched (never compressed twice)', async () => {
    const r = await raw('/pre-encoded', { 'accept-encoding': 'br, gzip' })
    assert.equal(r.headers['content-encoding'], 'gzip')
    assert.equal(zlib.gunzipSync(r.body).toString(), JSON_BODY)
  })

  test('304 passes untouched', async () => {
    const r = await raw('/not-modified', { 'accept-encoding': 'gzip' })
    assert.equal(r.status, 304)
    assert.equal(r.headers['content-encoding'], undefined)
    assert.equal(r.headers.etag, '"v1"')
  })

  test('a stream (no Content-Length) is flushed piece by piece: the first event decodes before the second is sent', async () => {
    const res = await request(`${gw.url}/events`, { headers: { 'accept-encoding': 'gzip' } })
    assert.equal(res.headers['content-encoding'], 'gzip')
    const gunzip = zlib.createGunzip()
    let text = ''
    gunzip.on('data', (c: Buffer) => {
      text += c.toString()
    })
    res.body.on('data', (c: Buffer) => gunzip.write(c))
    await until(() => text.includes('data: first\n\n'), 'the first event, decoded')
    events!.write('data: second\n\n')
    await until(() => text.includes('data: second\n\n'), 'the second event, decoded')
    events!.end()
    await new Promise<void>((r) => res.body.once('end', r))
  })

  test('a client leaving mid-stream cancels the upstream request', async () => {
    const res = await request(`${gw.url}/events`, { headers: { 'accept-encoding': 'br' } })
    assert.equal(res.headers['content-encoding'], 'br')
    await new Promise((r) => res.body.once('data', r))
    res.body.destroy()
    await until(() => eventsClosed, 'the upstream response closed before it finished')
    await until(
      () => gw.access().some((l) => l.path === '/events' && l.error_type === 'client_aborted'),
      'a 499 line',
    )
  })

  test('an upstream dropping mid-body cuts the compressed response short (no clean end)', async () => {
    const res = await request(`${gw.url}/drop`, { headers: { 'accept-encoding': 'gzip' } })
    assert.equal(res.headers['content-encoding'], 'gzip')
    // Dropped only now: before zlib's first output the head is held (proxy/forward.ts), and a drop
    // then is answered 502 (test/integration/compress-upstream-failure.test.ts).
    assert.ok(drop, 'the upstream got the request')
    drop()
    await assert.rejects(res.body.arrayBuffer())
  })
})
