// scripts/profile-stages.mjs (`npm run bench` with BENCH_PROFILE=1) on a hand-made .cpuprofile:
// each sample goes to the nearest stage frame on its stack, else to the bucket of the nearest
// Node module that has one; (idle) is left out; --from/--to keep one window. Run as a user runs it.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { ROOT } from './helpers/proxy'

const SCRIPT = path.join(ROOT, 'scripts', 'profile-stages.mjs')
const APP = 'file:///app'

// id, function, url, children
const tree: Array<[number, string, string, number[]]> = [
  [1, '(root)', '', [2, 3, 4, 5, 10, 13, 17]],
  [2, '(program)', '', []],
  [3, '(idle)', '', []],
  [4, '(garbage collector)', '', []],
  [5, 'processTicksAndRejections', 'node:internal/process/task_queues', [6, 12]],
  [6, 'handle', `${APP}/dist/src/proxy/pipeline.js`, [7, 8]],
  [7, 'resolve', `${APP}/dist/src/routing/resolve.js`, [14]],
  [14, 'exec', '', []],
  [8, 'end', 'node:_http_outgoing', [9]],
  [9, 'writev', '', []],
  [10, 'onStreamRead', 'node:internal/stream_base_commons', [11]],
  [11, 'readBuffer', '', []],
  [12, 'listOnTimeout', 'node:internal/timers', [15]],
  [15, 'write', `${APP}/node_modules/pino/lib/proto.js`, [16]],
  [16, 'writeSync', 'node:fs', []],
  [13, 'record', `${APP}/dist/src/observe/request-metrics.js`, []],
  [17, 'processImmediate', 'node:internal/timers', [18]],
  [18, 'flush', `${APP}/dist/src/net/direct-write.js`, [19]],
  [19, 'writeBuffer', '', []],
]
// One sample on each node but the root, 100 µs apart from startTime 1000: sample i at 1100 + 100 i.
const sampled = tree.map(([id]) => id).filter((id) => id !== 1)
const profile = {
  nodes: tree.map(([id, functionName, url, children]) => ({
    id,
    callFrame: { functionName, url, scriptId: '0', lineNumber: 0, columnNumber: 0 },
    hitCount: 0,
    children,
  })),
  startTime: 1000,
  endTime: 1000 + 100 * sampled.length,
  samples: sampled,
  timeDeltas: sampled.map(() => 100),
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'profile-stages-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const file = path.join(dir, 'tiny.cpuprofile')
writeFileSync(file, JSON.stringify(profile))

interface Row {
  stage: string
  us: number
  calledUs: number
  share: number
}

function run(...args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' })
}

function stages(...args: string[]) {
  const r = run(file, '--json', ...args)
  assert.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { samples: number; busyUs: number; idleUs: number; rows: Row[] }
  const byStage = Object.fromEntries(
    out.rows.filter((x) => x.us > 0).map((x) => [x.stage, [x.us, x.calledUs]]),
  )
  return { ...out, byStage }
}

describe('profile-stages', () => {
  it('gives each sample to the nearest stage frame on its stack, else to a Node module bucket', () => {
    const out = stages()
    assert.equal(out.samples, 18)
    assert.equal(out.idleUs, 100)
    assert.equal(out.busyUs, 1700)
    // [self µs, of which in frames outside the stage]
    assert.deepEqual(out.byStage, {
      'server side': [200, 100], // res.end() and the writev it called
      routing: [200, 100], // the innermost stage wins over proxy core, a native under it counts too
      'proxy core': [100, 0],
      logging: [200, 100], // pino and the fs write it made, though a timer called it
      metrics: [100, 0],
      'socket writes': [200, 100], // the gathered writes, made from an immediate
      'sockets & streams': [200, 0], // a socket read with no stage on its stack
      'event loop': [300, 0],
      GC: [100, 0],
      'native, no JS on the stack': [100, 0],
    })
    const share = out.rows.find((r) => r.stage === 'routing')!.share
    assert.equal(share, 200 / 1700)
  })

  it('keeps only the samples taken between --from and --to', () => {
    const out = stages('--from', '1050', '--to', '1350')
    assert.equal(out.samples, 3)
    assert.deepEqual(out.byStage, { GC: [100, 0], 'native, no JS on the stack': [100, 0] })
  })

  it('prints µs per request as share × the measured CPU per request', () => {
    const r = run(file, '--cpu-per-request', '85')
    assert.equal(r.status, 0, r.stderr)
    // routing: 200 of 1700 µs sampled = 2/17 of 85 µs, half of it in the native it called.
    assert.match(r.stdout, /^\| routing \| 11\.8 % \| 10\.0 \| 5\.0 \|$/m)
    assert.match(r.stdout, /18 samples over 0\.00 s sampled, 5\.6 % idle/)
  })

  it('refuses a bad command line or a file that is not a profile with a message, not a stack trace', () => {
    const notJson = path.join(dir, 'text.cpuprofile')
    writeFileSync(notJson, 'not json')
    const empty = path.join(dir, 'empty.cpuprofile')
    writeFileSync(empty, '{}')
    const orphan = path.join(dir, 'orphan.cpuprofile')
    writeFileSync(orphan, JSON.stringify({ ...profile, nodes: [{ ...profile.nodes[0], children: [99] }] }))
    const stray = path.join(dir, 'stray.cpuprofile')
    writeFileSync(stray, JSON.stringify({ ...profile, samples: [99] }))
    for (const args of [
      [],
      [file, '--from'],
      [file, '--top', 'x'],
      [file, '--nope'],
      [path.join(dir, 'missing')],
      [notJson],
      [empty],
      [orphan],
      [stray],
    ]) {
      const r = run(...args)
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /^profile-stages: /)
    }
  })
})
