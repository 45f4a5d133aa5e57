import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import type { HashKey, Strategy } from '../../config/snapshot'
import { Peer } from '../peer'
import { ConsistentHash, keyOf } from './consistent-hash'
import { createSelector, type SelectContext } from './index'
import { PowerOfTwo } from './random'

const pool = { maxConnections: 1, idleTimeoutMs: 1000, connectTimeoutMs: 1000 }
const made: Peer[] = []
after(() => {
  for (const p of made) p.destroy()
})

function peers(weights: number[]): Peer[] {
  return weights.map((weight, i) => {
    const p = new Peer(
      'g',
      { address: `127.0.0.1:${5000 + i}`, host: '127.0.0.1', port: 5000 + i, weight },
      { enabled: false, servername: undefined },
      pool,
    )
    made.push(p)
    return p
  })
}

const ctx = (over: Partial<SelectContext> = {}): SelectContext => ({
  clientIp: '192.0.2.1',
  path: '/',
  rawHeaders: [],
  ...over,
})
const name = (p: Peer | undefined) => (p ? String(p.port - 5000) : '-')
const NOW = 1_000_000
const pick = (strategy: Strategy, ps: Peer[], n: number, key: HashKey = { kind: 'client_ip' }) => {
  const s = createSelector(strategy, ps, key, 0)
  return Array.from({ length: n }, () => name(s.candidates(ctx(), NOW)[0])).join('')
}

describe('round_robin', () => {
  test('cycles in server order; unavailable peers are skipped', () => {
    const ps = peers([1, 1, 1])
    assert.equal(pick('round_robin', ps, 6), '012012')
    ps[1]!.healthy = false
    assert.equal(pick('round_robin', ps, 4), '0202')
    ps[1]!.healthy = true
    ps[2]!.ejectedUntil = NOW + 1
    assert.equal(pick('round_robin', ps, 3), '010', 'an ejected peer is skipped until its time is up')
  })
  test('candidates list the fallbacks after the first choice', () => {
    const s = createSelector('round_robin', peers([1, 1, 1]), { kind: 'client_ip' }, 0)
    assert.deepEqual(s.candidates(ctx(), NOW).map(name), ['0', '1', '2'])
    assert.deepEqual(s.candidates(ctx(), NOW).map(name), ['1', '2', '0'])
  })
  test('no available peer: no candidates', () => {
    const ps = peers([1, 1])
    for (const p of ps) p.healthy = false
    assert.equal(createSelector('round_robin', ps, { kind: 'client_ip' }, 0).candidates(ctx(), NOW).length, 0)
  })
})

describe('weighted (smooth weighted round robin)', () => {
  test('5:1:1 spreads the heavy server out: a a b a c a a', () => {
    assert.equal(pick('weighted', peers([5, 1, 1]), 7), '0010200')
  })
  test('1:2:3 gives exactly 1:2:3 over whole cycles, never bunching a server more than needed', () => {
    const seq = pick('weighted', peers([1, 2, 3]), 600)
    const count = (c: string) => seq.split(c).length - 1
    assert.deepEqual([count('0'), count('1'), count('2')], [100, 200, 300])
    assert.ok(!seq.includes('222'), 'the weight-3 server never gets three in a row')
  })
})

describe('least_connections', () => {
  test('the peer with the fewest in flight wins; ties go round robin', () => {
    const ps = peers([1, 1, 1])
    const s = createSelector('least_connections', ps, { kind: 'client_ip' }, 0)
    assert.equal(
      Array.from({ length: 3 }, () => name(s.candidates(ctx(), NOW)[0])).join(''),
      '012',
      'all idle: round robin',
    )
    ps[0]!.inFlight = 3
    ps[1]!.inFlight = 1
    ps[2]!.inFlight = 2
    assert.deepEqual(s.candidates(ctx(), NOW).map(name), ['1', '2', '0'])
  })
  test('weights scale the count', () => {
    const ps = peers([1, 4])
    ps[0]!.inFlight = 1
    ps[1]!.inFlight = 3 // 3/4 < 1/1
    assert.equal(
      name(createSelector('least_connections', ps, { kind: 'client_ip' }, 0).candidates(ctx(), NOW)[0]),
      '1',
    )
  })
})

describe('random (power of two choices)', () => {
  test('of the two drawn, the less loaded wins', () => {
    const ps = peers([1, 1, 1])
    ps[0]!.inFlight = 10
    // Draws: 0.1 -> peer 0, then 0.9 over the remaining two -> peer 2.
    const draws = [0.1, 0.9]
    const s = new PowerOfTwo(ps, () => draws.shift()!)
    assert.equal(name(s.candidates(ctx(), NOW)[0]), '2')
  })
  test('spreads evenly over idle peers and avoids a busy one', () => {
    const ps = peers([1, 1, 1])
    const s = new PowerOfTwo(ps)
    const counts = [0, 0, 0]
    for (let i = 0; i < 3000; i++) counts[s.candidates(ctx(), NOW)[0]!.port - 5000]!++
    for (const c of counts) assert.ok(c > 700 && c < 1300, `even spread: ${counts}`)
    ps[1]!.inFlight = 5
    const busy = [0, 0, 0]
    for (let i = 0; i < 3000; i++) busy[s.candidates(ctx(), NOW)[0]!.port - 5000]!++
    assert.ok(busy[1]! < 100, `the busy peer is chosen only when drawn against itself: ${busy}`)
  })
})

describe('consistent_hash', () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
  test('a key always lands on the same peer, and keys spread roughly evenly', () => {
    const ps = peers([1, 1, 1, 1])
    const s = new ConsistentHash(ps, { kind: 'client_ip' })
    const counts = new Map<string, number>()
    for (const k of keys) {
      const a = name(s.candidates(ctx({ clientIp: k }), NOW)[0])
      assert.equal(name(s.candidates(ctx({ clientIp: k }), NOW)[0]), a)
      counts.set(a, (counts.get(a) ?? 0) + 1)
    }
    for (const c of counts.values()) assert.ok(c > 1700 && c < 3300, `roughly a quarter each: ${[...counts]}`)
  })
  test('when a peer leaves only its keys move (about 1/N)', () => {
    const ps = peers([1, 1, 1, 1])
    const s = new ConsistentHash(ps, { kind: 'client_ip' })
    const before = keys.map((k) => s.candidates(ctx({ clientIp: k }), NOW)[0])
    ps[2]!.healthy = false
    const after = keys.map((k) => s.candidates(ctx({ clientIp: k }), NOW)[0])
    let moved = 0
    keys.forEach((_, i) => {
      if (before[i] !== after[i]) {
        moved++
        assert.equal(before[i], ps[2], 'only keys of the peer that left move')
      }
    })
    assert.ok(moved > 1700 && moved < 3300, `about a quarter moved: ${moved}`)
  })
  test('hash keys: header, cookie, path; a missing header or cookie falls back to the client IP', () => {
    const c = ctx({ clientIp: '1.2.3.4', path: '/p', rawHeaders: ['X-User', 'u1', 'Cookie', 'a=1; sid=abc'] })
    assert.equal(keyOf({ kind: 'header', name: 'x-user' }, c), 'u1')
    assert.equal(keyOf({ kind: 'cookie', name: 'sid' }, c), 'abc')
    assert.equal(keyOf({ kind: 'path' }, c), '/p')
    assert.equal(keyOf({ kind: 'header', name: 'x-missing' }, c), '1.2.3.4')
    assert.equal(keyOf({ kind: 'cookie', name: 'nope' }, c), '1.2.3.4')
  })
})
