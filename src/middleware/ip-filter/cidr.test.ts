import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CidrSet, parseCidr, parseIp } from './cidr'

const set = (...ranges: string[]) =>
  new CidrSet(
    ranges.map((r) => {
      const c = parseCidr(r)
      if (typeof c === 'string') throw new Error(c)
      return c
    }),
  )

const cases: Array<{ desc: string; ranges: string[]; ip: string; in: boolean }> = [
  { desc: 'IPv4 inside its /8', ranges: ['10.0.0.0/8'], ip: '10.200.3.4', in: true },
  { desc: 'IPv4 outside its /8', ranges: ['10.0.0.0/8'], ip: '11.0.0.1', in: false },
  { desc: 'a single IPv4 address', ranges: ['192.0.2.7'], ip: '192.0.2.7', in: true },
  { desc: 'the next IPv4 address', ranges: ['192.0.2.7'], ip: '192.0.2.8', in: false },
  { desc: '/0 holds every IPv4 address', ranges: ['0.0.0.0/0'], ip: '203.0.113.9', in: true },
  { desc: 'IPv4-mapped spelling of an IPv4 client', ranges: ['10.0.0.0/8'], ip: '::ffff:10.1.2.3', in: true },
  { desc: 'IPv4-mapped in hex', ranges: ['10.0.0.0/8'], ip: '::ffff:a01:203', in: true },
  {
    desc: 'IPv4-mapped in upper case, full form',
    ranges: ['10.0.0.0/8'],
    ip: '0:0:0:0:0:FFFF:10.1.2.3',
    in: true,
  },
  {
    desc: 'an IPv4 client against a mapped range',
    ranges: ['::ffff:10.0.0.0/104'],
    ip: '10.9.9.9',
    in: true,
  },
  { desc: '::/0 holds IPv4 clients too', ranges: ['::/0'], ip: '8.8.8.8', in: true },
  { desc: 'IPv6 inside its /32', ranges: ['2001:db8::/32'], ip: '2001:db8:1::5', in: true },
  { desc: 'IPv6 outside its /32', ranges: ['2001:db8::/32'], ip: '2001:db9::1', in: false },
  { desc: 'IPv6 with a zone', ranges: ['fe80::/10'], ip: 'fe80::1%eth0', in: true },
  {
    desc: 'an IPv4 range does not hold IPv6 ::a01:203 (IPv4-compatible)',
    ranges: ['10.0.0.0/8'],
    ip: '::a01:203',
    in: false,
  },
  { desc: 'loopback v6 is not loopback v4', ranges: ['127.0.0.0/8'], ip: '::1', in: false },
  { desc: 'a /127', ranges: ['2001:db8::/127'], ip: '2001:db8::1', in: true },
]
for (const c of cases) {
  test(`CidrSet: ${c.desc}`, () => {
    const ip = parseIp(c.ip)
    assert.ok(ip, `parses ${c.ip}`)
    assert.equal(set(...c.ranges).has(ip), c.in)
  })
}

const bad = [
  'unknown',
  '',
  '1.2.3',
  '1.2.3.4.5',
  '01.2.3.4',
  '256.1.1.1',
  '1::2::3',
  ':::',
  '1:2:3:4:5:6:7:8:9',
  'g::1',
  '::1.2.3.4:5',
  'example.com',
]
for (const b of bad) {
  test(`parseIp refuses ${JSON.stringify(b)}`, () => assert.equal(parseIp(b), undefined))
}

const badRanges: Array<[string, RegExp]> = [
  ['10.0.0.1/8', /bits set beyond its \/8 prefix; the range is 10.0.0.0\/8/],
  ['10.0.0.0/33', /0-32/],
  ['2001:db8::/129', /0-128/],
  ['10.0.0.0/08', /prefix length/],
  ['fe80::1%eth0', /zone/],
  ['10.0.0.0/', /prefix length/],
]
for (const [r, m] of badRanges) {
  test(`parseCidr refuses ${r}`, () => {
    const c = parseCidr(r)
    assert.equal(typeof c, 'string')
    assert.match(c as string, m)
  })
}
