import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Entry } from './memory-store'
import { parseCacheControl } from './policy'
import { ttlMs } from './redis-store'

const NOW = 1_800_000_000_000

function entry(cc: string, lifetimeMs: number, validator = false): Entry {
  return {
    primary: 'r\0h\0/p',
    path: '/p',
    vary: '',
    status: 200,
    headers: [],
    body: Buffer.from('x'),
    directives: parseCacheControl(cc),
    lifetime: lifetimeMs,
    age: { ageValue: 0, date: undefined, requestTime: NOW - 10_000, responseTime: NOW - 10_000 },
    etag: validator ? '"v"' : undefined,
    lastModified: undefined,
    size: 1,
  }
}

test('the Redis TTL is the freshness left plus the longest stale window', () => {
  // 10 s old, fresh for 60: 50 s left.
  assert.equal(ttlMs(entry('max-age=60', 60_000), NOW), 50_000)
  assert.equal(ttlMs(entry('max-age=60, stale-while-revalidate=30', 60_000), NOW), 80_000)
  assert.equal(
    ttlMs(entry('max-age=60, stale-while-revalidate=30, stale-if-error=300', 60_000), NOW),
    350_000,
  )
})

test('a stale entry without a validator or stale window has no TTL left (not stored)', () => {
  assert.equal(ttlMs(entry('max-age=5', 5_000), NOW), 0)
})

test('an entry with a validator is kept at least a minute longer, to be revalidated', () => {
  assert.equal(ttlMs(entry('no-cache', 0, true), NOW), 60_000)
  assert.equal(ttlMs(entry('max-age=600', 600_000, true), NOW), 590_000 + 600_000)
})
