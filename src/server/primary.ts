// server.workers > 1: the primary process. It forks the workers (which share the listeners
// through Node's cluster module) and owns the state that must be one per instance:
// - health checks run here once and every worker is told the result;
// - circuit breakers are here: workers report outcomes in batches and ask for half-open probe
//   slots; every transition is broadcast (upstream/breaker-follower.ts);
// - the memory rate-limit buckets live here, so burst 5 means 5 across all workers;
// - config changes (reload, control-API changes) are validated here once, then applied by
//   every worker before the request that asked for them is answered;
// - ACME (server.tls.acme) runs here: every certificate and status change is sent to every
//   worker, and challenge material is in every worker (each acknowledged) before the CA is told
//   to validate, so whichever worker the CA's connection lands on answers it;
// - metrics are the sum of the workers' (plus the primary's own), on any worker's /metrics.
// A worker that dies is replaced (logged, counted); SIGTERM drains every worker.

import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry, Counter, Registry } from 'prom-client'
import { formatHostPort } from '../config/address'
import type { Overrides } from '../config/compile'
import { EMPTY_LAYER } from '../config/runtime-layer'
import type { AcmeSpec, Snapshot } from '../config/snapshot'
import type { DashboardData } from '../control/dashboard'
import type { PurgeMatch } from '../middleware/cache/memory-store'
import { MemoryStore } from '../middleware/rate-limit/memory-store'
import type { LoggerHandle } from '../observe/logger'
import { upstreamMetrics } from '../observe/metrics'
import { mergeSeries } from '../observe/series'
import type { Plan } from '../proxy/runtime'
import type { UpstreamClient } from '../upstream/client'
import { UpstreamRegistry } from '../upstream/registry'
import { AcmeManager, acmeChange, type ChallengeMaterial, type IssuedCertificate } from './acme'
import { sharedAcmeStore } from './acme-redis'
import type { SharedStart } from './config-store'
import { ConfigKeeper } from './keeper'
import type { AcmeState, HealthEvent, MetricsText, TakeBatch, ToPrimary, ToWorker } from './protocol'
import { Rpc } from './rpc'
import { takeBatch } from './take-batch'

export interface PrimaryOptions {
  file: string
  overrides: Overrides
  env: NodeJS.ProcessEnv
  logging: LoggerHandle
  /** The pools here are only for the health checkers' groups; workers choose alike (same env). */
  upstreamClient: UpstreamClient
  /** config_store: only the primary talks to Redis; workers get each layer as a config to apply. */
  shared?: SharedStart
}

/** How long the primary waits for every worker to confirm challenge material before failing the order. */
const CHALLENGE_ACK_MS = 10_000

interface WorkerLink {
  worker: Worker
  rpc: Rpc<ToWorker, ToPrimary>
  listening: boolean
}

export class Primary {
  readonly #log: LoggerHandle['logger']
  readonly #links = new Map<number, WorkerLink>()
  readonly #upstreams: UpstreamRegistry
  readonly #stores = new Map<string, MemoryStore>()
  readonly #registry = new Registry()
  readonly #restarts: Counter
  readonly #reloads: Counter<'result'>
  readonly #config: ConfigKeeper
  #plan: Plan
  #stopping = false
  readonly #shared: SharedStart | undefined
  #acme: { key: string; manager: AcmeManager } | undefined

  constructor(o: PrimaryOptions, plan: Plan, text: string) {
    this.#log = o.logging.logger
    this.#plan = plan
    this.#shared = o.shared
    this.#config = new ConfigKeeper(
      {
        file: o.file,
        env: o.env,
        overrides: o.overrides,
        log: this.#log,
        apply: (next, nextText, unsaved) => this.#apply(next, nextText, unsaved),
        onReload: (result) => this.#reloads.labels(result).inc(),
        store: o.shared?.store,
        layered: o.shared?.layered,
      },
      plan,
      text,
    )
    // Health checks run here: their counter is in the primary's registry.
    this.#upstreams = new UpstreamRegistry(
      this.#log,
      (group, peer, healthy) => this.#broadcastHealth({ group, address: peer.address, healthy }),
      {
        metrics: upstreamMetrics(this.#registry),
        client: o.upstreamClient.kind,
        onBreaker: (e) => {
          for (const l of this.#links.values()) l.rpc.emit('breaker', e)
        },
      },
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
    const { snapshot } = this.#plan
    const expected = snapshot.workers
    this.#upstreams.activate(snapshot, this.#upstreams.build(snapshot))
    return new Promise((resolve, reject) => {
      let settled = false
      cluster.on('listening', (w) => {
        const link = this.#links.get(w.id)
        if (!link || link.listening) return
        link.listening = true
        this.#sendHealth(link)
        // A worker starts from the file: one started late (a replacement) gets the runtime changes.
        const text = this.#config.changedText
        if (text !== undefined) {
          link.rpc.request('apply', { text, unsaved: [...this.#config.unsaved] }).catch((err: Error) => {
            this.#log.error({ worker: w.id, err: err.message }, 'worker could not take the runtime changes')
          })
        }
        if (!settled && [...this.#links.values()].filter((l) => l.listening).length === expected) {
          settled = true
          this.#log.info({ workers: expected, pid: process.pid }, 'all workers listening')
          this.#follow()
          // Challenges are answered by the workers: ACME starts once they listen.
          this.#syncAcme(snapshot)
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
    const rpc = new Rpc<ToWorker, ToPrimary>((m) => worker.send(m))
    rpc
      .on('takes', (b) => this.#takes(b))
      .on('change', (p) => this.#config.change(p.change, p.ifRevision))
      .on('reload', () => this.reload())
      .on('metrics', () => this.#metrics())
      .on('purge', (m) => this.#purge(m))
      .on('dashboard', () => this.#dashboard())
      .on('breaker-outcomes', (o) => this.#upstreams.applyOutcomes(o.key, o.batch))
      .on('breaker-probe', (p) => this.#upstreams.grantProbe(p.key))
      .on('acme-state', () => this.#acmeState())
      .on('acme-on-demand', async ({ host }) => {
        const c = await this.#acme?.manager.onDemand(host)
        return c ? { name: c.name, cert: c.cert, key: c.key } : null
      })
    worker.on('message', (m) => rpc.receive(m))
    this.#links.set(worker.id, { worker, rpc, listening: false })
  }

  /** config_store: follow the shared layer; every worker hears the store's status for /api/v1/status. */
  #follow(): void {
    const shared = this.#shared
    if (!shared) return
    const s = this.#plan.snapshot
    shared.store.start(
      shared.layered?.layer ?? EMPTY_LAYER,
      (layer) => this.#config.applyShared(layer),
      () => ({
        listener: formatHostPort(s.bind),
        control_api: s.controlApi.enabled ? formatHostPort(s.controlApi.bind) : null,
      }),
      () => {
        const status = shared.store.status()
        for (const l of this.#links.values()) l.rpc.emit('store-status', status)
      },
    )
  }

  /** Current health of every checked peer and state of every tripped breaker, for a worker that just started. */
  #sendHealth(link: WorkerLink): void {
    for (const g of this.#upstreams.groups()) {
      for (const p of g.peers) {
        if (!p.healthy) link.rpc.emit('health', { group: g.name, address: p.address, healthy: false })
      }
    }
    for (const e of this.#upstreams.trippedBreakers()) link.rpc.emit('breaker', e)
    if (this.#shared) link.rpc.emit('store-status', this.#shared.store.status())
  }

  #broadcastHealth(e: HealthEvent): void {
    for (const l of this.#links.values()) l.rpc.emit('health', e)
  }

  #takes(b: TakeBatch) {
    return takeBatch(b, (spec) => this.#storeFor(spec), Date.now())
  }

  #storeFor(spec: TakeBatch['stores'][number]): MemoryStore {
    let store = this.#stores.get(spec.store)
    if (!store) {
      store = new MemoryStore(spec.burst, spec.perMs, spec.maxKeys)
      this.#stores.set(spec.store, store)
    }
    return store
  }

  /** Every worker applies the validated config before the primary takes it as its own. */
  async #apply(next: Plan, text: string, unsaved: readonly string[]): Promise<void> {
    await Promise.all(
      [...this.#links.values()].map((l) => l.rpc.request('apply', { text, unsaved: [...unsaved] })),
    )
    const prev = this.#plan.snapshot
    this.#plan = next
    const { snapshot } = next
    this.#upstreams.activate(snapshot, this.#upstreams.build(snapshot))
    if (snapshot.logging.level !== prev.logging.level) this.#log.level = snapshot.logging.level
    this.#syncAcme(snapshot)
  }

  /** Starts, replaces or stops the ACME manager when server.tls.acme changes (as instance.ts does). */
  #syncAcme(s: Snapshot): void {
    const change = acmeChange(this.#acme, s.tls?.acme)
    if (change) this.#acme = change.spec && { key: change.key, manager: this.#startAcme(change.spec) }
  }

  /** A manager whose certificates, status and challenges go to every worker. */
  #startAcme(spec: AcmeSpec): AcmeManager {
    const manager = new AcmeManager(
      spec,
      this.#log,
      {
        challenge: (c) => this.#challengeToWorkers(c),
        certificate: (c: IssuedCertificate) => {
          for (const l of this.#links.values())
            l.rpc.emit('acme-certificate', { name: c.name, cert: c.cert, key: c.key })
        },
        changed: () => {
          const status = manager.status()
          for (const l of this.#links.values()) l.rpc.emit('acme-status', status)
        },
      },
      sharedAcmeStore(spec, this.#log),
    )
    manager.start()
    // Workers that pulled the state before (or from the replaced manager) get this one's.
    const status = manager.status()
    for (const l of this.#links.values()) l.rpc.emit('acme-status', status)
    return manager
  }

  #acmeState(): AcmeState {
    const m = this.#acme?.manager
    if (!m) return { certificates: [], status: [], challenges: [] }
    return {
      certificates: [...m.certificates()].map((c) => ({ name: c.name, cert: c.cert, key: c.key })),
      status: m.status(),
      challenges: m.pendingChallenges(),
    }
  }

  /** Every worker has the material (acknowledged) before the CA is asked to validate. */
  async #challengeToWorkers(c: ChallengeMaterial): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`workers did not confirm the ${c.type} challenge within ${CHALLENGE_ACK_MS} ms`)),
        CHALLENGE_ACK_MS,
      )
    })
    try {
      await Promise.race([
        Promise.all([...this.#links.values()].map((l) => l.rpc.request('acme-challenge', c))),
        deadline,
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  reload() {
    return this.#config.reload()
  }

  /** SIGUSR1: each worker reopens its access log file. */
  reopenLogs(): void {
    for (const l of this.#links.values()) l.worker.process.kill('SIGUSR1')
  }

  /** A cache purge reaches every worker (each has its own memory cache); the counts are summed. */
  async #purge(m: PurgeMatch): Promise<number> {
    const counts = await Promise.all([...this.#links.values()].map((l) => l.rpc.request('purge-local', m)))
    return counts.reduce((a, b) => a + b, 0)
  }

  /** Requests are counted in the workers: their series are added slot by slot. */
  async #dashboard(): Promise<DashboardData> {
    const parts = await Promise.all(
      [...this.#links.values()].map((l) => l.rpc.request('series-local', undefined)),
    )
    return { series: mergeSeries(parts), config: this.#config.configRevision() }
  }

  /** The instance's metrics: every worker's registry summed, plus the primary's own. */
  async #metrics(): Promise<MetricsText> {
    const parts = await Promise.all(
      [...this.#links.values()].map((l) => l.rpc.request('metrics-json', undefined)),
    )
    const all = AggregatorRegistry.aggregate([
      ...(parts as never[]),
      (await this.#registry.getMetricsAsJSON()) as never,
    ])
    return { text: await all.metrics(), contentType: all.contentType }
  }

  stop(): Promise<void> {
    this.#stopping = true
    this.#config.close()
    this.#acme?.manager.close()
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
    ).then(async () => {
      await this.#shared?.store.close()
      this.#upstreams.destroy()
      for (const s of this.#stores.values()) s.close()
    })
  }
}
