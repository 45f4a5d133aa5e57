// The config keeper without a proxy around it: unsaved changes as the net difference between
// the file and the live config, refused changes named by what they tried, reloads from the
// file, and `watch: true` reloading on a change of the file.

import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import pino from 'pino'
import { until } from '../../test/helpers/until'
import { ChangeRefused } from '../config/refused'
import { loadPlan } from '../proxy/runtime'
import { ConfigKeeper } from './keeper'

const CONFIG = (extra = '') => `# a comment
mode: api_gateway
upstreams:
  api: { servers: ["127.0.0.1:1"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
${extra}`

function setup(yaml: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-keeper-'))
  const file = path.join(dir, 'config.yaml')
  writeFileSync(file, yaml)
  const r = loadPlan(file, {}, {})
  assert.ok(r.ok)
  const lines: Array<Record<string, unknown> & { msg: string }> = []
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  const applied: Array<readonly string[]> = []
  const keeper = new ConfigKeeper(
    {
      file,
      env: {},
      overrides: {},
      log,
      watchDebounceMs: 100,
      apply: async (_next, _text, unsaved) => {
        applied.push(unsaved)
      },
    },
    r.plan,
    yaml,
  )
  return { file, keeper, lines, applied }
}

const addRoute = (name: string) =>
  ({ op: 'addRoute', body: { name, path_pattern: `^/${name}`, upstream: 'api' } }) as const

describe('unsaved changes: the net difference between the file and the live config', () => {
  test('a route added then removed leaves none', async () => {
    const k = setup(CONFIG())
    await k.keeper.change(addRoute('x'))
    assert.deepEqual(k.keeper.unsaved, ['added route x'])
    await k.keeper.change({ op: 'removeRoute', name: 'x' })
    assert.deepEqual(k.keeper.unsaved, [])
    assert.deepEqual(k.applied.at(-1), [], 'and the owner (workers) is told so')
  })

  test('a server added then removed, a file route removed: only the removal is left', async () => {
    const k = setup(CONFIG())
    await k.keeper.change({ op: 'addUpstream', body: { name: 'api', servers: ['127.0.0.1:2'] } })
    await k.keeper.change(addRoute('x'))
    await k.keeper.change({ op: 'removeServer', name: 'api', server: '127.0.0.1:2' })
    await k.keeper.change({ op: 'removeRoute', name: 'x' })
    await k.keeper.change({ op: 'addUpstream', body: { name: 'more', servers: ['127.0.0.1:3'] } })
    assert.deepEqual(k.keeper.unsaved, ['added upstream group more (1 server)'])
  })

  test('a reload reports the net changes it dropped, and there are none after it', async () => {
    const k = setup(CONFIG())
    await k.keeper.change(addRoute('x'))
    await k.keeper.change(addRoute('y'))
    await k.keeper.change({ op: 'removeRoute', name: 'x' })
    const r = await k.keeper.reload()
    assert.equal(r.result, 'success')
    assert.deepEqual(r.changes?.routes_removed, ['y'])
    assert.deepEqual(r.dropped_runtime_changes, ['added route y'])
    assert.deepEqual(k.keeper.unsaved, [])
  })

  test('with control_api.persist the file is written and nothing is unsaved', async () => {
    const k = setup(CONFIG('control_api: { persist: true }\n'))
    const r = await k.keeper.change(addRoute('x'))
    assert.deepEqual(r, { change: 'added route x', saved: true, revision: 1 })
    assert.deepEqual(k.keeper.unsaved, [])
    assert.match(readFileSync(k.file, 'utf8'), /# a comment[\s\S]*x:/)
    assert.equal((await k.keeper.reload()).result, 'unchanged')
  })
})

test('a refused change names the change and key paths, never lines of the edited text', async () => {
  const k = setup(CONFIG())
  // Earlier unsaved changes make the edited text longer than the file.
  for (const n of ['a', 'b', 'c', 'd']) await k.keeper.change(addRoute(n))
  const err = await k.keeper
    .change({ op: 'addRoute', body: { name: 'bad', path_pattern: '^/(', upstream: 'apii' } })
    .then(
      () => assert.fail('accepted'),
      (e: unknown) => e,
    )
  assert.ok(err instanceof ChangeRefused)
  assert.equal(err.reason, 'invalid')
  assert.equal(err.message, 'the change (added route bad) was not made: the config would be invalid')
  assert.equal(err.details.change, 'added route bad')
  assert.deepEqual(err.details.problems, [
    'api_gateway.routes.bad.path_pattern: regular expression does not compile: /^/(/: Unterminated group',
    'api_gateway.routes.bad.upstream: upstream "apii" is not defined under upstreams; did you mean "api"? (defined: api)',
  ])
  assert.deepEqual(k.keeper.unsaved, ['added route a', 'added route b', 'added route c', 'added route d'])
})

describe('watch: true', () => {
  test('a change of the file reloads it; the content last loaded does not', async () => {
    const k = setup(CONFIG('watch: true\n'))
    try {
      assert.ok(k.lines.some((l) => l.msg === 'watching the config file; a change reloads it'))
      writeFileSync(k.file, CONFIG('watch: true\n'))
      await until(
        () => k.lines.some((l) => l.msg === 'config file written with the content last loaded; not reloaded'),
        'the unchanged write seen',
      )
      writeFileSync(k.file, CONFIG('watch: true\n').replace('^/"', '^/v2"'))
      const line = await until(() => k.lines.find((l) => l.msg === 'config reloaded'), 'the reload')
      assert.deepEqual(line.routes_changed, ['api'])
      assert.equal(k.lines.filter((l) => l.msg === 'reloading the config file').length, 1)
    } finally {
      k.keeper.close()
    }
  })

  test('a reload that turns watch off stops watching; an invalid file keeps the config', async () => {
    const k = setup(CONFIG('watch: true\n'))
    try {
      writeFileSync(k.file, 'mode: [\n')
      await until(
        () => k.lines.find((l) => l.msg === 'config reload failed; the running config stays'),
        'the failed reload',
      )
      writeFileSync(k.file, CONFIG('watch: false\n'))
      await until(() => k.lines.some((l) => l.msg === 'stopped watching the config file'), 'watching to stop')
      assert.deepEqual(
        k.lines.filter((l) => l.msg.startsWith('config reload')).map((l) => l.msg),
        ['config reload failed; the running config stays', 'config reloaded'],
      )
    } finally {
      k.keeper.close()
    }
  })
})

describe('revision and history, for the dashboard', () => {
  test('the revision counts changes of the live text; reloads and changes are remembered, the last 20', async () => {
    const k = setup(CONFIG())
    const r0 = k.keeper.configRevision()
    assert.equal(r0.revision, 1)
    assert.equal(r0.source, k.file)
    assert.match(r0.hash, /^[0-9a-f]{12}$/)
    assert.deepEqual(r0.history, [])
    const same = await k.keeper.reload()
    assert.equal(same.result, 'unchanged')
    assert.equal(k.keeper.configRevision().revision, 1, 'the same text is the same revision')
    await k.keeper.change(addRoute('x'))
    const r1 = k.keeper.configRevision()
    assert.equal(r1.revision, 2)
    assert.notEqual(r1.hash, r0.hash)
    writeFileSync(k.file, 'mode: [')
    const bad = await k.keeper.reload()
    assert.equal(bad.result, 'failure')
    assert.equal(k.keeper.configRevision().revision, 2, 'a failed reload changes nothing')
    const h = k.keeper.configRevision().history
    assert.deepEqual(
      h.map((e) => [e.kind, e.result]),
      [
        ['reload', 'unchanged'],
        ['change', 'success'],
        ['reload', 'failure'],
      ],
    )
    assert.deepEqual(h[1]!.summary, ['added route x'])
    assert.ok(h[2]!.summary.length > 0 && h[2]!.summary[0]!.includes('config.yaml'), h[2]!.summary.join())
    for (let i = 0; i < 25; i++) await k.keeper.reload()
    assert.equal(k.keeper.configRevision().history.length, 20)
  })
})
