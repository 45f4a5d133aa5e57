import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InFlight } from './in-flight'

test('idle() resolves at once with nothing in flight, and when the last one leaves otherwise', async () => {
  const f = new InFlight()
  await f.idle()
  f.enter()
  f.enter()
  let idle = false
  const waiting = f.idle().then(() => {
    idle = true
  })
  f.leave()
  await Promise.resolve()
  assert.equal(idle, false, 'one still in flight')
  assert.equal(f.count, 1)
  f.leave()
  await waiting
  assert.equal(f.count, 0)
})
