// Route patterns against hostile paths. `path_pattern` is a regex run by JavaScript's backtracking
// engine on the request path, which the client chooses (up to the 16 KiB header limit). A pattern
// like `^/(a+)+$` would stall the event loop for minutes on one 40-character path, and `^/.*.*x$`
// for a tenth of a second on each 16 KB one. Such patterns are refused when the config is loaded
// (or a route is added through the control API), and an accepted one matches any path in
// milliseconds, so one request cannot hold up the others.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runCli, startProxy, writeConfig } from '../helpers/proxy'
import { startUpstream } from '../helpers/upstream'

const PATTERNS = [
  '^/users/(?P<id>[0-9]+)',
  '(?i)^/API/v[0-9]+/items',
  '^/api/[^/]+/items/[^/]+$',
  '/orders/[^/]+/lines/[^/]+$',
  '/static/.*',
  '^/files/.+\\.(png|jpg)$',
  '^/(?:/[a-z]+)*/end$',
  '^/u/(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$',
]

test('a config with a pattern that backtracks badly is refused, saying why and how to rewrite it', () => {
  const { file } = writeConfig(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  u: { servers: ["127.0.0.1:9"] }
api_gateway:
  routes:
    nested: { path_pattern: "^/(a+)+$", upstream: u }
    adjacent: { path_pattern: "^/.*.*x$", upstream: u }
`)
  const r = runCli(['validate', '-c', file])
  assert.notEqual(r.status, 0)
  const out = r.stdout + r.stderr
  assert.match(out, /routes\.nested\.path_pattern: can take exponential time.*rewrite it/)
  assert.match(out, /routes\.adjacent\.path_pattern: can take quadratic time or worse.*merge the repeats/)
})

test('15 KB crafted paths against every accepted pattern answer promptly, and so does the next request', async () => {
  const up = await startUpstream('origin')
  const routes = PATTERNS.map(
    (p, i) => `    r${i}: { path_pattern: ${JSON.stringify(p)}, upstream: origin }`,
  ).join('\n')
  const proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  origin: { servers: ["${up.address}"] }
api_gateway:
  routes:
${routes}
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  try {
    const runs = [
      'a',
      '1',
      'a/',
      '/a',
      'ab',
      'api/x/items/',
      'orders/x/lines/',
      'static/',
      'users/1',
      'x.png',
    ]
    const started = performance.now()
    let slowest = 0
    for (const run of runs) {
      for (const tail of ['!', '/', '']) {
        const path = `/${run.repeat(Math.ceil(15_000 / run.length))}${tail}`
        const t = performance.now()
        const res = await fetch(`${proxy.url}${path}`)
        await res.arrayBuffer()
        slowest = Math.max(slowest, performance.now() - t)
        assert.ok([200, 404].includes(res.status), `status ${res.status}`)
      }
    }
    // Generous for a loaded CI machine; one quadratic pattern alone would take seconds here.
    assert.ok(
      performance.now() - started < 10_000,
      `30 crafted requests took ${performance.now() - started} ms`,
    )
    assert.ok(slowest < 2000, `slowest crafted request ${slowest} ms`)
    const t = performance.now()
    const res = await fetch(`${proxy.url}/users/42`)
    assert.equal(res.status, 200)
    assert.equal(((await res.json()) as { url: string }).url, '/users/42')
    assert.ok(performance.now() - t < 2000, 'a normal request right after answers promptly')

    // The control API runs the same check on a route added at run time.
    const add = await fetch(`${proxy.controlUrl}/api/v1/routes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'evil', path_pattern: '^/(\\w+\\s?)*$', upstream: 'origin' }),
    })
    assert.equal(add.status, 400)
    assert.match(JSON.stringify(await add.json()), /exponential time/)
  } finally {
    await proxy.stop()
    await up.close()
  }
})
