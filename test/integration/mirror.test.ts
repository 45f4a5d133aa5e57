// Request mirroring against real upstreams and the real binary: the mirror group gets copies
// (headers as the main upstream got them, POST bodies included, chunked ones too), `percent` is
// observed over 1,000 requests, a mirror that never answers does not hold the client (every
// answer arrives while it hangs; copies past max_in_flight are dropped and counted), a body over
// max_body_bytes is not mirrored, and the counters show on /metrics.

import assert from 'node:assert/strict'
import http from 'node:http'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const config = (main: Upstream, shadow: Upstream, mirror: string, extra = '') => `mode: api_gateway
server: { bind_address: "127.0.0.1:0", ops_bind_address: "127.0.0.1:0", shutdown_timeout_secs: 1 }
upstreams:
  main:
    servers: ["${main.address}"]
  shadow:
    servers: ["${shadow.address}"]
api_gateway:
  routes:
    api:
      path_pattern: "^/api"
      upstream: main
      mirror: ${mirror}
${extra}`

async function metrics(p: RunningProxy): Promise<string> {
  const line = p.logs.find((l) => l.msg === 'locci-proxy listening')!
  return (await fetch(`${String(line.ops).replace('0.0.0.0', '127.0.0.1')}/metrics`)).text()
}

function counter(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

/** A request with a chunked body (no Content-Length), sent in `parts`. */
function chunkedPost(
  p: RunningProxy,
  path: string,
  parts: string[],
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${p.url}${path}`, { method: 'POST', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', reject)
    for (const part of parts) req.write(part)
    req.end()
  })
}

/** Runs `f` against a proxy on `yaml` with a main and a shadow upstream, then stops them all. */
async function withProxy(
  yaml: (main: Upstream, shadow: Upstream) => string,
  f: (s: { main: Upstream; shadow: Upstream; p: RunningProxy }) => Promise<void>,
): Promise<void> {
  const main = await startUpstream('main')
  const shadow = await startUpstream('shadow')
  try {
    const p = await startProxy(yaml(main, shadow))
    try {
      await f({ main, shadow, p })
    } finally {
      await p.stop()
    }
  } finally {
    await main.close()
    await shadow.close()
  }
}

describe('mirror: copies reach the mirror group', () => {
  let main: Upstream
  let shadow: Upstream
  let p: RunningProxy
  before(async () => {
    main = await startUpstream('main')
    shadow = await startUpstream('shadow')
    p = await startProxy(
      config(
        main,
        shadow,
        '{ upstream: shadow }',
        '    other: { path_pattern: "^/other", upstream: main }\n',
      ),
    )
  })
  after(async () => {
    await p.stop()
    await main.close()
    await shadow.close()
  })

  test('a GET and a POST body are mirrored with the headers the main upstream got', async () => {
    const get = await fetch(`${p.url}/api/items?x=1`, { headers: { 'x-request-id': 'mirror-get-1' } })
    assert.equal(get.status, 200)
    assert.equal(get.headers.get('x-upstream'), 'main')
    await get.text()
    const post = await fetch(`${p.url}/api/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'mirror-post-1' },
      body: '{"name":"widget"}',
    })
    assert.equal(post.status, 200)
    assert.equal(((await post.json()) as { server: string }).server, 'main')
    const copies = await until(() => shadow.seen.length >= 2 && shadow.seen, 'two mirrored copies')
    const g = copies.find((s) => s.headers['x-request-id'] === 'mirror-get-1')!
    const m = main.seen.find((s) => s.headers['x-request-id'] === 'mirror-get-1')!
    assert.equal(g.method, 'GET')
    assert.equal(g.url, '/api/items?x=1')
    for (const h of ['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']) {
      assert.equal(g.headers[h], m.headers[h], h)
    }
    const b = copies.find((s) => s.headers['x-request-id'] === 'mirror-post-1')!
    assert.equal(b.method, 'POST')
    assert.equal(b.body, '{"name":"widget"}')
    assert.equal(b.headers['content-type'], 'application/json')
    assert.equal(b.headers['content-length'], '17')
  })

  test('a chunked body is mirrored whole, framed by its length', async () => {
    const before = shadow.seen.length
    const r = await chunkedPost(p, '/api/chunked', ['part one, ', 'part two'])
    assert.equal(r.status, 200)
    const copy = await until(() => shadow.seen.find((s) => s.url === '/api/chunked'), 'the chunked copy')
    assert.equal(copy.body, 'part one, part two')
    assert.equal(copy.headers['content-length'], '18')
    assert.equal(copy.headers['transfer-encoding'], undefined)
    assert.ok(shadow.seen.length > before)
  })

  test('a route without mirror is not mirrored', async () => {
    const r = await fetch(`${p.url}/other/x`)
    assert.equal(r.status, 200)
    await r.text()
    // The mirrored requests after it (below) arriving proves the copy would have come first.
    const again = await fetch(`${p.url}/api/after-other`)
    await again.text()
    await until(() => shadow.seen.some((s) => s.url === '/api/after-other'), 'the next copy')
    assert.ok(!shadow.seen.some((s) => s.url === '/other/x'))
  })

  test('answers are counted by status class, errors (reset) as error', async () => {
    shadow.behaviour = { kind: 'status', status: 503 }
    const r = await fetch(`${p.url}/api/five`)
    assert.equal(r.status, 200, 'the client gets the main answer whatever the mirror says')
    await r.text()
    await until(
      async () =>
        counter(await metrics(p), 'locci_mirror_requests_total', 'upstream="shadow",status_class="5xx"') >= 1,
      'the 5xx copy counted',
    )
    shadow.behaviour = { kind: 'reset' }
    const r2 = await fetch(`${p.url}/api/reset`)
    assert.equal(r2.status, 200)
    await r2.text()
    await until(
      async () =>
        counter(await metrics(p), 'locci_mirror_requests_total', 'upstream="shadow",status_class="error"') >=
        1,
      'the reset copy counted as error',
    )
    shadow.behaviour = { kind: 'ok' }
    const text = await metrics(p)
    assert.ok(counter(text, 'locci_mirror_requests_total', 'upstream="shadow",status_class="2xx"') >= 3, text)
    // The mirror's answers never show as the route's requests.
    assert.doesNotMatch(text, /locci_requests_total\{[^}]*upstream="shadow"/)
  })
})

describe('mirror: percent', () => {
  test('50 % of 1,000 requests are mirrored, within tolerance', async () => {
    await withProxy(
      (main, shadow) => config(main, shadow, '{ upstream: shadow, percent: 50 }'),
      async ({ main, shadow, p }) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
        const one = (i: number) =>
          new Promise<number>((resolve, reject) => {
            http
              .get(`${p.url}/api/n/${i}`, { agent }, (res) => {
                res.resume()
                res.on('end', () => resolve(res.statusCode!))
              })
              .on('error', reject)
          })
        const N = 1000
        for (let i = 0; i < N; i += 8) {
          const statuses = await Promise.all(Array.from({ length: Math.min(8, N - i) }, (_, k) => one(i + k)))
          assert.ok(statuses.every((s) => s === 200))
        }
        agent.destroy()
        assert.equal(main.seen.length, N)
        // Settled: every copy answered (counted) before counting what the mirror saw.
        const total = await until(async () => {
          const text = await metrics(p)
          const n = counter(text, 'locci_mirror_requests_total', 'upstream="shadow",status_class="2xx"')
          return n === shadow.seen.length && n > 0 && n
        }, 'mirrored copies counted')
        // Binomial(1000, 0.5): sd ~16; ±100 is over 6 sd, so this fails only when sampling is wrong.
        assert.ok(total >= 400 && total <= 600, `mirrored ${total} of ${N}`)
      },
    )
  })
})

describe('mirror: a mirror that never answers', () => {
  test('does not hold the client; copies past max_in_flight are dropped and counted', async () => {
    await withProxy(
      (main, shadow) => config(main, shadow, '{ upstream: shadow, max_in_flight: 2 }'),
      async ({ main, shadow, p }) => {
        // Reads the copy, then never answers (its timer is cleared when the proxy gives up).
        shadow.behaviour = { kind: 'delay', ms: 600_000 }
        for (let i = 0; i < 10; i++) {
          const r = await fetch(`${p.url}/api/hang/${i}`, {
            method: i % 2 ? 'POST' : 'GET',
            body: i % 2 ? 'b' : null,
          })
          assert.equal(r.status, 200)
          assert.equal(r.headers.get('x-upstream'), 'main')
          await r.text()
        }
        assert.equal(main.seen.length, 10)
        // Two copies are stuck at the mirror; the other eight never left.
        await until(() => shadow.seen.length === 2, 'two copies at the hanging mirror')
        const text = await metrics(p)
        assert.equal(
          counter(text, 'locci_mirror_dropped_total', 'upstream="shadow",reason="max_in_flight"'),
          8,
          text,
        )
        assert.equal(
          counter(text, 'locci_mirror_requests_total', 'upstream="shadow",status_class="error"'),
          0,
        )
      },
    )
  })

  test('a copy past its timeout is counted as error and frees its slot', async () => {
    await withProxy(
      (main, shadow) =>
        config(main, shadow, '{ upstream: shadow, max_in_flight: 1 }').replace(
          'upstream: main\n',
          'upstream: main\n      timeout_secs: 1\n',
        ),
      async ({ shadow, p }) => {
        shadow.behaviour = { kind: 'delay', ms: 600_000 }
        const r = await fetch(`${p.url}/api/slow-mirror`)
        assert.equal(r.status, 200)
        await r.text()
        await until(
          async () =>
            counter(
              await metrics(p),
              'locci_mirror_requests_total',
              'upstream="shadow",status_class="error"',
            ) === 1,
          'the timed-out copy counted',
        )
        shadow.behaviour = { kind: 'ok' }
        const r2 = await fetch(`${p.url}/api/after-timeout`)
        await r2.text()
        await until(() => shadow.seen.some((s) => s.url === '/api/after-timeout'), 'the next copy sent')
      },
    )
  })
})

describe('mirror: max_body_bytes', () => {
  test('a body over the limit is not mirrored (dropped: body_too_large), the client is served', async () => {
    await withProxy(
      (main, shadow) => config(main, shadow, '{ upstream: shadow, max_body_bytes: 10 }'),
      async ({ main, shadow, p }) => {
        const big = await fetch(`${p.url}/api/big`, { method: 'POST', body: 'x'.repeat(100) })
        assert.equal(big.status, 200)
        assert.equal(((await big.json()) as { body: string }).body.length, 100)
        const chunked = await chunkedPost(p, '/api/big-chunked', ['0123456789', 'abcdef'])
        assert.equal(chunked.status, 200)
        const small = await fetch(`${p.url}/api/small`, { method: 'POST', body: 'tiny' })
        await small.text()
        await until(() => shadow.seen.some((s) => s.url === '/api/small'), 'the small body mirrored')
        assert.equal(shadow.seen.find((s) => s.url === '/api/small')!.body, 'tiny')
        assert.ok(!shadow.seen.some((s) => s.url.startsWith('/api/big')))
        assert.equal(main.seen.find((s) => s.url === '/api/big-chunked')!.body, '0123456789abcdef')
        const text = await metrics(p)
        assert.equal(
          counter(text, 'locci_mirror_dropped_total', 'upstream="shadow",reason="body_too_large"'),
          2,
          text,
        )
      },
    )
  })
})

describe('mirror: a client that leaves mid-body', () => {
  test('the copy is dropped (incomplete_body) and its slot freed; the proxy goes on', async () => {
    await withProxy(
      (main, shadow) => config(main, shadow, '{ upstream: shadow, max_in_flight: 1 }'),
      async ({ shadow, p }) => {
        await new Promise<void>((resolve) => {
          const req = http.request(`${p.url}/api/partial`, { method: 'POST', agent: false })
          req.on('error', () => resolve())
          req.write('first half of a body that never ends, ')
          // Gone once the request is on its way to the main upstream (the copy was started then).
          until(
            async () => /^locci_active_connections\{upstream="main"\} 1$/m.test(await metrics(p)),
            'the request at the main upstream',
          ).then(() => {
            req.destroy()
            resolve()
          }, resolve)
        })
        await until(
          async () =>
            counter(
              await metrics(p),
              'locci_mirror_dropped_total',
              'upstream="shadow",reason="incomplete_body"',
            ) === 1,
          'the incomplete copy counted as dropped',
        )
        // max_in_flight: 1, so this copy is only sent if the abandoned one gave its slot back.
        const r = await fetch(`${p.url}/api/after-partial`, { method: 'POST', body: 'whole' })
        assert.equal(r.status, 200)
        await r.text()
        const copy = await until(
          () => shadow.seen.find((s) => s.url === '/api/after-partial'),
          'the next copy',
        )
        assert.equal(copy.body, 'whole')
        assert.ok(!shadow.seen.some((s) => s.url === '/api/partial'))
      },
    )
  })
})

describe('mirror: load_balancer mode', () => {
  test('load_balancer.mirror copies every request', async () => {
    await withProxy(
      (main, shadow) => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  main: { servers: ["${main.address}"] }
  shadow: { servers: ["${shadow.address}"] }
load_balancer:
  upstream: main
  mirror: { upstream: shadow }
`,
      async ({ shadow, p }) => {
        const r = await fetch(`${p.url}/anything`, { method: 'PUT', body: 'lb body' })
        assert.equal(r.status, 200)
        await r.text()
        const copy = await until(() => shadow.seen.find((s) => s.url === '/anything'), 'the copy')
        assert.equal(copy.method, 'PUT')
        assert.equal(copy.body, 'lb body')
      },
    )
  })
})
