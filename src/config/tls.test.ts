// server.tls policy fields and server.http2: what loads, what each becomes in the snapshot, and
// the located problem for each refused value.

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { before, describe, test } from 'node:test'
import { makeCert, type TestCert } from '../../test/helpers/certs'
import { compile } from './compile'
import { parseConfigText } from './load'
import { parseCipherList, TLS12_SUITES } from './tls'

describe('server.tls.ciphers', () => {
  const cases: Array<{ desc: string; text: string; want?: string; problem?: RegExp }> = [
    {
      desc: 'allowed suites, any case, order kept, duplicates dropped',
      text: 'ecdhe-rsa-chacha20-poly1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305',
      want: 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256',
    },
    { desc: 'all six', text: TLS12_SUITES.join(':'), want: TLS12_SUITES.join(':') },
    { desc: 'static RSA key exchange', text: 'AES128-GCM-SHA256', problem: /"AES128-GCM-SHA256" is refused/ },
    {
      desc: 'a CBC suite',
      text: 'ECDHE-RSA-AES128-SHA',
      problem: /is refused: only ECDHE key exchange with AEAD/,
    },
    { desc: 'DHE', text: 'DHE-RSA-AES128-GCM-SHA256', problem: /is refused/ },
    { desc: 'an OpenSSL alias', text: 'HIGH:!aNULL', problem: /"HIGH" is not a cipher suite name/ },
    { desc: 'a typo', text: 'ECDHE-RSA-AES128-GCM-SHA257', problem: /not a cipher suite name/ },
    { desc: 'a TLS 1.3 suite', text: 'TLS_AES_128_GCM_SHA256', problem: /TLS 1\.3 suite/ },
    { desc: 'empty', text: ' : ', problem: /at least one suite/ },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const r = parseCipherList(c.text)
      if (c.want !== undefined) assert.deepEqual(r, { ciphers: c.want })
      else assert.match('problem' in r ? r.problem : 'accepted', c.problem!)
    })
  }
})

describe('server.tls policy and server.http2 in the snapshot', () => {
  let cert: TestCert
  before(async () => {
    cert = await makeCert(mkdtempSync(path.join(tmpdir(), 'locci-tlscfg-')), 'localhost')
  })
  const config = (tls: string, server = '') => `mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
${server}  tls:
    cert_path: ${cert.certPath}
    key_path: ${cert.keyPath}
${tls}upstreams: { web: { servers: ["127.0.0.1:1"] } }
load_balancer: { upstream: web }
`
  const run = (yaml: string) => compile(parseConfigText('cfg.yaml', yaml, {}))

  test('defaults: intermediate, TLS 1.2, the six suites, 128 streams, 64 KiB of headers', () => {
    const r = run(config(''))
    assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems))
    assert.equal(r.snapshot.tls?.policy, 'intermediate')
    assert.equal(r.snapshot.tls?.minVersion, 'TLSv1.2')
    assert.equal(r.snapshot.tls?.ciphers, TLS12_SUITES.join(':'))
    assert.deepEqual(r.snapshot.limits.http2, { maxConcurrentStreams: 128, maxHeaderListBytes: 65536 })
  })

  const ok: Array<{ desc: string; tls: string; server?: string; check: (s: Snapshot) => void }> = [
    {
      desc: 'modern means TLS 1.3',
      tls: '    policy: modern\n',
      check: (s) => assert.equal(s.tls?.minVersion, 'TLSv1.3'),
    },
    {
      desc: 'intermediate with min_version TLSv1.3',
      tls: '    min_version: TLSv1.3\n',
      check: (s) => assert.equal(s.tls?.minVersion, 'TLSv1.3'),
    },
    {
      desc: 'ciphers replace the policy list',
      tls: '    ciphers: ECDHE-RSA-AES256-GCM-SHA384\n',
      check: (s) => assert.equal(s.tls?.ciphers, 'ECDHE-RSA-AES256-GCM-SHA384'),
    },
    {
      desc: 'http2 limits',
      tls: '',
      server: '  http2: { max_concurrent_streams: 10, max_header_list_bytes: 8192 }\n',
      check: (s) => assert.deepEqual(s.limits.http2, { maxConcurrentStreams: 10, maxHeaderListBytes: 8192 }),
    },
  ]
  for (const c of ok) {
    test(c.desc, () => {
      const r = run(config(c.tls, c.server))
      assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems))
      c.check(r.snapshot)
    })
  }

  const bad: Array<{ desc: string; tls: string; server?: string; path: string; message: RegExp }> = [
    {
      desc: 'modern with min_version TLSv1.2',
      tls: '    policy: modern\n    min_version: TLSv1.2\n',
      path: 'server.tls.min_version',
      message: /contradicts policy: modern/,
    },
    {
      desc: 'ciphers with TLS 1.3 only',
      tls: '    policy: modern\n    ciphers: ECDHE-RSA-AES128-GCM-SHA256\n',
      path: 'server.tls.ciphers',
      message: /no effect/,
    },
    {
      desc: 'a CBC suite',
      tls: '    ciphers: "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA384"\n',
      path: 'server.tls.ciphers',
      message: /ECDHE-RSA-AES256-SHA384" is refused/,
    },
    {
      desc: 'an unknown policy',
      tls: '    policy: old\n',
      path: 'server.tls.policy',
      message: /intermediate/,
    },
    {
      desc: 'zero streams',
      tls: '',
      server: '  http2: { max_concurrent_streams: 0 }\n',
      path: 'server.http2.max_concurrent_streams',
      message: /at least 1/,
    },
    {
      desc: 'http2 limits without TLS HTTP/2',
      tls: '    http2: false\n',
      server: '  http2: { max_concurrent_streams: 50 }\n',
      path: 'server.http2',
      message: /no effect without server.tls/,
    },
  ]
  for (const c of bad) {
    test(`refused: ${c.desc}`, () => {
      const r = run(config(c.tls, c.server))
      assert.ok(!r.ok, 'refused')
      const p = r.problems.find((x) => x.path === c.path)
      assert.ok(p, `a problem at ${c.path}: ${JSON.stringify(r.problems)}`)
      assert.match(p.message, c.message)
      assert.ok((p.line ?? 0) > 1, 'located on its line')
    })
  }
})

type Snapshot = Extract<ReturnType<typeof compile>, { ok: true }>['snapshot']
