// One running proxy process: it owns the snapshot store and everything live (upstream pools and
// health, middleware state, listeners, the control API) and changes them only by building a new
// snapshot and swapping it in: on reload (SIGHUP, POST /api/v1/reload) and on control-API
// changes. In-flight requests finish on the snapshot they started with. Graceful shutdown on
// SIGTERM/SIGINT: stop accepting, finish in-flight requests within server.shutdown_timeout_secs.

import cluster from 'node:cluster'
import type http from 'node:http'
import type net from 'node:net'
import path from 'node:path'
import { formatHostPort, type HostPort } from '../config/address'
import { compile, type Overrides } from '../config/compile'
import { ConfigKeeper, type ReloadResult } from '../config/keeper'
import { parseConfigText } from '../config/load'
import type { ChangeOp } from '../config/mutations'
import { formatProblem } from '../config/problems'
import { ChangeRefused } from '../config/refused'
import type { Snapshot } from '../config/snapshot'
import { SnapshotStore } from '../config/store'
import { type ControlActions, createControlServer } from '../control/api'
import type { TakeResult } from '../middleware/rate-limit/token-bucket'
import { MiddlewareRegistry } from '../middleware/registry'
import { AccessLog } from '../observe/access-log'
import type { LoggerHandle } from '../observe/logger'
import { Metrics } from '../observe/metrics'
import { Pipeline } from '../proxy/pipeline'
import { explain } from '../routing/explain'
import { UpstreamRegistry } from '../upstream/registry'
import { createListener, createRedirectListener, type ListenerHandle, listen } from './listener'
import type { ApplyMessage, HealthEvent, TakeRequest } from './primary'
import type { Rpc } from './rpc'
import { TcpProxy } from './tcp'

export interface StartOptions {
  file: string
  overrides: Overrides
  env: NodeJS.ProcessEnv
  version: string
  logging: LoggerHandle
  /** Set in a worker: the channel to the primary, which owns instance-wide state. */
  primary?: Rpc
}

/** The downstream side: an HTTP(S) listener, or the TCP pass-through. */
interface Front {
  key: string
  server: net.Server
  listener: ListenerHandle | undefined
  tcp: TcpProxy | undefined
}

export class ProxyInstance implements ControlActions {
  readonly #o: StartOptions
  readonly #log: LoggerHandle['logger']
  readonly #store: SnapshotStore
  readonly #upstreams: UpstreamRegistry
  readonly #middlewares: MiddlewareRegistry
  readonly #metrics: Metrics
  readonly #pipeline: Pipeline
  readonly #startedAt = Date.now()
  #front: Front | undefined
  #control: { key: string; server: http.Server } | undefined
  #redirect: { key: string; server: http.Server } | undefined
  /** The live config's text, unsaved runtime changes, reload and change (single process). */
  readonly #config: ConfigKeeper
  /** In a worker: the unsaved runtime changes the primary last reported. */
  #workerUnsaved: readonly string[] = []
  #lastReload: { at: string; result: string } | undefined
  #stopping: Promise<void> | undefined

  private constructor(o: StartOptions, snapshot: Snapshot, text: string) {
    this.#o = o
    this.#log = o.logging.logger
    this.#config = new ConfigKeeper(
      {
        file: o.file,
        env: o.env,
        overrides: o.overrides,
        log: this.#log,
        apply: (next) => this.#install(next),
        onReload: (result) => {
          this.#metrics.reload(result)
          this.#lastReload = { at: new Date().toISOString(), result }
        },
      },
      snapshot,
      text,
    )
    const link = o.primary
    this.#upstreams = new UpstreamRegistry(this.#log, undefined, { healthChecks: !link })
    this.#middlewares = new MiddlewareRegistry(
      this.#log,
      (type) => this.#countError(type),
      link &&
        ((store, burst, perMs, maxKeys) => ({
          take: (key) =>
            link.request<TakeResult>('take', { store, key, burst, perMs, maxKeys } satisfies TakeRequest),
        })),
    )
    const groups = this.#upstreams.build(snapshot)
    this.#store = new SnapshotStore({ snapshot, groups, chains: this.#middlewares.build(snapshot) })
    this.#metrics = new Metrics(
      () => this.#store.current(),
      () => (this.#front?.tcp ?? this.#pipeline).inFlight,
    )
    const access = new AccessLog(o.logging, this.#metrics, () => this.#store.current().snapshot.mode)
    this.#pipeline = new Pipeline({ store: this.#store, log: this.#log, access })
    link
      ?.on('apply', (p) => this.#config.serial(() => this.#applyFromPrimary(p as ApplyMessage)))
      .on('health', (p) => {
        const h = p as HealthEvent
        this.#upstreams.setHealth(h.group, h.address, h.healthy)
      })
      .on('metrics-json', () => this.#metrics.registry.getMetricsAsJSON())
  }

  /** A config the primary validated: apply it as it is (every worker gets the same text). */
  async #applyFromPrimary(m: ApplyMessage): Promise<void> {
    const r = compile(parseConfigText(this.#o.file, m.text, this.#o.env), this.#o.overrides)
    if (!r.ok)
      throw new ChangeRefused('invalid', 'invalid configuration', { problems: r.problems.map(formatProblem) })
    await this.#install(r.snapshot)
    this.#workerUnsaved = m.unsaved
  }

  static async start(o: StartOptions, snapshot: Snapshot, text: string): Promise<ProxyInstance> {
    const inst = new ProxyInstance(o, snapshot, text)
    try {
      await inst.#bind(snapshot)
    } catch (err) {
      inst.#closeListeners(0)
      inst.#middlewares.close()
      inst.#upstreams.destroy()
      throw err
    }
    const rt = inst.#store.current()
    inst.#upstreams.activate(snapshot, rt.groups as Map<string, never>)
    inst.#logListening(snapshot)
    return inst
  }

  /** An error that is not a whole request (bad request line, Redis fail-open, TCP failure). */
  #countError(type: string): void {
    this.#metrics.error(this.#store.current().snapshot.mode, type)
  }

  get metrics(): Metrics {
    return this.#metrics
  }

  #logListening(s: Snapshot): void {
    const f = this.#front!
    this.#log.info(
      {
        mode: s.mode,
        bind: `${f.tcp ? 'tcp' : s.tls ? 'https' : 'http'}://${bound(f.server, s.bind)}`,
        control_api: this.#control ? `http://${bound(this.#control.server, s.controlApi.bind)}` : null,
        ...(this.#redirect
          ? { redirect_http: `http://${bound(this.#redirect.server, s.redirectHttp!)}` }
          : {}),
        ...(s.tls ? { http2: s.tls.http2 } : {}),
        upstreams: s.activeUpstreams,
        version: this.#o.version,
        ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}),
      },
      'locci-proxy listening',
    )
    if (this.#control && s.controlApi.insecure && s.controlApi.apiKey === undefined) {
      this.#log.warn(
        { control_api: `http://${bound(this.#control.server, s.controlApi.bind)}` },
        'control_api.insecure: the control API has no api_key; anyone who can reach it can change routes and upstreams',
      )
    }
    for (const u of s.upstreams.values()) {
      if (u.tlsOptions?.skipVerify && s.activeUpstreams.includes(u.name)) {
        this.#log.warn(
          { upstream: u.name },
          'tls_skip_verify: server certificates of this upstream are NOT verified',
        )
      }
    }
  }

  /**
   * Binds what `s` needs and differs from what is bound now: the front listener, the redirect
   * listener, the control API. New addresses are bound before anything is closed, so a failure
   * leaves the running config untouched; the same address must be released first.
   */
  async #bind(s: Snapshot): Promise<{ retired: Front | undefined }> {
    const frontKey = JSON.stringify({
      bind: s.bind,
      protocol: s.lbProtocol,
      tls: s.tls ? [s.tls.http2, s.tls.minVersion] : null,
    })
    let retired: Front | undefined
    if (this.#front?.key !== frontKey) {
      const next = this.#makeFront(s, frontKey)
      const old = this.#front
      if (old && sameAddress(old.server, s.bind)) {
        old.server.close()
        retired = old
      }
      await listen(next.server, s.bind.host, s.bind.port)
      if (old && !retired) {
        old.server.close()
        retired = old
      }
      this.#front = next
    } else {
      this.#front!.listener?.update(s)
    }
    const redirectKey = s.redirectHttp ? formatHostPort(s.redirectHttp) : ''
    if ((this.#redirect?.key ?? '') !== redirectKey) {
      this.#redirect?.server.close()
      this.#redirect?.server.closeAllConnections()
      this.#redirect = undefined
      if (s.redirectHttp) {
        const server = createRedirectListener(
          () => (this.#front!.server.address() as net.AddressInfo).port,
          () => this.#store.current().snapshot.tls,
          this.#log,
        )
        await listen(server, s.redirectHttp.host, s.redirectHttp.port)
        this.#redirect = { key: redirectKey, server }
      }
    }
    const controlKey = s.controlApi.enabled ? formatHostPort(s.controlApi.bind) : ''
    if ((this.#control?.key ?? '') !== controlKey) {
      const old = this.#control
      this.#control = undefined
      if (s.controlApi.enabled) {
        const server = createControlServer({ store: this.#store, log: this.#log, actions: this })
        if (old && sameAddress(old.server, s.controlApi.bind)) old.server.close()
        await listen(server, s.controlApi.bind.host, s.controlApi.bind.port)
        this.#control = { key: controlKey, server }
      }
      if (old) {
        old.server.close()
        // Let the response that carried this change (POST reload) go out first.
        setTimeout(() => old.server.closeAllConnections(), 1000).unref()
      }
    }
    return { retired }
  }

  #makeFront(s: Snapshot, key: string): Front {
    if (s.lbProtocol === 'tcp') {
      const tcp = new TcpProxy(this.#store, this.#log, (type) => this.#countError(type))
      return { key, server: tcp.server, listener: undefined, tcp }
    }
    const listener = createListener(s, this.#pipeline.handle, this.#pipeline.upgrade, this.#log, (type) =>
      this.#countError(type),
    )
    return { key, server: listener.server, listener, tcp: undefined }
  }

  /** Lets a replaced listener's connections finish, then closes what is left. */
  #retire(f: Front, graceMs: number): void {
    f.listener?.closeIdle()
    const sweep = f.listener ? setInterval(() => f.listener!.closeIdle(), 200) : undefined
    setTimeout(() => {
      clearInterval(sweep)
      f.listener?.closeAll()
      f.tcp?.destroyAll()
    }, graceMs).unref()
  }

  /** Makes a validated snapshot live: listeners, pools, chains, one swap. */
  async #install(next: Snapshot): Promise<void> {
    const prev = this.#store.current().snapshot
    const { retired } = await this.#bind(next).catch((err: Error) => {
      throw new ChangeRefused('invalid', 'invalid configuration', {
        problems: [`${this.#o.file}: ${err.message}`],
      })
    })
    const groups = this.#upstreams.build(next)
    const chains = this.#middlewares.build(next)
    this.#store.swap({ snapshot: next, groups, chains })
    this.#upstreams.activate(next, groups)
    if (retired) this.#retire(retired, next.shutdownTimeoutMs)
    if (next.logging.level !== prev.logging.level) this.#log.level = next.logging.level
    if (next.logging.format !== prev.logging.format || next.workers !== prev.workers) {
      this.#log.warn(
        { setting: next.workers !== prev.workers ? 'server.workers' : 'logging.format' },
        'this setting takes effect at the next restart',
      )
    }
  }

  /** Re-reads the config file; an invalid file leaves the running config as it is. */
  reload(): Promise<ReloadResult> {
    if (this.#o.primary) return this.#o.primary.request<ReloadResult>('reload')
    return this.#config.reload()
  }

  /** A control-API change, validated like the file (in a worker: by the primary, for all). */
  change(c: ChangeOp): Promise<{ change: string; saved: boolean }> {
    if (this.#o.primary) return this.#o.primary.request('change', c)
    return this.#config.change(c)
  }

  metricsText(): Promise<{ text: string; contentType: string }> {
    if (this.#o.primary) return this.#o.primary.request('metrics')
    return this.#metrics.text().then((text) => ({ text, contentType: this.#metrics.contentType }))
  }

  status(): Record<string, unknown> {
    const s = this.#store.current().snapshot
    return {
      status: 'running',
      mode: s.mode,
      lb_enabled: s.mode === 'load_balancer',
      gateway_enabled: s.mode === 'api_gateway',
      version: this.#o.version,
      pid: process.pid,
      workers: s.workers,
      uptime_secs: Math.round((Date.now() - this.#startedAt) / 1000),
      config_file: path.resolve(s.file),
      persist: s.raw.control_api.persist,
      ...(this.#o.primary ? { worker: cluster.worker?.id } : {}),
      unsaved_changes: this.#o.primary ? this.#workerUnsaved : this.#config.unsaved,
      last_reload: this.#lastReload ?? null,
      requests_in_flight: (this.#front?.tcp ?? this.#pipeline).inFlight,
    }
  }

  explain(method: string, url: string, headers: string[]) {
    const { snapshot, groups } = this.#store.current()
    return explain(snapshot, groups, method, url, headers)
  }

  #closeListeners(graceMs: number): void {
    this.#front?.server.close()
    this.#redirect?.server.close()
    this.#redirect?.server.closeAllConnections()
    this.#control?.server.close()
    this.#control?.server.closeAllConnections()
    if (graceMs === 0) {
      this.#front?.listener?.closeAll()
      this.#front?.tcp?.destroyAll()
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const s = this.#store.current().snapshot
      const front = this.#front!
      const counter = front.tcp ?? this.#pipeline
      this.#log.info({ in_flight: counter.inFlight, grace_ms: s.shutdownTimeoutMs }, 'shutting down')
      this.#pipeline.drain()
      this.#closeListeners(s.shutdownTimeoutMs)
      front.listener?.closeIdle()
      this.#upstreams.stopHealthChecks()
      const grace = new Promise<'timeout'>((resolve) =>
        setTimeout(resolve, s.shutdownTimeoutMs, 'timeout').unref(),
      )
      // Keep-alive connections that finish a response while draining close on their own
      // (`connection: close`); poll for idle ones that were mid-request when we started.
      const sweep = front.listener ? setInterval(() => front.listener!.closeIdle(), 100) : undefined
      const outcome = await Promise.race([counter.idle().then(() => 'drained' as const), grace])
      clearInterval(sweep)
      if (outcome === 'timeout') {
        this.#log.warn({ in_flight: counter.inFlight }, 'grace period over; closing remaining connections')
      }
      front.listener?.closeAll()
      front.tcp?.destroyAll()
      this.#upstreams.destroy()
      this.#middlewares.close()
      this.#o.logging.flush() // access lines of the last requests first, then the final line
      this.#log.info('stopped')
      this.#o.logging.flush()
    })()
    return this.#stopping
  }
}

function sameAddress(server: net.Server, a: HostPort): boolean {
  const cur = server.address()
  return cur !== null && typeof cur === 'object' && a.port !== 0 && cur.port === a.port
}

/** The address actually bound (port 0 in the config means the OS picked one). */
function bound(server: net.Server, configured: HostPort): string {
  const a = server.address()
  const port = a !== null && typeof a === 'object' ? a.port : configured.port
  return formatHostPort({ host: configured.host, port })
}
