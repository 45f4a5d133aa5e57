// /readyz's verdict: the phase first, then the health of the active groups that are checked.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { UpstreamGroup } from '../upstream/group'
import { type Phase, readiness } from './ops'

/** A group as readiness sees it: whether it is health-checked, and its servers' verdicts. */
function group(checked: boolean, healthy: boolean[]): UpstreamGroup {
  return {
    spec: { healthCheck: checked ? { intervalMs: 1000 } : undefined },
    peers: healthy.map((h) => ({ healthy: h })),
  } as unknown as UpstreamGroup
}

const cases: Array<{
  desc: string
  phase: Phase
  groups: Record<string, UpstreamGroup>
  active?: string[]
  status: number
  verdict: string
}> = [
  {
    desc: 'running, no group checked',
    phase: 'running',
    groups: { a: group(false, [false]) },
    status: 200,
    verdict: 'ready',
  },
  {
    desc: 'running, one healthy server',
    phase: 'running',
    groups: { a: group(true, [false, true]) },
    status: 200,
    verdict: 'ready',
  },
  {
    desc: 'starting',
    phase: 'starting',
    groups: { a: group(true, [true]) },
    status: 503,
    verdict: 'starting',
  },
  {
    desc: 'draining',
    phase: 'draining',
    groups: { a: group(true, [true]) },
    status: 503,
    verdict: 'draining',
  },
  {
    desc: 'a checked group with every server down',
    phase: 'running',
    groups: { a: group(true, [true]), b: group(true, [false, false]) },
    status: 503,
    verdict: 'no_healthy_upstream',
  },
  {
    desc: 'a down group the active mode does not use',
    phase: 'running',
    groups: { a: group(true, [true]), b: group(true, [false]) },
    active: ['a'],
    status: 200,
    verdict: 'ready',
  },
]

for (const c of cases) {
  test(`readyz: ${c.desc}`, () => {
    const groups = new Map(Object.entries(c.groups))
    const r = readiness({ phase: c.phase, groups, activeUpstreams: c.active ?? [...groups.keys()] })
    assert.equal(r.status, c.status)
    assert.equal(r.body.status, c.verdict)
    if (c.status === 503) assert.match(String(r.body.reason), /./, 'a 503 says why')
  })
}

test('readyz names the groups that are down and counts their servers', () => {
  const groups = new Map([
    ['a', group(true, [false, false])],
    ['b', group(true, [false])],
    ['c', group(true, [true, false])],
  ])
  const r = readiness({ phase: 'running', groups, activeUpstreams: ['a', 'b', 'c'] })
  assert.equal(r.body.reason, 'no healthy server in upstream groups a, b')
  assert.deepEqual(r.body.upstreams, [
    { name: 'a', healthy: 0, servers: 2 },
    { name: 'b', healthy: 0, servers: 1 },
    { name: 'c', healthy: 1, servers: 2 },
  ])
})
