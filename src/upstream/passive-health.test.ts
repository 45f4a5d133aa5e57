import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import type { Logger } from '../observe/logger'
import { PassiveHealth } from './passive-health'
import { Peer } from './peer'
import { RetryBudget } from './retry-budget'

const lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> = []
const log = {
  warn: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'warn', msg, obj }),
  info: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'info', msg, obj }),
} as unknown as Logger

const made: Peer[] = []
after(() => {
  for (const p of made) p.destroy()
})
const peer = (i: number) => {
  const p = new Peer(
    'g',
    { address: `127.0.0.1:${6000 + i}`, host: '127.0.0.1', port: 6000 + i, weight: 1 },
    { enabled: false, servername: undefined },
    { maxConnections: 1, idleTimeoutMs: 1000, connectTimeoutMs: 1000 },
  )
  made.push(p)
  return p
}

test('ejects after N consecutive failures, for a cool-down that grows with repeat offences', () => {
  const ph = new PassiveHealth(
    { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 2500, maxEjectionPercent: 100 },
    'g',
    log,
  )
  const ps = [peer(0), peer(1)]
  const [a] = ps as [Peer]
  const t = 1_000_000
  ph.failure(a, ps, 'x', t)
  ph.failure(a, ps, 'x', t)
  ph.success(a)
  ph.failure(a, ps, 'x', t)
  ph.failure(a, ps, 'x', t)
  assert.equal(a.ejectedUntil, 0, 'a success resets the count')
  ph.failure(a, ps, 'x', t)
  assert.equal(a.ejectedUntil, t + 1000)
  assert.ok(!a.available(t + 999) && a.available(t + 1000))
  for (let i = 0; i < 3; i++) ph.failure(a, ps, 'x', t + 1000)
  assert.equal(a.ejectedUntil, t + 1000 + 2000, 'second offence: twice the base')
  for (let i = 0; i < 3; i++) ph.failure(a, ps, 'x', t + 3000)
  assert.equal(a.ejectedUntil, t + 3000 + 2500, 'capped at the max')
  assert.equal(lines.filter((l) => l.msg.includes('ejected after')).length, 3)
})

test('never ejects the last available peer, and says so', () => {
  const ph = new PassiveHealth(
    { consecutiveFailures: 2, baseEjectionMs: 1000, maxEjectionMs: 5000, maxEjectionPercent: 100 },
    'g',
    log,
  )
  const ps = [peer(2), peer(3)]
  ps[1]!.healthy = false
  lines.length = 0
  ph.failure(ps[0]!, ps, 'connect_failed', 5)
  ph.failure(ps[0]!, ps, 'connect_failed', 5)
  assert.equal(ps[0]!.ejectedUntil, 0)
  assert.match(lines[0]!.msg, /last one available in its group; not ejecting/)
  assert.equal(lines[0]!.level, 'warn')
})

describe('max_ejection_percent caps the share of a group ejected at once', () => {
  // Every peer fails; the cap (rounded down) and the last-available rule decide how many leave.
  const cases = [
    { peers: 2, percent: 0, ejected: 0, capped: true },
    { peers: 2, percent: 50, ejected: 1, capped: false },
    { peers: 2, percent: 100, ejected: 1, capped: false },
    { peers: 3, percent: 0, ejected: 0, capped: true },
    { peers: 3, percent: 50, ejected: 1, capped: true },
    { peers: 3, percent: 100, ejected: 2, capped: false },
    { peers: 4, percent: 0, ejected: 0, capped: true },
    { peers: 4, percent: 50, ejected: 2, capped: true },
    { peers: 4, percent: 100, ejected: 3, capped: false },
    { peers: 10, percent: 0, ejected: 0, capped: true },
    { peers: 10, percent: 50, ejected: 5, capped: true },
    { peers: 10, percent: 100, ejected: 9, capped: false },
  ]
  let next = 100
  for (const c of cases) {
    const desc = `${c.peers} peers, ${c.percent}%: at most ${c.ejected} ejected${c.capped ? ', the cap says so' : ''}`
    test(desc, () => {
      const ph = new PassiveHealth(
        {
          consecutiveFailures: 1,
          baseEjectionMs: 10_000,
          maxEjectionMs: 10_000,
          maxEjectionPercent: c.percent,
        },
        'g',
        log,
      )
      const ps = Array.from({ length: c.peers }, () => peer(next++))
      lines.length = 0
      const t = 2_000_000
      for (let round = 0; round < 3; round++) for (const p of ps) ph.failure(p, ps, 'status_500', t)
      assert.equal(ps.filter((p) => !p.available(t)).length, c.ejected)
      const cap = lines.filter((l) => l.msg.includes('past max_ejection_percent'))
      assert.equal(cap.length > 0, c.capped, 'the cap is logged exactly when it stops an ejection')
      if (c.capped) assert.equal(cap[0]!.level, 'warn')
      assert.ok(
        ps.some((p) => p.available(t)),
        'never the last available one',
      )
    })
  }

  test('an ejection that has ended no longer counts toward the cap', () => {
    const ph = new PassiveHealth(
      { consecutiveFailures: 1, baseEjectionMs: 1000, maxEjectionMs: 1000, maxEjectionPercent: 50 },
      'g',
      log,
    )
    const ps = [peer(next++), peer(next++), peer(next++)]
    const t = 3_000_000
    ph.failure(ps[0]!, ps, 'x', t)
    ph.failure(ps[1]!, ps, 'x', t)
    assert.deepEqual(
      ps.map((p) => p.available(t)),
      [false, true, true],
    )
    ph.failure(ps[1]!, ps, 'x', t + 1000)
    assert.deepEqual(
      ps.map((p) => p.available(t + 1000)),
      [true, false, true],
    )
  })
})

test('retry budget: a floor per second, then a share of requests over 10 s', () => {
  const b = new RetryBudget(20, 1) // floor: 10 retries per 10 s window
  const t = 50_000
  for (let i = 0; i < 10; i++) assert.ok(b.tryRetry(t), `floor retry ${i}`)
  assert.ok(!b.tryRetry(t), 'no traffic: the floor is spent')
  for (let i = 0; i < 100; i++) b.request(t)
  for (let i = 0; i < 10; i++) assert.ok(b.tryRetry(t), `20% of 100 = 20 in all: ${i}`)
  assert.ok(!b.tryRetry(t))
  assert.ok(b.tryRetry(t + 11_000), 'the window moves on')
})
