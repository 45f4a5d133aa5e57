// The breaker's state machine on a fake clock: each trip condition, open -> half-open ->
// closed or reopened, the probe limit, a round of probes that never reports, outcomes of
// requests let through before it opened, the fallback walk, and reloads keeping the state.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { until } from '../../test/helpers/until'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { CircuitBreakerSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import { FollowerBreaker } from './breaker-follower'
import { admittingGroup, type BreakerState, CircuitBreaker, type OutcomeBatch } from './circuit-breaker'
import { UpstreamRegistry } from './registry'

interface Line {
  level: string
  msg: string
  obj: Record<string, unknown>
}

function spec(over: Partial<CircuitBreakerSpec> = {}): CircuitBreakerSpec {
  return {
    consecutiveFailures: undefined,
    errorRatio: undefined,
    latencyP99Ms: undefined,
    minRequests: 10,
    windowSecs: 10,
    openMs: 5000,
    halfOpenRequests: 2,
    fallback: undefined,
    ...over,
  }
}

function harness(over: Partial<CircuitBreakerSpec>) {
  const lines: Line[] = []
  const log = {
    warn: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'warn', msg, obj }),
    info: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'info', msg, obj }),
  } as unknown as Logger
  const clock = { t: 1_000_000 }
  const changes: BreakerState[] = []
  const b = new CircuitBreaker(spec(over), 'g', { log, now: () => clock.t, onChange: (s) => changes.push(s) })
  return { b, lines, clock, changes }
}

describe('trip conditions', () => {
  test('consecutive failures open it; a success in between starts the count again', () => {
    const { b, lines } = harness({ consecutiveFailures: 3 })
    b.failure()
    b.failure()
    b.success(1)
    b.failure()
    b.failure()
    assert.equal(b.state, 'closed')
    b.failure()
    assert.equal(b.state, 'open')
    assert.equal(b.admit(), false)
    const line = lines.find((l) => l.msg === 'circuit breaker opened')!
    assert.equal(line.level, 'warn')
    assert.equal(line.obj.reason, 'consecutive_failures')
    assert.equal(line.obj.upstream, 'g')
    b.dispose()
  })

  test('the error ratio opens it only once min_requests were seen in the window', () => {
    const { b, lines } = harness({ errorRatio: 0.5, minRequests: 10 })
    for (let i = 0; i < 8; i++) b.failure()
    assert.equal(b.state, 'closed', 'eight failures are not enough requests')
    b.success(1)
    assert.equal(b.state, 'closed')
    b.success(1)
    assert.equal(b.state, 'open', '8 of 10 failed')
    assert.equal(lines.at(-1)!.obj.reason, 'error_ratio')
    assert.equal(lines.at(-1)!.obj.error_ratio, 0.8)
    b.dispose()
  })

  test('the window forgets outcomes older than window_secs', () => {
    const { b, clock } = harness({ errorRatio: 0.5, minRequests: 4, windowSecs: 2 })
    for (let i = 0; i < 3; i++) b.failure()
    clock.t += 3000 // the three failures leave the window
    for (let i = 0; i < 3; i++) b.success(1)
    b.failure()
    assert.equal(b.state, 'closed', '1 of 4 in the window failed')
    b.failure()
    b.failure()
    assert.equal(b.state, 'open', '3 of 6 in the window failed')
    b.dispose()
  })

  test('a ratio under the threshold keeps it closed however many requests', () => {
    const { b } = harness({ errorRatio: 0.5, minRequests: 10 })
    for (let i = 0; i < 1000; i++) {
      if (i % 3 === 0) b.failure()
      else b.success(1)
    }
    assert.equal(b.state, 'closed')
  })

  test('p99 latency over the threshold opens it: nearest rank, once min_requests were timed', () => {
    const { b, lines } = harness({ latencyP99Ms: 100, minRequests: 100 })
    // 100 samples with one slow one: the p99 (99th of 100) is fast.
    b.success(500)
    for (let i = 0; i < 99; i++) b.success(5)
    assert.equal(b.state, 'closed')
    // A second slow sample of 101: ceil(0.99 * 101) = 100th is slow.
    b.success(500)
    assert.equal(b.state, 'open')
    assert.equal(lines.at(-1)!.obj.reason, 'latency_p99')
    b.dispose()
  })

  test('slow answers below min_requests do not open it; outcomes without a time are not timed', () => {
    const { b } = harness({ latencyP99Ms: 100, minRequests: 5 })
    for (let i = 0; i < 4; i++) b.success(1000)
    assert.equal(b.state, 'closed')
    for (let i = 0; i < 10; i++) b.failure() // connection errors: no answer time
    assert.equal(b.state, 'closed', 'no error_ratio set, no latency sample')
    b.success(1000)
    assert.equal(b.state, 'open')
    b.dispose()
  })
})

describe('open, half-open, closed', () => {
  test('open refuses for open_secs, then lets half_open_requests probes through; their success closes it', () => {
    const { b, clock, lines, changes } = harness({ consecutiveFailures: 1, halfOpenRequests: 2 })
    b.failure()
    assert.equal(b.admit(), false)
    clock.t += 4999
    assert.equal(b.admit(), false)
    clock.t += 1
    assert.equal(b.state, 'half_open')
    assert.equal(b.admit(), true)
    assert.equal(b.admit(), true)
    assert.equal(b.admit(), false, 'only two probes at once')
    b.success(1)
    assert.equal(b.state, 'half_open')
    assert.equal(b.admit(), false, 'the round is still out')
    b.success(1)
    assert.equal(b.state, 'closed')
    assert.equal(b.admit(), true)
    assert.deepEqual(changes, ['open', 'half_open', 'closed'])
    assert.deepEqual(
      lines.map((l) => [l.level, l.msg]),
      [
        ['warn', 'circuit breaker opened'],
        ['info', 'circuit breaker half-open: letting probe requests through'],
        ['info', 'circuit breaker closed: probe requests succeeded'],
      ],
    )
  })

  test('a failed probe reopens it for another open_secs', () => {
    const { b, clock, lines } = harness({ consecutiveFailures: 1, halfOpenRequests: 3 })
    b.failure()
    clock.t += 5000
    assert.equal(b.admit(), true)
    b.success(1)
    b.failure()
    assert.equal(b.state, 'open')
    assert.equal(lines.at(-1)!.msg, 'circuit breaker reopened: a probe failed')
    assert.equal(lines.at(-1)!.obj.reason, 'half_open_probe_failed')
    clock.t += 4999
    assert.equal(b.admit(), false)
    clock.t += 1
    assert.equal(b.admit(), true)
    b.dispose()
  })

  test('probes that never report are replaced by a new round after open_secs', () => {
    const { b, clock } = harness({ consecutiveFailures: 1, halfOpenRequests: 1 })
    b.failure()
    clock.t += 5000
    assert.equal(b.admit(), true)
    clock.t += 4999
    assert.equal(b.admit(), false)
    clock.t += 1
    assert.equal(b.admit(), true, 'a new round')
    assert.equal(b.admit(), false)
    b.success(1)
    assert.equal(b.state, 'closed')
  })

  test('outcomes of requests let through before it opened are ignored while open', () => {
    const { b, clock } = harness({ consecutiveFailures: 2, halfOpenRequests: 1 })
    b.failure()
    b.failure()
    b.success(1)
    b.success(1)
    assert.equal(b.state, 'open')
    b.failure()
    clock.t += 5000
    assert.equal(b.state, 'half_open', 'late failures did not extend the open time')
    b.dispose()
  })

  test('closing forgets the counts that opened it', () => {
    const { b, clock } = harness({ errorRatio: 0.5, minRequests: 4, halfOpenRequests: 1 })
    for (let i = 0; i < 4; i++) b.failure()
    assert.equal(b.state, 'open')
    clock.t += 5000
    assert.equal(b.admit(), true)
    b.success(1)
    assert.equal(b.state, 'closed')
    b.failure()
    b.failure()
    b.failure()
    assert.equal(b.state, 'closed', 'three outcomes are under min_requests again')
  })

  test('a clock that steps back does not break the window', () => {
    const { b, clock } = harness({ errorRatio: 0.5, minRequests: 4 })
    b.success(1)
    clock.t -= 60_000
    b.success(1)
    b.failure()
    b.failure()
    assert.equal(b.state, 'open')
    b.dispose()
  })
})

describe('with workers: the primary’s breaker fed by batches, and the workers’ followers', () => {
  const batch = (o: Partial<OutcomeBatch>): OutcomeBatch => ({
    successes: 0,
    failures: 0,
    timed: 0,
    slow: 0,
    sawSuccess: false,
    trailingFailures: 0,
    ...o,
  })

  test('consecutive failures add up across batches; a success in a batch keeps only the failures after it', () => {
    const { b } = harness({ consecutiveFailures: 5 })
    b.apply(batch({ failures: 3, trailingFailures: 3 }))
    b.apply(batch({ successes: 1, failures: 3, sawSuccess: true, trailingFailures: 1 }))
    assert.equal(b.state, 'closed', 'one failure in a row after the success')
    b.apply(batch({ failures: 3, trailingFailures: 3 }))
    assert.equal(b.state, 'closed', 'four in a row')
    b.apply(batch({ failures: 1, trailingFailures: 1 }))
    assert.equal(b.state, 'open')
    b.dispose()
  })

  test('batches feed the window; in half-open a batch with a failure reopens, successes close', () => {
    const { b, clock } = harness({ errorRatio: 0.5, latencyP99Ms: 100, minRequests: 10, halfOpenRequests: 2 })
    b.apply(batch({ successes: 6, failures: 3, sawSuccess: true, timed: 9 }))
    assert.equal(b.state, 'closed')
    b.apply(batch({ failures: 3, timed: 3, trailingFailures: 3 }))
    assert.equal(b.state, 'open', '6 of 12 failed')
    clock.t += 5000
    b.apply(batch({ successes: 1, sawSuccess: true }))
    assert.equal(b.state, 'half_open')
    b.apply(batch({ failures: 1, trailingFailures: 1 }))
    assert.equal(b.state, 'open')
    clock.t += 5000
    b.apply(batch({ successes: 2, sawSuccess: true }))
    assert.equal(b.state, 'closed')
  })

  test('a follower batches outcomes, refuses while open, and needs a slot from the primary when half-open', async () => {
    const reports: OutcomeBatch[] = []
    let grant = true
    let asked = 0
    const f = new FollowerBreaker(
      { ...spec(), consecutiveFailures: 3, latencyP99Ms: 100 },
      {
        report: (b) => reports.push(b),
        probe: async () => {
          asked++
          return grant
        },
      },
    )
    f.failure(5)
    f.success(500)
    f.failure()
    assert.equal(reports.length, 0, 'batched')
    await until(() => reports.length === 1, 'the batch')
    assert.deepEqual(reports[0], {
      successes: 1,
      failures: 2,
      timed: 2,
      slow: 1,
      sawSuccess: true,
      trailingFailures: 1,
    })
    f.set('open', 1)
    assert.equal(f.admit(), false)
    f.failure()
    assert.equal(f.state, 'open')
    f.set('half_open', 1)
    assert.equal(f.admit(), false, 'no slot yet: refused, and one is asked for')
    assert.equal(f.admit(), false, 'one question at a time')
    await until(() => asked === 1 && f.admit(), 'the slot')
    grant = false
    assert.equal(f.admit(), false, 'used; another is asked for')
    f.success(1)
    assert.equal(reports.length, 2, 'a half-open outcome is sent at once')
    await until(() => asked === 2, 'the second question')
    await new Promise((r) => setImmediate(r))
    assert.equal(f.admit(), false, 'the primary gave no slot')
    f.set('closed', 1)
    assert.equal(f.admit(), true)
    assert.equal(f.code, 0)
    f.dispose()
  })
})

describe('fallback walk', () => {
  const quiet = { info() {}, warn() {} } as unknown as Logger
  const group = (name: string, fallback?: string, withBreaker = true) => ({
    name,
    breaker: withBreaker
      ? new CircuitBreaker(spec({ consecutiveFailures: 1, openMs: 60_000, fallback }), name, { log: quiet })
      : undefined,
  })

  test('a closed breaker keeps the group; an open one hands over to its fallback, then that one’s', () => {
    const a = group('a', 'b')
    const b = group('b', 'c')
    const c = group('c', undefined, false)
    const groups = new Map([
      ['a', a],
      ['b', b],
      ['c', c],
    ])
    assert.equal(admittingGroup(a, groups), a)
    a.breaker!.failure()
    assert.equal(admittingGroup(a, groups), b)
    b.breaker!.failure()
    assert.equal(admittingGroup(a, groups), c)
    a.breaker!.dispose()
    b.breaker!.dispose()
  })

  test('no fallback, or a fallback whose breaker is open too: refused', () => {
    const a = group('a')
    const b = group('b', 'a')
    const groups = new Map([
      ['a', a],
      ['b', b],
    ])
    a.breaker!.failure()
    assert.equal(admittingGroup(a, groups), undefined)
    b.breaker!.failure()
    assert.equal(admittingGroup(b, groups), undefined)
    a.breaker!.dispose()
    b.breaker!.dispose()
  })
})

describe('reload', () => {
  const quiet = { info() {}, warn() {}, error() {} } as unknown as Logger
  const cfg = (breaker: string, servers = '"127.0.0.1:1"') => {
    const r = compile(
      parseConfigText(
        'c.yaml',
        `mode: load_balancer\nupstreams: { g: { servers: [${servers}], circuit_breaker: ${breaker} } }\nload_balancer: { upstream: g }\n`,
        {},
      ),
    )
    assert.ok(r.ok, JSON.stringify(!r.ok && r.problems))
    return r.snapshot
  }

  test('an open breaker stays open across a reload that keeps its settings, and not one that changes them', () => {
    const registry = new UpstreamRegistry(quiet, undefined, { healthChecks: false })
    try {
      const first = cfg('{ consecutive_failures: 1, open_secs: 60 }')
      const groups = registry.build(first)
      registry.activate(first, groups)
      groups.get('g')!.breaker!.failure()
      assert.equal(groups.get('g')!.breaker!.state, 'open')
      // Another server list, same breaker: the state stays.
      const same = cfg('{ consecutive_failures: 1, open_secs: 60 }', '"127.0.0.1:2"')
      const kept = registry.build(same)
      registry.activate(same, kept)
      assert.equal(kept.get('g')!.breaker, groups.get('g')!.breaker)
      assert.equal(kept.get('g')!.breaker!.state, 'open')
      // Other breaker settings: a new breaker, closed.
      const changed = cfg('{ consecutive_failures: 2, open_secs: 60 }')
      const fresh = registry.build(changed)
      registry.activate(changed, fresh)
      assert.equal(fresh.get('g')!.breaker!.state, 'closed')
    } finally {
      registry.destroy()
    }
  })

  test('examples/circuit-breaker/config.yaml loads', () => {
    const file = path.resolve(__dirname, '..', '..', '..', 'examples', 'circuit-breaker', 'config.yaml')
    const r = compile(parseConfigText(file, readFileSync(file, 'utf8'), {}))
    assert.ok(r.ok, JSON.stringify(!r.ok && r.problems))
    assert.equal(r.snapshot.upstreams.get('api')!.circuitBreaker!.fallback, 'api_static')
  })

  test('defaults apply when no trip condition is set', () => {
    const s = cfg('{}')
    const spec = s.upstreams.get('g')!.circuitBreaker!
    assert.equal(spec.consecutiveFailures, 5)
    assert.equal(spec.errorRatio, 0.5)
    assert.equal(spec.latencyP99Ms, undefined)
    assert.equal(spec.openMs, 30_000)
    assert.equal(spec.halfOpenRequests, 3)
    const only = cfg('{ latency_p99_ms: 200 }').upstreams.get('g')!.circuitBreaker!
    assert.equal(only.consecutiveFailures, undefined, 'a condition set: only the ones set apply')
    assert.equal(only.errorRatio, undefined)
  })
})
