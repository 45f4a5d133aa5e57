import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { closest, didYouMean, editDistance } from './suggest'

describe('editDistance', () => {
  const cases: Array<{ desc: string; a: string; b: string; want: number }> = [
    { desc: 'equal', a: 'mode', b: 'mode', want: 0 },
    { desc: 'a letter left out', a: 'bind_adress', b: 'bind_address', want: 1 },
    { desc: 'a letter too many', a: 'serverss', b: 'servers', want: 1 },
    { desc: 'a letter replaced', a: 'retriez', b: 'retries', want: 1 },
    { desc: 'two neighbours swapped count once', a: 'mdoe', b: 'mode', want: 1 },
    { desc: 'case is ignored', a: 'Bind_Address', b: 'bind_address', want: 0 },
    { desc: 'a dash reads as an underscore', a: 'bind-address', b: 'bind_address', want: 0 },
    { desc: 'from empty', a: '', b: 'tls', want: 3 },
    { desc: 'nothing in common', a: 'abc', b: 'xyz', want: 3 },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal(editDistance(c.a, c.b), c.want)
      assert.equal(editDistance(c.b, c.a), c.want, 'symmetric')
    })
  }
})

describe('closest', () => {
  const KEYS = ['bind_address', 'workers', 'tls', 'sni', 'strip_prefix', 'servers', 'server']
  const cases: Array<{ desc: string; typed: string; want: string | undefined }> = [
    { desc: 'one edit in a long key', typed: 'bind_adress', want: 'bind_address' },
    { desc: 'two edits in a long key', typed: 'bnd_adress', want: 'bind_address' },
    { desc: 'three edits are too far', typed: 'bnd_adres', want: undefined },
    { desc: 'a short key allows one edit', typed: 'tsl', want: 'tls' },
    { desc: 'a two-letter key allows one edit', typed: 'tl', want: 'tls' },
    { desc: 'a two-letter key gets nothing two edits away', typed: 'no', want: undefined },
    { desc: 'the nearest wins over a farther one', typed: 'serverz', want: 'servers' },
    { desc: 'a tie goes to the earlier candidate', typed: 'serve', want: 'server' },
    { desc: 'nothing close', typed: 'colour', want: undefined },
    { desc: 'a very long name is not compared', typed: `bind_address${'x'.repeat(200)}`, want: undefined },
  ]
  for (const c of cases) test(c.desc, () => assert.equal(closest(c.typed, KEYS), c.want))

  test('didYouMean reads as a message tail, or is empty', () => {
    assert.equal(didYouMean('workrs', KEYS), '; did you mean "workers"?')
    assert.equal(didYouMean('zzz', KEYS), '')
    assert.equal(didYouMean('x', []), '')
  })
})
