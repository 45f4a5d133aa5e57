// `watch: true`: the proxy reloads its config file when it changes, as SIGHUP would: a write in
// place, an editor's atomic save (temp file renamed over it), a burst of writes (one reload),
// an invalid or missing file (the running config stays), watch turned off by a reload, and with
// workers the primary alone watching.

import assert from 'node:assert/strict'
import { renameSync, unlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { type RunningProxy, startProxy, startWorkers } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const config = (
  a: Upstream,
  b: Upstream,
  routes = '',
  o: { watch?: boolean; workers?: number } = {},
) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0", workers: ${o.workers ?? 1} }
upstreams:
  a: { servers: ["${a.address}"] }
  b: { servers: ["${b.address}"] }
api_gateway:
  routes:
    a: { path_pattern: "^/a", upstream: a }
${routes}watch: ${o.watch ?? true}
`
const route = (name: string) => `    ${name}: { path_pattern: "^/${name}", upstream: b }\n`

/** The server name that answered, or the status when it is not 200. */
async function serverOf(p: RunningProxy, url: string): Promise<string | number> {
  const r = await fetch(`${p.url}${url}`, { headers: { connection: 'close' } })
  const t = await r.text()
  return r.status === 200 ? JSON.parse(t).server : r.status
}

const reloads = (p: RunningProxy) => p.logs.filter((l) => String(l.msg).startsWith('config reloaded'))

async function withProxy(
  yaml: (a: Upstream, b: Upstream) => string,
  fn: (p: RunningProxy, a: Upstream, b: Upstream) => Promise<void>,
): Promise<void> {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  const proxy = await startProxy(yaml(a, b))
  try {
    await proxy.waitForLog((l) => l.msg === 'watching the config file; a change reloads it', 'the watch')
    await fn(proxy, a, b)
  } finally {
    await proxy.stop()
    await a.close()
    await b.close()
  }
}

describe('watch: true', () => {
  test('a write in place: the new route is served', () =>
    withProxy(config, async (proxy, a, b) => {
      assert.equal(await serverOf(proxy, '/new'), 404)
      writeFileSync(proxy.configFile, config(a, b, route('new')))
      await until(async () => (await serverOf(proxy, '/new')) === 'b', 'the new route served', 15_000)
      const line = await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the reload line')
      assert.deepEqual(line.routes_added, ['new'])
      assert.ok(proxy.logs.some((l) => l.msg === 'reloading the config file' && l.trigger === 'watch'))
    }))

  test('an atomic save (a temp file renamed over the config): the new route is served', () =>
    withProxy(config, async (proxy, a, b) => {
      const tmp = path.join(proxy.dir, '.config.yaml.tmp')
      writeFileSync(tmp, config(a, b, route('renamed')))
      renameSync(tmp, proxy.configFile)
      await until(async () => (await serverOf(proxy, '/renamed')) === 'b', 'the new route served', 15_000)
      // The watch survives the rename: a second save is seen too.
      writeFileSync(tmp, config(a, b, route('renamed') + route('again')))
      renameSync(tmp, proxy.configFile)
      await until(async () => (await serverOf(proxy, '/again')) === 'b', 'the second save served', 15_000)
    }))

  test('a burst of 5 writes is one reload', () =>
    withProxy(config, async (proxy, a, b) => {
      for (let i = 1; i <= 5; i++) writeFileSync(proxy.configFile, config(a, b, route(`r${i}`)))
      const first = await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the reload', 15_000)
      assert.deepEqual(first.routes_added, ['r5'], 'the last write is what was loaded')
      // A later, different write is the second reload; a second reload for the burst would come
      // before it (as "nothing changed").
      writeFileSync(proxy.configFile, config(a, b, route('r5') + route('later')))
      await until(() => reloads(proxy).length >= 2, 'the later reload', 15_000)
      await until(async () => (await serverOf(proxy, '/later')) === 'b', 'the later route served')
      assert.deepEqual(
        reloads(proxy).map((l) => l.routes_added),
        [['r5'], ['later']],
      )
    }))

  test('an invalid or missing file keeps the running config and logs the problem', () =>
    withProxy(config, async (proxy, a, b) => {
      writeFileSync(proxy.configFile, config(a, b, route('good')))
      await until(async () => (await serverOf(proxy, '/good')) === 'b', 'the good route served', 15_000)
      writeFileSync(proxy.configFile, config(a, b, '    bad: a: b\n'))
      const failed = await proxy.waitForLog(
        (l) => l.msg === 'config reload failed; the running config stays',
        'the failed reload',
        15_000,
      )
      assert.match(String((failed.problems as string[])[0]), /config\.yaml:9:\d+: YAML: Nested mappings/)
      assert.equal(await serverOf(proxy, '/good'), 'b', 'still serving the last good config')
      unlinkSync(proxy.configFile)
      await until(
        () =>
          proxy.logs.find(
            (l) =>
              l.msg === 'config reload failed; the running config stays' &&
              String((l.problems as string[])[0]).includes('config file not found'),
          ),
        'the missing file reported',
        15_000,
      )
      assert.equal(await serverOf(proxy, '/good'), 'b', 'still serving after the file went away')
      writeFileSync(proxy.configFile, config(a, b, route('good') + route('back')))
      await until(async () => (await serverOf(proxy, '/back')) === 'b', 'the file back and served', 15_000)
      assert.equal(proxy.child.exitCode, null, 'still running')
    }))

  test('a reload that sets watch: false stops watching; SIGHUP still reloads', () =>
    withProxy(config, async (proxy, a, b) => {
      writeFileSync(proxy.configFile, config(a, b, '', { watch: false }))
      await proxy.waitForLog((l) => l.msg === 'stopped watching the config file', 'watching stopped', 15_000)
      writeFileSync(proxy.configFile, config(a, b, route('unwatched'), { watch: false }))
      proxy.child.kill('SIGHUP')
      await until(async () => (await serverOf(proxy, '/unwatched')) === 'b', 'the SIGHUP reload served')
      // Only the watch change and the SIGHUP reloaded: the last write was not picked up by a watch.
      assert.equal(
        proxy.logs.filter((l) => l.msg === 'reloading the config file' && l.trigger === 'watch').length,
        1,
      )
    }))
})

test('with workers: 2 the primary alone watches and every worker serves the new route', async () => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  const proxy = await startWorkers(config(a, b, '', { workers: 2 }))
  try {
    assert.equal(
      proxy.logs.filter((l) => l.msg === 'watching the config file; a change reloads it').length,
      1,
    )
    writeFileSync(proxy.configFile, config(a, b, route('new'), { workers: 2 }))
    await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the reload', 15_000)
    // Fresh connections may land on either worker: every one serves the new route.
    for (let i = 0; i < 10; i++) assert.equal(await serverOf(proxy, '/new'), 'b')
    assert.equal(reloads(proxy).length, 1, 'one reload, by the primary')
  } finally {
    await proxy.stop()
    await a.close()
    await b.close()
  }
})
