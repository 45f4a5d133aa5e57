// server.tls.acme beyond one process, against a real Pebble (and a real redis-server):
// - server.workers: 2: the primary orders, every worker serves the certificate (several TLS
//   connections, spread over the workers, all get it) and answers the challenge wherever the
//   CA's connection lands (HTTP-01 and TLS-ALPN-01); on-demand names asked by a worker are
//   ordered by the primary; status and the expiry gauge come from any worker.
// - store: redis: two instances sharing one redis-server make one order and both serve the
//   certificate; an on-demand name ordered by instance A is validated by Pebble on instance B
//   (Pebble's ports are B's), which answers from Redis; renewals of a short-lived certificate
//   are one order each (the lock), the other instance taking the new one from Redis; stray
//   challenge lookups are refused; with Redis down stored certificates are still served.

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import tls from 'node:tls'
import { chainsTo, config, control, get, obtained, type Setup, served, setup } from '../helpers/acme'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { type RunningRedis, startRedis } from '../helpers/redis'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

const ordering = (proxies: RunningProxy[]) =>
  proxies.reduce((n, p) => n + p.logs.filter((l) => l.msg === 'ordering a certificate').length, 0)

/** Several connections in a row (the cluster spreads them over the workers): each one's leaf. */
async function leaves(port: number, name: string, n = 8): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push((await served(port, name))[0]!.fingerprint256)
  return out
}

/** A TLS-ALPN-01 validation attempt (ALPN acme-tls/1) for `servername`: does the handshake succeed? */
function alpnHandshake(port: number, servername: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect(
      { port, host: '127.0.0.1', servername, ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false },
      () => {
        s.destroy()
        resolve(true)
      },
    )
    s.once('error', () => resolve(false))
  })
}

/** Challenge lookups nobody asked for: unknown and malformed tokens, acme-tls/1 for any name. */
async function refusesStrayChallenges(httpPort: number, tlsPort: number): Promise<void> {
  for (const p of [
    '/.well-known/acme-challenge/unknown-token',
    `/.well-known/acme-challenge/${'a'.repeat(300)}`,
    '/.well-known/acme-challenge/..%2f..%2fetc',
    '/.well-known/acme-challenge/*',
  ]) {
    assert.equal((await get(httpPort, p)).status, 404, p)
  }
  for (const name of ['od.acme.test', 'x.evil.test', `${'a'.repeat(60)}.od.acme.test`]) {
    assert.equal(await alpnHandshake(tlsPort, name), false, name)
  }
}

/**
 * Two instances sharing one Redis store: A on its own ports and storage_dir, B on the ones
 * Pebble validates.
 */
function startPair(
  s: Setup,
  aPorts: { tlsPort: number; httpPort: number },
  up: Upstream,
  acme: string,
): Promise<[RunningProxy, RunningProxy]> {
  const env = { env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile } }
  const storageA = path.join(mkdtempSync(path.join(tmpdir(), 'locci-acme-a-')), 'acme')
  return Promise.all([
    startProxy(config({ ...s, ...aPorts, storage: storageA }, up, acme), env),
    startProxy(config(s, up, acme), env),
  ])
}

async function stopPair(
  a: RunningProxy | undefined,
  b: RunningProxy | undefined,
  s: Setup | undefined,
  redis: RunningRedis | undefined,
): Promise<void> {
  // A before hook that failed midway leaves some unset: stop what it started.
  await a?.stop()
  await b?.stop()
  await s?.pebble.stop()
  await redis?.stop()
}

describe('ACME with several processes (Pebble)', () => {
  let up: Upstream
  before(async () => {
    up = await startUpstream('web')
  })
  after(async () => {
    await up.close()
  })

  for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
    describe(`server.workers: 2, ${challenge}`, () => {
      let s: Setup
      let proxy: RunningProxy
      const name = `${challenge === 'http-01' ? 'web' : 'alpn'}.workers.acme.test`
      before(async () => {
        s = await setup()
        proxy = await startProxy(
          config(
            s,
            up,
            `domains: [${name}]\non_demand: true\nallowed_domains: ["*.od.acme.test"]\nchallenge: ${challenge}`,
            'workers: 2',
          ),
          { env: { NODE_EXTRA_CA_CERTS: s.pebble.caFile } },
        )
      })
      after(async () => {
        // A before hook that failed midway leaves some unset: stop what it started.
        await proxy?.stop()
        await s?.pebble.stop()
      })

      test('one order by the primary; every connection, whichever worker, gets the certificate', async () => {
        await obtained(proxy, name)
        const got = await leaves(s.tlsPort, name)
        assert.equal(new Set(got).size, 1, 'the same certificate from every worker')
        const chain = await served(s.tlsPort, name)
        assert.ok(chain[0]!.subjectAltName?.includes(`DNS:${name}`))
        assert.ok(chainsTo(chain, await s.pebble.root()))
        assert.equal(s.pebble.orders(), 1)
        assert.equal(ordering([proxy]), 1)
      })

      test('status and the expiry gauge, from any worker', async () => {
        for (let i = 0; i < 4; i++) {
          const status = JSON.parse(await control(proxy, '/api/v1/status'))
          const entry = status.tls_certificates.find((c: { name: string }) => c.name === name)
          assert.equal(entry?.source, 'acme')
          assert.equal(entry.last_renewal?.result, 'success')
          assert.match(entry.issuer, /Pebble/)
        }
        const chain = await served(s.tlsPort, name)
        const expiry = Math.floor(Date.parse(chain[0]!.validTo) / 1000)
        assert.match(
          await control(proxy, '/metrics'),
          new RegExp(
            `locci_tls_certificate_expiry_seconds\\{name="${name.replace(/\./g, '\\.')}"\\} ${expiry}`,
          ),
        )
      })

      test('on demand: a worker asks the primary; the handshake gets the new certificate', async () => {
        const od = `${challenge === 'http-01' ? 'h' : 'a'}.od.acme.test`
        const chain = await served(s.tlsPort, od)
        assert.ok(chain[0]!.subjectAltName?.includes(`DNS:${od}`))
        const got = await leaves(s.tlsPort, od, 4)
        assert.equal(new Set(got).size, 1)
        assert.equal(s.pebble.orders(), 2)
      })

      test('hostile: stray challenge lookups are refused by every worker; nothing is ordered', async () => {
        for (let i = 0; i < 2; i++) await refusesStrayChallenges(s.httpPort, s.tlsPort)
        assert.equal(s.pebble.orders(), 2)
        assert.equal(proxy.child.exitCode, null)
      })
    })
  }

  for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
    describe(`store: redis, two instances, ${challenge}`, () => {
      let redis: RunningRedis
      let s: Setup
      let a: RunningProxy
      let b: RunningProxy
      let aPorts: { tlsPort: number; httpPort: number }
      const shared = `${challenge === 'http-01' ? 'h' : 'a'}.shared.acme.test`
      const od = `${challenge === 'http-01' ? 'h' : 'a'}.od.acme.test`
      before(async () => {
        redis = await startRedis()
        // Pebble validates on B's ports; A has its own. Each instance its own storage_dir.
        s = await setup()
        aPorts = { tlsPort: await closedPort(), httpPort: await closedPort() }
        const acme = `domains: [${shared}]\non_demand: true\nallowed_domains: ["*.od.acme.test"]\nchallenge: ${challenge}\nstore: redis\nredis_url: ${redis.url}`
        ;[a, b] = await startPair(s, aPorts, up, acme)
      })
      after(() => stopPair(a, b, s, redis))

      test('both instances start together: one order, both serve the certificate', async () => {
        await obtained(a, shared)
        await obtained(b, shared)
        assert.equal(s.pebble.orders(), 1)
        assert.equal(ordering([a, b]), 1)
        const fa = (await served(aPorts.tlsPort, shared))[0]!
        const fb = (await served(s.tlsPort, shared))[0]!
        assert.equal(fa.fingerprint256, fb.fingerprint256)
        assert.ok(chainsTo(await served(aPorts.tlsPort, shared), await s.pebble.root()))
      })

      test('A orders an on-demand name; Pebble validates it on B, which answers from Redis; B serves it without an order', async () => {
        const chainA = await served(aPorts.tlsPort, od)
        assert.ok(chainA[0]!.subjectAltName?.includes(`DNS:${od}`))
        assert.equal(a.logs.filter((l) => l.msg === 'ordering a certificate' && l.name === od).length, 1)
        const chainB = await served(s.tlsPort, od)
        assert.equal(chainB[0]!.fingerprint256, chainA[0]!.fingerprint256)
        assert.equal(s.pebble.orders(), 2)
        assert.equal(ordering([a, b]), 2)
        // B's log line may reach its stdout after the handshake that served the certificate.
        await b.waitForLog(
          (l) => l.msg === 'certificate taken from the shared store' && l.name === od,
          'B taking the certificate from the store',
        )
        if (challenge === 'http-01') {
          // Pebble's HTTP-01 requests reached B only (A ordered): B answered A's token from Redis.
          const asked = (p: RunningProxy) =>
            p.logs.some((l) => String(l.path ?? '').startsWith('/.well-known/acme-challenge/'))
          assert.ok(asked(b) && !asked(a))
        }
      })

      test('hostile: stray challenge lookups (looked up in Redis) are refused on both instances', async () => {
        await refusesStrayChallenges(aPorts.httpPort, aPorts.tlsPort)
        await refusesStrayChallenges(s.httpPort, s.tlsPort)
        assert.equal(ordering([a, b]), 2)
      })

      test('Redis down: stored certificates still served; the failure is logged, not fatal', {
        skip: challenge !== 'http-01' && 'once is enough (http-01)',
      }, async () => {
        await redis.stop()
        const fa = (await served(aPorts.tlsPort, shared))[0]!
        assert.ok(fa.subjectAltName?.includes(`DNS:${shared}`))
        // A new on-demand name cannot be coordinated: refused for now (default certificate, none here).
        await assert.rejects(served(aPorts.tlsPort, 'y.od.acme.test'))
        await a.waitForLog(
          (l) => l.msg === 'certificate order failed' && l.name === 'y.od.acme.test',
          'the failure',
        )
        assert.equal(a.child.exitCode, null)
        assert.equal((await served(s.tlsPort, shared))[0]!.fingerprint256, fa.fingerprint256)
      })
    })
  }

  describe('store: redis, renewal of a short-lived certificate by two instances', () => {
    let redis: RunningRedis
    let s: Setup
    let a: RunningProxy
    let b: RunningProxy
    before(async () => {
      redis = await startRedis()
      s = await setup(15)
      const aPorts = { tlsPort: await closedPort(), httpPort: await closedPort() }
      const acme = `domains: [renew.shared.acme.test]\nchallenge: http-01\nstore: redis\nredis_url: ${redis.url}`
      ;[a, b] = await startPair(s, aPorts, up, acme)
    })
    after(() => stopPair(a, b, s, redis))

    test('each renewal is one order (the lock), the other instance takes the new certificate from Redis', async () => {
      // The first certificate and two renewals in each instance.
      await obtained(a, 'renew.shared.acme.test', 3)
      await obtained(b, 'renew.shared.acme.test', 3)
      const taken = () =>
        [a, b].reduce(
          (n, p) => n + p.logs.filter((l) => l.msg === 'certificate taken from the shared store').length,
          0,
        )
      // One order per certificate issued, however many rounds a slow machine let pass while the
      // second instance caught up: without the lock both would order every round (about twice
      // the certificates either instance holds); one more may be in flight. Orders are read
      // first, the rounds after (they only grow).
      const orders = s.pebble.orders()
      const rounds = Math.max(
        ...[a, b].map(
          (p) =>
            p.logs.filter((l) => l.msg === 'certificate obtained' && l.name === 'renew.shared.acme.test')
              .length,
        ),
      )
      assert.ok(orders <= rounds + 1, `${orders} orders for ${rounds} certificates`)
      // Log lines reach stdout a little after the certificates they tell of.
      await until(() => taken() >= 2, 'two certificates taken from Redis')
    })
  })
})
