// The quick start as a newcomer runs it: `npm run demo:lb`, `npm run demo:curl-lb`, Ctrl-C; the
// LB demo riding out a killed json-server and narrating the failover; and `npm run demo`
// answering /users, /products, /pages from the right services. Uses the demo's
// fixed ports (3001-3003, 8484, 8485), like a user would.

import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ROOT } from '../helpers/proxy'
import { until } from '../helpers/until'

function startDemo(kind: 'gateway' | 'lb') {
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'demo.mjs'), kind], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (d) => {
    out += d
  })
  child.stderr!.on('data', (d) => {
    out += d
  })
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)))
  return { child, output: () => out, exited }
}

test('npm run demo:lb, demo:curl-lb, then Ctrl-C stops everything', { timeout: 60_000 }, async () => {
  const demo = startDemo('lb')
  try {
    await until(() => demo.output().includes('demo is up'), 'the demo to come up', 30_000)
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'curl-lb.mjs')], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    assert.deepEqual(lines.slice(1), [
      'request 1 → server-1 (:3001)',
      'request 2 → server-2 (:3002)',
      'request 3 → server-3 (:3003)',
      'request 4 → server-1 (:3001)',
      'request 5 → server-2 (:3002)',
      'request 6 → server-3 (:3003)',
    ])
  } finally {
    demo.child.kill('SIGINT')
  }
  assert.equal(await demo.exited, 0)
  assert.ok(!existsSync(path.join(ROOT, '.demo.pids')), 'the pid file is removed')
  await assert.rejects(fetch('http://127.0.0.1:3001/instance'), 'json-server instances are stopped')
})

test('npm run demo:lb keeps serving when a json-server dies, and shows it leave and rejoin the rotation', {
  timeout: 120_000,
}, async () => {
  const demo = startDemo('lb')
  try {
    await until(() => demo.output().includes('demo is up'), 'the demo to come up', 30_000)
    // .demo.pids: the runner, then json-server :3001, :3002, :3003, then the proxy.
    const pids = readFileSync(path.join(ROOT, '.demo.pids'), 'utf8').trim().split('\n').map(Number)
    process.kill(pids[2]!, 'SIGKILL')
    await until(
      () =>
        demo
          .output()
          .includes(
            'demo: app_fleet 127.0.0.1:3002 is out of rotation: health check failed (2 of 3 serving)',
          ),
      `the demo to report :3002 out of rotation; it printed:\n${demo.output().replace(/^\{.*\n/gm, '')}`,
      30_000,
    )
    assert.match(demo.output(), /json-server :3002 \(pid \d+\) exited \(SIGKILL\)/)
    for (let i = 0; i < 6; i++) {
      const r = await fetch('http://127.0.0.1:8484/instance')
      assert.equal(r.status, 200)
      assert.notEqual(((await r.json()) as { port: number }).port, 3002)
    }
    await until(
      () => demo.output().includes('demo: app_fleet 127.0.0.1:3002 is back in rotation (3 of 3 serving)'),
      'the demo to restart :3002 and report it back in rotation',
      60_000,
    )
    assert.equal(demo.child.exitCode, null, 'the demo is still running')
  } finally {
    spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'stop.mjs')])
  }
  assert.equal(await demo.exited, 0)
  await assert.rejects(fetch('http://127.0.0.1:3002/instance'), 'the restarted json-server is stopped too')
})

test('npm run demo routes /users, /products, /pages to their services', { timeout: 60_000 }, async () => {
  const demo = startDemo('gateway')
  try {
    await until(() => demo.output().includes('demo is up'), 'the demo to come up', 30_000)
    const users = (await (await fetch('http://127.0.0.1:8484/users')).json()) as Array<Record<string, string>>
    assert.equal(users[0].name, 'Ada Lovelace')
    const products = (await (await fetch('http://127.0.0.1:8484/products')).json()) as Array<
      Record<string, string>
    >
    assert.equal(products[0].name, 'Keyboard')
    const pages = (await (await fetch('http://127.0.0.1:8484/pages')).json()) as Array<Record<string, string>>
    assert.equal(pages[0].slug, 'home')
    assert.equal((await fetch('http://127.0.0.1:8484/nothing')).status, 404)
  } finally {
    spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'stop.mjs')])
  }
  assert.equal(await demo.exited, 0)
})
