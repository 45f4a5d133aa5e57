import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { MemoryStore } from '../middleware/rate-limit/memory-store'
import type { TakeResult } from '../middleware/rate-limit/token-bucket'
import type { TakeBatch } from './protocol'
import { batchedTakes, takeBatch } from './take-batch'

/** A primary in-process: its buckets, and every batch it was sent. */
function primary() {
  const stores = new Map<string, MemoryStore>()
  const sent: TakeBatch[] = []
  const send = async (b: TakeBatch): Promise<TakeResult[]> => {
    // Through JSON, as over the IPC channel.
    const copy = JSON.parse(JSON.stringify(b)) as TakeBatch
    sent.push(copy)
    return takeBatch(
      copy,
      (spec) => {
        let s = stores.get(spec.store)
        if (!s) {
          s = new MemoryStore(spec.burst, spec.perMs, spec.maxKeys)
          stores.set(spec.store, s)
        }
        return s
      },
      1_000,
    )
  }
  return {
    stores,
    sent,
    send,
    close: () => {
      for (const s of stores.values()) s.close()
    },
  }
}

describe('batchedTakes', () => {
  test("one turn's takes go as one message and come back in order, as separate takes would", async () => {
    const p = primary()
    const shared = batchedTakes(p.send)
    const a = shared('a', 3, 0.001, 100)
    const b = shared('b', 1, 0.001, 100)
    const results = await Promise.all([
      a.take('k'),
      a.take('k'),
      b.take('k'),
      a.take('k'),
      a.take('k'),
      b.take('k'),
    ])
    assert.equal(p.sent.length, 1)
    assert.deepEqual(
      p.sent[0]!.stores.map((s) => s.store),
      ['a', 'b'],
    )
    assert.deepEqual(
      results.map((r) => [r.allowed, r.remaining]),
      [
        [true, 2],
        [true, 1],
        [true, 0],
        [true, 0],
        [false, 0],
        [false, 0],
      ],
    )
    // The same takes one by one on fresh buckets give the same answers.
    const one = new MemoryStore(3, 0.001, 100)
    const other = new MemoryStore(1, 0.001, 100)
    assert.deepEqual(results, [
      one.take('k', 1_000),
      one.take('k', 1_000),
      other.take('k', 1_000),
      one.take('k', 1_000),
      one.take('k', 1_000),
      other.take('k', 1_000),
    ])
    one.close()
    other.close()
    // A later turn is a new message.
    await a.take('k')
    assert.equal(p.sent.length, 2)
    p.close()
  })

  test('a failed message fails every take in it (the primary is gone), and the next batch still goes', async () => {
    let fail = true
    const p = primary()
    const shared = batchedTakes((b) => (fail ? Promise.reject(new Error('gone')) : p.send(b)))
    const s = shared('a', 5, 1, 10)
    const settled = await Promise.allSettled([s.take('x'), s.take('y')])
    assert.deepEqual(
      settled.map((r) => r.status === 'rejected' && (r.reason as Error).message),
      ['gone', 'gone'],
    )
    fail = false
    assert.equal((await s.take('x')).allowed, true)
    p.close()
  })

  test('an answer with fewer results than takes rejects the ones left over', async () => {
    const shared = batchedTakes(async () => [
      { allowed: true, remaining: 1, retryAfterSecs: 0, resetSecs: 0 },
    ])
    const s = shared('a', 5, 1, 10)
    const settled = await Promise.allSettled([s.take('x'), s.take('y')])
    assert.equal(settled[0]!.status, 'fulfilled')
    assert.equal(settled[1]!.status, 'rejected')
  })
})

describe('takeBatch', () => {
  test('a take naming no store is refused (thrown: the worker gets an error answer)', () => {
    assert.throws(
      () =>
        takeBatch(
          { stores: [], keys: ['k'], of: [0] },
          () => {
            throw new Error('not reached')
          },
          0,
        ),
      /names no store/,
    )
  })

  test('long and hostile keys are bounded as with separate takes (bucketKey)', () => {
    const s = new MemoryStore(2, 1, 10)
    const r = takeBatch(
      {
        stores: [{ store: 's', burst: 2, perMs: 1, maxKeys: 10 }],
        keys: ['x'.repeat(20_000), '\u0000', ''],
        of: [0, 0, 0],
      },
      () => s,
      0,
    )
    assert.equal(r.length, 3)
    assert.ok(s.keyLength < 200)
    s.close()
  })
})
