// LOCCI_UPSTREAM_CLIENT: the start line names the upstream client; undici (the default) and h1
// both forward; an unknown value is refused at start; h1 asked for where the binding is
// unusable is refused with the reason, and the default keeps working there. The unusable binding is made by a preload that hides HTTPParser from
// `_http_common` after node:http has taken its own reference (so the proxy's listener still works).

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { h1Available } from '../../src/upstream/h1/binding'
import { runCli, startProxy, writeConfig } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

function config(address: string): string {
  return `mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
upstreams:
  app:
    servers: ["${address}"]
load_balancer:
  upstream: app
`
}

describe('LOCCI_UPSTREAM_CLIENT', () => {
  let up: Upstream
  let noBinding: string
  before(async () => {
    up = await startUpstream('a')
    const { dir } = writeConfig(config(up.address))
    noBinding = path.join(dir, 'no-binding.js')
    writeFileSync(noBinding, "require('node:http')\nrequire('node:_http_common').HTTPParser = undefined\n")
  })
  after(async () => {
    await up.close()
  })

  // '' is unset (the shell's `LOCCI_UPSTREAM_CLIENT=`): the default.
  for (const [value, want] of [
    ['', 'h1'],
    ['h1', 'h1'],
    ['undici', 'undici'],
  ] as const) {
    test(`${value === '' ? 'unset' : value}: the start line says ${want}, and requests are forwarded`, async (t) => {
      if (want === 'h1' && !h1Available()) return t.skip('the llhttp binding is not usable on this Node.js')
      const proxy = await startProxy(config(up.address), { env: { LOCCI_UPSTREAM_CLIENT: value } })
      try {
        const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')!
        assert.equal(line.upstream_client, want)
        const res = await fetch(`${proxy.url}/x`)
        assert.equal(res.status, 200)
        assert.equal(((await res.json()) as { server: string }).server, 'a')
        // The access line is written after any start-up warning would have been.
        await proxy.waitForLog((l) => l.msg === 'request' && l.path === '/x', 'the access line')
        assert.deepEqual(
          proxy.logs.filter((l) => l.level === 'warn'),
          [],
          'no warning when the client could be used',
        )
      } finally {
        await proxy.stop()
      }
    })
  }

  test('an unknown value is refused at start, naming the values that work', () => {
    const { file } = writeConfig(config(up.address))
    const r = runCli(['-c', file], { env: { LOCCI_UPSTREAM_CLIENT: 'curl' } })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /LOCCI_UPSTREAM_CLIENT: unknown client "curl"; use h1 or undici/)
  })

  test('h1 where the binding is unusable is refused at start, with the reason; unset falls back to undici, saying why', async () => {
    const { file } = writeConfig(config(up.address))
    const NODE_OPTIONS = `--require ${noBinding}`
    const r = runCli(['-c', file], { env: { LOCCI_UPSTREAM_CLIENT: 'h1', NODE_OPTIONS } })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /LOCCI_UPSTREAM_CLIENT=h1, but the built-in HTTP\/1\.1 client cannot run/)
    assert.match(r.stderr, /_http_common has no HTTPParser/, 'the reason is given')

    const proxy = await startProxy(config(up.address), { env: { LOCCI_UPSTREAM_CLIENT: '', NODE_OPTIONS } })
    try {
      const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')!
      assert.equal(line.upstream_client, 'undici')
      const warn = proxy.logs.find((l) => l.level === 'warn')
      assert.ok(warn, 'the fallback is logged')
      assert.match(String(warn.msg), /built-in upstream client cannot run here; forwarding with undici/)
      assert.match(String(warn.reason), /_http_common has no HTTPParser/)
      assert.equal((await fetch(`${proxy.url}/x`)).status, 200)
    } finally {
      await proxy.stop()
    }
  })
})
