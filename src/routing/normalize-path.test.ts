import assert from 'node:assert/strict'
import { test } from 'node:test'
import { normalizePath } from './normalize-path'

const cases: Array<{ desc: string; in: string; out?: string; refused?: RegExp; keep?: boolean }> = [
  { desc: 'a plain path is returned as it is', in: '/api/users/42', out: '/api/users/42' },
  { desc: 'the root', in: '/', out: '/' },
  { desc: 'a trailing slash is kept', in: '/api/', out: '/api/' },
  { desc: 'merged slashes', in: '//api///users//', out: '/api/users/' },
  { desc: 'a dot segment', in: '/api/./users', out: '/api/users' },
  { desc: 'a dot-dot segment', in: '/api/public/../secret', out: '/api/secret' },
  { desc: 'dot-dot at the end leaves a directory', in: '/api/x/..', out: '/api/' },
  { desc: 'encoded dots are dot segments', in: '/%2e%2e/admin', refused: /above the root/ },
  { desc: 'encoded dots inside a path', in: '/public/%2E%2e/admin', out: '/admin' },
  { desc: 'mixed encoded dot', in: '/public/.%2e/admin', out: '/admin' },
  { desc: 'unreserved escapes are decoded', in: '/%61%70%69/%7Euser', out: '/api/~user' },
  { desc: 'other escapes get upper-case hex', in: '/a%3fb/%c3%a9', out: '/a%3Fb/%C3%A9' },
  { desc: 'above the root is refused', in: '/../etc/passwd', refused: /above the root/ },
  { desc: 'above the root deeper', in: '/a/../../b', refused: /above the root/ },
  { desc: 'a backslash is refused', in: '/public\\..\\admin', refused: /backslash/ },
  { desc: '%2F is refused', in: '/public%2F..%2Fadmin', refused: /escaped slash/ },
  { desc: '%5c is refused', in: '/public%5c..%5cadmin', refused: /escaped slash/ },
  { desc: 'keep: %2F passes untouched', in: '/a%2fb', out: '/a%2Fb', keep: true },
  { desc: 'keep: a backslash passes', in: '/a\\b', out: '/a\\b', keep: true },
  { desc: 'path parameters before dot-dot', in: '/public;/../admin', out: '/admin' },
  { desc: 'dot-dot with parameters is refused', in: '/public/..;/admin', refused: /parameters/ },
  { desc: 'dot with parameters is refused', in: '/public/.;x/admin', refused: /parameters/ },
  { desc: 'parameters elsewhere are kept', in: '/a;v=1/b', out: '/a;v=1/b' },
  { desc: 'a malformed escape', in: '/a%zz', refused: /malformed/ },
  { desc: 'a truncated escape', in: '/a%4', refused: /malformed/ },
  { desc: 'a NUL byte', in: '/a\u0000b', refused: /control/ },
  { desc: 'a fragment', in: '/a#b', refused: /#/ },
  { desc: 'not starting with a slash', in: '*', refused: /start with/ },
  { desc: 'a dot-file name is not a dot segment', in: '/.well-known/x', out: '/.well-known/x' },
  { desc: 'case is kept', in: '/API/Users', out: '/API/Users' },
]

for (const c of cases) {
  test(`normalizePath: ${c.desc}`, () => {
    const r = normalizePath(c.in, c.keep)
    if (c.refused) {
      assert.equal(r.ok, false, `${c.in} must be refused`)
      assert.match((r as { reason: string }).reason, c.refused)
    } else {
      assert.deepEqual(r, { ok: true, path: c.out })
    }
  })
}

test('normalizePath: normalizing twice changes nothing', () => {
  for (const c of cases) {
    const r = normalizePath(c.in, c.keep)
    if (r.ok) assert.deepEqual(normalizePath(r.path, c.keep), r, c.in)
  }
})
