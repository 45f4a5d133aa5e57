import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import v8 from 'node:v8'
import vm from 'node:vm'
import { prng } from '../../../test/helpers/prng'
import { bucketKey, MAX_KEY_LENGTH, MemoryStore } from './memory-store'

/** Heap in use after a full collection. */
function heap(): number {
  v8.setFlagsFromString('--expose-gc')
  ;(vm.runInNewContext('gc') as () => void)()
  return process.memoryUsage().heapUsed
}

describe('MemoryStore bounds', () => {
  test('10k distinct 8 KB keys keep the stored key bytes bounded', () => {
    const store = new MemoryStore(5, 1 / 60_000, 100_000)
    try {
      const filler = 'k'.repeat(8 * 1024)
      for (let i = 0; i < 10_000; i++) store.take(`h:${i}${filler}`, 1000)
      assert.equal(store.size, 10_000, 'each distinct key still has its own bucket')
      // 45 code units per digested key; the raw keys alone would be over 80 M code units.
      assert.ok(store.keyLength <= 10_000 * 45, `stored key length ${store.keyLength}`)
    } finally {
      store.close()
    }
  })

  test('the same long key maps to the same bucket, different long keys to different ones', () => {
    const store = new MemoryStore(2, 1 / 60_000, 100)
    try {
      const long = `h:${'x'.repeat(10_000)}`
      assert.equal(store.take(long, 0).allowed, true)
      assert.equal(store.take(`${'h:x'}${'x'.repeat(9_999)}`, 0).allowed, true, 'an equal string built anew')
      assert.equal(store.take(long, 0).allowed, false, 'burst of 2 spent on that key')
      assert.equal(store.take(`${long}y`, 0).allowed, true, 'one character more is another key')
      assert.equal(store.size, 2)
    } finally {
      store.close()
    }
  })

  const cases = [
    { desc: 'a short key is kept as it is', key: 'ip:127.0.0.1', same: true },
    { desc: 'a key of exactly the bound is kept', key: 'a'.repeat(MAX_KEY_LENGTH), same: true },
    { desc: 'one code unit over the bound is digested', key: 'a'.repeat(MAX_KEY_LENGTH + 1), same: false },
    {
      desc: 'a short key starting with NUL is digested (cannot pose as a digest)',
      key: '\0abc',
      same: false,
    },
  ]
  for (const c of cases) {
    test(`bucketKey: ${c.desc}`, () => {
      const k = bucketKey(c.key)
      if (c.same) assert.equal(k, c.key)
      else {
        assert.notEqual(k, c.key)
        assert.equal(k.length, 44)
        assert.equal(k.charCodeAt(0), 0)
      }
    })
  }

  test('a digest never equals a short key that spells it out', () => {
    const store = new MemoryStore(1, 1 / 60_000, 100)
    try {
      const long = 'z'.repeat(1000)
      store.take(long, 0)
      // The only way to write the digest as a short key starts with NUL, which is digested again.
      assert.equal(store.take(bucketKey(long), 0).allowed, true)
      assert.equal(store.take(bucketKey(long).slice(1), 0).allowed, true)
      assert.equal(store.take(long, 0).allowed, false)
    } finally {
      store.close()
    }
  })

  test('a short key cut from a long header does not keep the header in memory', () => {
    // V8 keeps a substring as a slice of its parent: storing the slice would pin 16 KB a key.
    const store = new MemoryStore(5, 1 / 60_000, 100_000)
    try {
      const before = heap()
      for (let i = 0; i < 2000; i++) {
        const header = `${String(i).padStart(8, '0')},${'y'.repeat(16_000)}${Math.random()}`
        // A plain substring (not a concatenation, which V8 may flatten into a copy of its own).
        store.take(header.slice(0, 40), 0)
      }
      const grown = heap() - before
      // Pinned headers would be 2000 x 16 KB = 32 MB; the keys themselves are well under 1 MB.
      assert.ok(grown < 8_000_000, `heap grew by ${grown} bytes`)
      assert.equal(store.size, 2000)
    } finally {
      store.close()
    }
  })

  test('least recently used goes first, a known key found by a new string included', () => {
    const store = new MemoryStore(1, 1 / 60_000, 2)
    try {
      store.take('ip:a', 0)
      store.take('ip:b', 0)
      // `a` again, spelled by another string: it becomes the most recent, so `b` is dropped.
      assert.equal(store.take(['ip', 'a'].join(':'), 0).allowed, false)
      store.take('ip:c', 0)
      assert.equal(store.size, 2)
      assert.equal(store.take('ip:a', 0).allowed, false, 'a kept its spent bucket')
      assert.equal(store.take('ip:b', 0).allowed, true, 'b was dropped: a fresh bucket')
    } finally {
      store.close()
    }
  })

  test('a key stays until half of max_keys other keys were used or new since its last use', () => {
    // Burst 1, no refill (the clock stands still): a take is allowed only on a fresh bucket, so
    // a refused take says the key's bucket was kept. A key is moved to the back of the order
    // only when used after max_keys / 2 insertions went after it; the bound it keeps is that
    // ceil(max_keys / 2) distinct other keys must come after its last use before it is dropped.
    const seed = Number(process.env.RL_LRU_SEED ?? 0x5eed)
    const rand = prng(seed)
    for (let round = 0; round < 200; round++) {
      const maxKeys = 1 + Math.floor(rand() * 16)
      const store = new MemoryStore(1, 1e-12, maxKeys)
      try {
        const history: string[] = []
        const lastUse = new Map<string, number>()
        const space = 1 + Math.floor(rand() * maxKeys * 3)
        for (let step = 0; step < 300; step++) {
          // Mostly a few hot keys, sometimes any key of the space.
          const k = `ip:${rand() < 0.6 ? Math.floor(rand() * 3) : Math.floor(rand() * space)}`
          const allowed = store.take(k, 0).allowed
          const last = lastUse.get(k)
          if (last !== undefined) {
            const others = new Set(history.slice(last + 1).filter((o) => o !== k)).size
            if (others < Math.ceil(maxKeys / 2)) {
              assert.equal(
                allowed,
                false,
                `seed ${seed} round ${round} max_keys ${maxKeys} step ${step}: ${k} dropped after ${others} other keys`,
              )
            }
          }
          assert.ok(store.size <= maxKeys)
          history.push(k)
          lastUse.set(k, step)
        }
      } finally {
        store.close()
      }
    }
  })

  test('a hot key is not moved on every use (no Map delete per request)', () => {
    const store = new MemoryStore(1_000_000, 1 / 60_000, 100_000)
    const del = Map.prototype.delete
    let deletes = 0
    Map.prototype.delete = function (this: Map<unknown, unknown>, key: unknown) {
      deletes++
      return del.call(this, key)
    }
    try {
      for (let i = 0; i < 1000; i++) store.take(['ip', '10.0.0.1'].join(':'), i)
    } finally {
      Map.prototype.delete = del
      store.close()
    }
    assert.equal(deletes, 0)
  })

  test('a known key taken by a slice of a new long header keeps the stored copy, not the slice', () => {
    const store = new MemoryStore(1_000_000, 1 / 60_000, 10)
    try {
      const key = 'k'.repeat(40)
      store.take(key, 0)
      let header: string | undefined = `${key},${'y'.repeat(8_000_000)}${Math.random()}`
      store.take(header.slice(0, 40), 0)
      const before = heap()
      // Read after the measure, so the header is still alive at it.
      assert.ok(header.length > 8_000_000)
      header = undefined
      const freed = before - heap()
      // Had the slice been stored, its 8 MB parent would stay in memory.
      assert.ok(freed > 6_000_000, `freed ${freed} bytes`)
      assert.equal(store.size, 1)
    } finally {
      store.close()
    }
  })
})
