// The weighted split and sticky sessions, as a request meets them: which group a pick lands on
// (shares, weight 0, stickiness by cookie, header, client address), which server a sticky group
// honours, and what hostile cookies do (nothing but a fresh pick).

import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { SplitSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import { UpstreamRegistry } from './registry'
import { pickGroup, SET_COOKIE } from './split'
import { stickyCookie } from './sticky'

const quiet = { info() {}, warn() {}, error() {} } as unknown as Logger

function split(upstreams: string, sticky = ''): SplitSpec {
  const r = compile(
    parseConfigText(
      'c.yaml',
      `mode: load_balancer
upstreams:
  v1: { servers: ["127.0.0.1:1"] }
  v2: { servers: ["127.0.0.1:2"] }
  v3: { servers: ["127.0.0.1:3"] }
load_balancer: { upstreams: ${upstreams}${sticky ? `, sticky: ${sticky}` : ''} }
`,
      {},
    ),
  )
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems))
  const mode = r.snapshot.mode
  assert.ok(mode.kind === 'load_balancer' && mode.split)
  return mode.split
}

function shares(s: SplitSpec, n: number, headers: (i: number) => string[] = () => []): number[] {
  const out = s.groups.map(() => 0)
  for (let i = 0; i < n; i++) out[pickGroup(s, `10.0.${i >> 8}.${i & 255}`, headers(i)) & ~SET_COOKIE]!++
  return out
}

describe('pickGroup', () => {
  test('a 95/5 canary over 1,000 requests: 950 and 50, give or take 1 %', () => {
    const [v1, v2] = shares(split('[{name: v1, weight: 95}, {name: v2, weight: 5}]'), 1000)
    assert.ok(Math.abs(v2! - 50) <= 10, `v2 got ${v2}`)
    assert.equal(v1! + v2!, 1000)
  })

  test('every run of 100 requests is close to the weights, not only the total', () => {
    const s = split('[{name: v1, weight: 90}, {name: v2, weight: 10}]')
    for (let run = 0; run < 10; run++) {
      const [, v2] = shares(s, 100)
      assert.ok(v2! >= 8 && v2! <= 12, `run ${run}: v2 got ${v2}`)
    }
  })

  test('weight 0 gets nothing, wherever it sits in the list', () => {
    assert.deepEqual(shares(split('[{name: v1, weight: 0}, {name: v2, weight: 1}]'), 500), [0, 500])
    assert.deepEqual(shares(split('[{name: v1, weight: 1}, {name: v2, weight: 0}]'), 500), [500, 0])
    const [a, b, c] = shares(
      split('[{name: v1, weight: 1}, {name: v2, weight: 0}, {name: v3, weight: 1}]'),
      1000,
    )
    assert.equal(b, 0)
    assert.ok(Math.abs(a! - c!) <= 20, `${a} / ${c}`)
  })

  describe('sticky by cookie', () => {
    const s = split('[{name: v1, weight: 50}, {name: v2, weight: 50}]', '{cookie: grp}')
    const st = s.sticky
    assert.ok(st?.kind === 'cookie')
    const tokenOf = (i: number) => /^grp=([0-9a-f]{16});/.exec(st.setCookie[i]!)![1]!

    test('no cookie: a pick, and the cookie to set', () => {
      const p = pickGroup(s, '10.0.0.1', [])
      assert.ok(p & SET_COOKIE)
      assert.match(st.setCookie[p & ~SET_COOKIE]!, /^grp=[0-9a-f]{16}; Path=\/; HttpOnly; SameSite=Lax$/)
    })

    test('a cookie naming a group keeps the client there, and nothing is set again', () => {
      for (const i of [0, 1]) {
        for (let n = 0; n < 50; n++)
          assert.equal(pickGroup(s, '10.0.0.1', ['Cookie', `a=1; grp=${tokenOf(i)}; b=2`]), i)
      }
    })

    test('the token names the group, not the address, and stays the same for every compile', () => {
      const again = split('[{name: v2, weight: 1}, {name: v1, weight: 9}]', '{cookie: grp}')
      assert.ok(again.sticky?.kind === 'cookie')
      assert.equal(again.sticky.byToken.get(tokenOf(0)), 1, 'v1 is v1 wherever it sits')
      assert.ok(!st.setCookie[0]!.includes('v1'))
    })

    test('forged, garbage, huge, empty and repeated cookies get a fresh pick and a new cookie', () => {
      const hostile = [
        ['Cookie', 'grp=0123456789abcdef'],
        ['Cookie', 'grp=not-a-token'],
        ['Cookie', `grp=${'x'.repeat(60_000)}`],
        ['Cookie', 'grp='],
        ['Cookie', 'grp'],
        ['Cookie', `${'a=1; '.repeat(2000)}grp=zz`],
        ['Cookie', ';;;; = ; grp ; =grp'],
        ['cookie', `grp=${tokenOf(0).toUpperCase()}`],
      ]
      for (const h of hostile) assert.ok(pickGroup(s, '10.0.0.1', h) & SET_COOKIE, h[1]!.slice(0, 40))
    })

    test('a group ramped down to weight 0 lets its clients go (with a new cookie)', () => {
      const drained = split('[{name: v1, weight: 0}, {name: v2, weight: 1}]', '{cookie: grp}')
      assert.equal(pickGroup(drained, '10.0.0.1', ['Cookie', `grp=${tokenOf(0)}`]), 1 | SET_COOKIE)
    })

    test('a cookie naming a group no longer in the split is a fresh pick', () => {
      const other = split('[{name: v3, weight: 1}]', '{cookie: grp}')
      assert.equal(pickGroup(other, '10.0.0.1', ['Cookie', `grp=${tokenOf(0)}`]), SET_COOKIE)
    })
  })

  test('sticky by header: one value, one group; a ramp moves only the clients between the boundaries', () => {
    const before = split('[{name: v1, weight: 90}, {name: v2, weight: 10}]', '{header: X-User}')
    const after = split('[{name: v1, weight: 50}, {name: v2, weight: 50}]', '{header: X-User}')
    let moved = 0
    for (let u = 0; u < 1000; u++) {
      const h = ['x-user', `user-${u}`]
      const a = pickGroup(before, '10.0.0.1', h)
      assert.equal(pickGroup(before, '10.9.9.9', h), a, 'the client address does not matter')
      const b = pickGroup(after, '10.0.0.1', h)
      assert.ok(!(a === 1 && b === 0), 'a client on the canary stays on it as it grows')
      if (a !== b) moved++
    }
    assert.ok(moved > 300 && moved < 500, `${moved} of 1000 moved (about 40 % should)`)
    const [v1, v2] = shares(before, 2000, (i) => ['X-User', `u${i}`])
    assert.ok(Math.abs(v2! - 200) <= 60, `header-hashed shares: ${v1}/${v2}`)
  })

  test('sticky by header without the header: an unsticky pick', () => {
    const s = split('[{name: v1, weight: 1}, {name: v2, weight: 1}]', '{header: X-User}')
    assert.deepEqual(shares(s, 100), [50, 50])
  })

  test('sticky by client address', () => {
    const s = split('[{name: v1, weight: 1}, {name: v2, weight: 1}]', '{client_ip: true}')
    for (let i = 0; i < 100; i++) {
      const ip = `192.0.2.${i}`
      assert.equal(pickGroup(s, ip, []), pickGroup(s, ip, ['x-user', 'other']))
    }
  })
})

describe('stickyCookie', () => {
  const T = 'abcdef0123456789'
  test('finds the name among many, in any Cookie header, first one wins', () => {
    assert.equal(stickyCookie(['Cookie', `a=1;b=2;  s=${T} ; c=3`], 's'), T)
    assert.equal(stickyCookie(['Host', 'x', 'cookie', 'a=1', 'COOKIE', `s=${T}`], 's'), T)
    assert.equal(stickyCookie(['Cookie', `s=${T}; s=0000000000000000`], 's'), T)
    assert.equal(stickyCookie(['Cookie', `xs=${T}; s2=${T}`], 's'), undefined)
    assert.equal(stickyCookie(['Cookie', `s=${T}x`], 's'), undefined, 'not a token length')
    assert.equal(stickyCookie(['X-Cookie', `s=${T}`], 's'), undefined)
    assert.equal(stickyCookie([], 's'), undefined)
  })
})

describe('sticky groups', () => {
  const registry = new UpstreamRegistry(quiet)
  after(() => registry.destroy())
  const build = (servers: string) => {
    const r = compile(
      parseConfigText(
        'c.yaml',
        `mode: load_balancer
upstreams:
  g: { servers: [${servers}], sticky: { cookie: srv, ttl_secs: 60, secure: true, same_site: strict } }
load_balancer: { upstream: g }
`,
        {},
      ),
    )
    assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems))
    return registry.build(r.snapshot).get('g')!
  }
  const g = build('"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"')
  const NOW = Date.now()
  const ctx = (raw: string[]) => ({ clientIp: '10.0.0.1', path: '/', rawHeaders: raw })
  const cookieOf = (i: number) => {
    const v = g.stickyCookieFor(g.peers[i]!, [])!
    assert.match(v, /^srv=[0-9a-f]{16}; Path=\/; Max-Age=60; Secure; HttpOnly; SameSite=Strict$/)
    return ['Cookie', v.slice(0, v.indexOf(';'))]
  }

  test('a cookie naming a server keeps the client there across 100 requests', () => {
    for (const i of [0, 1, 2]) {
      const h = cookieOf(i)
      for (let n = 0; n < 100; n++) assert.equal(g.candidates(ctx(h), NOW)[0], g.peers[i])
      assert.equal(g.stickyCookieFor(g.peers[i]!, h), undefined, 'nothing to set again')
    }
  })

  test('the token is not the address and is the same for the same address in another build', () => {
    const h = cookieOf(1)
    assert.ok(!h[1]!.includes('127.0.0.1'))
    const reordered = build('"127.0.0.1:2", "127.0.0.1:9"')
    assert.equal(reordered.candidates(ctx(h), NOW)[0]!.address, '127.0.0.1:2')
  })

  test('the server is down: the client moves, and the answer resets its cookie', () => {
    const h = cookieOf(1)
    g.peers[1]!.healthy = false
    try {
      const c = g.candidates(ctx(h), NOW)
      assert.ok(c.length > 0 && !c.includes(g.peers[1]!))
      assert.ok(g.stickyCookieFor(c[0]!, h)?.startsWith('srv='))
    } finally {
      g.peers[1]!.healthy = true
    }
  })

  test('a cookie naming a removed server, or forged, is an ordinary pick', () => {
    const h = cookieOf(2)
    const smaller = build('"127.0.0.1:1", "127.0.0.1:2"')
    const c = smaller.candidates(ctx(h), NOW)
    assert.equal(c.length, 2)
    assert.ok(smaller.stickyCookieFor(c[0]!, h))
    for (const bad of ['srv=ffffffffffffffff', `srv=${'9'.repeat(100_000)}`, 'srv=../../etc']) {
      assert.equal(g.candidates(ctx(['Cookie', bad]), NOW).length, 3)
    }
  })
})
