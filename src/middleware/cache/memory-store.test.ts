import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { type Entry, entrySize, MemoryStore } from './memory-store'
import { parseCacheControl } from './policy'

function entry(path: string, bodyBytes: number, vary = '', host = 'h'): Entry {
  const headers = ['content-type', 'text/plain']
  const primary = `\0${host}\0${path}`
  return {
    primary,
    path,
    vary,
    status: 200,
    headers,
    body: Buffer.alloc(bodyBytes),
    directives: parseCacheControl('max-age=60'),
    lifetime: 60_000,
    age: { ageValue: 0, date: undefined, requestTime: 0, responseTime: 0 },
    etag: undefined,
    lastModified: undefined,
    size: entrySize(headers, bodyBytes, primary),
  }
}

describe('cache MemoryStore', () => {
  test('least recently used entries go first once max_bytes is passed', () => {
    const one = entry('/a', 1000).size
    const s = new MemoryStore(one * 3)
    for (const p of ['/a', '/b', '/c']) s.put(entry(p, 1000), [])
    assert.ok(s.get('\0h\0/a', []), 'a is used: now the most recent')
    s.put(entry('/d', 1000), [])
    assert.equal(s.size, 3)
    assert.equal(s.get('\0h\0/b', []), undefined, 'b was the least recently used')
    for (const p of ['/a', '/c', '/d']) assert.ok(s.get(`\0h\0${p}`, []), p)
    assert.ok(s.bytes <= s.maxBytes)
  })

  test('a hit moves an entry from the older half of the order only (LRU to within half the store)', () => {
    const one = entry('/a', 1000).size
    const s = new MemoryStore(one * 4)
    for (const p of ['/a', '/b', '/c', '/d']) s.put(entry(p, 1000), [])
    assert.ok(s.get('\0h\0/c', []), 'c: in the newer half, stays where it is')
    assert.ok(s.get('\0h\0/a', []), 'a: the oldest, becomes the newest')
    s.put(entry('/e', 1000), [])
    assert.equal(s.get('\0h\0/b', []), undefined, 'b went first')
    s.put(entry('/f', 1000), [])
    assert.equal(s.get('\0h\0/c', []), undefined, 'then c: its hit did not move it')
    for (const p of ['/a', '/d', '/e', '/f']) assert.ok(s.get(`\0h\0${p}`, []), p)
  })

  test('a key stored again replaces its entry and stays found (a refreshed response)', () => {
    const s = new MemoryStore(1e6)
    s.put(entry('/r', 10), [])
    s.put(entry('/r', 20), [])
    s.put(entry('/r', 30), [])
    assert.equal(s.get('\0h\0/r', [])?.body.length, 30)
    assert.equal(s.size, 1)
    assert.equal(s.bytes, entry('/r', 30).size)
  })

  test('an entry no longer stored (purged, evicted) is resized without touching the total', () => {
    const s = new MemoryStore(1e6)
    const e = entry('/z', 10)
    s.put(e, [])
    s.purge({ path: '/z' })
    s.resized(e, e.size + 100)
    assert.equal(s.bytes, 0)
  })

  test('many distinct keys: the bytes stay under the bound', () => {
    const s = new MemoryStore(1024 * 1024)
    for (let i = 0; i < 20_000; i++) s.put(entry(`/k/${i}`, 500), [])
    assert.ok(s.bytes <= 1024 * 1024, `${s.bytes}`)
    assert.ok(s.size < 20_000 && s.size > 100)
  })

  test('an entry larger than max_bytes is not stored and evicts nothing', () => {
    const s = new MemoryStore(10_000)
    s.put(entry('/a', 100), [])
    s.put(entry('/big', 20_000), [])
    assert.equal(s.size, 1)
  })

  test('variants by Vary; a response varying differently replaces them all', () => {
    const s = new MemoryStore(1e6)
    const en = ['Accept-Language', 'en']
    const fr = ['Accept-Language', 'fr']
    s.put(entry('/v', 10, 'accept-language'), en)
    s.put(entry('/v', 20, 'accept-language'), fr)
    assert.equal(s.get('\0h\0/v', en)?.body.length, 10)
    assert.equal(s.get('\0h\0/v', fr)?.body.length, 20)
    assert.equal(s.get('\0h\0/v', []), undefined)
    s.put(entry('/v', 30, 'accept'), en)
    assert.equal(s.size, 1)
    assert.equal(s.get('\0h\0/v', fr)?.body.length, 30, 'fr has no Accept either: the same variant')
  })

  test('purge by path (every host and variant) and by prefix; invalidate one URI', () => {
    const s = new MemoryStore(1e6)
    s.put(entry('/p', 1, '', 'h1'), [])
    s.put(entry('/p', 1, '', 'h2'), [])
    s.put(entry('/p/x', 1), [])
    s.put(entry('/q', 1), [])
    assert.equal(s.purge({ path: '/p' }), 2)
    assert.equal(s.purge({ prefix: '/p' }), 1)
    assert.equal(s.size, 1)
    s.invalidate('\0h\0/q')
    assert.equal(s.size, 0)
    assert.equal(s.bytes, 0)
  })
})
