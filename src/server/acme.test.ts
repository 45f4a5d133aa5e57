// server.tls.acme: what loads and what each setting becomes, the located problem for each refused
// combination, the compose config, and the pure parts of the manager (on-demand globs, renewal
// time, retry delays). Issuance itself is tested against Pebble (test/integration/acme.test.ts).

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import { formatProblem } from '../config/problems'
import { domainAllowed, renewAt, retryDelay } from './acme'

const run = (yaml: string, env: NodeJS.ProcessEnv = {}) =>
  compile(parseConfigText('/etc/locci/cfg.yaml', yaml, env))

function config(acme: string, server = 'redirect_http_bind: "127.0.0.1:0"'): string {
  return `mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  ${server}
  tls:
    acme:
${acme
  .trim()
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
upstreams: { app: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: app }
`
}

const problems = (yaml: string) => {
  const r = run(yaml)
  return r.ok ? [] : r.problems.map(formatProblem)
}

describe('server.tls.acme config', () => {
  test('loads: presets resolved, storage_dir from the config file, names lower case, eab', () => {
    const r = run(
      config(`
email: ops@example.com
directory_url: letsencrypt-staging
domains: [Example.COM]
storage_dir: acme
eab: { kid: k1, hmac_key: c2VjcmV0 }`),
    )
    assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'))
    const a = r.snapshot.tls?.acme
    assert.equal(a?.directoryUrl, 'https://acme-staging-v02.api.letsencrypt.org/directory')
    assert.deepEqual(a?.domains, ['example.com'])
    assert.equal(a?.storageDir, '/etc/locci/acme')
    assert.equal(a?.challenge, 'http-01')
    assert.equal(a?.onDemand, undefined)
    assert.deepEqual(a?.eab, { kid: 'k1', hmacKey: 'c2VjcmV0' })
    assert.deepEqual(r.snapshot.tls?.certificates, [])
  })

  const refused: Array<{ desc: string; yaml: string; want: RegExp }> = [
    {
      desc: 'neither domains nor on_demand',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x'),
      want: /server\.tls\.acme.*needs domains, or on_demand/,
    },
    {
      desc: 'on_demand without allowed_domains',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\non_demand: true'),
      want: /allowed_domains.*required with on_demand/,
    },
    {
      desc: 'allowed_domains without on_demand',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]\nallowed_domains: ["*.a.com"]'),
      want: /allowed_domains.*only applies with on_demand/,
    },
    {
      desc: 'http-01 without the redirect listener',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]', 'workers: 1'),
      want: /challenge.*redirect_http_bind/,
    },
    {
      desc: 'store: redis without redis_url',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]\nstore: redis'),
      want: /redis_url.*required with store: redis/,
    },
    {
      desc: 'redis_url without store: redis',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]\nredis_url: redis://r'),
      want: /redis_url.*only applies with store: redis/,
    },
    {
      desc: 'a wildcard domain',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: ["*.a.com"]'),
      want: /domains.*no wildcard/,
    },
    {
      desc: 'a plain-http directory',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]\ndirectory_url: http://ca/dir'),
      want: /directory_url.*https:\/\//,
    },
    {
      desc: 'an unknown challenge (dns-01)',
      yaml: config('email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]\nchallenge: dns-01'),
      want: /challenge/,
    },
    { desc: 'no email', yaml: config('storage_dir: /tmp/x\ndomains: [a.com]'), want: /email/ },
  ]
  for (const c of refused) {
    test(`refused: ${c.desc}`, () => {
      const p = problems(c.yaml)
      assert.ok(
        p.some((m) => c.want.test(m)),
        p.join('\n'),
      )
    })
  }

  test('several workers and store: redis load', () => {
    const r = run(
      config(
        'email: a@b.c\nstorage_dir: /tmp/x\ndomains: [a.com]\nstore: redis\nredis_url: redis://r:6379',
        'workers: 2\n  redirect_http_bind: "127.0.0.1:0"',
      ),
    )
    assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'))
    assert.equal(r.snapshot.workers, 2)
    assert.equal(r.snapshot.tls?.acme?.redisUrl, 'redis://r:6379')
  })

  test('docker/config.acme.yaml (compose.acme.yaml) compiles, with the environment applied', () => {
    const file = path.resolve(__dirname, '..', '..', '..', 'docker', 'config.acme.yaml')
    const r = compile(
      parseConfigText(file, readFileSync(file, 'utf8'), { ACME_EMAIL: 'ops@x.com', PROXY_HOST: 'p.x.com' }),
    )
    assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'))
    assert.deepEqual(r.snapshot.tls?.acme?.domains, ['p.x.com'])
    assert.equal(r.snapshot.tls?.acme?.email, 'ops@x.com')
    assert.equal(r.snapshot.tls?.acme?.directoryUrl, 'https://acme-v02.api.letsencrypt.org/directory')
  })
})

describe('ACME manager rules', () => {
  test('allowed_domains globs: one label per *, exact names, no suffix tricks', () => {
    const globs = ['*.ok.test', 'shop.test']
    assert.equal(domainAllowed(globs, 'a.ok.test'), true)
    assert.equal(domainAllowed(globs, 'shop.test'), true)
    assert.equal(domainAllowed(globs, 'ok.test'), false)
    assert.equal(domainAllowed(globs, 'a.b.ok.test'), false)
    assert.equal(domainAllowed(globs, 'a.ok.test.evil'), false)
    assert.equal(domainAllowed(globs, 'evilok.test'), false)
    assert.equal(domainAllowed(globs, 'x.shop.test'), false)
  })

  test('renewal when a third of the lifetime is left', () => {
    const from = new Date('2026-01-01T00:00:00Z')
    const to = new Date('2026-04-01T00:00:00Z') // 90 days
    assert.equal(renewAt(from, to), Date.parse('2026-03-02T00:00:00Z'))
  })

  test('retry delays double from 30 s to at most 6 h, jittered by ±50 %', () => {
    assert.equal(retryDelay(1, 0.5), 30_000)
    assert.equal(retryDelay(2, 0.5), 60_000)
    assert.equal(retryDelay(1, 0), 15_000)
    assert.equal(retryDelay(1, 0.999), 44_970)
    assert.equal(retryDelay(50, 0.5), 6 * 3600_000)
  })
})
