// basic_auth: which htpasswd hashes are accepted (files made by the real `htpasswd` tool), the
// problems a bad declaration gets, and what the middleware does with a request.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import type { Logger } from '../../observe/logger'
import type { RequestContext } from '../types'
import { type BasicAuthConfig, checkBasicAuth, hashProblem, basicAuth as schema } from './config'
import { basicAuth, Limiter } from './index'

const quiet = { warn() {}, info() {} } as unknown as Logger
const HTPASSWD = spawnSync('htpasswd', ['-nbB', 'x', 'y']).status === 0
const NO_HTPASSWD = HTPASSWD
  ? false
  : 'the htpasswd tool is missing: install Debian apache2-utils (apt-get install -y apache2-utils)'

/** `user:hash` as the real htpasswd prints it with `flags` (e.g. `-B`). */
function htpasswd(flags: string, user: string, password: string): string {
  const r = spawnSync('htpasswd', [`-nb${flags}`, user, password], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return r.stdout.trim()
}

const dir = mkdtempSync(path.join(tmpdir(), 'locci-basic-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function check(over: Partial<BasicAuthConfig>) {
  const cfg = schema.parse(over)
  const problems: string[] = []
  const credentials = checkBasicAuth(
    cfg,
    (key, message) => problems.push(`${key ?? '.'}: ${message}`),
    (f) => path.resolve(dir, f),
  )
  return { cfg: { ...cfg, credentials }, problems }
}

describe('htpasswd hashes', { skip: NO_HTPASSWD }, () => {
  const cases: Array<{ desc: string; flags: string; refused: RegExp | undefined }> = [
    { desc: 'bcrypt (-B, $2y$)', flags: 'B', refused: undefined },
    { desc: 'bcrypt at cost 4 (-B -C 4)', flags: 'B -C 4', refused: undefined },
    { desc: 'MD5 apr1 (-m)', flags: 'm', refused: /MD5 hash, which is refused.*htpasswd -B/ },
    {
      desc: 'SHA-256-crypt (-2)',
      flags: '2',
      refused: /SHA-256\/SHA-512-crypt hash, which is not supported/,
    },
    {
      desc: 'SHA-512-crypt (-5)',
      flags: '5',
      refused: /SHA-256\/SHA-512-crypt hash, which is not supported/,
    },
    { desc: 'SHA-1 (-s)', flags: 's', refused: /SHA-1 hash, which is refused/ },
    { desc: 'crypt (-d)', flags: 'd', refused: /crypt\(3\) hash or a plain-text password/ },
    { desc: 'plain text (-p)', flags: 'p', refused: /plain-text password is refused|crypt\(3\)/ },
  ]
  for (const c of cases) {
    test(`a file line made by htpasswd ${c.desc} is ${c.refused ? 'refused' : 'accepted'}`, () => {
      const flags = c.flags.split(' ')
      const r = spawnSync('htpasswd', [`-nb${flags[0]}`, ...flags.slice(1), 'alice', 'secret-pw'], {
        encoding: 'utf8',
      })
      writeFileSync(path.join(dir, 'users'), `# made by htpasswd\n\n${r.stdout.trim()}\n`)
      const { problems, cfg } = check({ users_file: 'users' })
      if (c.refused === undefined) {
        assert.deepEqual(problems, [])
        assert.equal(cfg.credentials[0]?.user, 'alice')
      } else {
        assert.equal(problems.length, 1, problems.join('\n'))
        assert.match(problems[0]!, /^users_file: users line 3: user "alice" /)
        assert.match(problems[0]!, c.refused)
        assert.ok(!problems[0]!.includes(r.stdout.trim().slice(6)), 'the hash is not shown')
      }
    })
  }

  test('a password checked against an htpasswd -B hash: right passes, wrong is 401', async () => {
    const { cfg } = check({ users: [htpasswd('B', 'alice', 'pa:ss wörd')], forward_user: 'X-User' })
    const mw = basicAuth('b', cfg, quiet)
    const good = ctx(`Basic ${Buffer.from('alice:pa:ss wörd').toString('base64')}`)
    assert.equal(await mw(good), undefined)
    assert.deepEqual(good.upstreamHeaders, ['accept', '*/*', 'x-user', 'alice'])
    const bad = await mw(ctx(`Basic ${Buffer.from('alice:pa:ss word').toString('base64')}`))
    assert.equal(bad?.status, 401)
  })
})

function ctx(authorization: string | undefined): RequestContext {
  const raw = authorization === undefined ? [] : ['Authorization', authorization]
  return {
    method: 'GET',
    path: '/',
    clientIp: '1.1.1.1',
    host: undefined,
    route: undefined,
    upstream: 'u',
    rawHeaders: raw,
    requestId: 'r',
    upstreamHeaders: [
      ...(authorization === undefined ? [] : ['authorization', authorization]),
      'accept',
      '*/*',
    ],
    responseHeaders: [],
    dropResponseHeaders: undefined,
    upstreamPath: '/',
  }
}

// A bcrypt hash of "right-password" at cost 4 (bcryptjs.hashSync), so these tests need no tool.
const ALICE = 'alice:$2b$04$UUnWmQZrpQL180O4pyjKe.ducpr/VivJ7WKmp41B5AZhJo1UB9uO.'

describe('basic_auth declarations', () => {
  const cases: Array<{ desc: string; cfg: Partial<BasicAuthConfig>; problem: RegExp | undefined }> = [
    { desc: 'inline bcrypt users', cfg: { users: [ALICE] }, problem: undefined },
    { desc: 'no user at all', cfg: {}, problem: /^\.: needs at least one user/ },
    {
      desc: 'a line without a colon',
      cfg: { users: ['alice'] },
      problem: /^users: entry 1: not a "user:hash" line/,
    },
    {
      desc: 'a plain-text password inline',
      cfg: { users: ['alice:hunter2hunter2'] },
      problem: /^users: entry 1: user "alice" has no password hash \(a plain-text password is refused\)/,
    },
    {
      desc: 'the same user twice',
      cfg: { users: [ALICE, ALICE] },
      problem: /^users: entry 2: user "alice" is already listed \(entry 1\)/,
    },
    {
      desc: 'a missing users_file',
      cfg: { users_file: 'nope.htpasswd' },
      problem: /^users_file: file does not exist: nope.htpasswd/,
    },
    {
      desc: 'forward_user naming Authorization',
      cfg: { users: [ALICE], forward_user: 'Authorization' },
      problem: /^forward_user: Authorization cannot be vouched for/,
    },
    {
      desc: 'forward_user naming a forwarding header',
      cfg: { users: [ALICE], forward_user: 'X-Forwarded-User' },
      problem: /^forward_user: X-Forwarded-User is a forwarding header/,
    },
    {
      desc: 'a realm with a quote',
      cfg: { users: [ALICE], realm: 'a"b' },
      problem: /^realm: must be printable/,
    },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.problem ? 'refused' : 'accepted'}`, () => {
      const { problems } = check(c.cfg)
      if (c.problem === undefined) assert.deepEqual(problems, [])
      else {
        assert.equal(problems.length, 1, problems.join('\n'))
        assert.match(problems[0]!, c.problem)
      }
    })
  }

  test('hashProblem accepts $2a$, $2b$ and $2y$ and refuses $2x$ and a bad cost', () => {
    const tail = ALICE.slice('alice:$2b$'.length)
    for (const v of ['2a', '2b', '2y']) assert.equal(hashProblem(`$${v}$${tail}`), undefined, v)
    assert.match(hashProblem(`$2x$${tail}`)!, /malformed bcrypt/)
    assert.match(hashProblem(`$2b$03${tail.slice(2)}`)!, /cost of 3/)
  })
})

describe('basic_auth requests', () => {
  const { cfg } = check({ users: [ALICE] })
  const log = quiet
  const b64 = (s: string) => Buffer.from(s).toString('base64')

  const refusals: Array<{ desc: string; header: string | undefined }> = [
    { desc: 'no Authorization header', header: undefined },
    { desc: 'a Bearer token', header: 'Bearer abc' },
    { desc: 'Basic without credentials', header: 'Basic' },
    { desc: 'credentials without a colon', header: `Basic ${b64('alice')}` },
    { desc: 'a wrong password', header: `Basic ${b64('alice:wrong')}` },
    { desc: 'an unknown user with the right password', header: `Basic ${b64('bob:right-password')}` },
    { desc: 'not base64', header: 'Basic !!!' },
  ]
  for (const c of refusals) {
    test(`${c.desc}: 401 with a Basic challenge`, async () => {
      const r = await basicAuth('b', cfg, log)(ctx(c.header))
      assert.equal(r?.status, 401)
      assert.equal(r?.kind, 'basic_auth_failed')
      assert.deepEqual(r?.headers, ['www-authenticate', 'Basic realm="locci-proxy", charset="UTF-8"'])
    })
  }

  test('the right password passes, Authorization is removed, and the next request is answered from the cache', async () => {
    const mw = basicAuth('b', cfg, log)
    const first = ctx(`Basic ${b64('alice:right-password')}`)
    const r = mw(first)
    assert.ok(r instanceof Promise, 'the first check runs bcrypt')
    assert.equal(await r, undefined)
    assert.deepEqual(first.upstreamHeaders, ['accept', '*/*'])
    const second = ctx(`Basic ${b64('alice:right-password')}`)
    assert.equal(mw(second), undefined, 'answered at once from the cache')
    assert.deepEqual(second.upstreamHeaders, ['accept', '*/*'])
  })

  test('remove_header: false forwards Authorization', async () => {
    const { cfg: keep } = check({ users: [ALICE], remove_header: false })
    const c = ctx(`Basic ${b64('alice:right-password')}`)
    assert.equal(await basicAuth('b', keep, log)(c), undefined)
    assert.equal(c.upstreamHeaders[0], 'authorization')
  })
})

describe('Limiter', () => {
  test('runs `limit` at once, queues up to queueMax, refuses beyond, and runs the queue in order', async () => {
    const l = new Limiter(1, 2)
    const order: number[] = []
    const releases: Array<() => void> = []
    const task = (n: number) => () =>
      new Promise<void>((resolve) => {
        order.push(n)
        releases.push(resolve)
      })
    const a = l.run(task(1))
    const b = l.run(task(2))
    const c = l.run(task(3))
    assert.ok(a && b && c)
    assert.equal(l.run(task(4)), undefined, 'a fourth is refused')
    assert.deepEqual(order, [1])
    releases[0]!()
    await a
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(order, [1, 2])
    releases[1]!()
    await b
    await new Promise((r) => setImmediate(r))
    releases[2]!()
    await c
    assert.deepEqual(order, [1, 2, 3])
    assert.ok(l.run(task(5)), 'room again')
    releases[3]!()
  })
})
