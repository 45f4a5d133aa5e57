// basic_auth: `Authorization: Basic` credentials checked against bcrypt hashes (bcryptjs, whose
// comparison of the computed and stored hash is constant-time). A refusal is 401 with
// `WWW-Authenticate: Basic realm="…", charset="UTF-8"` (RFC 7617).
//
// bcrypt is slow on purpose, and bcryptjs computes it on the event loop (in slices of at most
// 100 ms): 8 ms at cost 5 (htpasswd's default), 200 ms at cost 10 on a slow core. So that guessing
// passwords cannot take the proxy's CPU from every other request:
// - a verified user:password is remembered for CACHE_MS (keyed by a SHA-256 of the header and a
//   random per-instance secret, so memory holds no password), up to CACHE_MAX entries: a user's
//   requests after the first cost microseconds;
// - one verification runs at a time in the process, at most QUEUE_MAX wait; more is 503
//   `auth_busy` with Retry-After, answered at once. Put rate_limiting before basic_auth.
// An unknown user is checked against a known user's hash too (the result thrown away), so the
// time of a refusal does not tell which user names exist.

import { hash as digest, randomBytes } from 'node:crypto'
import { compare } from 'bcryptjs'
import { logFailure } from '../../observe/errors'
import type { Logger } from '../../observe/logger'
import { encodeClaim, withoutHeaders } from '../auth/index'
import { type Middleware, type Reply, type RequestContext, rawHeader } from '../types'
import type { BasicAuthSettings } from './config'

const CACHE_MS = 60_000
const CACHE_MAX = 10_000
const QUEUE_MAX = 32

export function basicAuth(name: string, cfg: BasicAuthSettings, log: Logger): Middleware {
  const users = new Map(cfg.credentials.map((c) => [c.user, c.hash]))
  // The hash an unknown user is checked against: as slow as a real one.
  const decoy = cfg.credentials[0]?.hash ?? ''
  const forward = cfg.forward_user?.toLowerCase()
  const removed = new Set([...(cfg.remove_header ? ['authorization'] : []), ...(forward ? [forward] : [])])
  const refused: Reply = {
    status: 401,
    kind: 'basic_auth_failed',
    headers: ['www-authenticate', `Basic realm="${cfg.realm}", charset="UTF-8"`],
  }
  const key = randomBytes(32).toString('base64')
  const cache = new Map<string, { user: string; until: number }>()
  let lastBusyLog = 0

  const accept = (ctx: RequestContext, user: string): undefined => {
    if (removed.size > 0) ctx.upstreamHeaders = withoutHeaders(ctx.upstreamHeaders, removed)
    if (forward !== undefined) ctx.upstreamHeaders.push(forward, encodeClaim(user))
    return undefined
  }

  return (ctx) => {
    const token = basicToken(rawHeader(ctx.rawHeaders, 'authorization'))
    if (token === undefined) return refused
    // SHA-256 of a random per-instance secret and the token: one crypto.hash call (an HMAC
    // object costs ~10 µs more), and a cache key nobody can compute without the secret.
    const id = digest('sha256', key + token, 'base64')
    const now = Date.now()
    const hit = cache.get(id)
    if (hit !== undefined) {
      if (hit.until > now) return accept(ctx, hit.user)
      cache.delete(id)
    }
    const decoded = Buffer.from(token, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return refused
    const user = decoded.slice(0, colon)
    const hash = users.get(user)
    const check = checks.run(() => compare(decoded.slice(colon + 1), hash ?? decoy))
    if (check === undefined) {
      if (now - lastBusyLog > 10_000) {
        lastBusyLog = now
        logFailure(
          log,
          'auth_busy',
          { middleware: name, queued: QUEUE_MAX },
          'too many password checks waiting',
        )
      }
      return { status: 503, kind: 'auth_busy', headers: ['retry-after', '1'] }
    }
    return check.then((ok) => {
      if (!ok || hash === undefined) return refused
      if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!)
      cache.set(id, { user, until: Date.now() + CACHE_MS })
      return accept(ctx, user)
    })
  }
}

/**
 * The base64 credentials of an `Authorization: Basic <credentials>` header (RFC 7617), or
 * undefined when absent or not a well-formed Basic credential.
 */
export function basicToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  return BASIC.exec(header)?.[1]
}
const BASIC = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i

/** Runs at most `limit` tasks at once with at most `queueMax` waiting; refuses (undefined) beyond. */
export class Limiter {
  #running = 0
  readonly #waiting: Array<() => void> = []

  constructor(
    readonly limit: number,
    readonly queueMax: number,
  ) {}

  run<T>(task: () => Promise<T>): Promise<T> | undefined {
    if (this.#running < this.limit) {
      this.#running++
      return this.#go(task)
    }
    if (this.#waiting.length >= this.queueMax) return undefined
    return new Promise<void>((resolve) => this.#waiting.push(resolve)).then(() => this.#go(task))
  }

  /**
   * Runs `task` in a slot already taken; at its end the slot passes to the next waiting task, in
   * the next turn of the event loop: started from a promise callback, a CPU-bound task (bcrypt)
   * would run before any I/O, and a queue of them would starve every other request.
   */
  #go<T>(task: () => Promise<T>): Promise<T> {
    return task().finally(() => {
      const next = this.#waiting.shift()
      if (next) setImmediate(next)
      else this.#running--
    })
  }
}

/** One password check at a time in this process (see the top of this file). */
const checks = new Limiter(1, QUEUE_MAX)
