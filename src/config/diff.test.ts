import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compilePlan } from '../proxy/runtime'
import { describeDiff, diffSnapshots } from './diff'
import { parseConfigText } from './load'
import type { Snapshot } from './snapshot'

const BASE = `mode: api_gateway
upstreams:
  api: { servers: ["127.0.0.1:1"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
`

function snap(yaml: string): Snapshot {
  const r = compilePlan(parseConfigText('c.yaml', yaml, {}))
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems))
  return r.plan.snapshot
}

describe('describeDiff: a diff in the words of runtime changes', () => {
  const cases: Array<{ desc: string; to: string; want: string[] }> = [
    { desc: 'the same config: nothing', to: BASE, want: [] },
    {
      desc: 'a route added',
      to: BASE.replace('    api: {', '    x: { path_pattern: "^/x", upstream: api }\n    api: {'),
      want: ['added route x'],
    },
    {
      desc: 'a route removed',
      to: BASE.replace(
        '    api: { path_pattern: "^/", upstream: api }\n',
        '    other: { path_pattern: "^/o", upstream: api }\n',
      ),
      want: ['added route other', 'removed route api'],
    },
    {
      desc: 'a group and servers',
      to: BASE.replace(
        'api: { servers: ["127.0.0.1:1"] }',
        'api: { servers: ["127.0.0.1:2"] }\n  more: { servers: ["127.0.0.1:3", "127.0.0.1:4"] }',
      ),
      want: [
        'added upstream group more (2 servers)',
        'added server 127.0.0.1:2 to api',
        'removed server 127.0.0.1:1 from api',
      ],
    },
    { desc: 'a top-level setting', to: `${BASE}watch: true\n`, want: ['changed watch'] },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const b = snap(c.to)
      assert.deepEqual(describeDiff(diffSnapshots(snap(BASE), b), b), c.want)
    })
  }
})
