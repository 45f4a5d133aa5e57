// api_key: the query parameter is taken out without touching the rest, declarations are
// checked, and a request passes only with a declared key, which never goes upstream.

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import type { Reply, RequestContext } from '../types'
import { type ApiKeyConfig, checkApiKey, apiKey as schema } from './config'
import { apiKey, takeQueryParam } from './index'

const KEY = 'k-0123456789abcdef'
const OTHER = 'k-fedcba9876543210'

describe('takeQueryParam', () => {
  const cases: Array<{ desc: string; in: string; path: string; value: string | undefined }> = [
    { desc: 'no query', in: '/a', path: '/a', value: undefined },
    { desc: 'the only parameter', in: '/a?api_key=x', path: '/a', value: 'x' },
    { desc: 'first of three', in: '/a?api_key=x&b=2&c=3', path: '/a?b=2&c=3', value: 'x' },
    {
      desc: 'middle, others kept byte for byte',
      in: '/a?b=%2F+&api_key=x&c',
      path: '/a?b=%2F+&c',
      value: 'x',
    },
    { desc: 'twice: both removed, the first taken', in: '/a?api_key=x&api_key=y', path: '/a', value: 'x' },
    { desc: 'an encoded name', in: '/a?api%5Fkey=x&b=1', path: '/a?b=1', value: 'x' },
    { desc: 'an encoded value', in: '/a?api_key=a%2Bb+c', path: '/a', value: 'a+b c' },
    { desc: 'a badly encoded value', in: '/a?api_key=%zz&b=1', path: '/a?b=1', value: undefined },
    { desc: 'a name that only starts alike', in: '/a?api_keys=x', path: '/a?api_keys=x', value: undefined },
    { desc: 'no value', in: '/a?api_key&b', path: '/a?b', value: '' },
    { desc: 'an empty query', in: '/a?', path: '/a?', value: undefined },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.in} -> ${c.path}`, () => {
      assert.deepEqual(takeQueryParam(c.in, 'api_key'), { path: c.path, value: c.value })
    })
  }
})

const dir = mkdtempSync(path.join(tmpdir(), 'locci-apikey-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function check(over: Partial<ApiKeyConfig>) {
  const cfg = schema.parse(over)
  const problems: string[] = []
  const consumers = checkApiKey(
    cfg,
    (key, message) => problems.push(`${key ?? '.'}: ${message}`),
    (f) => path.resolve(dir, f),
  )
  return { cfg: { ...cfg, consumers }, problems }
}

describe('api_key declarations', () => {
  writeFileSync(path.join(dir, 'keys'), `# consumers\n\nbilling: ${OTHER}\nbroken line\nshort:abc\n`)
  const cases: Array<{ desc: string; cfg: Partial<ApiKeyConfig>; problems: RegExp[] }> = [
    { desc: 'inline keys', cfg: { keys: [{ consumer: 'app', key: KEY }] }, problems: [] },
    { desc: 'no key at all', cfg: {}, problems: [/^\.: needs at least one key/] },
    {
      desc: 'a short key',
      cfg: { keys: [{ consumer: 'app', key: 'secret' }] },
      problems: [/^keys: entry 1 \(app\): the key is shorter than 16 characters/],
    },
    {
      desc: 'a key with a space',
      cfg: { keys: [{ consumer: 'app', key: `${KEY} x` }] },
      problems: [/^keys: entry 1 \(app\): the key must be visible ASCII/],
    },
    {
      desc: 'one key for two consumers',
      cfg: {
        keys: [
          { consumer: 'a', key: KEY },
          { consumer: 'b', key: KEY },
        ],
      },
      problems: [/^keys: entry 2 \(b\): the same key is already given to a/],
    },
    {
      desc: 'a keys_file with a bad and a short line',
      cfg: { keys_file: 'keys' },
      problems: [/^keys_file: keys line 4: not a "consumer:key" line/, /^keys_file: keys line 5 \(short\)/],
    },
    {
      desc: 'a missing keys_file',
      cfg: { keys_file: 'nope' },
      problems: [/^keys_file: file does not exist: nope/],
    },
    {
      desc: 'consumer_header naming Cookie',
      cfg: { keys: [{ consumer: 'app', key: KEY }], consumer_header: 'Cookie' },
      problems: [/^consumer_header: Cookie cannot be vouched for/],
    },
    {
      desc: 'consumer_header equal to header',
      cfg: { keys: [{ consumer: 'app', key: KEY }], consumer_header: 'x-api-key' },
      problems: [/^consumer_header: must differ from header/],
    },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.problems.length ? 'refused' : 'accepted'}`, () => {
      const { problems } = check(c.cfg)
      assert.equal(problems.length, c.problems.length, problems.join('\n'))
      for (const [i, re] of c.problems.entries()) assert.match(problems[i]!, re)
      for (const p of problems) assert.ok(!p.includes(KEY) && !p.includes('abc'), `no key shown: ${p}`)
    })
  }

  test('a keys_file line gives a key to its consumer', () => {
    writeFileSync(path.join(dir, 'good'), `billing: ${OTHER}\n`)
    assert.deepEqual(check({ keys_file: 'good' }).cfg.consumers, [{ consumer: 'billing', key: OTHER }])
  })
})

function ctx(raw: string[], upstreamPath = '/items?page=2'): RequestContext {
  return {
    method: 'GET',
    path: '/items',
    clientIp: '1.1.1.1',
    host: undefined,
    route: undefined,
    upstream: 'u',
    rawHeaders: raw,
    requestId: 'r',
    upstreamHeaders: [...raw.flatMap((v, i) => (i % 2 ? [v] : [v.toLowerCase()])), 'accept', '*/*'],
    responseHeaders: [],
    dropResponseHeaders: undefined,
    upstreamPath,
  }
}

describe('api_key requests', () => {
  const { cfg } = check({
    keys: [
      { consumer: 'app', key: KEY },
      { consumer: 'Zoë', key: OTHER },
    ],
    query_param: 'api_key',
  })
  const mw = apiKey(cfg)

  test('a declared key in the header passes: key removed, consumer sent, forged consumer replaced', () => {
    const c = ctx(['X-API-Key', KEY, 'X-Consumer-Username', 'admin'])
    assert.equal(mw(c), undefined)
    assert.deepEqual(c.upstreamHeaders, ['accept', '*/*', 'x-consumer-username', 'app'])
    assert.equal(c.upstreamPath, '/items?page=2')
  })

  test('a declared key in the query passes: the parameter is removed, the others kept', () => {
    const c = ctx([], `/items?page=2&api_key=${OTHER}&sort=a`)
    assert.equal(mw(c), undefined)
    assert.equal(c.upstreamPath, '/items?page=2&sort=a')
    assert.deepEqual(c.upstreamHeaders, ['accept', '*/*', 'x-consumer-username', 'Zo%C3%AB'])
  })

  const refusals: Array<{ desc: string; raw: string[]; path?: string }> = [
    { desc: 'no key', raw: [] },
    { desc: 'an unknown key', raw: ['X-API-Key', `${KEY}x`] },
    { desc: 'a key differing in case', raw: ['X-API-Key', KEY.toUpperCase()] },
    { desc: 'an empty header', raw: ['X-API-Key', ''] },
    { desc: 'an unknown key in the query', raw: [], path: '/items?api_key=nope' },
  ]
  for (const c of refusals) {
    test(`${c.desc}: 401, and the key does not go upstream`, () => {
      const x = ctx(c.raw, c.path)
      const r = mw(x) as Reply | undefined
      assert.equal(r?.status, 401)
      assert.equal(r?.kind, 'api_key_invalid')
      assert.ok(!x.upstreamHeaders.includes('x-api-key'))
      assert.ok(!x.upstreamPath.includes('api_key'))
    })
  }

  test('without query_param a key in the query is not looked at, nor removed', () => {
    const only = apiKey(check({ keys: [{ consumer: 'app', key: KEY }] }).cfg)
    const c = ctx([], `/items?api_key=${KEY}`)
    assert.equal((only(c) as { status: number }).status, 401)
    assert.equal(c.upstreamPath, `/items?api_key=${KEY}`)
  })
})
