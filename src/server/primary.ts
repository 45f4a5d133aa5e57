// server.workers > 1: the primary process. It forks the workers (which share the listeners
// through Node's cluster module) and owns the state that must be one per instance:
// - health checks run here once and every worker is told the result;
// - the memory rate-limit buckets live here, so burst 5 means 5 across all workers;
// - config changes (reload, control-API changes) are validated here once, then applied by
//   every worker before the request that asked for them is answered;
// - metrics are the sum of the workers' (plus the primary's own), on any worker's /metrics.
// A worker that dies is replaced (logged, counted); SIGTERM drains every worker.

import cluster, { type Worker } from 'node:cluster'
import { closeSync, fsyncSync, openSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { AggregatorRegistry, Counter, Registry } from 'prom-client'
import { parseDocument } from 'yaml'
import { compile, type Overrides } from '../config/compile'
import { diffSnapshots, isEmpty } from '../config/diff'
import { parseConfigText, readConfigFile } from '../config/load'
import { formatProblem } from '../config/problems'
import type { Snapshot } from '../config/snapshot'
import { ApiError, applyChange, type ChangeOp } from '../control/mutations'
import { MemoryStore } from '../middleware/rate-limit/memory-store'
import type { LoggerHandle } from '../observe/logger'
import { UpstreamRegistry } from '../upstream/registry'
import { Rpc } from './rpc'

export interface PrimaryOptions {
  file: string
  overrides: Overrides
  env: NodeJS.ProcessEnv
  logging: LoggerHandle
}

/** What a worker needs to know about a peer's health. */
export interface HealthEvent {
  group: string
  address: string
  healthy: boolean
}

export interface ApplyMessage {
  text: string
  unsaved: string[]
}

interface WorkerLink {
  worker: Worker
  rpc: Rpc
  listening: boolean
}

export class Primary {
  readonly #o: PrimaryOptions
  readonly #log: LoggerHandle['logger']
  readonly #links = new Map<number, WorkerLink>()
  readonly #upstreams: UpstreamRegistry
  readonly #stores = new Map<string, MemoryStore>()
  readonly #registry = new Registry()
  readonly #restarts: Counter
  readonly #reloads: Counter<'result'>
  #snapshot: Snapshot
  #text: string
  #unsaved: string[] = []
  #stopping = false
  #queue: Promise<unknown> = Promise.resolve()

  constructor(o: PrimaryOptions, snapshot: Snapshot, text: string) {
    this.#o = o
    this.#log = o.logging.logger
    this.#snapshot = snapshot
    this.#text = text
    this.#upstreams = new UpstreamRegistry(this.#log, (group, peer, healthy) =>
      this.#broadcastEvent('health', { group, address: peer.address, healthy } satisfies HealthEvent),
    )
    this.#restarts = new Counter({
      name: 'locci_worker_restarts_total',
      help: 'Workers that died and were replaced.',
      registers: [this.#registry],
    })
    this.#reloads = new Counter({
      name: 'locci_config_reloads_total',
      help: 'Config reloads (SIGHUP, POST /api/v1/reload), by result: success or failure.',
      labelNames: ['result'],
      registers: [this.#registry],
    })
  }

  /** Forks the workers; resolves when every one is listening. */
  start(): Promise<void> {
    const expected = this.#snapshot.workers
    this.#upstreams.activate(this.#snapshot, this.#upstreams.build(this.#snapshot))
    return new Promise((resolve, reject) => {
      let settled = false
      cluster.on('listening', (w) => {
        const link = this.#links.get(w.id)
        if (!link || link.listening) return
        link.listening = true
        this.#sendHealth(link)
        if (!settled && [...this.#links.values()].filter((l) => l.listening).length === expected) {
          settled = true
          this.#log.info({ workers: expected, pid: process.pid }, 'all workers listening')
          resolve()
        }
      })
      cluster.on('exit', (w, code, signal) => {
        const link = this.#links.get(w.id)
        this.#links.delete(w.id)
        link?.rpc.close('the worker exited')
        if (this.#stopping) return
        if (!settled) {
          settled = true
          this.#stopping = true
          for (const l of this.#links.values()) l.worker.process.kill('SIGTERM')
          reject(new Error(`worker ${w.id} exited during start (${code ?? signal})`))
          return
        }
        this.#restarts.inc()
        this.#log.error({ worker: w.id, code, signal }, 'worker died; starting a replacement')
        this.#fork()
      })
      for (let i = 0; i < expected; i++) this.#fork()
    })
  }

  #fork(): void {
    const worker = cluster.fork({ LOCCI_WORKER: '1' })
    const rpc = new Rpc((m) => worker.send(m))
    rpc
      .on('take', (p) => this.#take(p as TakeRequest))
      .on('change', (p) => this.#serial(() => this.#change(p as ChangeOp)))
      .on('reload', () => this.reload())
      .on('metrics', () => this.#metrics())
    worker.on('message', (m) => rpc.receive(m))
    this.#links.set(worker.id, { worker, rpc, listening: false })
  }

  /** Current health of every checked peer, for a worker that just started. */
  #sendHealth(link: WorkerLink): void {
    for (const g of this.#upstreams.groups()) {
      for (const p of g.peers) {
        if (!p.healthy)
          link.rpc.emit('health', { group: g.name, address: p.address, healthy: false } satisfies HealthEvent)
      }
    }
  }

  #broadcastEvent(kind: string, payload: unknown): void {
    for (const l of this.#links.values()) l.rpc.emit(kind, payload)
  }

  #take(r: TakeRequest) {
    let store = this.#stores.get(r.store)
    if (!store) {
      store = new MemoryStore(r.burst, r.perMs, r.maxKeys)
      this.#stores.set(r.store, store)
    }
    return store.take(r.key, Date.now())
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => undefined)
    return run
  }

  /** Validates `text`, has every worker apply it, then takes it as the primary's own. */
  async #apply(text: string, fromFile: boolean) {
    const source = fromFile
      ? readConfigFile(this.#o.file, this.#o.env)
      : parseConfigText(this.#o.file, text, this.#o.env)
    const r = compile(source, this.#o.overrides)
    if (!r.ok) throw new ApiError(400, 'invalid configuration', { problems: r.problems.map(formatProblem) })
    const nextText = fromFile ? source.text : text
    await Promise.all(
      [...this.#links.values()].map((l) =>
        l.rpc.request('apply', { text: nextText, unsaved: this.#unsaved } satisfies ApplyMessage),
      ),
    )
    const prev = this.#snapshot
    this.#snapshot = r.snapshot
    this.#text = nextText
    this.#upstreams.activate(r.snapshot, this.#upstreams.build(r.snapshot))
    if (r.snapshot.logging.level !== prev.logging.level) this.#log.level = r.snapshot.logging.level
    return diffSnapshots(prev, r.snapshot)
  }

  async #change(c: ChangeOp) {
    const doc = parseDocument(this.#text)
    const description = applyChange(doc, c)
    const persist = (() => {
      const r = compile(parseConfigText(this.#o.file, doc.toString(), this.#o.env), this.#o.overrides)
      return r.ok && r.snapshot.raw.control_api.persist
    })()
    if (!persist) this.#unsaved = [...this.#unsaved, description]
    try {
      await this.#apply(doc.toString(), false)
    } catch (err) {
      if (!persist) this.#unsaved = this.#unsaved.slice(0, -1)
      throw err
    }
    if (persist) writeAtomically(this.#o.file, doc.toString())
    this.#log.info({ change: description, saved: persist }, 'config changed through the control API')
    return { change: description, saved: persist }
  }

  reload() {
    return this.#serial(async () => {
      const dropped = this.#unsaved
      this.#unsaved = []
      try {
        const changes = await this.#apply('', true)
        this.#reloads.labels('success').inc()
        const summary = Object.fromEntries(Object.entries(changes).filter(([, v]) => v.length > 0))
        this.#log.info(
          { ...summary, ...(dropped.length ? { dropped_runtime_changes: dropped } : {}) },
          isEmpty(changes) ? 'config reloaded; nothing changed' : 'config reloaded',
        )
        return {
          result: isEmpty(changes) ? 'unchanged' : 'success',
          changes,
          dropped_runtime_changes: dropped,
        }
      } catch (err) {
        this.#unsaved = dropped
        this.#reloads.labels('failure').inc()
        const problems =
          err instanceof ApiError ? (err.details.problems as string[]) : [(err as Error).message]
        this.#log.error({ problems }, 'config reload failed; the running config stays')
        return { result: 'failure', problems }
      }
    })
  }

  /** The instance's metrics: every worker's registry summed, plus the primary's own. */
  async #metrics(): Promise<{ text: string; contentType: string }> {
    const parts = await Promise.all(
      [...this.#links.values()].map((l) => l.rpc.request<unknown>('metrics-json')),
    )
    const all = AggregatorRegistry.aggregate([
      ...(parts as never[]),
      (await this.#registry.getMetricsAsJSON()) as never,
    ])
    return { text: await all.metrics(), contentType: all.contentType }
  }

  stop(): Promise<void> {
    this.#stopping = true
    this.#upstreams.stopHealthChecks()
    const workers = [...this.#links.values()].map((l) => l.worker)
    return Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((done) => {
            if (w.isDead()) return done()
            w.once('exit', () => done())
            w.process.kill('SIGTERM')
          }),
      ),
    ).then(() => {
      this.#upstreams.destroy()
      for (const s of this.#stores.values()) s.close()
    })
  }
}

export interface TakeRequest {
  store: string
  key: string
  burst: number
  perMs: number
  maxKeys: number
}

/** Temp file, fsync, rename: a crash leaves the old file or the new one, never half of one. */
export function writeAtomically(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  writeFileSync(tmp, text)
  const fd = openSync(tmp, 'r+')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
}
