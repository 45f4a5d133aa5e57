// Sticky-session cookies as the config describes them, and the opaque tokens they carry. A
// token is SHA-256 over a fixed prefix, its scope (which split or group) and what it names (a
// group name, a server address), cut to 16 hex digits (64 bits). It is the same in every worker
// and after every restart, so a client keeps its place across both; it is not keyed (no secret):
// it hides the address from a casual look, but whoever can list candidate addresses can test a
// guess. Choosing a server is all a cookie can do, and any client may send any value.

import { createHash } from 'node:crypto'
import type { CookieSpec } from './snapshot'

/** The length of every token the proxy makes; a cookie of any other length is not looked up. */
export const TOKEN_LENGTH = 16

export function stickyToken(scope: string, id: string): string {
  return createHash('sha256')
    .update(`locci-proxy sticky\0${scope}\0${id}`)
    .digest('hex')
    .slice(0, TOKEN_LENGTH)
}

export interface RawCookie {
  cookie: string
  ttl_secs?: number | undefined
  secure?: boolean | undefined
  http_only?: boolean | undefined
  same_site?: 'strict' | 'lax' | 'none' | undefined
}

const SAME_SITE = { strict: 'Strict', lax: 'Lax', none: 'None' } as const

/** The cookie's name and the attributes every Set-Cookie of it carries (defaults: HttpOnly, Lax). */
export function cookieSpec(c: RawCookie): CookieSpec {
  let attributes = '; Path=/'
  if (c.ttl_secs !== undefined) attributes += `; Max-Age=${c.ttl_secs}`
  if (c.secure === true) attributes += '; Secure'
  if (c.http_only !== false) attributes += '; HttpOnly'
  attributes += `; SameSite=${SAME_SITE[c.same_site ?? 'lax']}`
  return { name: c.cookie, attributes }
}

/** The Set-Cookie value naming `token`. */
export function setCookieValue(c: CookieSpec, token: string): string {
  return `${c.name}=${token}${c.attributes}`
}
