// server.tls.acme: certificates ordered from an ACME CA (RFC 8555) with acme-client, kept in
// storage_dir and renewed there, served by the TLS listener beside the static certificates.
//
// - Account: one key per directory URL and email (storage_dir/<directory>/account.key), registered
//   on first use; its URL is kept beside it so a restart does not look it up again.
// - Certificates: one per name, an ECDSA P-256 key and the chain the CA returned
//   (<directory>/certificates/<name>.{key,crt}). A stored certificate with more than a third of
//   its lifetime left is served as it is: a restart orders nothing.
// - Renewal: when a third of the lifetime is left; a failure is retried after a jittered, doubling
//   delay (30 s up to 6 h). The old certificate keeps being served until the new one is in.
// - Challenges: HTTP-01 tokens answered by the redirect listener; TLS-ALPN-01 answered by the TLS
//   listener with a self-signed certificate carrying the acmeIdentifier extension (RFC 8737),
//   made by acme-client, when the client offers ALPN acme-tls/1.
// - On demand: an unknown SNI name matching allowed_domains is ordered during its first
//   handshake, one order per name at a time, new names at most ON_DEMAND_BURST at once then one
//   per ON_DEMAND_REFILL_MS; a name that failed waits out its backoff.
// - Several workers (server.workers > 1): the primary runs the manager; `hooks` hand every
//   certificate, status change and challenge to the workers (primary.ts), which serve them from an
//   AcmeMirror; a challenge is announced to the CA only once every worker has it.
// - Several instances (store: redis): `shared` (acme-redis.ts) holds the account key, the
//   certificates, the challenge answers and a lock per name: the instance holding the lock
//   orders, the others wait for its certificate in the store; a challenge the CA asks of an
//   instance that did not order is looked up there.
// Failures are logged with the CA's problem document. DNS-01 is not offered: it needs a DNS
// provider API per vendor; a challenge type would plug in beside #installChallenge.

import { createHash, X509Certificate } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { AcmeSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'

type AcmeClient = typeof import('acme-client')

export interface IssuedCertificate {
  readonly name: string
  /** The chain, leaf first (PEM). */
  readonly cert: string
  readonly key: string
  readonly issuer: string
  readonly notBefore: Date
  readonly notAfter: Date
}

export interface RenewalResult {
  readonly at: string
  readonly result: 'success' | 'failure'
  readonly error?: string
}

/** What a validation needs, set (or, with null, taken down) wherever the CA may connect. */
export type ChallengeMaterial =
  | { type: 'http-01'; token: string; keyAuthorization: string | null }
  | { type: 'tls-alpn-01'; host: string; cert: { cert: string; key: string } | null }

/** Where the manager's results go besides its own maps (the workers of a primary). */
export interface AcmeHooks {
  /** Resolves once the material is answerable everywhere; a rejection fails the order. */
  challenge?(c: ChallengeMaterial): Promise<void>
  certificate?(c: IssuedCertificate): void
  /** A name's status (result, issuer, expiry) changed. */
  changed?(): void
}

/** Certificates, account key, challenge answers and order locks shared by instances (acme-redis.ts). */
export interface SharedAcmeStore {
  /** The account key: the stored one, or `make()`'s if none was stored (first writer wins). */
  accountKey(make: () => Promise<string>): Promise<string>
  certificate(name: string): Promise<{ cert: string; key: string } | undefined>
  saveCertificate(name: string, cert: string, key: string): Promise<void>
  /** HTTP-01: token -> key authorization; TLS-ALPN-01: host -> key authorization. null removes. */
  setChallenge(kind: 'http' | 'alpn', id: string, keyAuthorization: string | null): Promise<void>
  challenge(kind: 'http' | 'alpn', id: string): Promise<string | undefined>
  /** The order lock of `name` (held and renewed until released), or undefined when another holds it. */
  lock(name: string): Promise<(() => Promise<void>) | undefined>
  close(): void
}

export interface AcmeNameStatus {
  name: string
  issuer: string | null
  not_after: string | null
  last_renewal: RenewalResult | null
}

const RETRY_MIN_MS = 30_000
const RETRY_MAX_MS = 6 * 3600_000
/** setTimeout takes at most 2^31-1 ms; renewals further away are re-checked after this long. */
const TIMER_MAX_MS = 12 * 3600_000
const ON_DEMAND_BURST = 10
const ON_DEMAND_REFILL_MS = 60_000
/** On-demand names remembered (certificates and failures); more are refused. */
const ON_DEMAND_MAX_NAMES = 1000
/** How long a handshake for an on-demand name waits for its certificate. */
const ON_DEMAND_WAIT_MS = 60_000
/** With a shared store: how often an instance that did not get the lock looks for the certificate. */
const SHARED_POLL_MS = 1000
/** ... and how long it waits for the lock holder before failing (then retried with backoff). */
const SHARED_WAIT_MS = 10 * 60_000

/** Does `host` match `glob` (`*.example.com`: one label; otherwise the exact name)? */
export function domainAllowed(globs: readonly string[], host: string): boolean {
  return globs.some((g) => {
    if (!g.startsWith('*.')) return g === host
    const dot = host.indexOf('.')
    return dot > 0 && host.slice(dot + 1) === g.slice(2)
  })
}

/** A delay of `min * 2^(failures-1)`, capped, times a random 0.5..1.5 (instances do not retry in step). */
export function retryDelay(failures: number, random = Math.random()): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.max(0, failures - 1))
  return Math.round(base * (0.5 + random))
}

/** When to renew: a third of the lifetime before notAfter. */
export function renewAt(notBefore: Date, notAfter: Date): number {
  const life = notAfter.getTime() - notBefore.getTime()
  return notAfter.getTime() - life / 3
}

/** A file readable by its owner only, written whole (temp file, rename). */
function writePrivate(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, text, { mode: 0o600 })
  renameSync(tmp, file)
}

function readIfThere(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

export function describe(name: string, cert: string, key: string): IssuedCertificate {
  const x = new X509Certificate(cert)
  const issuer = /(?:^|\n)CN=([^\n]+)/.exec(x.issuer)?.[1] ?? x.issuer
  return { name, cert, key, issuer, notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) }
}

/** The CA's problem document (RFC 7807) in an error or a failed challenge, for the log. */
function problemOf(err: unknown): unknown {
  const e = err as { problem?: unknown; message?: string }
  return e.problem ?? e.message ?? String(err)
}

class ProblemError extends Error {
  constructor(
    message: string,
    readonly problem: unknown,
  ) {
    super(message)
  }
}

/**
 * When server.tls.acme changed from what `current` was made for: closes it and returns the new
 * settings (spec undefined: ACME is off now); undefined when nothing changed. Used by the single
 * process (instance.ts) and the primary (primary.ts).
 */
export function acmeChange(
  current: { key: string; manager: { close(): void } } | undefined,
  spec: AcmeSpec | undefined,
): { key: string; spec: AcmeSpec | undefined } | undefined {
  const key = spec ? JSON.stringify(spec) : ''
  if ((current?.key ?? '') === key) return undefined
  current?.manager.close()
  return { key, spec }
}

export class AcmeManager {
  readonly #spec: AcmeSpec
  readonly #log: Logger
  readonly #dir: string
  readonly #certs = new Map<string, IssuedCertificate>()
  readonly #results = new Map<string, RenewalResult>()
  readonly #failures = new Map<string, { count: number; retryAt: number }>()
  readonly #timers = new Map<string, NodeJS.Timeout>()
  readonly #inFlight = new Map<string, Promise<IssuedCertificate | undefined>>()
  readonly #http = new Map<string, string>()
  readonly #alpn = new Map<string, { cert: string; key: string }>()
  #acme: AcmeClient | undefined
  #client: Promise<InstanceType<AcmeClient['Client']>> | undefined
  #tokens = ON_DEMAND_BURST
  #tokensAt = Date.now()
  #closed = false
  readonly #hooks: AcmeHooks
  readonly #shared: SharedAcmeStore | undefined
  /** Orders sent to the CA since start (tests and the log count them). */
  orders = 0

  constructor(spec: AcmeSpec, log: Logger, hooks: AcmeHooks = {}, shared?: SharedAcmeStore) {
    this.#spec = spec
    this.#hooks = hooks
    this.#shared = shared
    this.#log = log.child({ component: 'acme' })
    const u = new URL(spec.directoryUrl)
    const id = createHash('sha256').update(spec.directoryUrl).digest('hex').slice(0, 8)
    this.#dir = path.join(spec.storageDir, `${u.host.replace(/[^A-Za-z0-9.-]/g, '_')}-${id}`)
  }

  /** Loads stored certificates (synchronously: they are served from the first handshake), then orders what is missing. */
  start(): void {
    for (const d of [this.#spec.storageDir, this.#dir, path.join(this.#dir, 'certificates')]) {
      mkdirSync(d, { recursive: true, mode: 0o700 })
      chmodSync(d, 0o700)
    }
    for (const name of this.#spec.domains) this.#load(name)
    void this.#startAll()
  }

  async #startAll(): Promise<void> {
    // One after the other: a CA sees one order at a time from us.
    for (const name of this.#spec.domains) {
      if (this.#closed) return
      const c = this.#certs.get(name)
      if (!c || Date.now() >= renewAt(c.notBefore, c.notAfter)) await this.#obtain(name)
      else this.#schedule(name, renewAt(c.notBefore, c.notAfter))
    }
  }

  #certFile(name: string, ext: 'crt' | 'key'): string {
    return path.join(this.#dir, 'certificates', `${name}.${ext}`)
  }

  #load(name: string): boolean {
    try {
      const cert = readIfThere(this.#certFile(name, 'crt'))
      const key = readIfThere(this.#certFile(name, 'key'))
      if (cert === undefined || key === undefined) return false
      const c = describe(name, cert, key)
      if (c.notAfter.getTime() <= Date.now()) return false
      this.#certs.set(name, c)
      this.#hooks.certificate?.(c)
      this.#hooks.changed?.()
      this.#log.info(
        { name, issuer: c.issuer, not_after: c.notAfter.toISOString() },
        'stored certificate loaded',
      )
      return true
    } catch (err) {
      this.#log.warn(
        { name, err: (err as Error).message },
        'stored certificate unreadable; ordering a new one',
      )
      return false
    }
  }

  /** A certificate for `host`, if one was obtained. */
  certificate(host: string): IssuedCertificate | undefined {
    return this.#certs.get(host)
  }

  /**
   * The key authorization for an HTTP-01 token being validated now: ours, or (shared store)
   * another instance's.
   */
  httpChallenge(token: string): string | undefined | Promise<string | undefined> {
    const mine = this.#http.get(token)
    if (mine !== undefined || !this.#shared) return mine
    return this.#shared.challenge('http', token).catch(() => undefined)
  }

  /** The TLS-ALPN-01 certificate for `host` while the CA validates it (ours, or another instance's). */
  alpnChallenge(
    host: string,
  ): { cert: string; key: string } | undefined | Promise<{ cert: string; key: string } | undefined> {
    const mine = this.#alpn.get(host)
    if (mine !== undefined || !this.#shared) return mine
    return this.#shared.challenge('alpn', host).then(
      async (keyAuthorization) => {
        if (keyAuthorization === undefined) return undefined
        const authz = { identifier: { type: 'dns', value: host } }
        const [key, cert] = await this.#lib().crypto.createAlpnCertificate(authz as never, keyAuthorization)
        return { cert: cert.toString(), key: key.toString() }
      },
      () => undefined,
    )
  }

  /** Challenge material being validated now (for a worker that starts during an order). */
  pendingChallenges(): ChallengeMaterial[] {
    return [
      ...[...this.#http].map(([token, keyAuthorization]) => ({
        type: 'http-01' as const,
        token,
        keyAuthorization,
      })),
      ...[...this.#alpn].map(([host, cert]) => ({ type: 'tls-alpn-01' as const, host, cert })),
    ]
  }

  get usesAlpn(): boolean {
    return this.#spec.challenge === 'tls-alpn-01'
  }

  /** Names this manager serves or orders (for the HTTPS redirect). */
  covers(host: string): boolean {
    return this.#certs.has(host) || this.#spec.domains.includes(host)
  }

  /**
   * An SNI name with no certificate: with on_demand and a matching allowed_domains glob, its order
   * (one per name at a time, rate-limited); otherwise undefined, and nothing is ordered.
   */
  onDemand(host: string): Promise<IssuedCertificate | undefined> | undefined {
    const globs = this.#spec.onDemand
    if (!globs || this.#closed || !domainAllowed(globs, host)) return undefined
    const running = this.#inFlight.get(host)
    if (running) return running
    const failed = this.#failures.get(host)
    if (failed && Date.now() < failed.retryAt) return undefined
    if (!failed && this.#load(host)) {
      const c = this.#certs.get(host)!
      this.#schedule(host, renewAt(c.notBefore, c.notAfter))
      return Promise.resolve(c)
    }
    if (this.#certs.size + this.#failures.size >= ON_DEMAND_MAX_NAMES) return undefined
    const now = Date.now()
    this.#tokens = Math.min(ON_DEMAND_BURST, this.#tokens + (now - this.#tokensAt) / ON_DEMAND_REFILL_MS)
    this.#tokensAt = now
    if (this.#tokens < 1) {
      this.#log.warn({ name: host }, 'on-demand certificate refused: too many new names (rate limit)')
      return undefined
    }
    this.#tokens -= 1
    return this.#obtain(host)
  }

  /** How long a handshake waits for an on-demand certificate. */
  static readonly onDemandWaitMs = ON_DEMAND_WAIT_MS

  status(): AcmeNameStatus[] {
    const names = new Set([...this.#spec.domains, ...this.#certs.keys(), ...this.#results.keys()])
    return [...names].map((name) => {
      const c = this.#certs.get(name)
      return {
        name,
        issuer: c?.issuer ?? null,
        not_after: c?.notAfter.toISOString() ?? null,
        last_renewal: this.#results.get(name) ?? null,
      }
    })
  }

  /** Every certificate obtained (for the expiry gauge). */
  certificates(): Iterable<IssuedCertificate> {
    return this.#certs.values()
  }

  close(): void {
    this.#closed = true
    for (const t of this.#timers.values()) clearTimeout(t)
    this.#timers.clear()
    this.#shared?.close()
  }

  #schedule(name: string, at: number): void {
    clearTimeout(this.#timers.get(name))
    if (this.#closed) return
    const delay = Math.max(0, at - Date.now())
    const timer = setTimeout(
      () => {
        this.#timers.delete(name)
        if (Date.now() < at) this.#schedule(name, at)
        else void this.#obtain(name)
      },
      Math.min(delay, TIMER_MAX_MS),
    )
    timer.unref()
    this.#timers.set(name, timer)
  }

  /** Orders a certificate for `name` (one order per name at a time); never rejects. */
  #obtain(name: string): Promise<IssuedCertificate | undefined> {
    const running = this.#inFlight.get(name)
    if (running) return running
    const p = this.#fetchOrOrder(name).then(
      (c) => {
        this.#certs.set(name, c)
        this.#failures.delete(name)
        this.#results.set(name, { at: new Date().toISOString(), result: 'success' })
        this.#hooks.certificate?.(c)
        this.#hooks.changed?.()
        this.#log.info(
          { name, issuer: c.issuer, not_after: c.notAfter.toISOString() },
          'certificate obtained',
        )
        this.#schedule(name, renewAt(c.notBefore, c.notAfter))
        return c
      },
      (err: Error) => {
        const count = (this.#failures.get(name)?.count ?? 0) + 1
        const delay = retryDelay(count)
        this.#failures.set(name, { count, retryAt: Date.now() + delay })
        this.#results.set(name, { at: new Date().toISOString(), result: 'failure', error: err.message })
        this.#hooks.changed?.()
        this.#log.error(
          {
            name,
            directory_url: this.#spec.directoryUrl,
            problem: problemOf(err),
            retry_in_secs: Math.round(delay / 1000),
            still_serving: this.#certs.get(name)?.notAfter.toISOString() ?? null,
          },
          'certificate order failed',
        )
        // Configured and already served names are retried on their own; new on-demand ones at
        // their next handshake after the delay.
        if (this.#spec.domains.includes(name) || this.#certs.has(name))
          this.#schedule(name, Date.now() + delay)
        return undefined
      },
    )
    const tracked = p.finally(() => this.#inFlight.delete(name))
    this.#inFlight.set(name, tracked)
    return tracked
  }

  /**
   * A certificate for `name`: with a shared store, one another instance put there (not yet due for
   * renewal), or else ordered by whichever instance takes the name's lock while the others wait
   * for it in the store; without one, ordered here.
   */
  async #fetchOrOrder(name: string): Promise<IssuedCertificate> {
    const shared = this.#shared
    if (!shared) return this.#order(name)
    const deadline = Date.now() + SHARED_WAIT_MS
    for (;;) {
      const stored = await this.#sharedFresh(shared, name)
      if (stored) return stored
      const release = await shared.lock(name)
      if (release) {
        try {
          // Another instance may have finished between the look and the lock.
          const again = await this.#sharedFresh(shared, name)
          if (again) return again
          const c = await this.#order(name)
          await shared.saveCertificate(name, c.cert, c.key)
          return c
        } finally {
          await release().catch(() => undefined)
        }
      }
      if (this.#closed) throw new Error('closed while another instance was ordering')
      if (Date.now() > deadline) throw new Error(`another instance held the order lock of ${name} too long`)
      await new Promise((r) => setTimeout(r, SHARED_POLL_MS).unref())
    }
  }

  /** The shared store's certificate for `name` when it is not due for renewal (kept on disk too). */
  async #sharedFresh(shared: SharedAcmeStore, name: string): Promise<IssuedCertificate | undefined> {
    const got = await shared.certificate(name)
    if (!got) return undefined
    const c = describe(name, got.cert, got.key)
    if (Date.now() >= renewAt(c.notBefore, c.notAfter)) return undefined
    const mine = this.#certs.get(name)
    if (mine?.cert === c.cert) return mine
    writePrivate(this.#certFile(name, 'key'), c.key)
    writePrivate(this.#certFile(name, 'crt'), c.cert)
    this.#log.info({ name, not_after: c.notAfter.toISOString() }, 'certificate taken from the shared store')
    return c
  }

  #lib(): AcmeClient {
    // Loaded on first use: a proxy without ACME never pays for acme-client and its dependencies.
    this.#acme ??= require('acme-client') as AcmeClient
    return this.#acme
  }

  /** The account (key made and stored on first use, registered once; its URL kept beside it). */
  #account(): Promise<InstanceType<AcmeClient['Client']>> {
    this.#client ??= (async () => {
      const acme = this.#lib()
      const keyFile = path.join(this.#dir, 'account.key')
      const urlFile = path.join(this.#dir, 'account.json')
      const make = async () => (await acme.crypto.createPrivateEcdsaKey('P-256')).toString()
      let accountKey = this.#shared ? await this.#shared.accountKey(make) : readIfThere(keyFile)
      if (accountKey === undefined) {
        accountKey = await make()
        writePrivate(keyFile, accountKey)
      }
      // With a shared store the account is looked up again at start (createAccount with a known
      // key returns that account): the URL file would be per instance.
      const saved = this.#shared ? undefined : readIfThere(urlFile)
      const known = saved ? (JSON.parse(saved) as { url?: string; email?: string }) : undefined
      const client = new acme.Client({
        directoryUrl: this.#spec.directoryUrl,
        accountKey,
        ...(known?.url && known.email === this.#spec.email ? { accountUrl: known.url } : {}),
        ...(this.#spec.eab
          ? { externalAccountBinding: { kid: this.#spec.eab.kid, hmacKey: this.#spec.eab.hmacKey } }
          : {}),
        // acme-client's default first poll waits 5 s; validation is usually done sooner.
        backoffMin: 500,
        backoffMax: 10_000,
        backoffAttempts: 12,
      })
      if (!known?.url || known.email !== this.#spec.email) {
        await client.createAccount({ termsOfServiceAgreed: true, contact: [`mailto:${this.#spec.email}`] })
        if (!this.#shared)
          writePrivate(urlFile, JSON.stringify({ url: client.getAccountUrl(), email: this.#spec.email }))
        this.#log.info(
          { directory_url: this.#spec.directoryUrl, account: client.getAccountUrl() },
          'ACME account ready',
        )
      }
      return client
    })()
    // A failed registration is tried again at the next order.
    this.#client.catch(() => {
      this.#client = undefined
    })
    return this.#client
  }

  async #order(name: string): Promise<IssuedCertificate> {
    const acme = this.#lib()
    const client = await this.#account()
    this.orders++
    this.#log.info({ name, challenge: this.#spec.challenge }, 'ordering a certificate')
    const order = await client.createOrder({ identifiers: [{ type: 'dns', value: name }] })
    for (const authz of await client.getAuthorizations(order)) {
      if (authz.status === 'valid') continue
      const challenge = authz.challenges.find((c) => c.type === this.#spec.challenge)
      if (!challenge) {
        throw new ProblemError(`the CA offers no ${this.#spec.challenge} challenge for ${name}`, {
          offered: authz.challenges.map((c) => c.type),
        })
      }
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge)
      const remove = await this.#installChallenge(acme, authz, challenge, keyAuthorization)
      try {
        await client.completeChallenge(challenge)
        await client.waitForValidStatus(challenge)
      } catch (err) {
        // The authorization, read again, carries the CA's problem document for the challenge.
        const again = await client.getAuthorizations(order).catch(() => [])
        const failed = again
          .find((a) => a.identifier.value === authz.identifier.value)
          ?.challenges.find((c) => c.type === this.#spec.challenge)
        throw new ProblemError((err as Error).message, failed?.error ?? (err as Error).message)
      } finally {
        remove()
      }
    }
    const [key, csr] = await acme.crypto.createCsr(
      { commonName: name, altNames: [name] },
      await acme.crypto.createPrivateEcdsaKey('P-256'),
    )
    await client.finalizeOrder(order, csr)
    const chain = await client.getCertificate(order)
    const issued = describe(name, chain, key.toString())
    // Key first: a crash between the two leaves a key without its certificate (ordered again),
    // never a new certificate beside an old key.
    writePrivate(this.#certFile(name, 'key'), issued.key)
    writePrivate(this.#certFile(name, 'crt'), issued.cert)
    return issued
  }

  /** Makes the challenge answerable; returns what takes it down. */
  async #installChallenge(
    acme: AcmeClient,
    authz: Parameters<AcmeClient['crypto']['createAlpnCertificate']>[0],
    challenge: { type: string; token: string },
    keyAuthorization: string,
  ): Promise<() => void> {
    const shared = this.#shared
    const hooks = this.#hooks
    const quiet = (p: Promise<void> | undefined) => void p?.catch(() => undefined)
    let up: ChallengeMaterial
    let down: ChallengeMaterial
    let forget: () => void
    let id: string
    if (challenge.type === 'http-01') {
      const token = challenge.token
      id = token
      this.#http.set(token, keyAuthorization)
      up = { type: 'http-01', token, keyAuthorization }
      down = { type: 'http-01', token, keyAuthorization: null }
      forget = () => this.#http.delete(token)
    } else {
      const [key, cert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization)
      const host = authz.identifier.value.toLowerCase()
      id = host
      const material = { cert: cert.toString(), key: key.toString() }
      this.#alpn.set(host, material)
      up = { type: 'tls-alpn-01', host, cert: material }
      down = { type: 'tls-alpn-01', host, cert: null }
      forget = () => this.#alpn.delete(host)
    }
    // The shared store keeps the key authorization only: another instance makes the TLS-ALPN-01
    // certificate from it (alpnChallenge).
    const kind = challenge.type === 'http-01' ? 'http' : 'alpn'
    const remove = () => {
      forget()
      quiet(hooks.challenge?.(down))
      quiet(shared?.setChallenge(kind, id, null))
    }
    try {
      await Promise.all([hooks.challenge?.(up), shared?.setChallenge(kind, id, keyAuthorization)])
    } catch (err) {
      remove()
      throw err
    }
    return remove
  }
}

/** A certificate as it crosses the IPC channel (dates do not survive JSON). */
export interface CertificateMessage {
  name: string
  cert: string
  key: string
}

/**
 * A worker's view of the primary's AcmeManager (server.workers > 1): the certificates, status and
 * challenge material the primary sends, served as the manager would; an unknown allowed name is
 * asked of the primary, which orders it under its own rate limit.
 */
export class AcmeMirror {
  readonly #spec: AcmeSpec
  readonly #ask: (host: string) => Promise<CertificateMessage | null>
  readonly #certs = new Map<string, IssuedCertificate>()
  readonly #http = new Map<string, string>()
  readonly #alpn = new Map<string, { cert: string; key: string }>()
  readonly #inFlight = new Map<string, Promise<IssuedCertificate | undefined>>()
  #status: AcmeNameStatus[] = []

  constructor(spec: AcmeSpec, ask: (host: string) => Promise<CertificateMessage | null>) {
    this.#spec = spec
    this.#ask = ask
  }

  setCertificate(m: CertificateMessage): void {
    this.#certs.set(m.name, describe(m.name, m.cert, m.key))
  }

  setStatus(s: AcmeNameStatus[]): void {
    this.#status = s
  }

  setChallenge(c: ChallengeMaterial): void {
    if (c.type === 'http-01') {
      if (c.keyAuthorization === null) this.#http.delete(c.token)
      else this.#http.set(c.token, c.keyAuthorization)
    } else if (c.cert === null) this.#alpn.delete(c.host)
    else this.#alpn.set(c.host, c.cert)
  }

  certificate(host: string): IssuedCertificate | undefined {
    return this.#certs.get(host)
  }

  httpChallenge(token: string): string | undefined {
    return this.#http.get(token)
  }

  alpnChallenge(host: string): { cert: string; key: string } | undefined {
    return this.#alpn.get(host)
  }

  covers(host: string): boolean {
    return this.#certs.has(host) || this.#spec.domains.includes(host)
  }

  onDemand(host: string): Promise<IssuedCertificate | undefined> | undefined {
    const globs = this.#spec.onDemand
    if (!globs || !domainAllowed(globs, host)) return undefined
    const running = this.#inFlight.get(host)
    if (running) return running
    const p = this.#ask(host)
      .then(
        (m) => {
          if (!m) return undefined
          this.setCertificate(m)
          return this.#certs.get(m.name)
        },
        () => undefined,
      )
      .finally(() => this.#inFlight.delete(host))
    this.#inFlight.set(host, p)
    return p
  }

  status(): AcmeNameStatus[] {
    return this.#status
  }

  certificates(): Iterable<IssuedCertificate> {
    return this.#certs.values()
  }

  close(): void {
    this.#inFlight.clear()
  }
}
