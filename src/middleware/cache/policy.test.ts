// RFC 9111 conformance table for the cache's pure rules: each row names the section it checks.

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  currentAge,
  type Directives,
  deltaSeconds,
  freshnessLifetime,
  parseCacheControl,
  refusal,
  type StoreFacts,
  secondaryKey,
  staleIfError,
  usability,
  varyNames,
} from './policy'

const cc = parseCacheControl

describe('Cache-Control parsing (RFC 9111 section 5.2)', () => {
  const rows: Array<[string | undefined, Record<string, string>]> = [
    [undefined, {}],
    ['', {}],
    ['max-age=60', { 'max-age': '60' }],
    ['Max-Age=60, PUBLIC', { 'max-age': '60', public: '' }],
    ['max-age="60"', { 'max-age': '60' }],
    ['no-cache="Set-Cookie, X-A", max-age=5', { 'no-cache': 'Set-Cookie, X-A', 'max-age': '5' }],
    ['  s-maxage = 10 ,, private', { 's-maxage': '10', private: '' }],
    ['max-age=1, max-age=2', { 'max-age': '1', 'max-age#dup': '2' }],
    // Malformed: never an exception, unknown pieces kept as unknown directives.
    ['=,=,"', { '"': '' }],
    ['max-age="unterminated', { 'max-age': 'unterminated' }],
    ['\u0000\uffff, max-age=3', { '\u0000\uffff': '', 'max-age': '3' }],
  ]
  for (const [value, want] of rows) {
    test(`${JSON.stringify(value)}`, () => {
      assert.deepEqual(Object.fromEntries(cc(value)), want)
    })
  }

  test('delta-seconds: digits only, capped at 2^31 (section 1.2.2)', () => {
    assert.equal(deltaSeconds('0'), 0)
    assert.equal(deltaSeconds('99999999999'), 2 ** 31)
    for (const bad of ['-1', '1.5', '', ' 1', 'abc', undefined]) assert.equal(deltaSeconds(bad), undefined)
  })
})

describe('freshness lifetime (RFC 9111 section 4.2.1, shared cache)', () => {
  const date = Date.parse('Mon, 30 Nov 2026 12:00:00 GMT')
  const rows: Array<[string, string, string | undefined, number | undefined, number]> = [
    ['s-maxage wins over max-age', 's-maxage=10, max-age=100', undefined, date, 10_000],
    ['max-age wins over Expires', 'max-age=100', 'Mon, 30 Nov 2026 13:00:00 GMT', date, 100_000],
    ['Expires minus Date', '', 'Mon, 30 Nov 2026 12:01:00 GMT', date, 60_000],
    ['Expires without Date: minus the response time', '', 'Mon, 30 Nov 2026 12:00:30 GMT', undefined, 30_000],
    ['Expires in the past', '', 'Mon, 30 Nov 2026 11:00:00 GMT', date, 0],
    ['an invalid Expires is stale (section 5.3)', '', '0', date, 0],
    ['an invalid max-age is stale', 'max-age=abc', undefined, date, 0],
    ['a negative max-age is stale', 'max-age=-5', undefined, date, 0],
    ['a duplicated max-age is stale', 'max-age=5, max-age=500', undefined, date, 0],
    ['no-cache: revalidate every time', 'max-age=100, no-cache', undefined, date, 0],
    ['nothing explicit: no heuristics here', '', undefined, date, 0],
  ]
  for (const [desc, c, expires, d, want] of rows) {
    test(desc, () => assert.equal(freshnessLifetime(cc(c), expires, d, date), want))
  }
})

describe('current age (RFC 9111 section 4.2.3)', () => {
  test('corrected by the Age header and the response delay, plus resident time', () => {
    const a = { ageValue: 10, date: 1_000_000, requestTime: 1_000_000, responseTime: 1_002_000 }
    // apparent 2 s, corrected age 10 s + 2 s delay = 12 s; 5 s resident.
    assert.equal(currentAge(a, 1_007_000), 17_000)
  })
  test('a Date in the future counts as no apparent age', () => {
    const a = { ageValue: 0, date: 9_000_000, requestTime: 1_000_000, responseTime: 1_000_000 }
    assert.equal(currentAge(a, 1_000_500), 500)
  })
  test('a Date in the past adds apparent age', () => {
    const a = { ageValue: 0, date: 940_000, requestTime: 1_000_000, responseTime: 1_000_000 }
    assert.equal(currentAge(a, 1_000_000), 60_000)
  })
})

describe("storing (RFC 9111 section 3) and this cache's safe choices", () => {
  const base: StoreFacts = {
    status: 200,
    authorized: false,
    requestDirectives: cc(''),
    directives: cc('max-age=60'),
    expires: undefined,
    vary: undefined,
    setCookie: false,
    hasValidator: false,
    lifetime: 60_000,
  }
  const rows: Array<[string, Partial<StoreFacts>, string | undefined]> = [
    ['max-age=60 200', {}, undefined],
    ['a 404 with max-age (heuristically cacheable status)', { status: 404 }, undefined],
    ['a 206 (no ranges here)', { status: 206 }, 'status 206'],
    ['a 204 (its stored answer would carry Content-Length)', { status: 204 }, 'status 204'],
    ['a 410 with max-age', { status: 410 }, undefined],
    [
      'a 501 with max-age (in the heuristic list: Not Implemented is a stable answer)',
      { status: 501 },
      undefined,
    ],
    ['a 302 (not in the heuristic list)', { status: 302 }, 'status 302'],
    ['a 500', { status: 500 }, 'status 500'],
    ['response no-store', { directives: cc('no-store, max-age=60') }, 'no-store'],
    ['request no-store (section 5.2.1.5)', { requestDirectives: cc('no-store') }, 'request no-store'],
    ['private, even qualified', { directives: cc('private="x", max-age=60') }, 'private'],
    ['Set-Cookie: never stored', { setCookie: true }, 'set-cookie'],
    ['Vary: * (section 4.1)', { vary: 'Accept, *' }, 'vary *'],
    ['Vary on a header: stored', { vary: 'Accept-Language' }, undefined],
    ['Authorization without public (section 3.5)', { authorized: true }, 'authorization'],
    ['Authorization with public', { authorized: true, directives: cc('public, max-age=60') }, undefined],
    ['Authorization with s-maxage', { authorized: true, directives: cc('s-maxage=60') }, undefined],
    [
      'Authorization with must-revalidate',
      { authorized: true, directives: cc('must-revalidate, max-age=60') },
      undefined,
    ],
    ['no explicit freshness', { directives: cc(''), lifetime: 0 }, 'no explicit freshness'],
    ['public alone is not freshness', { directives: cc('public'), lifetime: 0 }, 'no explicit freshness'],
    [
      'no-cache with a validator: stored, revalidated each time',
      { directives: cc('no-cache'), lifetime: 0, hasValidator: true },
      undefined,
    ],
    ['no-cache without a validator', { directives: cc('no-cache'), lifetime: 0 }, 'no explicit freshness'],
    [
      'max-age=0 with a validator',
      { directives: cc('max-age=0'), lifetime: 0, hasValidator: true },
      undefined,
    ],
  ]
  for (const [desc, over, want] of rows) {
    test(desc, () => assert.equal(refusal({ ...base, ...over }), want))
  }
})

describe('serving (RFC 9111 sections 4.2, 4.2.4, 5.2.1; RFC 5861)', () => {
  const none = cc('')
  const rows: Array<[string, Directives, number, number, Directives, string]> = [
    ['fresh', cc('max-age=60'), 60_000, 10_000, none, 'fresh'],
    ['stale', cc('max-age=60'), 60_000, 61_000, none, 'revalidate'],
    ['age equal to the lifetime is stale', cc('max-age=60'), 60_000, 60_000, none, 'revalidate'],
    ['request no-cache revalidates a fresh entry', cc('max-age=60'), 60_000, 1, cc('no-cache'), 'revalidate'],
    ['request max-age=0 revalidates', cc('max-age=60'), 60_000, 0, cc('max-age=0'), 'revalidate'],
    ['request max-age above the age: fresh', cc('max-age=60'), 60_000, 5_000, cc('max-age=10'), 'fresh'],
    ['request max-age below the age', cc('max-age=60'), 60_000, 15_000, cc('max-age=10'), 'revalidate'],
    ['request min-fresh', cc('max-age=60'), 60_000, 50_000, cc('min-fresh=20'), 'revalidate'],
    [
      'stale-while-revalidate window',
      cc('max-age=1, stale-while-revalidate=30'),
      1000,
      5_000,
      none,
      'stale-while-revalidate',
    ],
    ['past the window', cc('max-age=1, stale-while-revalidate=3'), 1000, 5_000, none, 'revalidate'],
    [
      'must-revalidate forbids stale',
      cc('max-age=1, must-revalidate, stale-while-revalidate=30'),
      1000,
      5_000,
      none,
      'revalidate',
    ],
    ['s-maxage forbids stale', cc('s-maxage=1, stale-while-revalidate=30'), 1000, 5_000, none, 'revalidate'],
  ]
  for (const [desc, stored, lifetime, age, req, want] of rows) {
    test(desc, () => assert.equal(usability(stored, lifetime, age, req), want))
  }

  test('stale-if-error: within the window, from the response or the request; never when forbidden', () => {
    assert.equal(staleIfError(cc('max-age=1, stale-if-error=60'), none, 1000, 30_000), true)
    assert.equal(staleIfError(cc('max-age=1, stale-if-error=60'), none, 1000, 62_000), false)
    assert.equal(staleIfError(cc('max-age=1'), cc('stale-if-error=60'), 1000, 30_000), true)
    assert.equal(staleIfError(cc('max-age=1'), none, 1000, 30_000), false)
    assert.equal(staleIfError(cc('max-age=1, must-revalidate, stale-if-error=60'), none, 1000, 30_000), false)
    assert.equal(staleIfError(cc('no-cache, stale-if-error=60'), none, 0, 1), false)
  })
})

describe('Vary (RFC 9111 section 4.1)', () => {
  test('names: lower case, sorted, deduplicated; * wins', () => {
    assert.equal(varyNames(undefined), '')
    assert.equal(varyNames(''), '')
    assert.equal(
      varyNames('Accept-Encoding, accept-language,ACCEPT-ENCODING'),
      'accept-encoding,accept-language',
    )
    assert.equal(varyNames('Accept, *'), '*')
  })
  test('secondary key: same values match (whitespace around commas normalized), others do not', () => {
    const k = (raw: string[]) => secondaryKey('accept-language', raw)
    assert.equal(k(['Accept-Language', 'en, fr']), k(['accept-language', 'en,fr']))
    assert.equal(k(['Accept-Language', 'en', 'accept-language', 'fr']), k(['accept-language', 'en,fr']))
    assert.notEqual(k(['Accept-Language', 'en']), k(['Accept-Language', 'fr']))
    assert.notEqual(k([]), k(['Accept-Language', '']), 'absent differs from empty')
    assert.equal(k(['Other', 'x']), k([]))
    assert.equal(secondaryKey('', ['Accept-Language', 'en']), '')
  })
})
