// config_store with type redis: the runtime layer (config/runtime-layer.ts) shared by every
// instance. Keys, under key_prefix:
//   <prefix>runtime           hash {revision, changes (JSON), committed_at}: the layer
//   <prefix>runtime           also the pub/sub channel on which a commit publishes its revision
//   <prefix>instance:<id>     one instance's heartbeat (JSON), expiring after HEARTBEAT_TTL_S
// A commit is one Lua script (compare-and-set on the revision, write, publish), so two instances
// committing at once are ordered and the loser is told. Every instance hears the publish and also
// checks the revision every CHECK_MS, so a message lost while disconnected cannot leave it behind.
// Only the process that owns the config talks to Redis (the primary with several workers).
// Redis unreachable: reads and commits refuse at once (no offline queue) with 'unavailable', the
// running config stays, and the next check after the reconnect catches up. A layer that cannot be
// read (forged, corrupted, too big) or applied is refused whole and reported (log + status).

import { hostname } from 'node:os'
import type Redis from 'ioredis'
import type { Overrides } from '../config/compile'
import { maskString } from '../config/redact'
import { ChangeRefused } from '../config/refused'
import {
  BadLayer,
  MAX_LAYER_BYTES,
  parseLayer,
  type RuntimeLayer,
  serializeLayer,
} from '../config/runtime-layer'
import type { Logger } from '../observe/logger'
import type { Plan } from '../proxy/runtime'
import { type Layered, type LayerStore, layeredPlan } from './keeper'

/** How often the revision is checked besides pub/sub. */
const CHECK_MS = 2000
const HEARTBEAT_MS = 3000
const HEARTBEAT_TTL_S = 10
/** How many heartbeats `instances` lists at most (a forged flood of keys stays bounded). */
const MAX_INSTANCES = 500

const COMMIT = `
local cur = redis.call('HGET', KEYS[1], 'revision')
if (cur or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'changes', ARGV[3], 'committed_at', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[2])
return 1
`

type WithCommit = Redis & {
  locciCommitLayer(key: string, ...args: string[]): Promise<number>
}

/** What an instance says about itself in its heartbeat. */
export interface InstanceBeat {
  id: string
  pid: number
  host: string
  listener: string
  control_api: string | null
  revision: number
  started_at: string
  last_error: string | null
}

export interface StoreStatus {
  type: 'redis'
  /** Without its password. */
  url: string
  key_prefix: string
  connected: boolean
  /** The layer's revision live in this instance. */
  revision: number
  /** The latest revision seen in the store (may be ahead while it is applied, or refused). */
  store_revision: number | null
  /** How long this instance has been behind the store; 0 when it is current. */
  lag_ms: number
  /** For the last change committed by another instance: its commit to its being live here. */
  last_apply_delay_ms: number | null
  last_error: string | null
  instances: InstanceBeat[]
}

export interface ConfigStoreOptions {
  url: string
  keyPrefix: string
  log: Logger
}

export class RedisConfigStore implements LayerStore {
  readonly #o: ConfigStoreOptions
  readonly #url: string
  readonly #key: string
  readonly #redis: WithCommit
  readonly #sub: Redis
  readonly id = `${hostname()}-${process.pid}`
  readonly #startedAt = new Date().toISOString()
  #applied: RuntimeLayer | undefined
  #seen: { revision: number; committedAt: number } | undefined
  #behindSince = 0
  #lastDelay: number | null = null
  #lastError: string | null = null
  /** The layer last refused, so it is reported once, not every check. */
  #refused: { revision: number; committedAt: number } | undefined
  #instances: InstanceBeat[] = []
  #timers: NodeJS.Timeout[] = []
  #checking: Promise<void> | undefined
  #again = false
  #closed = false
  #apply: ((layer: RuntimeLayer) => Promise<boolean>) | undefined
  #beat:
    | (() => Omit<InstanceBeat, 'id' | 'pid' | 'host' | 'started_at' | 'revision' | 'last_error'>)
    | undefined
  #onStatus: (() => void) | undefined

  constructor(o: ConfigStoreOptions) {
    this.#o = o
    this.#url = maskString(o.url)
    this.#key = `${o.keyPrefix}runtime`
    // Loaded on first use: ioredis costs ~8 MiB of RSS that a proxy without Redis never needs.
    const Client = (require('ioredis') as typeof import('ioredis')).default
    const options = {
      // Fail at once while Redis is away: a change is refused with 503, never left hanging.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 2000,
      connectTimeout: 2000,
      retryStrategy: (times: number) => Math.min(times * 200, 2000),
      lazyConnect: false,
    }
    this.#redis = new Client(o.url, options) as WithCommit
    this.#redis.defineCommand('locciCommitLayer', { numberOfKeys: 1, lua: COMMIT })
    // Resubscribed by hand on every (re)connect: with no offline queue, ioredis's own resubscribe
    // can run before the connection is writable.
    this.#sub = new Client(o.url, { ...options, autoResubscribe: false, commandTimeout: undefined })
    let lastLog = 0
    const onError = (err: Error) => {
      const now = Date.now()
      this.#lastError = `redis: ${err.message}`
      if (now - lastLog > 10_000) {
        lastLog = now
        o.log.warn({ config_store: this.#url, err: err.message }, 'config store: redis connection error')
      }
    }
    this.#redis.on('error', onError)
    this.#sub.on('error', onError)
    this.#redis.on('ready', () => {
      o.log.info({ config_store: this.#url }, 'config store connected')
      if (this.#lastError?.startsWith('redis:')) this.#lastError = null
      this.#kick()
      void this.#heartbeat()
    })
    this.#sub.on('ready', () => {
      this.#sub.subscribe(this.#key).then(
        () => this.#kick(),
        (err: Error) => onError(err),
      )
    })
    this.#sub.on('message', (channel: string) => {
      if (channel === this.#key) this.#kick()
    })
  }

  /** Resolves once connected, or after `ms` (then the caller goes on without the store). */
  ready(ms: number): Promise<boolean> {
    if (this.#redis.status === 'ready') return Promise.resolve(true)
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#redis.off('ready', on)
        resolve(false)
      }, ms)
      const on = () => {
        clearTimeout(t)
        resolve(true)
      }
      this.#redis.once('ready', on)
    })
  }

  /** The latest committed layer; refused as 'unavailable' when Redis cannot say or holds garbage. */
  async read(): Promise<RuntimeLayer> {
    try {
      return await this.#fetch()
    } catch (err) {
      throw this.#refusal(err)
    }
  }

  /** The stored layer; throws BadLayer for one that cannot be read, or Redis's error. */
  async #fetch(): Promise<RuntimeLayer> {
    // The size first: a forged 500 MB value is not transferred, let alone parsed.
    const len = await this.#redis.hstrlen(this.#key, 'changes')
    if (len > MAX_LAYER_BYTES) throw new BadLayer(`changes are larger than ${MAX_LAYER_BYTES} bytes`)
    return parseLayer(await this.#redis.hgetall(this.#key))
  }

  async commit(expected: number, next: RuntimeLayer): Promise<boolean> {
    const f = serializeLayer(next)
    try {
      const won = await this.#redis.locciCommitLayer(
        this.#key,
        String(expected),
        f.revision!,
        f.changes!,
        f.committed_at!,
        this.#key,
      )
      // Not taken as applied here: the next check hands it to the keeper, which knows whether it is live.
      return won === 1
    } catch (err) {
      throw this.#refusal(err)
    }
  }

  #refusal(err: unknown): ChangeRefused {
    if (err instanceof ChangeRefused) return err
    if (err instanceof BadLayer) {
      const message = `the runtime config in the store (key ${this.#key}) is unreadable: ${err.message}; fix or delete that key`
      this.#report(message)
      return new ChangeRefused('unavailable', `changes are refused: ${message}`)
    }
    const message = (err as Error).message
    const what = /WRONGTYPE/.test(message)
      ? `the key ${this.#key} in the store is not a runtime config (${message}); delete it`
      : `the config store (${this.#url}) is unreachable: ${message}`
    return new ChangeRefused(
      'unavailable',
      `${what}. Changes are refused until it answers; the running config stays`,
      { config_store: this.#url },
    )
  }

  #report(message: string): void {
    if (this.#lastError !== message) this.#o.log.error({ config_store: this.#url }, message)
    this.#lastError = message
    this.#onStatus?.()
  }

  /**
   * Follows the store from now on: `apply` makes a layer live (false: it was live already; a
   * throw: refused, reported). `beat` says where this instance listens, for the heartbeat.
   * `live` is the layer the running config was built with.
   */
  start(
    live: RuntimeLayer,
    apply: (layer: RuntimeLayer) => Promise<boolean>,
    beat: () => { listener: string; control_api: string | null },
    onStatus?: () => void,
  ): void {
    this.#applied ??= live
    this.#apply = apply
    this.#beat = beat
    this.#onStatus = onStatus
    this.#timers.push(
      setInterval(() => this.#kick(), CHECK_MS).unref(),
      setInterval(() => void this.#heartbeat(), HEARTBEAT_MS).unref(),
    )
    this.#kick()
    void this.#heartbeat()
  }

  /** Checks the store now, or once more after the check under way. */
  #kick(): void {
    if (this.#closed || !this.#apply) return
    if (this.#checking) {
      this.#again = true
      return
    }
    this.#checking = this.#check().finally(() => {
      this.#checking = undefined
      if (this.#again) {
        this.#again = false
        this.#kick()
      }
    })
  }

  async #check(): Promise<void> {
    if (this.#redis.status !== 'ready') return
    let head: [string | null, string | null]
    try {
      head = (await this.#redis.hmget(this.#key, 'revision', 'committed_at')) as [
        string | null,
        string | null,
      ]
    } catch (err) {
      if (/WRONGTYPE/.test((err as Error).message)) this.#report(this.#refusal(err).message)
      return // unreachable: the error handler logged it; the next check after 'ready' catches up
    }
    const seen = { revision: Number(head[0] ?? 0), committedAt: Number(head[1] ?? 0) }
    const current = this.#applied
    if (current && seen.revision === current.revision && seen.committedAt === current.committedAt) {
      this.#seen = seen
      this.#behindSince = 0
      if (this.#lastError !== null && !this.#lastError.startsWith('redis:')) {
        this.#lastError = null
        this.#onStatus?.()
      }
      return
    }
    if (!this.#seen || this.#seen.revision !== seen.revision || this.#seen.committedAt !== seen.committedAt) {
      this.#behindSince = Date.now()
    }
    this.#seen = seen
    if (this.#refused?.revision === seen.revision && this.#refused.committedAt === seen.committedAt) return
    let layer: RuntimeLayer
    try {
      layer = await this.#fetch()
    } catch (err) {
      if (err instanceof BadLayer) {
        this.#refused = seen
        this.#refusal(err) // reports it
      }
      return // unreachable: the error handler logged it; the next check catches up
    }
    try {
      const changed = await this.#apply!(layer)
      this.#applied = layer
      this.#seen = { revision: layer.revision, committedAt: layer.committedAt }
      this.#behindSince = 0
      this.#refused = undefined
      if (changed && layer.committedAt > 0) this.#lastDelay = Math.max(0, Date.now() - layer.committedAt)
      if (this.#lastError !== null && !this.#lastError.startsWith('redis:')) this.#lastError = null
      this.#onStatus?.()
      void this.#heartbeat()
    } catch (err) {
      this.#refused = { revision: layer.revision, committedAt: layer.committedAt }
      const problems =
        err instanceof ChangeRefused ? (err.details.problems as string[] | undefined) : undefined
      this.#report(
        `runtime config revision ${layer.revision} from the store was refused; the running config stays: ${
          problems?.join('; ') ?? (err as Error).message
        }`,
      )
    }
  }

  /** Writes this instance's heartbeat, then reads everybody's (for `locci-proxy status`). */
  async #heartbeat(): Promise<void> {
    if (this.#closed || !this.#beat || this.#redis.status !== 'ready') return
    const beat: InstanceBeat = {
      id: this.id,
      pid: process.pid,
      host: hostname(),
      ...this.#beat(),
      revision: this.#applied?.revision ?? 0,
      started_at: this.#startedAt,
      last_error: this.#lastError,
    }
    try {
      await this.#redis.set(
        `${this.#o.keyPrefix}instance:${this.id}`,
        JSON.stringify(beat),
        'EX',
        HEARTBEAT_TTL_S,
      )
      const keys: string[] = []
      let cursor = '0'
      do {
        const [next, found] = await this.#redis.scan(
          cursor,
          'MATCH',
          `${escapeGlob(this.#o.keyPrefix)}instance:*`,
          'COUNT',
          200,
        )
        cursor = next
        keys.push(...found)
      } while (cursor !== '0' && keys.length < MAX_INSTANCES)
      const values = keys.length ? await this.#redis.mget(keys.slice(0, MAX_INSTANCES)) : []
      this.#instances = values
        .flatMap((v) => {
          const b = parseBeat(v)
          return b ? [b] : []
        })
        .sort((a, b) => a.id.localeCompare(b.id))
      this.#onStatus?.()
    } catch {
      // Unreachable: the error handler logged it; the status says disconnected.
    }
  }

  status(): StoreStatus {
    const seen = this.#seen?.revision ?? null
    const applied = this.#applied?.revision ?? 0
    const behind = this.#seen !== undefined && this.#behindSince > 0 && seen !== applied
    return {
      type: 'redis',
      url: this.#url,
      key_prefix: this.#o.keyPrefix,
      connected: this.#redis.status === 'ready',
      revision: applied,
      store_revision: seen,
      lag_ms: behind ? Date.now() - this.#behindSince : 0,
      last_apply_delay_ms: this.#lastDelay,
      last_error: this.#lastError,
      instances: this.#instances,
    }
  }

  /** Stops following; the heartbeat key is removed so `status` elsewhere drops this instance at once. */
  async close(): Promise<void> {
    this.#closed = true
    for (const t of this.#timers) clearInterval(t)
    try {
      if (this.#redis.status === 'ready') await this.#redis.del(`${this.#o.keyPrefix}instance:${this.id}`)
    } catch {
      // gone anyway after its TTL
    }
    this.#redis.disconnect()
    this.#sub.disconnect()
  }
}

/** A heartbeat read back; anything else under the prefix (forged, truncated) is left out. */
function parseBeat(v: string | null): InstanceBeat | undefined {
  if (v === null || v.length > 4096) return undefined
  try {
    const b = JSON.parse(v) as Record<string, unknown>
    if (b === null || typeof b !== 'object' || typeof b.id !== 'string' || typeof b.pid !== 'number')
      return undefined
    const str = (x: unknown) => (typeof x === 'string' ? x : null)
    return {
      id: b.id,
      pid: b.pid,
      host: str(b.host) ?? '',
      listener: str(b.listener) ?? '',
      control_api: str(b.control_api),
      revision: typeof b.revision === 'number' ? b.revision : 0,
      started_at: str(b.started_at) ?? '',
      last_error: str(b.last_error),
    }
  } catch {
    return undefined
  }
}

/** key_prefix taken literally in a SCAN pattern. */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}

/** What an instance starts with under config_store: the store, and the plan built as file + layer. */
export interface SharedStart {
  store: RedisConfigStore
  /** Undefined when the store could not be read at start: the file alone, until it catches up. */
  layered: Layered | undefined
}

/**
 * Connects to the store (waiting up to `waitMs`) and builds the starting plan as file + layer.
 * Redis away, or a layer that cannot be read or applied: the file alone, logged; the store's
 * checks apply the layer once they can.
 */
export async function openConfigStore(
  o: ConfigStoreOptions & { file: string; env: NodeJS.ProcessEnv; overrides: Overrides; waitMs: number },
  filePlan: Plan,
  fileText: string,
): Promise<SharedStart & { plan: Plan; text: string }> {
  const store = new RedisConfigStore(o)
  const alone = { store, layered: undefined, plan: filePlan, text: fileText }
  if (!(await store.ready(o.waitMs))) {
    o.log.warn(
      { config_store: maskString(o.url) },
      'config store unreachable at start: serving the config file alone until it answers',
    )
    return alone
  }
  let layer: RuntimeLayer
  try {
    layer = await store.read()
  } catch (err) {
    o.log.error(
      { config_store: maskString(o.url), err: (err as Error).message },
      'config store: cannot read the runtime layer at start',
    )
    return alone
  }
  const l = layeredPlan(o.file, fileText, layer, o.env, o.overrides)
  if (!l.ok) {
    o.log.error(
      { config_store: maskString(o.url), revision: layer.revision, problems: l.problems },
      'config store: the runtime layer does not apply to the config file; serving the file alone',
    )
    return alone
  }
  return {
    store,
    layered: { layer, fileText, fileSnapshot: filePlan.snapshot },
    plan: l.plan,
    text: l.text,
  }
}
