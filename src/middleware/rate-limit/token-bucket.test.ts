import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryStore } from './memory-store'
import { take } from './token-bucket'

test('token bucket: burst, then refill at the rate, on an injected clock', () => {
  const perMs = 60 / 60_000 // 60 per minute = 1 per second
  const b = { tokens: 3, at: 0 }
  const seq = [0, 0, 0, 0].map((t) => take(b, t, 3, perMs).allowed)
  assert.deepEqual(seq, [true, true, true, false])
  const refused = take(b, 0, 3, perMs)
  assert.equal(refused.retryAfterSecs, 1)
  assert.equal(refused.resetSecs, 3)
  assert.equal(take(b, 999, 3, perMs).allowed, false, 'not quite a token yet')
  const ok = take(b, 1000, 3, perMs)
  assert.equal(ok.allowed, true)
  assert.equal(ok.remaining, 0)
  assert.equal(take(b, 100_000, 3, perMs).remaining, 2, 'never more than the burst')
})

test('memory store: separate keys, bounded size, full buckets swept', () => {
  const s = new MemoryStore(2, 1 / 1000, 3)
  try {
    assert.ok(s.take('a', 0).allowed)
    assert.ok(s.take('a', 0).allowed)
    assert.ok(!s.take('a', 0).allowed)
    assert.ok(s.take('b', 0).allowed, 'another key is unaffected')
    s.take('c', 0)
    s.take('d', 0)
    assert.equal(s.size, 3, 'never more than max_keys buckets')
    assert.ok(s.take('a', 0).allowed, 'the least recently used bucket (a) was dropped')
    s.sweep(10_000)
    assert.equal(s.size, 0, 'buckets that refilled are swept')
  } finally {
    s.close()
  }
})
