// The web dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core) against the real binary and real upstreams: no data without the key, data with
// it, a stopped server shown unhealthy in words within two health-check intervals, actions that
// round-trip (and one refused with its located problems), the explain box, keyboard use, the
// Content-Security-Policy, no console errors, screenshots at 1280x720 and phone size in
// test-output/dashboard/.

import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { firstState } from '../helpers/events'
import { ROOT, type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const OUT = path.join(ROOT, 'test-output', 'dashboard')
const CHECK_INTERVAL_S = 2
const KEY = 'dash-key'

const config = (a: Upstream, b: Upstream) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api:
    servers: ["${a.address}", "${b.address}"]
    health_check: { interval_secs: ${CHECK_INTERVAL_S}, timeout_secs: 1, path: /health }
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: api }
control_api:
  enabled: true
  bind_address: "127.0.0.1:0"
  api_key: "${KEY}"
`

describe('dashboard in headless Chromium', () => {
  let a: Upstream
  let b: Upstream
  let c: Upstream
  let proxy: RunningProxy
  let browser: Browser
  let page: Page
  const consoleErrors: string[] = []
  let cspHeader: string | undefined

  before(async () => {
    mkdirSync(OUT, { recursive: true })
    a = await startUpstream('a')
    b = await startUpstream('b')
    c = await startUpstream('c')
    proxy = await startProxy(config(a, b))
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] })
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } })
    page.setDefaultTimeout(10_000)
    page.on('console', (m) => {
      // Chromium logs every 4xx fetch as an error; the wrong key (401) and the invalid change
      // (400) below are refused on purpose, and the page shows them itself.
      if (m.type() === 'error' && !/^Failed to load resource: .* status of (400|401) /.test(m.text()))
        consoleErrors.push(m.text())
    })
    page.on('pageerror', (e) => consoleErrors.push(String(e)))
    const res = await page.goto(`${proxy.controlUrl}/dashboard/`)
    assert.equal(res?.status(), 200)
    cspHeader = res?.headers()['content-security-policy']
  })
  after(async () => {
    await browser?.close()
    await proxy?.stop()
    await a?.close()
    await b?.close().catch(() => undefined)
    await c?.close()
  })

  test('the page loads without the key under a strict CSP, and shows no data', async () => {
    assert.match(cspHeader ?? '', /default-src 'self'/)
    assert.match(cspHeader ?? '', /script-src 'self'(;|$)/)
    assert.doesNotMatch(cspHeader ?? '', /unsafe-inline|unsafe-eval/)
    assert.equal(await page.isVisible('#login-form'), true)
    assert.equal(await page.isVisible('#main'), false)
    const text = await page.textContent('body')
    assert.ok(!text?.includes(a.address), 'no upstream address before logging in')
    // The data calls the page would make are refused without the key.
    const r = await fetch(`${proxy.controlUrl}/api/v1/events`)
    assert.equal(r.status, 401)
  })

  test('a wrong key is refused, and nothing is stored in the URL or web storage', async () => {
    await page.fill('#key', 'wrong')
    await page.press('#key', 'Enter')
    await page.waitForSelector('#login-error:has-text("Wrong or missing API key")')
    assert.equal(await page.isVisible('#main'), false)
  })

  test('logging in with the keyboard shows live data', async () => {
    await page.fill('#key', '')
    await page.focus('#key')
    await page.keyboard.type(KEY)
    await page.keyboard.press('Enter')
    await page.waitForSelector('#f-mode:has-text("api_gateway")')
    await page.waitForSelector(`#groups :text("${a.address}")`)
    assert.equal(new URL(page.url()).search, '')
    assert.equal(new URL(page.url()).hash, '')
    const stored = await page.evaluate('localStorage.length + sessionStorage.length + document.cookie.length')
    assert.equal(stored, 0)
    assert.equal(await page.textContent('#route-rows tr:first-child td:nth-child(2)'), 'api')
    // Traffic shows up in the route's rate once a 5-second slot is complete.
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline) {
      await fetch(`${proxy.url}/api/hello`).then((r) => r.arrayBuffer())
      const rate = await page.textContent('#route-rows tr:first-child td:nth-child(7)')
      if (rate !== null && Number(rate) > 0) break
      await page.waitForTimeout(100)
    }
    assert.ok(Number(await page.textContent('#route-rows tr:first-child td:nth-child(7)')) > 0)
    assert.match((await page.getAttribute('#c-rps svg', 'aria-label')) ?? '', /requests per second: now/)
    await page.screenshot({ path: path.join(OUT, 'dashboard-1280x720.png'), fullPage: false })
  })

  test('a stopped server is shown unhealthy, in words, within two health-check intervals', async () => {
    const row = `#groups tr:has-text("${b.address}") td:nth-child(2)`
    assert.equal(await page.textContent(row), 'healthy')
    const stoppedAt = Date.now()
    await b.close()
    await page.waitForSelector(`${row}:has-text("unhealthy")`, { timeout: 2 * CHECK_INTERVAL_S * 1000 })
    assert.ok(Date.now() - stoppedAt <= 2 * CHECK_INTERVAL_S * 1000 + 500)
  })

  test('adding a server round-trips through the API and shows up', async () => {
    await page.fill('#s-group', 'api')
    await page.fill('#s-address', c.address)
    await page.click('#add-server button[type=submit]')
    await page.waitForSelector(`#result:has-text("Done: added")`)
    await page.waitForSelector(`#groups tr:has-text("${c.address}")`)
  })

  /** Fills the add-route form; the caller submits it (Enter or the button). */
  async function fillRoute(name: string, upstream: string, methods: string): Promise<void> {
    await page.fill('#r-name', name)
    await page.fill('#r-pattern', `^/${name}`)
    await page.fill('#r-upstream', upstream)
    await page.fill('#r-methods', methods)
  }

  test('adding a route round-trips, and removing it takes two presses', async () => {
    await fillRoute('extra', 'api', 'get, post')
    await page.press('#r-methods', 'Enter')
    await page.waitForSelector('#result:has-text("Done: added route extra")')
    await page.waitForSelector('#route-rows tr:has-text("extra") td:has-text("GET, POST")')
    const remove = '#route-rows tr:has-text("extra") button'
    await page.focus(remove)
    await page.keyboard.press('Enter')
    await page.waitForSelector(`${remove}:has-text("Confirm remove")`)
    await page.keyboard.press('Enter')
    await page.waitForSelector('#result:has-text("removed route extra")')
    await page.waitForSelector('#route-rows tr:has-text("extra")', { state: 'detached' })
  })

  test('an invalid change is refused with its located problems', async () => {
    await fillRoute('broken', 'no-such-group', '')
    await page.click('#add-route button[type=submit]')
    await page.waitForSelector('#result:has-text("Refused (HTTP 400)")')
    const problems = await page.locator('#result li').allTextContents()
    assert.ok(
      problems.some((p) => p.includes('api_gateway.routes.broken') && p.includes('no-such-group')),
      problems.join('\n'),
    )
  })

  test('the explain box shows the decision for a method and path', async () => {
    await page.fill('#x-method', 'GET')
    await page.fill('#x-path', '/api/users')
    await page.click('#explain button[type=submit]')
    await page.waitForSelector('#explain-result:has-text("Route: api")')
    await page.fill('#x-path', '/nowhere')
    await page.click('#explain button[type=submit]')
    await page.waitForSelector('#explain-result:has-text("no_route")')
  })

  test('reload shows its result and enters the history', async () => {
    await page.click('#reload')
    await page.waitForSelector('#result:has-text("reload:")')
    await page.waitForSelector('#history tr:has-text("reload")')
  })

  test('readable on a phone; no console errors', async () => {
    await page.setViewportSize({ width: 390, height: 844 })
    await page.screenshot({ path: path.join(OUT, 'dashboard-phone-390x844.png'), fullPage: true })
    // Nothing wider than the screen but the tables, which scroll in their own box.
    const overflow = Number(await page.evaluate('document.documentElement.scrollWidth'))
    assert.ok(overflow <= 390, `page is ${overflow}px wide`)
    assert.deepEqual(consoleErrors, [])
  })

  test('logging out forgets the key and the data', async () => {
    await page.click('#logout')
    assert.equal(await page.isVisible('#main'), false)
    const text = await page.textContent('body')
    assert.ok(!text?.includes(a.address))
    await until(() => page.isVisible('#login-form'), 'login form back')
  })
})

describe('dashboard event stream with workers', () => {
  test('the primary adds up every worker’s series and keeps the config history', async () => {
    const up = await startUpstream('w')
    const proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0", workers: 2 }
upstreams:
  api: { servers: ["${up.address}"] }
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: api }
control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: "${KEY}" }
`)
    try {
      const auth = { authorization: `Bearer ${KEY}` }
      const reload = await fetch(`${proxy.controlUrl}/api/v1/reload`, { method: 'POST', headers: auth })
      assert.equal(reload.status, 200)
      await reload.text()
      // New connections each time, so the requests spread over both workers.
      for (let i = 0; i < 20; i++) {
        const r = await fetch(`${proxy.url}/api/x`, { headers: { connection: 'close' } })
        assert.equal(r.status, 200)
        await r.text()
      }
      // Until the 5-second slot holding them is complete, then all 20 are in the route's minute.
      const state = await until(
        async () => {
          const res = await fetch(`${proxy.controlUrl}/api/v1/events`, { headers: auth })
          assert.equal(res.status, 200)
          // biome-ignore lint/suspicious/noExplicitAny: JSON from the stream, checked field by field
          const s: any = await firstState(res)
          const rps = s.routes[0]?.stats?.rps ?? 0
          return Math.round(rps * 60) >= 20 ? s : undefined
        },
        'requests in the merged series',
        20_000,
        250,
      )
      assert.equal(state.status.workers, 2)
      assert.equal(Math.round(state.routes[0].stats.rps * 60), 20)
      assert.equal(state.config.history.length, 1)
      assert.equal(state.config.history[0].kind, 'reload')
      assert.equal(state.config.history[0].result, 'unchanged')
    } finally {
      await proxy.stop()
      await up.close()
    }
  })
})
