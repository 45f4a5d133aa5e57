// authentication: JWT bearer tokens, verified with jose. HS256/384/512 with `jwt_secret`;
// RS*/PS*/ES*/EdDSA with `public_key_path` (PEM) or `jwks_url` (keys cached for
// `jwks_cache_secs`; an unknown `kid` triggers a refetch, at most one per
// `jwks_cooldown_secs`, and never more than one a second). The accepted algorithms follow the
// key, so a public key can never be used as an HMAC secret, and `alg: none` is always refused.
// Tokens without `exp` are refused unless `require_exp: false`. Optional `issuer`, `audience`
// and clock skew. Refusals are 401 with a RFC 6750 WWW-Authenticate header.
// `excluded_paths` skip the check; `forward_claims` copies claims into upstream headers
// (percent-encoded, see encodeClaim), and those headers are always removed from what the client
// sent, so they cannot be forged.

import { createPublicKey, type KeyObject, webcrypto } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { JWTPayload, JWTVerifyGetKey } from 'jose'
import type { Logger } from '../../observe/logger'
import { type Middleware, type Reply, type RequestContext, rawHeader } from '../types'
import type { AuthenticationConfig } from './config'

const HMAC = ['HS256', 'HS384', 'HS512']
const HMAC_HASH: Readonly<Record<string, string>> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' }

/**
 * The secret as a WebCrypto key per HS algorithm, imported once: given the bytes, jose imports
 * them again for every token it verifies, ~40 % of a verification (Node 20, 2-core VM: 56-84 µs
 * against 36-46 µs with the key imported), paid for each new token and for every request with a
 * bad or expired one. An algorithm that is not HMAC gets the bytes, which jose refuses as before.
 */
function hmacKeys(secret: Uint8Array): JWTVerifyGetKey {
  const imported = new Map<string, Promise<webcrypto.CryptoKey>>()
  return ((header) => {
    const hash = HMAC_HASH[header.alg ?? '']
    if (hash === undefined) return secret
    let k = imported.get(hash)
    if (k === undefined) {
      k = webcrypto.subtle.importKey('raw', secret, { name: 'HMAC', hash }, false, ['verify'])
      imported.set(hash, k)
    }
    return k
  }) as JWTVerifyGetKey
}
const RSA = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const EC: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }

/**
 * Verified tokens are remembered until they expire, and never longer than a minute (a token
 * without `exp`, accepted with `require_exp: false`, too), up to this many.
 */
export const CACHE_MAX = 10_000
const CACHE_MS = 60_000
/**
 * Floor under jwks_cooldown_secs and jwks_cache_secs. Each request whose token names an unknown
 * `kid` may trigger a JWKS fetch once the cool-down has passed; with 0 an attacker sending
 * made-up `kid`s would make the proxy fetch the identity provider's JWKS on every request. The
 * schema still accepts smaller values (existing configs and tests use 0.2); they act as 1 s.
 */
const JWKS_MIN_SECS = 1

export function authentication(
  name: string,
  cfg: AuthenticationConfig,
  keyPath: string | undefined,
  log: Logger,
): Middleware {
  // Loaded when an authentication middleware is built: a proxy without one never pays for jose.
  const { createRemoteJWKSet, jwtVerify } = require('jose') as typeof import('jose')
  let key: Uint8Array | KeyObject | JWTVerifyGetKey
  let algorithms: string[]
  if (cfg.jwt_secret !== undefined) {
    key = hmacKeys(new TextEncoder().encode(cfg.jwt_secret))
    algorithms = cfg.algorithms ?? HMAC
  } else if (keyPath !== undefined) {
    const pk = createPublicKey(readFileSync(keyPath))
    key = pk
    algorithms = cfg.algorithms ?? algorithmsFor(pk)
  } else {
    key = createRemoteJWKSet(new URL(cfg.jwks_url!), {
      cooldownDuration: Math.max(cfg.jwks_cooldown_secs, JWKS_MIN_SECS) * 1000,
      cacheMaxAge: Math.max(cfg.jwks_cache_secs, JWKS_MIN_SECS) * 1000,
      timeoutDuration: 5_000,
    })
    algorithms = cfg.algorithms ?? [...RSA, 'ES256', 'ES384', 'ES512', 'EdDSA']
  }
  const options = {
    algorithms,
    issuer: cfg.issuer,
    audience: cfg.audience,
    clockTolerance: cfg.clock_skew_secs,
    requiredClaims: cfg.require_exp ? ['exp'] : [],
  }
  const excluded = pathExclusion(cfg.excluded_paths)
  const forwards = Object.entries(cfg.forward_claims).map(
    ([claim, header]) => [claim, header.toLowerCase()] as const,
  )
  const forwardNames = new Set(forwards.map(([, h]) => h))
  const challenge = `Bearer realm="${cfg.realm}"`
  /**
   * Per verified token, by `Bearer <token>` (so an Authorization value in that form, nearly all
   * of them, is looked up as it is, with no parsing; one spelled otherwise is parsed and looked
   * up by that key, so a token padded a thousand ways still holds one entry): until when it may
   * be reused, and the forward_claims headers it gives, or, for a token whose signature held but
   * which has expired (for good: no forger can make one), that it is refused. A client retrying
   * a stale token is then refused without a verification each time.
   */
  const cache = new Map<string, CacheEntry>()
  /** The entry of exactly this `Bearer <token>` value, if the cache has it. */
  const cached = (header: string): CacheEntry | undefined => {
    const e = cache.get(cacheKeyOf(header))
    return e !== undefined && e.header === header ? e : undefined
  }
  const remember = (header: string, forwarded: readonly string[] | undefined, until: number): void => {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!)
    cache.set(cacheKeyOf(header), { header, forwarded, until })
  }

  const refuse = (description: string | undefined): Reply => ({
    status: 401,
    kind: 'unauthorized',
    headers: [
      'www-authenticate',
      description === undefined
        ? challenge
        : `${challenge}, error="invalid_token", error_description="${description}"`,
    ],
  })

  /** The forward_claims headers of a verified token, made once per token (the cache keeps them). */
  const forwarded = (payload: JWTPayload): readonly string[] => {
    const out: string[] = []
    for (const [claim, header] of forwards) {
      const v = payload[claim]
      if (v !== undefined && v !== null) out.push(header, encodeClaim(v))
    }
    return out
  }

  const accept = (ctx: RequestContext, headers: readonly string[]): undefined => {
    for (let i = 0; i < headers.length; i += 2) ctx.upstreamHeaders.push(headers[i]!, headers[i + 1]!)
    return undefined
  }

  return (ctx) => {
    if (forwardNames.size > 0) ctx.upstreamHeaders = withoutHeaders(ctx.upstreamHeaders, forwardNames)
    if (excluded(ctx.path)) return undefined
    const header = rawHeader(ctx.rawHeaders, 'authorization')
    const now = Date.now()
    let cacheKey = header
    let hit = header === undefined ? undefined : cached(header)
    let token: string | undefined
    if (hit === undefined) {
      token = bearerToken(header)
      if (token === undefined)
        return refuse(
          header === undefined || !/^Bearer\b/i.test(header) ? undefined : 'malformed bearer token',
        )
      cacheKey = `Bearer ${token}`
      if (cacheKey !== header) hit = cached(cacheKey)
    }
    if (hit !== undefined) {
      if (hit.until > now) return hit.forwarded === undefined ? refuse(EXPIRED) : accept(ctx, hit.forwarded)
      cache.delete(cacheKeyOf(cacheKey!))
    }
    token ??= bearerToken(header)!
    return jwtVerify(token, key as unknown as Uint8Array, options).then(
      ({ payload }) => {
        const exp = typeof payload.exp === 'number' ? payload.exp * 1000 : Number.POSITIVE_INFINITY
        const headers = forwarded(payload)
        remember(cacheKey!, headers, Math.min(exp, now + CACHE_MS))
        return accept(ctx, headers)
      },
      (err: Error & { code?: string; claim?: string; reason?: string }) => {
        if (
          err.code === 'ERR_JWKS_TIMEOUT' ||
          err.code === 'ERR_JWKS_INVALID' ||
          (err.code === undefined && cfg.jwks_url !== undefined)
        ) {
          log.warn(
            { middleware: name, err: err.message, request_id: ctx.requestId },
            'cannot fetch the JWKS to verify tokens',
          )
          return { status: 503, kind: 'auth_unavailable', headers: [] } satisfies Reply
        }
        // jose checks the claims after the signature: an expired token is a genuine one.
        if (err.code === 'ERR_JWT_EXPIRED') remember(cacheKey!, undefined, now + CACHE_MS)
        return refuse(describe(err))
      },
    )
  }
}

const EXPIRED = 'the token has expired'

/** A verified (or genuine but expired) token's cache entry, under cacheKeyOf(header). */
interface CacheEntry {
  /** The whole `Bearer <token>` value: a lookup compares it. */
  readonly header: string
  readonly forwarded: readonly string[] | undefined
  readonly until: number
}

/**
 * The cache's key for a `Bearer <token>` value: its last 16 characters, the end of the token's
 * signature. V8 hashes a string of new bytes (every request's header is one) a character at a
 * time: a lookup by a 150-character value took ~0.2 µs, by its end ~0.09 with the slice and the
 * compare (Node 20, fresh strings each time). Two values with the same end share a key, and the
 * entry's whole value is compared: a token made to end like another (its signature's last 12
 * bytes chosen, so not a valid one) is verified, and refused, as any other; only a verified
 * token, or a genuine expired one, is remembered.
 */
function cacheKeyOf(header: string): string {
  return header.length > 16 ? header.slice(-16) : header
}

/**
 * `excluded_paths` as a test on the normalized path: an exact path, or `/prefix/*`, which covers
 * `/prefix` and everything below it (not `/prefixed`). `explain` uses the same test.
 */
export function pathExclusion(excludedPaths: readonly string[]): (path: string) => boolean {
  const exact = new Set(excludedPaths.filter((p) => !p.endsWith('/*')))
  const prefixes = excludedPaths.filter((p) => p.endsWith('/*')).map((p) => p.slice(0, -2))
  return (path) => {
    if (exact.has(path)) return true
    for (const p of prefixes) if (path === p || path.startsWith(`${p}/`)) return true
    return false
  }
}

/**
 * The token of an `Authorization: Bearer <token>` header (RFC 6750 section 2.1); undefined when
 * the header is absent or is not a well-formed bearer credential, which the middleware refuses
 * (401) without looking further.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  return BEARER.exec(header)?.[1]
}
const BEARER = /^Bearer[ \t]+([A-Za-z0-9\-_.~+/]+=*)[ \t]*$/i

function describe(err: Error & { code?: string; claim?: string; reason?: string }): string {
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return EXPIRED
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (err.claim === 'exp' && err.reason === 'missing') return 'the token has no expiry (exp claim)'
      return err.claim === 'nbf'
        ? 'the token is not valid yet'
        : `the ${err.claim ?? ''} claim is not accepted`.replace('  ', ' ')
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'the token algorithm is not accepted'
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'the token signature is invalid'
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'no key matches the token'
    default:
      return 'the token is malformed'
  }
}

/**
 * A claim as a header value: strings as they are, anything else as JSON, then every byte of its
 * UTF-8 that is not visible ASCII (0x21-0x7E), and `%` itself, percent-encoded (RFC 3986 2.1),
 * so a space is %20 and "名前" is %E5%90%8D%E5%89%8D. A header value with CR, LF, NUL or a
 * character beyond Latin-1 would make Node or undici refuse the upstream request (or, on a
 * WebSocket route, throw); encoded, every value is safe and the upstream can decode it.
 */
export function encodeClaim(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v)
  if (/^[\x21-\x24\x26-\x7e]*$/.test(s)) return s
  let out = ''
  for (const b of Buffer.from(s, 'utf8')) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${HEX[b >> 4]}${HEX[b & 15]}`
  }
  return out
}
const HEX = '0123456789ABCDEF'

/** The algorithms a public key can verify: its family only. */
function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return RSA
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512']
    case 'ec': {
      const alg = EC[key.asymmetricKeyDetails?.namedCurve ?? '']
      return alg ? [alg] : []
    }
    case 'ed25519':
    case 'ed448':
      return ['EdDSA']
    default:
      return []
  }
}

/** `flat` without the headers named in `lowerNames` (lower case); `flat` itself when none is there. */
export function withoutHeaders(flat: string[], lowerNames: ReadonlySet<string>): string[] {
  let out: string[] | undefined
  // Only a name as long as one of `lowerNames` is lowercased (a request has ten-odd headers).
  let lengths = 0
  for (const n of lowerNames) lengths |= n.length < 31 ? 1 << n.length : 1 << 31
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!
    if (
      ((name.length < 31 ? 1 << name.length : 1 << 31) & lengths) !== 0 &&
      lowerNames.has(name.toLowerCase())
    ) {
      out ??= flat.slice(0, i)
    } else if (out) {
      out.push(flat[i]!, flat[i + 1]!)
    }
  }
  return out ?? flat
}
