// server.tls.acme.store: redis: what several instances share so that they make one order per
// name and all serve its certificate, whichever of them the CA reaches for validation.
// Keys (prefix locci:acme:<directory id>:): `account` (the account key), `cert:<name>` (a hash
// of cert and key), `http:<token>` / `alpn:<host>` (key authorizations, expiring), `lock:<name>`
// (the order lock: SET NX PX, renewed while held, deleted only by its holder).
// The store holds private keys: the guide asks for Redis ACLs and TLS (rediss://).
// While Redis is away, commands fail at once (no offline queue): stored certificates keep being
// served from memory and storage_dir, and an order is retried with the manager's backoff.

import { createHash, randomBytes } from 'node:crypto'
import type Redis from 'ioredis'
import { maskString } from '../config/redact'
import type { AcmeSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import type { SharedAcmeStore } from './acme'

/** A lock lives this long unless renewed: a crashed holder blocks the others at most this long. */
const LOCK_TTL_MS = 60_000
const LOCK_RENEW_MS = 20_000
/** A challenge answer outlives any validation (Pebble and Let's Encrypt finish within a minute). */
const CHALLENGE_TTL_MS = 10 * 60_000

/** Deletes (or extends) the lock only if this holder's token is still in it. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`

export class RedisAcmeStore implements SharedAcmeStore {
  readonly #redis: Redis
  readonly #prefix: string

  constructor(url: string, spec: AcmeSpec, log: Logger) {
    // Loaded on first use, as the rate limiter's: a proxy without Redis never loads ioredis.
    const Client = (require('ioredis') as typeof import('ioredis')).default
    this.#redis = new Client(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 2000,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 200, 5000),
    })
    let lastLog = 0
    this.#redis.on('error', (err: Error) => {
      const now = Date.now()
      if (now - lastLog < 10_000) return
      lastLog = now
      log.warn(
        { component: 'acme', redis: maskString(url), err: err.message },
        'ACME redis store unreachable; serving stored certificates, orders retried with backoff',
      )
    })
    // One namespace per directory and account email: staging and production never mix.
    const id = createHash('sha256').update(`${spec.directoryUrl}\n${spec.email}`).digest('hex').slice(0, 12)
    this.#prefix = `locci:acme:${id}:`
  }

  /** Commands wait for the first connection (the offline queue is off so later outages fail fast). */
  async #ready(): Promise<Redis> {
    const r = this.#redis
    if (r.status === 'ready') return r
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        r.off('ready', onReady)
        reject(new Error('redis is not reachable'))
      }, 5000)
      const onReady = () => {
        clearTimeout(timer)
        resolve()
      }
      r.once('ready', onReady)
    })
    return r
  }

  async accountKey(make: () => Promise<string>): Promise<string> {
    const r = await this.#ready()
    const key = `${this.#prefix}account`
    const stored = await r.get(key)
    if (stored) return stored
    await r.set(key, await make(), 'NX')
    // Whoever wrote first: every instance uses the same account.
    const winner = await r.get(key)
    if (!winner) throw new Error('the account key vanished from redis')
    return winner
  }

  async certificate(name: string): Promise<{ cert: string; key: string } | undefined> {
    const r = await this.#ready()
    const [cert, key] = await r.hmget(`${this.#prefix}cert:${name}`, 'cert', 'key')
    return cert && key ? { cert, key } : undefined
  }

  async saveCertificate(name: string, cert: string, key: string): Promise<void> {
    const r = await this.#ready()
    await r.hset(`${this.#prefix}cert:${name}`, { cert, key })
  }

  async setChallenge(kind: 'http' | 'alpn', id: string, keyAuthorization: string | null): Promise<void> {
    const r = await this.#ready()
    const key = `${this.#prefix}${kind}:${id}`
    if (keyAuthorization === null) await r.del(key)
    else await r.set(key, keyAuthorization, 'PX', CHALLENGE_TTL_MS)
  }

  async challenge(kind: 'http' | 'alpn', id: string): Promise<string | undefined> {
    const r = await this.#ready()
    return (await r.get(`${this.#prefix}${kind}:${id}`)) ?? undefined
  }

  async lock(name: string): Promise<(() => Promise<void>) | undefined> {
    const r = await this.#ready()
    const key = `${this.#prefix}lock:${name}`
    const token = randomBytes(16).toString('hex')
    if ((await r.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') return undefined
    // Renewed while the order runs (one can take minutes when the CA is slow).
    const renew = setInterval(() => {
      r.eval(EXTEND, 1, key, token, LOCK_TTL_MS).catch(() => undefined)
    }, LOCK_RENEW_MS)
    renew.unref()
    return async () => {
      clearInterval(renew)
      await r.eval(RELEASE, 1, key, token)
    }
  }

  close(): void {
    this.#redis.disconnect()
  }
}

/** The shared store of `spec` (store: redis), or undefined (store: file). */
export function sharedAcmeStore(spec: AcmeSpec, log: Logger): SharedAcmeStore | undefined {
  return spec.redisUrl === undefined ? undefined : new RedisAcmeStore(spec.redisUrl, spec, log)
}
