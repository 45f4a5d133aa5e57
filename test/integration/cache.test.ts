// The cache middleware on the wire: the real binary in front of a real node:http upstream that
// counts what reaches it. Hits, misses, revalidation with 304, stale-if-error, coalescing,
// eviction, purge through the control API (one process and workers), and hostile cases.

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { makeCert } from '../helpers/certs'
import { h2Get } from '../helpers/h2'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { until } from '../helpers/until'

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void

const HUGE = Buffer.alloc(3 * 1024 * 1024, 'h')

/** Per path: what the upstream answers; `n` is how many times that path was asked, this one included. */
const handlers: Record<string, Handler> = {
  '/fresh': (_q, s, n) =>
    s.writeHead(200, { 'cache-control': 'max-age=300', 'content-type': 'text/plain' }).end(`fresh ${n}`),
  '/etag': (q, s, n) => {
    if (q.headers['if-none-match'] === '"v1"')
      return s.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' }).end()
    s.writeHead(200, { etag: '"v1"', 'cache-control': 'no-cache', 'content-type': 'text/plain' }).end(
      `etag ${n}`,
    )
  },
  '/lm': (q, s, n) => {
    const lm = 'Mon, 30 Nov 2026 10:00:00 GMT'
    if (q.headers['if-modified-since'] === lm)
      return s.writeHead(304, { 'cache-control': 'max-age=300' }).end()
    s.writeHead(200, { 'last-modified': lm, 'cache-control': 'max-age=300' }).end(`lm ${n}`)
  },
  '/sie': (_q, s, n) => {
    if (n > 1) return s.writeHead(500).end('broken')
    s.writeHead(200, { 'cache-control': 'max-age=300, stale-if-error=600' }).end('sie 1')
  },
  '/slow': (_q, s, n) => {
    // Held long enough for the other concurrent requests to reach the proxy and queue behind it.
    setTimeout(() => s.writeHead(200, { 'cache-control': 'max-age=300' }).end(`slow ${n}`), 1500)
  },
  '/swr': (_q, s, n) =>
    s.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=600' }).end(`swr ${n}`),
  '/down': (_q, s) => s.writeHead(200, { 'cache-control': 'max-age=300, stale-if-error=600' }).end('down 1'),
  '/corsy': (q, s, n) =>
    s
      .writeHead(200, { 'cache-control': 'max-age=300', vary: 'Accept-Language' })
      .end(`${q.headers['accept-language'] ?? '-'} ${n}`),
  '/vary-star': (_q, s, n) =>
    s.writeHead(200, { 'cache-control': 'max-age=300', vary: '*' }).end(`star ${n}`),
  '/vary-lang': (q, s, n) =>
    s
      .writeHead(200, { 'cache-control': 'max-age=300', vary: 'Accept-Language' })
      .end(`${q.headers['accept-language'] ?? '-'} ${n}`),
  '/malformed': (_q, s, n) =>
    s.writeHead(200, { 'cache-control': 'max-age=abc, ,=,"' }).end(`malformed ${n}`),
  '/cookie': (_q, s, n) =>
    s.writeHead(200, { 'cache-control': 'max-age=300', 'set-cookie': 'a=1' }).end(`cookie ${n}`),
  '/private': (_q, s, n) => s.writeHead(200, { 'cache-control': 'private, max-age=300' }).end(`private ${n}`),
  '/none': (_q, s, n) => s.writeHead(200).end(`none ${n}`),
  '/public': (_q, s, n) => s.writeHead(200, { 'cache-control': 'public, max-age=300' }).end(`public ${n}`),
  '/huge': (_q, s) =>
    s.writeHead(200, { 'cache-control': 'max-age=300', 'content-length': HUGE.length }).end(HUGE),
  '/huge-chunked': (_q, s) => {
    s.writeHead(200, { 'cache-control': 'max-age=300' })
    for (let i = 0; i < 6; i++) s.write(HUGE.subarray(i * 512 * 1024, (i + 1) * 512 * 1024))
    s.end()
  },
  '/abort': (_q, s, n) => {
    s.writeHead(200, { 'cache-control': 'max-age=300', 'content-length': 200_000 })
    s.write(Buffer.alloc(1000, 'a'))
    // The first answer never finishes (the client leaves); later ones do.
    if (n > 1) s.end(Buffer.alloc(199_000, 'a'))
  },
}

function hitsOf(seen: string[], url: string): number {
  return seen.filter((u) => u === url).length
}

interface Got {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

function get(base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

async function startUpstream(): Promise<{
  server: http.Server
  address: string
  seen: string[]
  heads: http.IncomingHttpHeaders[]
}> {
  const seen: string[] = []
  const heads: http.IncomingHttpHeaders[] = []
  const server = http.createServer((req, res) => {
    const url = req.url ?? ''
    seen.push(url)
    heads.push(req.headers)
    const path = url.split('?')[0]!
    const h = handlers[path] ?? handlers[`/${path.split('/')[1]}`]
    if (req.method === 'POST') return res.writeHead(204).end()
    if (h) h(req, res, hitsOf(seen, url))
    else res.writeHead(200, { 'cache-control': 'max-age=300' }).end(`${url} ${'x'.repeat(1000)}`)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen, heads }
}

function config(address: string, extra = ''): string {
  return `mode: load_balancer
server: { bind_address: "127.0.0.1:0"${extra} }
upstreams:
  app: { servers: ["${address}"] }
middlewares:
  small_cache: { type: cache, max_bytes: 30000, max_entry_bytes: 4000 }
load_balancer: { upstream: app, middlewares: [small_cache] }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`
}

describe('cache on the wire', () => {
  let up: Awaited<ReturnType<typeof startUpstream>>
  let proxy: RunningProxy
  let big: RunningProxy
  let base: string

  before(async () => {
    up = await startUpstream()
    proxy = await startProxy(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  middlewares:
    cache: { max_entry_bytes: 1000000 }
    cors: { allowed_origins: ["https://a.example"] }
    key: { type: api_key, keys: [{ consumer: c, key: k1k1k1k1k1k1k1k1k1k1 }] }
  routes:
    corsy: { path_pattern: "^/corsy", upstream: app, middlewares: [cors, cache] }
    keyed: { path_pattern: "^/keyed", upstream: app, middlewares: [cache, key] }
    all: { path_pattern: "^/", upstream: app, middlewares: [cache] }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`,
    )
    base = proxy.url
    big = await startProxy(config(up.address))
  })
  after(async () => {
    await proxy?.stop()
    await big?.stop()
    up?.server.close()
  })

  test('a miss goes upstream, the next GET and a HEAD are hits with Age', async () => {
    const a = await get(base, '/fresh')
    assert.equal(a.headers['x-cache'], 'MISS')
    assert.equal(a.body, 'fresh 1')
    const b = await get(base, '/fresh')
    assert.equal(b.headers['x-cache'], 'HIT')
    assert.equal(b.body, 'fresh 1')
    assert.match(String(b.headers.age), /^\d+$/)
    assert.equal(b.headers['content-type'], 'text/plain')
    assert.ok(b.headers['x-request-id'])
    const h = await get(base, '/fresh', {}, 'HEAD')
    assert.equal(h.headers['x-cache'], 'HIT')
    assert.equal(h.body, '')
    assert.equal(h.headers['content-length'], '7')
    assert.equal(hitsOf(up.seen, '/fresh'), 1)
    // Another query string is another resource.
    assert.equal((await get(base, '/fresh?x=1')).headers['x-cache'], 'MISS')
  })

  test('a HEAD miss is not stored; the GET after it is a miss', async () => {
    assert.equal((await get(base, '/headfirst', {}, 'HEAD')).headers['x-cache'], 'MISS')
    assert.equal((await get(base, '/headfirst')).headers['x-cache'], 'MISS')
    assert.equal((await get(base, '/headfirst')).headers['x-cache'], 'HIT')
  })

  test('no-cache with an ETag: revalidated each time, a 304 gives the client the stored 200', async () => {
    const a = await get(base, '/etag')
    assert.equal(a.headers['x-cache'], 'MISS')
    const b = await get(base, '/etag')
    assert.equal(b.status, 200)
    assert.equal(b.body, 'etag 1', 'the stored body')
    assert.equal(b.headers['x-cache'], 'HIT')
    assert.equal(b.headers.etag, '"v1"')
    assert.equal(hitsOf(up.seen, '/etag'), 2)
    assert.equal(up.heads[up.seen.lastIndexOf('/etag')]!['if-none-match'], '"v1"')
  })

  test("a client's no-cache or max-age=0 revalidates a fresh entry (Last-Modified)", async () => {
    assert.equal((await get(base, '/lm')).body, 'lm 1')
    for (const cc of ['no-cache', 'max-age=0']) {
      const r = await get(base, '/lm', { 'cache-control': cc })
      assert.equal(r.status, 200)
      assert.equal(r.body, 'lm 1')
      assert.equal(r.headers['x-cache'], 'HIT')
      assert.equal(
        up.heads[up.seen.lastIndexOf('/lm')]!['if-modified-since'],
        'Mon, 30 Nov 2026 10:00:00 GMT',
      )
    }
    assert.equal((await get(base, '/lm', { pragma: 'no-cache' })).body, 'lm 1')
    assert.equal(hitsOf(up.seen, '/lm'), 4)
    // A malformed Cache-Control from the client is no directive at all: a plain hit.
    const m = await get(base, '/lm', { 'cache-control': '=,"max-age=zz' })
    assert.equal(m.headers['x-cache'], 'HIT')
    assert.equal(hitsOf(up.seen, '/lm'), 4)
  })

  test('stale-if-error: a 500 on revalidation serves the stored response as STALE', async () => {
    assert.equal((await get(base, '/sie')).body, 'sie 1')
    const r = await get(base, '/sie', { 'cache-control': 'max-age=0' })
    assert.equal(r.status, 200)
    assert.equal(r.body, 'sie 1')
    assert.equal(r.headers['x-cache'], 'STALE')
    assert.equal(hitsOf(up.seen, '/sie'), 2)
  })

  test('stale-while-revalidate: the stale entry at once, refreshed in the background', async () => {
    assert.equal((await get(base, '/swr')).body, 'swr 1')
    // Stale once a second has passed (max-age=1): until then each GET is a hit.
    const stale = await until(async () => {
      const r = await get(base, '/swr')
      return r.headers['x-cache'] === 'STALE' && r
    }, 'a STALE answer')
    assert.equal(stale.body, 'swr 1')
    await until(() => hitsOf(up.seen, '/swr') >= 2, 'the background revalidation')
    await until(async () => (await get(base, '/swr')).body === 'swr 2', 'the refreshed entry served')
  })

  test('a middleware after cache still guards hits (api_key)', async () => {
    const ok = { 'x-api-key': 'k1k1k1k1k1k1k1k1k1k1' }
    assert.equal((await get(base, '/keyed', ok)).headers['x-cache'], 'MISS')
    assert.equal((await get(base, '/keyed', ok)).headers['x-cache'], 'HIT')
    const refused = await get(base, '/keyed')
    assert.equal(refused.status, 401)
    assert.equal(refused.headers['x-cache'], undefined)
    assert.equal(hitsOf(up.seen, '/keyed'), 1)
  })

  test("the upstream's Vary holds with cors on the route (which adds its own Vary: Origin)", async () => {
    const en = { 'accept-language': 'en', origin: 'https://a.example' }
    assert.equal((await get(base, '/corsy', en)).body, 'en 1')
    assert.equal((await get(base, '/corsy', { 'accept-language': 'fr' })).body, 'fr 2')
    const again = await get(base, '/corsy', en)
    assert.equal(again.body, 'en 1')
    assert.equal(again.headers['x-cache'], 'HIT')
    assert.equal(again.headers['access-control-allow-origin'], 'https://a.example')
    const other = await get(base, '/corsy', { 'accept-language': 'fr', origin: 'https://b.example' })
    assert.equal(other.body, 'fr 2')
    assert.equal(other.headers['access-control-allow-origin'], undefined, 'CORS is per request, not stored')
  })

  test('concurrent misses for one key make one upstream request', async () => {
    const all = await Promise.all(Array.from({ length: 8 }, () => get(base, '/slow')))
    for (const r of all) assert.equal(r.body, 'slow 1')
    assert.equal(hitsOf(up.seen, '/slow'), 1)
    assert.equal(all.filter((r) => r.headers['x-cache'] === 'MISS').length, 1)
  })

  test('Vary: entries by the listed request header; Vary: * is never stored', async () => {
    const en = { 'accept-language': 'en' }
    assert.equal((await get(base, '/vary-lang', en)).body, 'en 1')
    assert.equal((await get(base, '/vary-lang', { 'accept-language': 'fr' })).body, 'fr 2')
    const again = await get(base, '/vary-lang', en)
    assert.equal(again.body, 'en 1')
    assert.equal(again.headers['x-cache'], 'HIT')
    assert.equal((await get(base, '/vary-star')).body, 'star 1')
    assert.equal((await get(base, '/vary-star')).headers['x-cache'], 'MISS')
  })

  test('not stored: Set-Cookie, private, no freshness, malformed Cache-Control, Authorization without public', async () => {
    for (const p of ['/cookie', '/private', '/none', '/malformed']) {
      assert.equal((await get(base, p)).status, 200)
      const r = await get(base, p)
      assert.equal(r.headers['x-cache'], 'MISS', p)
      assert.equal(r.body, `${p.slice(1)} 2`)
    }
    const auth = { authorization: 'Bearer x' }
    await get(base, '/auth-fresh', auth)
    assert.equal((await get(base, '/auth-fresh', auth)).headers['x-cache'], 'MISS')
    await get(base, '/public', auth)
    assert.equal((await get(base, '/public', auth)).headers['x-cache'], 'HIT')
  })

  test('a successful POST invalidates the stored GET of its URI', async () => {
    await get(base, '/inv')
    assert.equal((await get(base, '/inv')).headers['x-cache'], 'HIT')
    assert.equal((await get(base, '/inv', {}, 'POST')).status, 204)
    assert.equal((await get(base, '/inv')).headers['x-cache'], 'MISS')
  })

  test('a response over max_entry_bytes reaches the client whole and is not stored', async () => {
    for (const p of ['/huge', '/huge-chunked']) {
      for (let i = 0; i < 2; i++) {
        const r = await get(big.url, p)
        assert.equal(r.body.length, HUGE.length)
        assert.equal(r.headers['x-cache'], 'MISS')
      }
      assert.equal(hitsOf(up.seen, p), 2)
    }
  })

  test('a client leaving mid-response stores nothing', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${base}/abort`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', () => undefined)
      setTimeout(() => reject(new Error('no first chunk')), 10_000).unref()
    })
    await until(() => hitsOf(up.seen, '/abort') === 1, 'the first request upstream')
    const r = await until(async () => {
      const g = await get(base, '/abort')
      return g
    }, 'a second answer')
    assert.equal(r.headers['x-cache'], 'MISS')
    assert.equal(r.body.length, 200_000)
    assert.equal((await get(base, '/abort')).headers['x-cache'], 'HIT')
  })

  test('max_bytes bounds the store: least recently used entries are evicted', async () => {
    // Each entry is about 1.5 KB of a 30 KB store: 60 of them cannot all stay.
    for (let i = 0; i < 60; i++) assert.equal((await get(big.url, `/lru/${i}`)).headers['x-cache'], 'MISS')
    assert.equal((await get(big.url, '/lru/59')).headers['x-cache'], 'HIT')
    assert.equal((await get(big.url, '/lru/0')).headers['x-cache'], 'MISS')
  })

  test('purge through the control API, by path and by prefix', async () => {
    for (const p of ['/p/1', '/p/2', '/p/3', '/q']) await get(base, p)
    const del = async (q: string) => {
      const r = await fetch(`${proxy.controlUrl}/api/v1/cache?${q}`, { method: 'DELETE' })
      assert.equal(r.status, 200)
      return (await r.json()) as { purged: number }
    }
    assert.deepEqual(await del('path=/p/1'), { purged: 1 })
    assert.equal((await get(base, '/p/1')).headers['x-cache'], 'MISS')
    assert.equal((await get(base, '/p/2')).headers['x-cache'], 'HIT')
    assert.deepEqual(await del('prefix=/p/'), { purged: 3 })
    assert.equal((await get(base, '/p/2')).headers['x-cache'], 'MISS')
    assert.equal((await get(base, '/q')).headers['x-cache'], 'HIT')
  })
})

describe('cache with its upstream down', () => {
  test('stale-if-error answers with the stored response; without it the error is the answer', async () => {
    const up = await startUpstream()
    const proxy = await startProxy(config(up.address))
    try {
      assert.equal((await get(proxy.url, '/down')).body, 'down 1')
      assert.equal((await get(proxy.url, '/plain')).headers['x-cache'], 'MISS')
      await new Promise<void>((r) => up.server.close(() => r()))
      up.server.closeAllConnections()
      for (let i = 0; i < 3; i++) {
        // Refused connections, then (passive health) no server to try: stale either way.
        const r = await get(proxy.url, '/down', { 'cache-control': 'max-age=0' })
        assert.equal(r.status, 200)
        assert.equal(r.body, 'down 1')
        assert.equal(r.headers['x-cache'], 'STALE')
      }
      const plain = await get(proxy.url, '/plain', { 'cache-control': 'no-cache' })
      assert.ok(plain.status === 502 || plain.status === 503, `${plain.status}`)
    } finally {
      await proxy.stop()
    }
  })
})

describe('cache over HTTP/2', () => {
  test('a hit is answered over HTTP/2', async () => {
    const up = await startUpstream()
    const cert = await makeCert(mkdtempSync(path.join(tmpdir(), 'locci-cache-')), 'localhost')
    const proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  tls: { cert_path: ${cert.certPath}, key_path: ${cert.keyPath} }
upstreams: { app: { servers: ["${up.address}"] } }
middlewares: { cache: {} }
load_balancer: { upstream: app, middlewares: [cache] }
`)
    const h2get = (p: string) => h2Get(proxy.url, p, { ca: cert.cert, servername: 'localhost' })
    try {
      for (const p of ['/fresh', '/lm']) {
        const a = await h2get(p)
        assert.equal(a.headers['x-cache'], 'MISS', p)
        const b = await h2get(p)
        assert.equal(b.headers[':status'], 200)
        assert.equal(b.headers['x-cache'], 'HIT', p)
        assert.equal(b.body, a.body)
      }
      assert.equal(hitsOf(up.seen, '/fresh'), 1)
    } finally {
      await proxy.stop()
      up.server.close()
    }
  })
})

describe('cache with workers', () => {
  test('a purge reaches every worker', async () => {
    const up = await startUpstream()
    const proxy = await startProxy(config(up.address, ', workers: 2'))
    try {
      // New connections are spread over the workers; each worker stores its own copy.
      for (let i = 0; i < 12; i++) await get(proxy.url, '/w')
      const stored = hitsOf(up.seen, '/w')
      assert.ok(stored >= 1 && stored <= 2)
      const r = await fetch(`${proxy.controlUrl}/api/v1/cache?path=/w`, { method: 'DELETE' })
      assert.deepEqual(await r.json(), { purged: stored })
    } finally {
      await proxy.stop()
      up.server.close()
    }
  })
})

describe('cache config', () => {
  test('store: redis needs redis_url; Redis settings without it and max_bytes with it are refused', () => {
    const { file } = writeConfig(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { app: { servers: ["127.0.0.1:9"] } }
middlewares:
  c1: { type: cache, store: redis }
  c2: { type: cache, redis_url: "redis://127.0.0.1:6379" }
  c3: { type: cache, max_bytes: 10, max_entry_bytes: 20 }
  c4: { type: cache, store: redis, redis_url: "redis://127.0.0.1:6379", max_bytes: 10 }
  c5: { type: cache, key_prefix: "x:" }
load_balancer: { upstream: app, middlewares: [c1, c2, c3, c4, c5] }
`)
    const r = runCli(['validate', '-c', file])
    assert.notEqual(r.status, 0)
    const out = r.stdout + r.stderr
    assert.match(out, /c1\.redis_url.*is required with store: redis/)
    assert.match(out, /c2\.redis_url.*is only used with store: redis/)
    assert.match(out, /max_entry_bytes.*larger than max_bytes/)
    assert.match(out, /c4\.max_bytes.*only applies to store: memory/)
    assert.match(out, /c5\.key_prefix.*is only used with store: redis/)
  })
})
