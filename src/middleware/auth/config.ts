// The authentication declaration: its settings, the checks that span them (one key source, no
// algorithm confusion) and the request headers it alone may send upstream.

import { z } from 'zod'
import { fileProblem } from '../../config/problems'
import { headerName } from '../header-name'
import type { Report } from '../types'

const ALGS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const

export const authentication = z.strictObject({
  type: z.literal('authentication').optional(),
  jwt_secret: z.string().min(1).optional(),
  public_key_path: z.string().min(1).optional(),
  jwks_url: z.url({ protocol: /^https?$/ }).optional(),
  /** Least time between two JWKS fetches (an unknown `kid` triggers one). */
  jwks_cooldown_secs: z.number().min(0).default(30),
  /** How long fetched keys are trusted before they are fetched again. */
  jwks_cache_secs: z.number().positive().default(600),
  /** Accepted `alg` values; defaults follow the key (HS* for a secret, the key's family otherwise). */
  algorithms: z.array(z.enum(ALGS)).min(1).optional(),
  issuer: z.string().optional(),
  audience: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
  clock_skew_secs: z.number().min(0).default(30),
  /** Refuse tokens without an `exp` claim (tokens that never expire). */
  require_exp: z.boolean().default(true),
  /** Paths that skip authentication: exact (`/health`) or a prefix (`/public/*`). */
  excluded_paths: z.array(z.string().regex(/^\//, { message: 'must start with "/"' })).default([]),
  /** Claims sent upstream as headers, e.g. `{sub: X-User-Id}`; clients cannot send these themselves. */
  forward_claims: z.record(z.string(), headerName).default({}),
  realm: z.string().default('locci-proxy'),
})

export type AuthenticationConfig = z.output<typeof authentication>

/** `resolve` turns a path in the config into one on disk (relative to the config file). */
export function checkAuthentication(
  cfg: AuthenticationConfig,
  report: Report,
  resolve: (p: string) => string,
): void {
  const sources = (['jwt_secret', 'public_key_path', 'jwks_url'] as const).filter((k) => cfg[k] !== undefined)
  if (sources.length !== 1) {
    report(
      undefined,
      `needs exactly one of jwt_secret, public_key_path or jwks_url${sources.length ? ` (got ${sources.join(' and ')})` : ''}`,
    )
  }
  if (cfg.public_key_path !== undefined) {
    const problem = fileProblem(resolve(cfg.public_key_path))
    if (problem) report('public_key_path', `${problem}: ${cfg.public_key_path}`)
  }
  const hmac = cfg.algorithms?.filter((a) => a.startsWith('HS')) ?? []
  if (cfg.jwt_secret !== undefined && cfg.algorithms && hmac.length !== cfg.algorithms.length) {
    report('algorithms', 'a jwt_secret can only verify HS256, HS384 or HS512')
  }
  if (cfg.jwt_secret === undefined && hmac.length > 0) {
    report('algorithms', 'HS* algorithms need jwt_secret (a public key must never be used as an HMAC secret)')
  }
}

/**
 * Header names (lower case, `_` as `-`) that the proxy alone may send upstream: the
 * `forward_claims` headers. Removed from every request, so a client cannot forge a claim.
 */
export function claimHeaders(cfg: AuthenticationConfig): string[] {
  return Object.values(cfg.forward_claims).map((h) => h.toLowerCase().replaceAll('_', '-'))
}
