// authentication: JWT bearer tokens, verified with jose. HS256/384/512 with `jwt_secret`;
// RS*/PS*/ES*/EdDSA with `public_key_path` (PEM) or `jwks_url` (keys cached for
// `jwks_cache_secs`; an unknown `kid` triggers a refetch, at most one per
// `jwks_cooldown_secs`). The accepted algorithms follow the key, so a public key can never be
// used as an HMAC secret, and `alg: none` is always refused. Optional `issuer`,
// `audience` and clock skew. Refusals are 401 with a RFC 6750 WWW-Authenticate header.
// `excluded_paths` skip the check; `forward_claims` copies claims into upstream headers, and
// those headers are always removed from what the client sent, so they cannot be forged.

import { createPublicKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose'
import type { Logger } from '../../observe/logger'
import type { AuthenticationConfig } from '../schema'
import { type Middleware, type Reply, type RequestContext, rawHeader } from '../types'

const HMAC = ['HS256', 'HS384', 'HS512']
const RSA = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const EC: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }

/** Verified tokens are remembered until they expire (at most a minute), up to this many. */
const CACHE_MAX = 10_000
const CACHE_MS = 60_000

export function authentication(
  name: string,
  cfg: AuthenticationConfig,
  keyPath: string | undefined,
  log: Logger,
): Middleware {
  let key: Uint8Array | KeyObject | JWTVerifyGetKey
  let algorithms: string[]
  if (cfg.jwt_secret !== undefined) {
    key = new TextEncoder().encode(cfg.jwt_secret)
    algorithms = cfg.algorithms ?? HMAC
  } else if (keyPath !== undefined) {
    const pk = createPublicKey(readFileSync(keyPath))
    key = pk
    algorithms = cfg.algorithms ?? algorithmsFor(pk)
  } else {
    key = createRemoteJWKSet(new URL(cfg.jwks_url!), {
      cooldownDuration: cfg.jwks_cooldown_secs * 1000,
      cacheMaxAge: cfg.jwks_cache_secs * 1000,
      timeoutDuration: 5_000,
    })
    algorithms = cfg.algorithms ?? [...RSA, 'ES256', 'ES384', 'ES512', 'EdDSA']
  }
  const options = {
    algorithms,
    issuer: cfg.issuer,
    audience: cfg.audience,
    clockTolerance: cfg.clock_skew_secs,
  }
  const exact = new Set(cfg.excluded_paths.filter((p) => !p.endsWith('/*')))
  const prefixes = cfg.excluded_paths.filter((p) => p.endsWith('/*')).map((p) => p.slice(0, -2))
  const forwards = Object.entries(cfg.forward_claims).map(
    ([claim, header]) => [claim, header.toLowerCase()] as const,
  )
  const forwardNames = new Set(forwards.map(([, h]) => h))
  const challenge = `Bearer realm="${cfg.realm}"`
  const cache = new Map<string, { payload: JWTPayload; until: number }>()

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

  const accept = (ctx: RequestContext, payload: JWTPayload): undefined => {
    for (const [claim, header] of forwards) {
      const v = payload[claim]
      if (v !== undefined && v !== null)
        ctx.upstreamHeaders.push(header, typeof v === 'string' ? v : JSON.stringify(v))
    }
    return undefined
  }

  const excluded = (path: string): boolean => {
    if (exact.has(path)) return true
    for (const p of prefixes) if (path === p || path.startsWith(`${p}/`)) return true
    return false
  }

  return (ctx) => {
    if (forwardNames.size > 0) ctx.upstreamHeaders = withoutHeaders(ctx.upstreamHeaders, forwardNames)
    if (excluded(ctx.path)) return undefined
    const header = rawHeader(ctx.rawHeaders, 'authorization')
    const m = header === undefined ? null : /^Bearer[ \t]+([A-Za-z0-9\-_.~+/]+=*)[ \t]*$/i.exec(header)
    if (m === null)
      return refuse(header === undefined || !/^Bearer\b/i.test(header) ? undefined : 'malformed bearer token')
    const token = m[1]!
    const now = Date.now()
    const hit = cache.get(token)
    if (hit !== undefined) {
      if (hit.until > now) return accept(ctx, hit.payload)
      cache.delete(token)
    }
    return jwtVerify(token, key as Uint8Array, options).then(
      ({ payload }) => {
        if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!)
        const exp = typeof payload.exp === 'number' ? payload.exp * 1000 : Number.POSITIVE_INFINITY
        cache.set(token, { payload, until: Math.min(exp, now + CACHE_MS) })
        return accept(ctx, payload)
      },
      (err: Error & { code?: string; claim?: string }) => {
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
        return refuse(describe(err))
      },
    )
  }
}

function describe(err: Error & { code?: string; claim?: string }): string {
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return 'the token has expired'
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
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

function withoutHeaders(flat: string[], lowerNames: Set<string>): string[] {
  let out: string[] | undefined
  for (let i = 0; i < flat.length; i += 2) {
    if (lowerNames.has(flat[i]!.toLowerCase())) {
      out ??= flat.slice(0, i)
    } else if (out) {
      out.push(flat[i]!, flat[i + 1]!)
    }
  }
  return out ?? flat
}
