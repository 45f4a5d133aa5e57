// compress against hostile peers. A compressing proxy holds a compressor per response, so a
// client that stops reading (or reads slowly) must hold the upstream back through the
// compressor rather than have the proxy buffer the body: with an upstream that streams for
// ever, anything else grows until the process dies. Several such clients are each held back.
// The Accept-Encoding header is the client's: a huge one, thousands of codings or garbage
// weights must be answered as quickly and as correctly as a plain one.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'
import { request } from 'undici'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rssOf } from '../helpers/raw'
import { until } from '../helpers/until'

/**
 * 64 KiB of text that compresses about 2:1 (hex of random bytes), new each time: a repeated
 * block would compress to nothing in brotli's window, and the client's buffers would never fill.
 */
const hex = () => Buffer.from(randomBytes(32 * 1024).toString('hex'))
const JSON_BODY = JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: i, name: `user ${i}` })))

describe('compress against hostile clients', () => {
  let upstream: http.Server
  let proxy: RunningProxy
  /** Bytes the upstream managed to write to every /forever response so far. */
  let written = 0
  /** /forever responses still open, and how many were closed before they finished. */
  let open = 0
  let aborted = 0

  before(async () => {
    upstream = http.createServer((req, res) => {
      if (req.url !== '/forever') {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(JSON_BODY),
        })
        res.end(JSON_BODY)
        return
      }
      // A stream that never ends, written only as fast as the proxy takes it.
      open++
      res.writeHead(200, { 'content-type': 'text/plain' })
      const pump = () => {
        while (!res.destroyed) {
          const chunk = hex()
          written += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
      }
      res.on('close', () => {
        open--
        aborted++
      })
      pump()
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["127.0.0.1:${(upstream.address() as AddressInfo).port}"] }
api_gateway:
  middlewares:
    compress: { encodings: [br, gzip] }
  routes:
    app: { path_pattern: "^/", upstream: app, middlewares: [compress] }
`)
  })

  after(async () => {
    await proxy?.stop('SIGKILL')
    upstream.closeAllConnections()
    await new Promise<void>((r) => upstream.close(() => r()))
  })

  /** A raw client asking for /forever compressed; counts what it reads while it reads. */
  function foreverClient(coding: string): { socket: net.Socket; got: () => number } {
    const socket = net.connect(proxy.port, '127.0.0.1')
    let got = 0
    socket.on('data', (d: Buffer) => {
      got += d.length
    })
    socket.on('error', () => undefined)
    socket.write(`GET /forever HTTP/1.1\r\nHost: x\r\nAccept-Encoding: ${coding}\r\n\r\n`)
    return { socket, got: () => got }
  }

  /** Resolves once `written` has not moved for one poll interval. */
  async function heldBack(what: string): Promise<number> {
    let last = -1
    await until(
      () => {
        const stable = written === last
        last = written
        return stable
      },
      what,
      30_000,
      400,
    )
    return written
  }

  test('a client that stops reading an endless stream holds the upstream back through the compressor', async (t) => {
    const rss0 = await rssOf(proxy.child.pid!)
    const before = written
    const c = foreverClient('gzip')
    t.after(() => c.socket.destroy())
    await until(() => c.got() > 256 * 1024, 'the compressed stream to start')
    c.socket.pause()
    const held = (await heldBack('the upstream to be held back')) - before
    // Socket buffers on three hops and the compressor's own: some megabytes, never the stream.
    assert.ok(
      held < 96 * 1024 * 1024,
      `the upstream wrote ${Math.round(held / 1e6)} MB before it was held back`,
    )
    // RSS moves by tens of MB whatever the body (the malloc arenas of zlib's threadpool, GC
    // timing); a body buffered instead of held back would add ~100 MB every second.
    const rss = await rssOf(proxy.child.pid!)
    assert.ok(rss - rss0 < 128 * 1024 * 1024, `proxy RSS grew by ${Math.round((rss - rss0) / 1e6)} MB`)

    // Reading slowly (64 KiB every 50 ms, well under what the upstream could send): the
    // upstream goes at the client's pace and the proxy's memory stays where it was.
    let maxRss = rss
    c.socket.resume()
    const start = c.got()
    const slowUntil = Date.now() + 3000
    while (Date.now() < slowUntil) {
      c.socket.pause()
      await new Promise((r) => setTimeout(r, 50))
      c.socket.resume()
      await new Promise((r) => setImmediate(r))
      maxRss = Math.max(maxRss, await rssOf(proxy.child.pid!))
    }
    assert.ok(c.got() > start, 'the slow client kept receiving')
    assert.ok(maxRss - rss0 < 128 * 1024 * 1024, `proxy RSS grew by ${Math.round((maxRss - rss0) / 1e6)} MB`)

    // The client leaves: the upstream request is cancelled, not left pumping into a compressor.
    const abortedBefore = aborted
    c.socket.destroy()
    await until(() => aborted > abortedBefore, 'the upstream request to be cancelled')
  })

  test('ten br clients that stop reading are each held back, at a bounded cost', async () => {
    const rss0 = await rssOf(proxy.child.pid!)
    const clients = Array.from({ length: 10 }, () => foreverClient('br'))
    await until(() => clients.every((c) => c.got() > 0), 'every stream to start', 20_000)
    for (const c of clients) c.socket.pause()
    await heldBack('every upstream to be held back')
    const rss = await rssOf(proxy.child.pid!)
    // Each holds a compressor and stream buffers, about 1 MB (measured with 50 clients; 4.5 MB
    // with brotli's default 4 MiB window, which index.ts narrows to 512 KiB). The bound leaves
    // room for RSS noise (see above) and catches a client that costs its stream.
    assert.ok(
      rss - rss0 < 128 * 1024 * 1024,
      `proxy RSS grew by ${Math.round((rss - rss0) / 1e6)} MB for 10 clients`,
    )
    for (const c of clients) c.socket.destroy()
    await until(() => open === 0, 'every upstream request to be cancelled')
  })

  const AE: Array<{ desc: string; header: string; coding: string | undefined }> = [
    {
      desc: 'a 15 KiB Accept-Encoding of junk codings ending in gzip',
      header: `${'junk, '.repeat(2500)}gzip`,
      coding: 'gzip',
    },
    {
      desc: 'thousands of codings, every one refused',
      header: Array.from({ length: 1500 }, (_, i) => `c${i};q=0`).join(','),
      coding: undefined,
    },
    {
      desc: 'garbage weights only',
      header: 'gzip;q=abc, br;q=1.5, gzip;q=, br;q=-1, gzip;q=0.1234',
      coding: undefined,
    },
    { desc: 'garbage weights beside a good one', header: 'br;q=9, gzip;q=0.5', coding: 'gzip' },
    {
      desc: 'control characters and bytes above 0x7f',
      header: 'gz\u00e9ip,\tbr\u00ff, gzip',
      coding: 'gzip',
    },
    { desc: 'a late ; after thousands of commas', header: `${','.repeat(14000)}br;q=0.5`, coding: 'br' },
  ]
  for (const c of AE) {
    test(`${c.desc}: answered ${c.coding ?? 'as it is'}`, async () => {
      const t0 = performance.now()
      const res = await request(`${proxy.url}/json`, { headers: { 'accept-encoding': c.header } })
      const body = Buffer.from(await res.body.arrayBuffer())
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-encoding'], c.coding)
      const text =
        c.coding === 'gzip'
          ? zlib.gunzipSync(body)
          : c.coding === 'br'
            ? zlib.brotliDecompressSync(body)
            : body
      assert.equal(text.toString(), JSON_BODY)
      assert.ok(performance.now() - t0 < 2000, 'answered promptly')
    })
  }
})
