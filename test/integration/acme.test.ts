// server.tls.acme against a real ACME server (Pebble): first issuance by HTTP-01 and by
// TLS-ALPN-01, the served chain verified against Pebble's root, renewal of a short-lived
// certificate, a restart that reuses the stored certificate (no new order), on-demand names
// outside allowed_domains refused (no order) and a flood of allowed ones held to the rate limit,
// malformed challenge paths answered 404, status and the expiry gauge.

import assert from 'node:assert/strict'
import { readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { chainsTo, config, control, get, obtained, type Setup, served, setup } from '../helpers/acme'
import { startPebble } from '../helpers/pebble'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

describe('ACME with Pebble', () => {
  let up: Upstream
  before(async () => {
    up = await startUpstream('web')
  })
  after(async () => {
    await up.close()
  })

  describe('HTTP-01', () => {
    let s: Setup
    let proxy: RunningProxy
    before(async () => {
      s = await setup()
    })
    after(async () => {
      await proxy?.stop()
      await s?.pebble.stop()
    })

    test('first issuance: the served chain leads to Pebble’s root; files are private; status and gauge', async () => {
      proxy = await startProxy(config(s, up, 'domains: [web.acme.test]\nchallenge: http-01'), {
        env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile },
      })
      await obtained(proxy, 'web.acme.test')
      const chain = await served(s.tlsPort, 'web.acme.test')
      assert.ok(chain[0]!.subjectAltName?.includes('DNS:web.acme.test'))
      assert.ok(chainsTo(chain, await s.pebble.root()), 'chains to Pebble’s root')
      assert.equal(s.pebble.orders(), 1)
      // storage_dir: 0700 directories, 0600 files.
      assert.equal(statSync(s.storage).mode & 0o777, 0o700)
      const [dirName] = readdirSync(s.storage)
      const certDir = path.join(s.storage, dirName!, 'certificates')
      for (const f of readdirSync(certDir))
        assert.equal(statSync(path.join(certDir, f)).mode & 0o777, 0o600, f)
      assert.equal(statSync(path.join(s.storage, dirName!, 'account.key')).mode & 0o777, 0o600)
      const status = JSON.parse(await control(proxy, '/api/v1/status'))
      const entry = status.tls_certificates.find((c: { name: string }) => c.name === 'web.acme.test')
      assert.equal(entry.source, 'acme')
      assert.equal(entry.last_renewal.result, 'success')
      assert.equal(entry.not_after, new Date(chain[0]!.validTo).toISOString())
      assert.match(entry.issuer, /Pebble/)
      const metrics = await control(proxy, '/metrics')
      const expiry = Math.floor(Date.parse(chain[0]!.validTo) / 1000)
      assert.match(
        metrics,
        new RegExp(`locci_tls_certificate_expiry_seconds\\{name="web.acme.test"\\} ${expiry}`),
      )
      // Plain HTTP still redirects to HTTPS for the name.
      const r = await get(s.httpPort, '/page', 'web.acme.test')
      assert.equal(r.status, 308)
    })

    test('hostile challenge paths: unknown, malformed, traversal, query: 404, nothing else answered', async () => {
      for (const p of [
        '/.well-known/acme-challenge/',
        '/.well-known/acme-challenge/unknown-token',
        '/.well-known/acme-challenge/../../etc/passwd',
        '/.well-known/acme-challenge/abc?x=1',
        `/.well-known/acme-challenge/${'a'.repeat(5000)}`,
        '/.well-known/acme-challenge/%00',
      ]) {
        const r = await get(s.httpPort, p)
        assert.equal(r.status, 404, p)
        assert.doesNotMatch(r.body, /\./, p)
      }
    })

    test('a restart reuses the stored certificate: no new order', async () => {
      const before = (await served(s.tlsPort, 'web.acme.test'))[0]!.fingerprint256
      await proxy.stop()
      proxy = await startProxy(config(s, up, 'domains: [web.acme.test]\nchallenge: http-01'), {
        env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile },
      })
      await proxy.waitForLog((l) => l.msg === 'stored certificate loaded', 'the stored certificate')
      assert.equal((await served(s.tlsPort, 'web.acme.test'))[0]!.fingerprint256, before)
      assert.equal(s.pebble.orders(), 1)
      assert.equal(proxy.logs.filter((l) => l.msg === 'ordering a certificate').length, 0)
    })
  })

  describe('TLS-ALPN-01, renewal of a short-lived certificate', () => {
    let s: Setup
    let proxy: RunningProxy
    before(async () => {
      s = await setup(12)
      proxy = await startProxy(config(s, up, 'domains: [alpn.acme.test]\nchallenge: tls-alpn-01'), {
        env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile },
      })
    })
    after(async () => {
      // A before hook that failed midway leaves some unset: stop what it started.
      await proxy?.stop()
      await s?.pebble.stop()
    })

    test('issued by TLS-ALPN-01 and served over HTTP/2-capable TLS; chains to the root', async () => {
      await obtained(proxy, 'alpn.acme.test')
      const chain = await served(s.tlsPort, 'alpn.acme.test')
      assert.ok(chain[0]!.subjectAltName?.includes('DNS:alpn.acme.test'))
      assert.ok(chainsTo(chain, await s.pebble.root()))
    })

    test('renewed when a third of its life is left; the new one replaces the old', async () => {
      const first = (await served(s.tlsPort, 'alpn.acme.test'))[0]!.fingerprint256
      await obtained(proxy, 'alpn.acme.test', 2)
      const second = await until(async () => {
        const f = (await served(s.tlsPort, 'alpn.acme.test'))[0]!.fingerprint256
        return f !== first && f
      }, 'the renewed certificate served')
      assert.notEqual(second, first)
      assert.ok(s.pebble.orders() >= 2)
    })
  })

  describe('on demand', () => {
    let s: Setup
    let proxy: RunningProxy
    before(async () => {
      s = await setup()
      proxy = await startProxy(
        config(s, up, 'on_demand: true\nallowed_domains: ["*.ok.acme.test"]\nchallenge: http-01'),
        { env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile } },
      )
    })
    after(async () => {
      // A before hook that failed midway leaves some unset: stop what it started.
      await proxy?.stop()
      await s?.pebble.stop()
    })

    test('an allowed name gets its certificate during its first handshake', async () => {
      const chain = await served(s.tlsPort, 'shop.ok.acme.test')
      assert.ok(chain[0]!.subjectAltName?.includes('DNS:shop.ok.acme.test'))
      assert.ok(chainsTo(chain, await s.pebble.root()))
      assert.equal(s.pebble.orders(), 1)
    })

    test('hostile: a flood of names outside allowed_domains orders nothing', async () => {
      const names = Array.from(
        { length: 40 },
        (_, i) => `n${i}-${Math.random().toString(36).slice(2)}.evil.test`,
      )
      names.push('ok.acme.test', 'a.b.ok.acme.test', 'ok.acme.test.evil.test')
      await Promise.all(names.map((n) => served(s.tlsPort, n).catch(() => [])))
      assert.equal(s.pebble.orders(), 1)
      assert.equal(proxy.logs.filter((l) => l.msg === 'ordering a certificate').length, 1)
    })

    test('hostile: a flood of random allowed names is held to the rate limit', async () => {
      const names = Array.from({ length: 30 }, () => `r${Math.random().toString(36).slice(2)}.ok.acme.test`)
      await Promise.all(names.map((n) => served(s.tlsPort, n).catch(() => [])))
      const ordered = proxy.logs.filter((l) => l.msg === 'ordering a certificate').length
      // Burst of 10 new names (one was spent above); the rest refused, not queued.
      assert.ok(ordered <= 10, `${ordered} orders`)
      await proxy.waitForLog(
        (l) => l.msg === 'on-demand certificate refused: too many new names (rate limit)',
        'the rate limit logged',
      )
    })
  })

  describe('a failing validation', () => {
    let s: Setup
    let proxy: RunningProxy
    before(async () => {
      s = await setup()
      // Pebble validates HTTP-01 on a port where nothing listens.
      const real = s.httpPort
      await s.pebble.stop()
      s = { ...s, pebble: await startPebble({ httpPort: await closedPort(), tlsPort: s.tlsPort }) }
      s.httpPort = real
      proxy = await startProxy(config(s, up, 'domains: [down.acme.test]\nchallenge: http-01'), {
        env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile },
      })
    })
    after(async () => {
      // A before hook that failed midway leaves some unset: stop what it started.
      await proxy?.stop()
      await s?.pebble.stop()
    })

    test('logged with the CA’s problem document and a retry delay; status says failure; nothing served', async () => {
      const line = await proxy.waitForLog((l) => l.msg === 'certificate order failed', 'the failure', 60_000)
      assert.equal(line.name, 'down.acme.test')
      const problem = line.problem as { type?: string; detail?: string }
      assert.match(String(problem.type), /^urn:ietf:params:acme:error:/)
      assert.ok(problem.detail)
      assert.ok(Number(line.retry_in_secs) >= 15)
      const status = JSON.parse(await control(proxy, '/api/v1/status'))
      const entry = status.tls_certificates.find((c: { name: string }) => c.name === 'down.acme.test')
      assert.equal(entry.last_renewal.result, 'failure')
      assert.equal(entry.not_after, null)
      await assert.rejects(served(s.tlsPort, 'down.acme.test'))
    })
  })
})
