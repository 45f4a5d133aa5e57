import assert from 'node:assert/strict'
import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { Logger } from '../observe/logger'
import { type ControlActions, createControlServer, requestTarget } from './api'

describe('requestTarget', () => {
  const cases: Array<{ desc: string; raw: string; path: string | undefined; query?: string }> = [
    { desc: 'a plain path', raw: '/api/v1/status', path: '/api/v1/status' },
    {
      desc: 'a path and a query',
      raw: '/api/v1/explain?path=/x&method=GET',
      path: '/api/v1/explain',
      query: 'path=%2Fx',
    },
    { desc: 'a scheme-relative look-alike stays a path', raw: '//a:99999/', path: '//a:99999/' },
    {
      desc: 'bad percent-encoding in the query is kept',
      raw: '/x?path=%E0%A4%A',
      path: '/x',
      query: 'path=%EF%BF%BD',
    },
    {
      desc: 'the absolute form',
      raw: 'http://control/api/v1/status?a=1',
      path: '/api/v1/status',
      query: 'a=1',
    },
    { desc: 'an absolute URL cut short', raw: 'http://[::1', path: undefined },
    { desc: 'the asterisk form', raw: '*', path: undefined },
    { desc: 'the authority form', raw: 'control:8485', path: undefined },
    { desc: 'another scheme', raw: 'file:///etc/passwd', path: undefined },
    { desc: 'empty', raw: '', path: undefined },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const t = requestTarget(c.raw)
      assert.equal(t?.path, c.path)
      if (c.query !== undefined) assert.ok(t!.query.toString().startsWith(c.query), t!.query.toString())
    })
  }
})

describe('control API faults', () => {
  const errors: unknown[] = []
  const log = {
    error: (o: unknown) => errors.push(o),
    warn() {},
    info() {},
    debug() {},
    isLevelEnabled: () => false,
  } as unknown as Logger
  let fail: Error | undefined
  const actions: ControlActions = {
    status: () => {
      if (fail) throw fail
      return { ok: true }
    },
    reload: async () => {
      throw new TypeError('reload blew up')
    },
    change: async () => ({ change: 'x', saved: false }),
    metricsText: async () => ({ text: '', contentType: 'text/plain' }),
    explain: () => {
      throw new RangeError('explain blew up')
    },
    purgeCache: async (m) => ({ purged: m.path === '/x' || m.prefix === '/' ? 1 : 0 }),
    dashboard: async () => ({
      series: { step_ms: 5000, slots: [] },
      config: { revision: 1, hash: '', source: 'x.yaml', history: [] },
    }),
  }
  let server: http.Server
  let base: string
  before(async () => {
    const r = compile(
      parseConfigText(
        'c.yaml',
        `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { a: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: a }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`,
        {},
      ),
    )
    assert.ok(r.ok)
    const view = { snapshot: r.snapshot, groups: new Map() }
    server = createControlServer({ current: () => view, log, actions, bodyTimeoutMs: 300 })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => {
    server.close()
    server.closeAllConnections()
  })

  const faults: Array<{ desc: string; method: string; path: string; arm?: Error }> = [
    {
      desc: 'a handler throwing synchronously',
      method: 'GET',
      path: '/api/v1/status',
      arm: new Error('boom'),
    },
    { desc: 'a handler rejecting', method: 'POST', path: '/api/v1/reload' },
    { desc: 'a handler throwing a RangeError', method: 'GET', path: '/api/v1/explain?path=/x' },
  ]
  for (const f of faults) {
    test(`${f.desc}: 500 JSON, logged at error, and the next request is served`, async () => {
      errors.length = 0
      fail = f.arm
      const r = await fetch(`${base}${f.path}`, { method: f.method })
      fail = undefined
      assert.equal(r.status, 500)
      assert.deepEqual(await r.json(), { error: 'internal error' })
      assert.equal(errors.length, 1)
      assert.equal((await fetch(`${base}/api/v1/status`)).status, 200)
    })
  }

  test('DELETE /api/v1/cache takes exactly one of path and prefix, each starting with /', async () => {
    const del = (q: string) => fetch(`${base}/api/v1/cache${q}`, { method: 'DELETE' })
    assert.deepEqual(await (await del('?path=/x')).json(), { purged: 1 })
    assert.deepEqual(await (await del('?prefix=/')).json(), { purged: 1 })
    for (const q of ['', '?path=/x&prefix=/', '?path=x', '?prefix=', '?path=']) {
      const r = await del(q)
      assert.equal(r.status, 400, q)
      await r.body?.cancel()
    }
  })

  test('a body slower than the deadline gets 408 and the connection is closed', async () => {
    const s = net.connect((server.address() as AddressInfo).port, '127.0.0.1')
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    const closed = new Promise<void>((resolve) => s.on('close', () => resolve()))
    s.write(
      'POST /api/v1/routes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{',
    )
    const giveUp = setTimeout(() => s.destroy(), 10_000)
    await closed
    clearTimeout(giveUp)
    assert.match(out, /^HTTP\/1\.1 408/)
    assert.match(out, /connection: close/i)
    assert.match(out, /did not arrive within 0\.3 s/)
  })
})
