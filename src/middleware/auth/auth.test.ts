import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, mock, test } from 'node:test'
import { SignJWT, UnsecuredJWT } from 'jose'
import type { Logger } from '../../observe/logger'
import type { Reply, RequestContext } from '../types'
import type { AuthenticationConfig } from './config'
import { authentication, CACHE_MAX, encodeClaim, withoutHeaders } from './index'

const quiet = { warn() {}, info() {} } as unknown as Logger
const secret = new TextEncoder().encode('s3cret-s3cret-s3cret-s3cret-s3cret')
const base: AuthenticationConfig = {
  jwt_secret: 's3cret-s3cret-s3cret-s3cret-s3cret',
  clock_skew_secs: 0,
  require_exp: true,
  jwks_cooldown_secs: 30,
  jwks_cache_secs: 600,
  excluded_paths: ['/health', '/public/*'],
  forward_claims: { sub: 'X-User-Id' },
  realm: 'locci-proxy',
}
const ctx = (auth: string | undefined, p = '/api', extra: string[] = []): RequestContext => ({
  method: 'GET',
  path: p,
  clientIp: '1.1.1.1',
  host: undefined,
  route: undefined,
  upstream: 'u',
  upstreamPath: p,
  rawHeaders: auth === undefined ? extra : ['Authorization', auth, ...extra],
  requestId: 'r',
  upstreamHeaders: ['x-user-id', 'forged', 'accept', '*/*'],
  responseHeaders: [],
  dropResponseHeaders: undefined,
})
const hs = (claims: Record<string, unknown>, alg = 'HS256', exp: string | number = '5m') =>
  new SignJWT(claims).setProtectedHeader({ alg }).setIssuedAt().setExpirationTime(exp).sign(secret)

async function run(cfg: AuthenticationConfig, c: RequestContext, keyPath?: string) {
  return (await authentication('auth', cfg, keyPath, quiet)(c)) as Reply | undefined
}
const challenge = (r: Reply | undefined) => r?.headers[r.headers.indexOf('www-authenticate') + 1]

describe('authentication (HS256 secret)', () => {
  test('a valid token passes; its sub is forwarded and a forged X-User-Id is dropped', async () => {
    const c = ctx(`Bearer ${await hs({ sub: 'u-42' })}`)
    assert.equal(await run(base, c), undefined)
    assert.deepEqual(c.upstreamHeaders, ['accept', '*/*', 'x-user-id', 'u-42'])
  })

  const refusals: Array<{ desc: string; auth: () => Promise<string | undefined>; want: RegExp }> = [
    { desc: 'no token', auth: async () => undefined, want: /^Bearer realm="locci-proxy"$/ },
    { desc: 'another scheme', auth: async () => 'Basic dXNlcjpwYXNz', want: /^Bearer realm="locci-proxy"$/ },
    {
      desc: 'expired',
      auth: async () => `Bearer ${await hs({ sub: 'x' }, 'HS256', Math.floor(Date.now() / 1000) - 60)}`,
      want: /has expired/,
    },
    {
      desc: 'not yet valid',
      auth: async () =>
        `Bearer ${await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setNotBefore('10m').setExpirationTime('20m').sign(secret)}`,
      want: /not valid yet/,
    },
    {
      desc: 'alg: none',
      auth: async () => `Bearer ${new UnsecuredJWT({ sub: 'x' }).setExpirationTime('5m').encode()}`,
      want: /invalid_token/,
    },
    {
      desc: 'bad signature',
      auth: async () =>
        `Bearer ${await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode('other-secret-other-secret-other'))}`,
      want: /signature is invalid/,
    },
    {
      desc: 'algorithm not allowed (HS512 when only HS256 is)',
      auth: async () => `Bearer ${await hs({}, 'HS512')}`,
      want: /algorithm is not accepted/,
    },
    { desc: 'garbage', auth: async () => 'Bearer not.a.jwt', want: /malformed/ },
    {
      desc: 'no exp claim (a token that never expires)',
      auth: async () =>
        `Bearer ${await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(secret)}`,
      want: /error_description="the token has no expiry \(exp claim\)"/,
    },
  ]
  for (const r of refusals) {
    test(`refused: ${r.desc}`, async () => {
      const reply = await run({ ...base, algorithms: ['HS256'] }, ctx(await r.auth()))
      assert.equal(reply?.status, 401)
      assert.equal(reply?.kind, 'unauthorized')
      assert.match(challenge(reply)!, r.want)
    })
  }

  test('each HS algorithm verifies with its own imported key; a header naming another is refused', async () => {
    // One middleware, all three allowed: the secret is imported once per hash and never used
    // for a token whose header names a different algorithm than it was signed with.
    const mw = authentication('auth', { ...base, algorithms: ['HS256', 'HS384', 'HS512'] }, undefined, quiet)
    for (const alg of ['HS256', 'HS384', 'HS512', 'HS256', 'HS512']) {
      const c = ctx(`Bearer ${await hs({ sub: alg }, alg)}`)
      assert.equal(await mw(c), undefined, alg)
      assert.deepEqual(c.upstreamHeaders.slice(-2), ['x-user-id', alg])
    }
    const [head, body, sig] = (await hs({ sub: 'x' }, 'HS256')).split('.')
    const relabelled = `${Buffer.from(JSON.stringify({ alg: 'HS512' })).toString('base64url')}.${body}.${sig}`
    assert.match(challenge((await mw(ctx(`Bearer ${relabelled}`))) as Reply)!, /signature is invalid/)
    assert.ok(head)
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const rs = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'RS256' })
      .setExpirationTime('5m')
      .sign(rsa.privateKey)
    assert.match(challenge((await mw(ctx(`Bearer ${rs}`))) as Reply)!, /algorithm is not accepted/)
  })

  test('a genuine expired token is refused from the cache when it comes again; a forged one is not cached', async () => {
    const mw = authentication('auth', base, undefined, quiet)
    const expired = `Bearer ${await hs({ sub: 'x' }, 'HS256', Math.floor(Date.now() / 1000) - 60)}`
    const first = mw(ctx(expired))
    assert.ok(first instanceof Promise, 'the first sight is verified')
    assert.match(challenge((await first) as Reply)!, /has expired/)
    const again = mw(ctx(expired))
    assert.ok(!(again instanceof Promise), 'a repeat is answered without a verification')
    assert.equal((again as Reply).status, 401)
    assert.match(challenge(again as Reply)!, /has expired/)
    // The same claims under a wrong signature: never remembered, so never refused as "expired".
    const forged = `${expired.slice(0, -4)}AAAA`
    for (let i = 0; i < 2; i++) {
      const r = mw(ctx(forged))
      assert.ok(r instanceof Promise, `forged, sight ${i + 1}: verified`)
      assert.match(challenge((await r) as Reply)!, /signature is invalid/)
    }
  })

  test('a token spelled many ways is one cache entry: padded forms hit the entry of `Bearer <token>`', async () => {
    // Keyed by the raw value, a valid token padded with 1..N spaces would be N entries of up to a
    // header's size each: memory an attacker holding one token could fill the cache with.
    const mw = authentication('auth', base, undefined, quiet)
    const token = await hs({ sub: 'u-7' })
    const padded = [`bearer ${token}`, `Bearer    ${token}`, `BEARER\t${token}  `]
    assert.ok(mw(ctx(padded[0])) instanceof Promise, 'the first sight, padded, is verified')
    await mw(ctx(padded[0]))
    for (const form of [`Bearer ${token}`, ...padded]) {
      const c = ctx(form)
      const r = mw(c)
      assert.ok(!(r instanceof Promise), `${JSON.stringify(form.slice(0, 10))}: from the cache`)
      assert.deepEqual(c.upstreamHeaders.slice(-2), ['x-user-id', 'u-7'])
    }
  })

  test('issuer and audience are enforced when set', async () => {
    const cfg = { ...base, issuer: 'https://id.example', audience: 'api' }
    assert.equal(
      await run(cfg, ctx(`Bearer ${await hs({ iss: 'https://id.example', aud: 'api' })}`)),
      undefined,
    )
    assert.match(
      challenge(await run(cfg, ctx(`Bearer ${await hs({ iss: 'https://evil', aud: 'api' })}`)))!,
      /iss claim/,
    )
    assert.match(
      challenge(await run(cfg, ctx(`Bearer ${await hs({ iss: 'https://id.example', aud: 'web' })}`)))!,
      /aud claim/,
    )
  })

  test('excluded paths skip the check: exact and prefix/*', async () => {
    for (const p of ['/health', '/public', '/public/a/b'])
      assert.equal(await run(base, ctx(undefined, p)), undefined, p)
    for (const p of ['/healthz', '/publicity'])
      assert.equal((await run(base, ctx(undefined, p)))?.status, 401, p)
  })

  test('a forged X-User-Id is dropped even on an excluded path', async () => {
    const c = ctx(undefined, '/health')
    await run(base, c)
    assert.deepEqual(c.upstreamHeaders, ['accept', '*/*'])
  })
})

describe('authentication (public keys)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-keys-'))
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const ed = generateKeyPairSync('ed25519')
  const write = (name: string, k: typeof rsa) => {
    const p = path.join(dir, name)
    writeFileSync(p, k.publicKey.export({ type: 'spki', format: 'pem' }))
    return p
  }
  const cases = [
    { alg: 'RS256', pair: rsa, file: write('rsa.pem', rsa) },
    { alg: 'ES256', pair: ec, file: write('ec.pem', ec) },
    { alg: 'EdDSA', pair: ed, file: write('ed.pem', ed) },
  ]
  const cfg: AuthenticationConfig = {
    ...base,
    jwt_secret: undefined,
    public_key_path: 'x',
    forward_claims: {},
  }
  for (const c of cases) {
    test(`${c.alg} with public_key_path`, async () => {
      const token = await new SignJWT({ sub: 'k' })
        .setProtectedHeader({ alg: c.alg })
        .setExpirationTime('5m')
        .sign(c.pair.privateKey)
      assert.equal(await run(cfg, ctx(`Bearer ${token}`), c.file), undefined)
    })
  }
  test('an HS256 token signed with the RSA public key as secret is refused (algorithm confusion)', async () => {
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string
    const token = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(pem))
    const r = await run(cfg, ctx(`Bearer ${token}`), cases[0]!.file)
    assert.equal(r?.status, 401)
  })
})

describe('tokens without exp', () => {
  const noExp = () =>
    new SignJWT({ sub: 'forever' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(secret)

  test('are accepted with require_exp: false', async () => {
    const c = ctx(`Bearer ${await noExp()}`)
    assert.equal(await run({ ...base, require_exp: false }, c), undefined)
    assert.deepEqual(c.upstreamHeaders, ['accept', '*/*', 'x-user-id', 'forever'])
  })

  test('are remembered for a minute at most, then verified again', async () => {
    const token = await noExp()
    mock.timers.enable({ apis: ['Date'], now: Date.now() })
    try {
      const mw = authentication('auth', { ...base, require_exp: false }, undefined, quiet)
      const first = mw(ctx(`Bearer ${token}`))
      assert.ok(first instanceof Promise, 'the first request verifies')
      assert.equal(await first, undefined)
      assert.equal(mw(ctx(`Bearer ${token}`)), undefined, 'then the cache answers at once')
      mock.timers.tick(59_000)
      assert.equal(mw(ctx(`Bearer ${token}`)), undefined, 'still cached within the minute')
      mock.timers.tick(2_000)
      const later = mw(ctx(`Bearer ${token}`))
      assert.ok(later instanceof Promise, 'after a minute the token is verified again')
      assert.equal(await later, undefined)
    } finally {
      mock.timers.reset()
    }
  })
})

describe('encodeClaim', () => {
  const cases: Array<{ desc: string; value: unknown; want: string }> = [
    { desc: 'visible ASCII is kept', value: 'u-42@example.com', want: 'u-42@example.com' },
    { desc: 'a space', value: 'John Doe', want: 'John%20Doe' },
    { desc: 'a percent sign', value: '100%', want: '100%25' },
    { desc: 'CR LF (header injection)', value: 'a\r\nX-Admin: 1', want: 'a%0D%0AX-Admin:%201' },
    { desc: 'NUL and tab', value: '\u0000\t', want: '%00%09' },
    { desc: 'DEL', value: '\u007f', want: '%7F' },
    { desc: 'Latin-1 beyond ASCII', value: 'é', want: '%C3%A9' },
    { desc: 'beyond Latin-1', value: '名前', want: '%E5%90%8D%E5%89%8D' },
    { desc: 'a line separator', value: '\u2028', want: '%E2%80%A8' },
    { desc: 'an emoji', value: '😀', want: '%F0%9F%98%80' },
    { desc: 'a lone surrogate', value: '\ud800', want: '%EF%BF%BD' },
    { desc: 'a number', value: 42, want: '42' },
    { desc: 'a boolean', value: true, want: 'true' },
    { desc: 'an array, as JSON', value: ['a b', 'c'], want: '["a%20b","c"]' },
    {
      desc: 'an object, as JSON',
      value: { role: 'admin', name: 'É' },
      want: '{"role":"admin","name":"%C3%89"}',
    },
    { desc: 'an empty string', value: '', want: '' },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const got = encodeClaim(c.value)
      assert.equal(got, c.want)
      assert.match(got, /^[\x21-\x7e]*$/, 'only visible ASCII')
      const json = typeof c.value === 'string' ? c.value : JSON.stringify(c.value)
      if (!c.desc.includes('surrogate')) assert.equal(decodeURIComponent(got), json, 'decodes back')
    })
  }

  test('forwarded claims are encoded in the upstream header', async () => {
    const c = ctx(`Bearer ${await hs({ sub: '名前\r\nX-Admin: yes' })}`)
    assert.equal(await run(base, c), undefined)
    assert.deepEqual(c.upstreamHeaders, [
      'accept',
      '*/*',
      'x-user-id',
      '%E5%90%8D%E5%89%8D%0D%0AX-Admin:%20yes',
    ])
  })
})

describe('the verified-token cache', () => {
  const mw = () => authentication('auth', base, undefined, quiet)

  test('a cached token forwards the same claims and still drops a forged X-User-Id', async () => {
    const m = mw()
    const token = await hs({ sub: 'alice' })
    const first = ctx(`Bearer ${token}`)
    assert.equal(await m(first), undefined)
    const second = ctx(`Bearer ${token}`, '/api', [])
    assert.equal(m(second), undefined, 'answered from the cache, at once')
    assert.deepEqual(second.upstreamHeaders, ['accept', '*/*', 'x-user-id', 'alice'])
    assert.deepEqual(first.upstreamHeaders, second.upstreamHeaders)
  })

  test('a forged token is never served from the cache: a valid token with another signature is refused', async () => {
    const m = mw()
    const token = await hs({ sub: 'alice' })
    assert.equal(await m(ctx(`Bearer ${token}`)), undefined)
    const [h, p] = token.split('.')
    const forgedPayload = Buffer.from(JSON.stringify({ sub: 'admin', exp: 9_999_999_999 })).toString(
      'base64url',
    )
    for (const forged of [`${h}.${p}.${'A'.repeat(43)}`, `${h}.${forgedPayload}.${token.split('.')[2]}`]) {
      for (let i = 0; i < 2; i++) {
        const r = m(ctx(`Bearer ${forged}`))
        assert.ok(r instanceof Promise, 'a token the cache has not seen verified is verified')
        assert.equal((await r)?.status, 401)
      }
    }
  })

  test('an expired token is verified again (and refused) once its exp has passed, cached or not', async () => {
    const now = Date.now()
    mock.timers.enable({ apis: ['Date'], now })
    try {
      const m = mw()
      const token = await hs({ sub: 'bob' }, 'HS256', Math.floor(now / 1000) + 2)
      assert.equal(await m(ctx(`Bearer ${token}`)), undefined)
      assert.equal(m(ctx(`Bearer ${token}`)), undefined, 'cached while valid')
      mock.timers.tick(3_000)
      const later = m(ctx(`Bearer ${token}`))
      assert.ok(later instanceof Promise, 'past exp the cache does not answer')
      assert.equal((await later)?.status, 401)
    } finally {
      mock.timers.reset()
    }
  })

  test(`bounded: at most ${CACHE_MAX} tokens, the oldest go first`, async () => {
    const m = mw()
    const tokens = await Promise.all(Array.from({ length: CACHE_MAX + 1 }, (_, i) => hs({ sub: `u${i}` })))
    for (const t of tokens) assert.equal(await m(ctx(`Bearer ${t}`)), undefined)
    assert.equal(m(ctx(`Bearer ${tokens[CACHE_MAX]}`)), undefined, 'the newest is cached')
    assert.ok(m(ctx(`Bearer ${tokens[0]}`)) instanceof Promise, 'the oldest was dropped')
  })
})

describe('withoutHeaders', () => {
  test('drops the named headers in any case, keeps the rest in order, returns the array itself when none is there', () => {
    const names = new Set(['x-user-id', 'x-a'])
    const flat = ['Host', 'h', 'X-User-Id', 'f1', 'x-a', '1', 'X-USER-ID', 'f2', 'accept', '*/*']
    assert.deepEqual(withoutHeaders(flat, names), ['Host', 'h', 'accept', '*/*'])
    const none = ['host', 'h', 'x-user-idx', 'v', 'a'.repeat(40), 'v']
    assert.equal(withoutHeaders(none, names), none)
    const long = new Set(['x'.repeat(40)])
    assert.deepEqual(withoutHeaders(['X'.repeat(40), 'v', 'y'.repeat(40), 'w'], long), ['y'.repeat(40), 'w'])
  })
})
