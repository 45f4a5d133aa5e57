import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Encoding } from './config'
import { negotiate } from './negotiate'

const ALL: Encoding[] = ['zstd', 'br', 'gzip']
const NO_ZSTD: Encoding[] = ['br', 'gzip']

describe('negotiate (Accept-Encoding)', () => {
  const cases: Array<{ desc: string; header: string; offered?: Encoding[]; want: Encoding | undefined }> = [
    {
      desc: 'curl --compressed: the first offered wins a tie',
      header: 'deflate, gzip, br, zstd',
      want: 'zstd',
    },
    { desc: 'a tie goes to the offered order', header: 'gzip, br', offered: NO_ZSTD, want: 'br' },
    { desc: 'offered order set the other way', header: 'gzip, br', offered: ['gzip', 'br'], want: 'gzip' },
    { desc: 'the higher weight wins over the offered order', header: 'br;q=0.5, gzip', want: 'gzip' },
    { desc: 'weights with three decimals', header: 'br;q=0.001, gzip;q=0.002', want: 'gzip' },
    { desc: 'q=0 refuses a coding', header: 'br;q=0, gzip', want: 'gzip' },
    { desc: 'q=0.000 refuses too', header: 'gzip;q=0.000', want: undefined },
    { desc: 'only codings we do not offer', header: 'deflate, compress', want: undefined },
    { desc: 'an empty header asks for identity', header: '', want: undefined },
    { desc: '* accepts every coding not named', header: '*', want: 'zstd' },
    { desc: '* with a named refusal', header: 'zstd;q=0, *', want: 'br' },
    { desc: '*;q=0 refuses every coding not named', header: 'gzip, *;q=0', want: 'gzip' },
    { desc: '*;q=0 alone: nothing', header: '*;q=0', want: undefined },
    { desc: 'a named coding outranks *', header: '*;q=0.1, gzip;q=0.5', want: 'gzip' },
    {
      desc: 'identity rated above the best coding wins',
      header: 'identity;q=1, gzip;q=0.5',
      want: undefined,
    },
    { desc: 'identity rated equal: the coding', header: 'identity, gzip', want: 'gzip' },
    { desc: 'identity;q=0 does not stop a coding', header: 'identity;q=0, br', want: 'br' },
    { desc: 'names are case-insensitive', header: 'GZIP, Br;Q=0.9', offered: NO_ZSTD, want: 'gzip' },
    { desc: 'x-gzip is gzip', header: 'x-gzip', want: 'gzip' },
    { desc: 'spaces and tabs around names and weights', header: ' \tgzip\t ; q=0.8 ,br ;q=0.9 ', want: 'br' },
    { desc: 'empty elements are skipped', header: ',,, ,gzip,,', want: 'gzip' },
    { desc: 'a coding named twice keeps its lower weight', header: 'gzip, gzip;q=0', want: undefined },
    {
      desc: 'the refusal first, then the acceptance: still refused',
      header: 'gzip;q=0, gzip',
      want: undefined,
    },
    { desc: 'q above 1 is malformed: the element is ignored', header: 'br;q=2, gzip;q=0.1', want: 'gzip' },
    { desc: 'q=1.5 is malformed', header: 'br;q=1.5, gzip;q=0.1', want: 'gzip' },
    { desc: 'q=1.000 is 1', header: 'br;q=1.000, gzip;q=0.9', want: 'br' },
    { desc: 'four decimals are malformed', header: 'br;q=0.5555, gzip;q=0.1', want: 'gzip' },
    { desc: 'letters in the weight are malformed', header: 'br;q=abc, gzip;q=0.1', want: 'gzip' },
    { desc: 'a negative weight is malformed', header: 'br;q=-1, gzip;q=0.1', want: 'gzip' },
    { desc: 'an empty weight is malformed', header: 'br;q=, gzip;q=0.1', want: 'gzip' },
    { desc: 'a parameter other than q is malformed', header: 'br;level=9, gzip;q=0.1', want: 'gzip' },
    { desc: 'a second parameter after q is malformed', header: 'br;q=1;x=y, gzip;q=0.1', want: 'gzip' },
    { desc: 'q without = is malformed', header: 'br;q 1, gzip;q=0.1', want: 'gzip' },
    { desc: 'a malformed * is ignored, not taken as a refusal', header: '*;q=x, gzip', want: 'gzip' },
    { desc: 'a bare ; with no weight is malformed', header: 'br;, gzip', want: 'gzip' },
    { desc: 'a name longer than any coding is skipped', header: 'gzipgzipgzip, br', want: 'br' },
    { desc: 'zstd is not chosen when not offered', header: 'zstd', offered: NO_ZSTD, want: undefined },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal(negotiate(c.header, c.offered ?? ALL), c.want)
    })
  }

  test('hostile values (64 KiB of elements, names, weights, spaces) are answered right and fast', () => {
    // 64 KiB each (more than Node's default 16 KiB header limit, as a raised one could allow).
    const many = `${'x,'.repeat(32000)}gzip`
    const lateSemicolon = `${'a,'.repeat(32000)}br;q=0.5`
    const longNames = `${'y'.repeat(64000)}, gzip;q=0.3`
    const weights = `${'gzip;q=0.'.repeat(6400)}, br`
    const spaces = `${' '.repeat(32000)}gzip${' '.repeat(32000)}`
    const cases: Array<[string, Encoding | undefined]> = [
      [many, 'gzip'],
      [lateSemicolon, 'br'],
      [longNames, 'gzip'],
      [weights, 'br'],
      [spaces, 'gzip'],
    ]
    for (const [header, want] of cases) {
      const t0 = performance.now()
      for (let i = 0; i < 20; i++) assert.equal(negotiate(header, ALL), want)
      const ms = (performance.now() - t0) / 20
      // About a millisecond here; the bound leaves room for a loaded machine.
      assert.ok(ms < 50, `${header.slice(0, 20)}...: ${ms.toFixed(2)} ms`)
    }
  })
})
