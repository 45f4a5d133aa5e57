// `npm run build:sea` makes a single executable from the local Node binary; it must run a config
// and proxy a request on its own (no node_modules, no dist/ beside it), and serve the dashboard.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync } from 'node:fs'
import { arch, platform, tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { h1Available } from '../../src/upstream/h1/binding'
import { ROOT, spawnProxy, writeConfig } from '../helpers/proxy'
import { startUpstream } from '../helpers/upstream'

test('the single executable runs a config and proxies a request', { timeout: 180_000 }, async () => {
  // Built asynchronously: the upstream below lives in this process.
  await promisify(execFile)(process.execPath, [path.join(ROOT, 'scripts', 'build-sea.mjs')], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  })
  const built = path.join(ROOT, 'dist', `locci-proxy-${platform()}-${arch()}`)
  assert.ok(existsSync(built), built)
  // Run it from somewhere else, away from the repo's node_modules and dist/.
  const alone = path.join(mkdtempSync(path.join(tmpdir(), 'locci-sea-')), 'locci-proxy')
  copyFileSync(built, alone)
  const { stdout } = await promisify(execFile)(alone, ['--version'])
  assert.match(stdout.trim(), /^\d+\.\d+\.\d+/)

  const up = await startUpstream('sea')
  const { dir, file } = writeConfig(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: "k" }
`)
  // The built-in client asked for: its llhttp binding must be reachable inside the executable.
  const client = h1Available() ? 'h1' : 'undici'
  const proxy = await spawnProxy(['-c', file], {
    cwd: dir,
    bin: alone,
    env: { LOCCI_UPSTREAM_CLIENT: client },
  })
  try {
    const res = await fetch(`${proxy.url}/through-the-binary`)
    assert.equal(res.status, 200)
    assert.equal(((await res.json()) as { server: string }).server, 'sea')
    // The llhttp binding is reachable from inside the executable: the built-in client runs there.
    const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')
    assert.equal(line?.upstream_client, client)
    // The dashboard's files are assets inside the executable.
    for (const f of ['', 'app.js', 'app.css']) {
      const page = await fetch(`${proxy.controlUrl}/dashboard/${f}`)
      assert.equal(page.status, 200, f)
      assert.ok((await page.text()).length > 100)
    }
  } finally {
    await proxy.stop()
    await up.close()
  }
})
