// The dashboard's server side: the page without the key (with its CSP), the event stream only
// with it, and the stream's bounds (a cap on open streams, freed on disconnect; a client that
// does not read is cut off instead of growing the server's buffers).

import assert from 'node:assert/strict'
import type http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { firstState } from '../../test/helpers/events'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { Logger } from '../observe/logger'
import { type ControlActions, createControlServer } from './api'
import { DASHBOARD_CSP, loadDashboardFiles, type StaticFile } from './dashboard'

const KEY = 'k3y'
const log = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  isLevelEnabled: () => false,
} as unknown as Logger

/** Big enough that a client that never reads fills its socket buffers within a few ticks. */
let padding = ''
const actions: ControlActions = {
  status: () => ({ mode: 'load_balancer', padding }),
  reload: async () => ({ result: 'unchanged' }),
  change: async () => ({ change: 'x', saved: false }),
  metricsText: async () => ({ text: '', contentType: 'text/plain' }),
  explain: () => {
    throw new Error('unused')
  },
  purgeCache: async () => ({ purged: 0 }),
  dashboard: async () => ({
    series: { step_ms: 5000, slots: [] },
    config: { revision: 3, hash: 'abc', source: '/etc/c.yaml', history: [] },
  }),
}

function view(withKey = true) {
  const r = compile(
    parseConfigText(
      'c.yaml',
      `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { a: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: a }
control_api: { enabled: true, bind_address: "127.0.0.1:0"${withKey ? `, api_key: "${KEY}"` : ', insecure: true'} }
`,
      {},
    ),
  )
  assert.ok(r.ok)
  return { snapshot: r.snapshot, groups: new Map() }
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('dashboard endpoints', () => {
  const files = new Map<string, StaticFile>([
    ['index.html', { body: Buffer.from('<!doctype html>'), type: 'text/html; charset=utf-8' }],
    ['app.js', { body: Buffer.from('1'), type: 'text/javascript; charset=utf-8' }],
    ['app.css', { body: Buffer.from('a{}'), type: 'text/css; charset=utf-8' }],
  ])
  let server: http.Server
  let base: string
  const v = view()
  before(async () => {
    server = createControlServer({
      current: () => v,
      log,
      actions,
      dashboardFiles: files,
      events: { tickMs: 20, maxStreams: 2, stallTicks: 5 },
    })
    base = await listen(server)
  })
  after(() => {
    server.close()
    server.closeAllConnections()
  })

  test('the page, its script and stylesheet load without the key, with a strict CSP', async () => {
    for (const [p, type] of [
      ['/dashboard/', 'text/html'],
      ['/dashboard/app.js', 'text/javascript'],
      ['/dashboard/app.css', 'text/css'],
    ] as const) {
      const r = await fetch(`${base}${p}`)
      assert.equal(r.status, 200, p)
      assert.ok(r.headers.get('content-type')?.startsWith(type))
      assert.equal(r.headers.get('content-security-policy'), DASHBOARD_CSP)
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff')
    }
    assert.doesNotMatch(DASHBOARD_CSP, /unsafe/)
    const redirect = await fetch(`${base}/dashboard`, { redirect: 'manual' })
    assert.equal(redirect.status, 308)
    assert.equal(redirect.headers.get('location'), '/dashboard/')
    // Only those files: anything else under /dashboard/ needs the key (and is not found).
    assert.equal((await fetch(`${base}/dashboard/../api/v1/status`)).status, 401)
    assert.equal((await fetch(`${base}/dashboard/x.js`)).status, 401)
  })

  test('the event stream needs the key: none, wrong, or in the query string is 401', async () => {
    for (const init of [
      {},
      { headers: { authorization: 'Bearer nope' } },
      { headers: { authorization: `Basic ${KEY}` } },
    ]) {
      const r = await fetch(`${base}/api/v1/events`, init)
      assert.equal(r.status, 401)
      assert.match(r.headers.get('content-type') ?? '', /json/)
      await r.text()
    }
    const q = await fetch(`${base}/api/v1/events?key=${KEY}&api_key=${KEY}&token=${KEY}`)
    assert.equal(q.status, 401)
    await q.text()
  })

  test('with the key: an event stream whose first state comes at once', async () => {
    const r = await fetch(`${base}/api/v1/events`, { headers: { authorization: `Bearer ${KEY}` } })
    assert.equal(r.status, 200)
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/)
    assert.equal(r.headers.get('cache-control'), 'no-store')
    const s = await firstState(r)
    assert.deepEqual(s.config, { revision: 3, hash: 'abc', source: '/etc/c.yaml', history: [] })
    assert.equal((s.status as { mode: string }).mode, 'load_balancer')
    assert.ok(Array.isArray(s.series) && Array.isArray(s.upstreams) && Array.isArray(s.routes))
  })

  test('a page from another site cannot open the stream, key or not', async () => {
    const r = await fetch(`${base}/api/v1/events`, {
      headers: { authorization: `Bearer ${KEY}`, origin: 'https://evil.example' },
    })
    assert.equal(r.status, 403)
    await r.text()
  })

  test('streams are capped (429 beyond), and a closed one frees its place', async () => {
    const open = () => fetch(`${base}/api/v1/events`, { headers: { authorization: `Bearer ${KEY}` } })
    const one = await open()
    const two = await open()
    assert.equal(one.status, 200)
    assert.equal(two.status, 200)
    const three = await open()
    assert.equal(three.status, 429)
    assert.equal(three.headers.get('retry-after'), '5')
    await three.text()
    await one.body!.cancel()
    let again: Response | undefined
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      again = await open()
      if (again.status === 200) break
      await again.text()
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal(again?.status, 200)
    await again!.body!.cancel()
    await two.body!.cancel()
  })

  test('a client that never reads is cut off, and its place freed, instead of buffering without end', async () => {
    padding = 'x'.repeat(256 * 1024)
    try {
      // Two raw clients that send the request and never read a byte: the cap is now full.
      const port = Number(new URL(base).port)
      const stuck = await Promise.all(
        [0, 1].map(
          () =>
            new Promise<net.Socket>((resolve) => {
              const s = net.connect(port, '127.0.0.1', () => {
                s.write(
                  `GET /api/v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${KEY}\r\n\r\n`,
                )
                s.pause()
                resolve(s)
              })
              s.on('error', () => undefined)
            }),
        ),
      )
      // Their buffers fill, they stop draining, and after stallTicks they are closed: a reading
      // client gets a stream again.
      let ok: Response | undefined
      const deadline = Date.now() + 15_000
      while (Date.now() < deadline) {
        ok = await fetch(`${base}/api/v1/events`, { headers: { authorization: `Bearer ${KEY}` } })
        if (ok.status === 200) break
        await ok.text()
        await new Promise((r) => setTimeout(r, 50))
      }
      assert.equal(ok?.status, 200)
      await ok!.body!.cancel()
      for (const s of stuck) s.destroy()
    } finally {
      padding = ''
    }
  })
})

describe('dashboard without files', () => {
  test('the page answers 503 saying what is missing; the API still works', async () => {
    const v = view()
    const server = createControlServer({ current: () => v, log, actions, dashboardFiles: undefined })
    const base = await listen(server)
    try {
      const r = await fetch(`${base}/dashboard/`)
      assert.equal(r.status, 503)
      assert.match(((await r.json()) as { error: string }).error, /dashboard files are missing/)
      const s = await fetch(`${base}/api/v1/status`, { headers: { authorization: `Bearer ${KEY}` } })
      assert.equal(s.status, 200)
    } finally {
      server.close()
      server.closeAllConnections()
    }
  })

  test('the repo ships the files where the loader finds them', () => {
    const f = loadDashboardFiles()
    assert.ok(f, 'dashboard/ not found upwards of dist/src/control')
    assert.deepEqual([...f.keys()].sort(), ['app.css', 'app.js', 'index.html'])
    assert.match(f.get('index.html')!.body.toString(), /<script src="app.js" defer><\/script>/)
    // No inline script or style: the CSP would refuse them.
    assert.doesNotMatch(f.get('index.html')!.body.toString(), /<script>|<style|\sstyle=|\son[a-z]+=/i)
    assert.equal(loadDashboardFiles('/'), undefined)
  })
})
