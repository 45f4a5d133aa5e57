// The cache with `store: redis`: two proxy processes share entries through a real redis-server
// (started here on a free port). What one stored the other serves as a HIT (Vary variants too);
// an unsafe method through one invalidates for both; a purge through one's control API (by path
// and by prefix) empties it for both; entries carry a TTL from freshness plus stale windows;
// entry size limit and key prefix hold; with Redis stopped both fail open (every request answered
// from upstream, one warning per outage) and share again once it is back.

import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import Redis from 'ioredis'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { type RunningRedis, startRedis } from '../helpers/redis'
import { until } from '../helpers/until'

const BIG = Buffer.alloc(200_000, 'b')
let hits: Record<string, number> = {}

function upstream(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!
    const n = (hits[path] ?? 0) + 1
    hits[path] = n
    if (req.method !== 'GET' && req.method !== 'HEAD') return res.writeHead(204).end()
    if (path === '/big') return res.writeHead(200, { 'cache-control': 'max-age=300' }).end(BIG)
    if (path === '/short')
      return res.writeHead(200, { 'cache-control': 'max-age=30, stale-if-error=100' }).end(`short ${n}`)
    if (path.startsWith('/lang'))
      return res
        .writeHead(200, { 'cache-control': 'max-age=300', vary: 'Accept-Language' })
        .end(`${req.headers['accept-language'] ?? '-'} ${n}`)
    res.writeHead(200, { 'cache-control': 'max-age=300', 'content-type': 'text/plain' }).end(`${path} ${n}`)
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

const config = (up: number, redisUrl: string) => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { app: { servers: ["127.0.0.1:${up}"] } }
middlewares:
  shared: { type: cache, store: redis, redis_url: "${redisUrl}", key_prefix: "t:cache:", max_entry_bytes: 100000 }
load_balancer: { upstream: app, middlewares: [shared] }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`

/** A GET with the Host both proxies would see behind one name (the cache key includes it). */
function get(
  p: RunningProxy,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; cache: string | null }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${p.url}${path}`, { headers: { host: 'shop.example', ...headers }, agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => {
          body += c
        })
        res.on('end', () =>
          resolve({ status: res.statusCode!, body, cache: (res.headers['x-cache'] as string) ?? null }),
        )
      })
      .on('error', reject)
  })
}

describe('cache: store redis shared by two proxies', () => {
  let redis: RunningRedis
  let up: http.Server
  let a: RunningProxy
  let b: RunningProxy
  let client: Redis
  /** Resolves once an entry for `path` is in Redis (stores are fire-and-forget). */
  const stored = (path: string) =>
    until(async () => (await client.keys(`t:cache:e:${path}\n*`)).length > 0, `${path} stored in Redis`)
  before(async () => {
    redis = await startRedis()
    client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    up = await upstream()
    const port = (up.address() as AddressInfo).port
    a = await startProxy(config(port, redis.url))
    b = await startProxy(config(port, redis.url))
  })
  after(async () => {
    client.disconnect()
    await a.stop()
    await b.stop()
    await redis.stop()
    up.close()
  })

  test('what one proxy stored, the other serves as a HIT', async () => {
    hits = {}
    assert.deepEqual(await get(a, '/one'), { status: 200, body: '/one 1', cache: 'MISS' })
    await stored('/one')
    assert.deepEqual(await get(b, '/one'), { status: 200, body: '/one 1', cache: 'HIT' })
    assert.equal(hits['/one'], 1)
  })

  test('Vary variants are shared too', async () => {
    hits = {}
    await get(a, '/lang', { 'accept-language': 'fr' })
    await until(async () => (await client.keys('t:cache:e:/lang\n*')).length === 1, 'fr stored')
    await get(a, '/lang', { 'accept-language': 'de' })
    await until(async () => (await client.keys('t:cache:e:/lang\n*')).length === 2, 'de stored')
    assert.deepEqual(await get(b, '/lang', { 'accept-language': 'fr' }), {
      status: 200,
      body: 'fr 1',
      cache: 'HIT',
    })
    assert.deepEqual(await get(b, '/lang', { 'accept-language': 'de' }), {
      status: 200,
      body: 'de 2',
      cache: 'HIT',
    })
  })

  test('keys carry the prefix and a TTL from freshness and stale windows', async () => {
    await get(a, '/short')
    const keys = await until(async () => {
      const k = await client.keys('t:cache:e:/short*')
      return k.length === 1 && k
    }, 'the entry key in Redis')
    const ttl = await client.pttl(keys[0]!)
    assert.ok((await client.pttl((await client.keys('t:cache:v:/short*'))[0]!)) >= ttl - 1000)
    // max-age=30 + stale-if-error=100: about 130 s, never unbounded (-1).
    assert.ok(ttl > 100_000 && ttl <= 130_000, `ttl ${ttl}`)
  })

  test('a response over max_entry_bytes is served but not stored', async () => {
    hits = {}
    assert.equal((await get(a, '/big')).body.length, BIG.length)
    assert.equal((await get(b, '/big')).cache, 'MISS')
    assert.equal(hits['/big'], 2)
  })

  test('an unsafe method through one proxy invalidates for both', async () => {
    hits = {}
    await get(a, '/inv')
    await stored('/inv')
    assert.equal((await get(b, '/inv')).cache, 'HIT')
    const status = await new Promise<number>((resolve, reject) => {
      http
        .request(
          `${b.url}/inv`,
          { method: 'DELETE', headers: { host: 'shop.example' }, agent: false },
          (res) => {
            res.resume()
            resolve(res.statusCode!)
          },
        )
        .on('error', reject)
        .end()
    })
    assert.equal(status, 204)
    await until(async () => (await client.keys('t:cache:v:/inv\n*')).length === 0, 'the Vary record gone')
    assert.equal((await get(a, '/inv')).cache, 'MISS')
  })

  test('a purge through one control API empties the shared store (path, then prefix)', async () => {
    hits = {}
    for (const p of ['/docs/a', '/docs/b', '/other']) {
      await get(a, p)
      await stored(p)
    }
    const byPath = await fetch(`${a.controlUrl}/api/v1/cache?path=/docs/a`, { method: 'DELETE' })
    assert.deepEqual(await byPath.json(), { purged: 1 })
    assert.equal((await get(b, '/docs/a')).cache, 'MISS')
    assert.equal((await get(b, '/docs/b')).cache, 'HIT')
    const byPrefix = await fetch(`${b.controlUrl}/api/v1/cache?prefix=/docs/`, { method: 'DELETE' })
    const { purged } = (await byPrefix.json()) as { purged: number }
    assert.ok(purged >= 1, `purged ${purged}`)
    assert.equal((await get(a, '/docs/b')).cache, 'MISS')
    assert.equal((await get(a, '/other')).cache, 'HIT')
  })

  test('with Redis down both fail open, warn once, and share again once it is back', async () => {
    const port = redis.port
    await redis.stop()
    hits = {}
    for (let i = 0; i < 5; i++) {
      const r = await get(a, '/while-down')
      assert.equal(r.status, 200)
      assert.equal(r.cache, 'MISS')
    }
    assert.equal(hits['/while-down'], 5)
    const warnings = a.logs.filter(
      (l) => l.msg === 'cache store (redis) unavailable; serving from upstream until it is back',
    )
    assert.equal(warnings.length, 1)
    // The same port again (the clients reconnect to the URL they have).
    redis = await startRedis({ port })
    await until(
      async () => {
        await get(a, '/back')
        return (await get(b, '/back')).cache === 'HIT'
      },
      'sharing again after Redis is back',
      20_000,
    )
  })
})
