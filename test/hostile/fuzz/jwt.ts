// JWT-looking tokens for the fuzz run, made synchronously with node:crypto so an input's bytes
// depend on the seed alone (fixed exp/nbf values far from now, never the clock). Each token says
// whether the gateway may accept it: a valid HS* signature with our secret, an `exp` in the future
// and no `nbf` in the future. Every other token must be refused.

import { createHmac } from 'node:crypto'
import type { Rng } from './prng'

export const JWT_SECRET = 'fuzz-secret-fuzz-secret-fuzz-secret-32'
const FUTURE = 4_102_444_800 // 2100-01-01
const PAST = 1_000_000_000 // 2001-09-09

export interface FuzzToken {
  token: string
  /** The gateway may let it through (it must refuse every token without this). */
  acceptable: boolean
  what: string
}

const b64 = (v: string | Buffer) => Buffer.from(v).toString('base64url')

function sign(header: object, claims: object, secret = JWT_SECRET, alg = 'sha256'): string {
  const head = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`
  return `${head}.${createHmac(alg, secret).update(head).digest('base64url')}`
}

const HS = [
  ['HS256', 'sha256'],
  ['HS384', 'sha384'],
  ['HS512', 'sha512'],
] as const

function weirdSub(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => `user-${rng.str(6)}`,
    () => '用户-ユーザー',
    () => '🙂💥',
    () => 'Ω\u0000nul',
    () => 'a\r\nX-Injected: 1',
    () => '\u2028line\u0085sep',
    () => 'x'.repeat(rng.int(1000, 40_000)),
    () => '',
    () => rng.int(0, 1e9),
    () => ({ nested: 'object' }),
    () => ['a', 'b'],
    () => null,
    () => true,
    () => ' padded ',
    () => 'latin1-é',
  ])()
}

export function fuzzToken(rng: Rng): FuzzToken {
  const [alg, hash] = rng.pick(HS)
  const sub = weirdSub(rng)
  const kind = rng.int(0, 15)
  switch (kind) {
    case 0:
    case 1:
    case 2:
      return {
        token: sign({ alg, typ: 'JWT' }, { sub, exp: FUTURE }, JWT_SECRET, hash),
        acceptable: true,
        what: `valid ${alg}`,
      }
    case 3:
      return {
        token: sign({ alg }, { sub }, JWT_SECRET, hash),
        acceptable: false,
        what: 'valid signature, no exp',
      }
    case 4:
      return {
        token: sign({ alg }, { sub, exp: PAST }, JWT_SECRET, hash),
        acceptable: false,
        what: 'expired',
      }
    case 5:
      return {
        token: sign({ alg }, { sub, exp: FUTURE, nbf: FUTURE - 10 }, JWT_SECRET, hash),
        acceptable: false,
        what: 'nbf in the future',
      }
    case 6: {
      const claims = { sub, exp: FUTURE, blob: 'z'.repeat(rng.int(2_000, 60_000)) }
      return { token: sign({ alg }, claims, JWT_SECRET, hash), acceptable: true, what: 'huge claims' }
    }
    case 7:
      return {
        token: `${b64(JSON.stringify({ alg: rng.pick(['none', 'None', 'NONE']) }))}.${b64(JSON.stringify({ sub, exp: FUTURE }))}.`,
        acceptable: false,
        what: 'alg none',
      }
    case 8:
      return {
        token: sign({ alg }, { sub, exp: FUTURE }, 'not-the-secret', hash),
        acceptable: false,
        what: 'wrong secret',
      }
    case 9:
      return {
        token: sign({ alg: rng.pick(['RS256', 'ES256', 'PS256', 'EdDSA']) }, { sub, exp: FUTURE }),
        acceptable: false,
        what: 'asymmetric alg with an HMAC signature',
      }
    case 10:
      return {
        token: sign({ alg, crit: ['x-unknown'], 'x-unknown': 1 }, { sub, exp: FUTURE }, JWT_SECRET, hash),
        acceptable: false,
        what: 'unknown crit extension',
      }
    case 11:
      return {
        token: sign(
          { alg, kid: rng.pick(['../../etc/passwd', '\u0000', 'x'.repeat(5000), '用']) },
          { sub, exp: FUTURE },
          JWT_SECRET,
          hash,
        ),
        acceptable: true,
        what: 'odd kid',
      }
    case 12: {
      // A valid token with one byte of the signature or payload changed.
      const t = sign({ alg }, { sub, exp: FUTURE }, JWT_SECRET, hash)
      const at = rng.int(0, t.length - 1)
      const swapped = t[at] === 'A' ? 'B' : 'A'
      const token = t.slice(0, at) + swapped + t.slice(at + 1)
      // The last character of a base64url segment carries spare bits: changing it may decode to
      // the same bytes, and then the token is still the valid one.
      const same = (x: string) => x.split('.').map((seg) => Buffer.from(seg, 'base64url').toString('hex'))
      const acceptable = token.split('.').length === 3 && same(token).join('.') === same(t).join('.')
      return { token, acceptable, what: 'one character changed' }
    }
    case 13: {
      const exp = rng.pick<unknown>([FUTURE, `${FUTURE}`, 1e308, -1, 'never', null, FUTURE + 0.5])
      return {
        token: sign({ alg }, { sub, exp }, JWT_SECRET, hash),
        // Only a numeric exp in the future is valid (RFC 7519 NumericDate).
        acceptable: typeof exp === 'number' && exp > FUTURE - 1,
        what: `exp ${JSON.stringify(exp)}`,
      }
    }
    case 14:
      return {
        token: `${b64(rng.pick(['{', 'null', '[]', '"x"', '{"alg":"HS256"}']))}.${b64(rng.pick(['{', 'null', '[]', '1']))}.${rng.str(rng.int(0, 60), 'ABCDEFabcdef0123456789-_')}`,
        acceptable: false,
        what: 'broken JSON segments',
      }
    default:
      return {
        token: rng.pick<() => string>([
          () => rng.str(rng.int(1, 300), 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.'),
          () => '...',
          () => 'a.b',
          () => 'a.b.c.d.e',
          () => '',
          () => '%00%ff',
          () => 'x'.repeat(rng.int(10_000, 70_000)),
          () =>
            rng
              .bytes(rng.int(1, 80))
              .toString('latin1')
              .replace(/[\r\n]/g, 'x'),
        ])(),
        acceptable: false,
        what: 'garbage',
      }
  }
}

/** A valid token for a normal request (sub "probe"). */
export function probeToken(): string {
  return sign({ alg: 'HS256', typ: 'JWT' }, { sub: 'probe', exp: FUTURE })
}
