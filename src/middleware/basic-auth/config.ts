// The basic_auth declaration: its settings, and the users it accepts read from `users` and
// `users_file` (htpasswd lines) when the config is compiled, so a reload re-reads the file and
// what is validated is what runs. Only bcrypt hashes are accepted (see hashProblem).

import { z } from 'zod'
import { headerName, protectedHeaderProblem } from '../header-name'
import { hasControlChar, readListFile } from '../list-file'
import type { Report } from '../types'

export const basicAuth = z.strictObject({
  type: z.literal('basic_auth').optional(),
  /** An htpasswd file (relative to the config file): `user:hash` lines, `#` comments. */
  users_file: z.string().min(1).optional(),
  /** htpasswd lines written in the config: `["alice:$2y$05$..."]`. */
  users: z.array(z.string()).default([]),
  realm: z.string().default('locci-proxy'),
  /** Remove the Authorization header before forwarding, so the upstream never sees the password. */
  remove_header: z.boolean().default(true),
  /** Send the user name upstream in this header; clients cannot send it themselves. */
  forward_user: headerName.optional(),
})

export type BasicAuthConfig = z.output<typeof basicAuth>

export interface Credential {
  readonly user: string
  /** A bcrypt hash ($2a$, $2b$ or $2y$). */
  readonly hash: string
}

/** The declaration with its users read: what the middleware is built from. */
export type BasicAuthSettings = BasicAuthConfig & { readonly credentials: readonly Credential[] }

/**
 * Checks the settings and reads every user (inline first, then users_file); `resolve` turns a
 * path in the config into one on disk. Problems name the entry or the file's line, never the hash.
 */
export function checkBasicAuth(
  cfg: BasicAuthConfig,
  reportTo: Report,
  resolve: (p: string) => string,
): Credential[] {
  let problems = 0
  const report: Report = (key, message) => {
    problems++
    reportTo(key, message)
  }
  const out: Credential[] = []
  const where = new Map<string, string>()
  const add = (key: string, at: string, line: string): void => {
    const colon = line.indexOf(':')
    const user = colon < 0 ? '' : line.slice(0, colon)
    const hash = colon < 0 ? '' : line.slice(colon + 1).trim()
    if (colon <= 0) return report(key, `${at}: not a "user:hash" line`)
    if (hasControlChar(user)) return report(key, `${at}: the user name has a control character`)
    const problem = hashProblem(hash)
    if (problem !== undefined) return report(key, `${at}: user "${user}" ${problem}`)
    const before = where.get(user)
    if (before !== undefined) return report(key, `${at}: user "${user}" is already listed (${before})`)
    where.set(user, at)
    out.push({ user, hash })
  }
  for (const [i, line] of cfg.users.entries()) add('users', `entry ${i + 1}`, line)
  if (cfg.users_file !== undefined) {
    const lines = readListFile(resolve(cfg.users_file))
    if (!Array.isArray(lines)) report('users_file', `${lines.problem}: ${cfg.users_file}`)
    else for (const { n, text } of lines) add('users_file', `${cfg.users_file} line ${n}`, text)
  }
  if (out.length === 0 && problems === 0)
    report(undefined, 'needs at least one user, in users or in users_file')
  if (!/^[\x20-\x7e]*$/.test(cfg.realm) || /["\\]/.test(cfg.realm))
    report('realm', 'must be printable ASCII without " or \\ (it is sent in WWW-Authenticate)')
  if (cfg.forward_user !== undefined) {
    const problem = protectedHeaderProblem(cfg.forward_user)
    if (problem !== undefined) report('forward_user', problem)
  }
  return out
}

/** A well-formed bcrypt hash: `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 22 + 31 characters. */
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/

/**
 * Why an htpasswd hash is refused, or undefined for a bcrypt hash bcryptjs verifies. MD5 (apr1),
 * SHA-1, crypt(3) and plain text are too weak to keep a leaked file's passwords safe; SHA-256/512
 * crypt would need a library that works in the CommonJS build and does not block the event loop.
 */
export function hashProblem(hash: string): string | undefined {
  const m = BCRYPT.exec(hash)
  if (m) {
    const cost = Number(m[1])
    return cost >= 4 && cost <= 31 ? undefined : `has a bcrypt cost of ${cost} (4 to 31 work)`
  }
  const fix = '; make a bcrypt one with `htpasswd -B`'
  if (hash.startsWith('$apr1$') || hash.startsWith('$1$'))
    return `has an MD5 hash, which is refused (too fast to crack)${fix}`
  if (hash.startsWith('{SHA}')) return `has a SHA-1 hash, which is refused (unsalted)${fix}`
  if (hash.startsWith('$5$') || hash.startsWith('$6$'))
    return `has a SHA-256/SHA-512-crypt hash, which is not supported${fix}`
  if (hash.startsWith('$2')) return `has a malformed bcrypt hash${fix}`
  if (/^[./0-9A-Za-z]{13}$/.test(hash))
    return `has what looks like a crypt(3) hash or a plain-text password, both refused${fix}`
  return `has no password hash (a plain-text password is refused)${fix}`
}
