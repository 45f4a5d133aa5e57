// One running proxy process: it owns the snapshot store and everything live (upstream pools and
// health, middleware state, listeners, the control API) and changes them only by building a new
// snapshot and swapping it in: on reload (SIGHUP, POST /api/v1/reload) and on control-API
// changes. In-flight requests finish on the snapshot they started with. Graceful shutdown on
// SIGTERM/SIGINT: stop accepting, finish in-flight requests within server.shutdown_timeout_secs.

import cluster from 'node:cluster'
import { X509Certificate } from 'node:crypto'
import type http from 'node:http'
import type net from 'node:net'
import path from 'node:path'
import { formatHostPort, type HostPort } from '../config/address'
import type { Overrides } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { ChangeOp } from '../config/mutations'
import { formatProblem } from '../config/problems'
import { ChangeRefused } from '../config/refused'
import { EMPTY_LAYER } from '../config/runtime-layer'
import type { Snapshot } from '../config/snapshot'
import { type CachePurge, type ControlActions, createControlServer } from '../control/api'
import type { DashboardData } from '../control/dashboard'
import { MiddlewareRegistry } from '../middleware/registry'
import { queuedWritesMade } from '../net/direct-write'
import { AccessLog } from '../observe/access-log'
import type { LoggerHandle } from '../observe/logger'
import { certificateExpiryGauge, Metrics } from '../observe/metrics'
import { Tracing } from '../observe/tracing'
import { Pipeline } from '../proxy/pipeline'
import { compilePlan, type Plan, RuntimeStore } from '../proxy/runtime'
import { explain } from '../routing/explain'
import type { UpstreamClient } from '../upstream/client'
import { UpstreamRegistry } from '../upstream/registry'
import { AcmeManager, AcmeMirror, acmeChange } from './acme'
import { sharedAcmeStore } from './acme-redis'
import type { SharedStart, StoreStatus } from './config-store'
import { ConfigKeeper, type ReloadResult } from './keeper'
import { createListener, createRedirectListener, type ListenerHandle, listen } from './listener'
import { createOpsServer, type ReadinessView } from './ops'
import { LocalOwner, type Owner, PrimaryOwner } from './owner'
import type { ChangeResult, MetricsText, ToPrimary, ToWorker } from './protocol'
import type { Rpc } from './rpc'
import { batchedTakes } from './take-batch'
import { TcpProxy } from './tcp'

export interface StartOptions {
  file: string
  overrides: Overrides
  env: NodeJS.ProcessEnv
  version: string
  logging: LoggerHandle
  /** Set in a worker: the channel to the primary, which owns instance-wide state. */
  primary?: Rpc<ToPrimary, ToWorker>
  /** The upstream HTTP/1.1 client (LOCCI_UPSTREAM_CLIENT, upstream/client.ts). */
  upstreamClient: UpstreamClient
  /** config_store, in the process that owns the config (not in a worker: its primary has it). */
  shared?: SharedStart
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
  readonly #store: RuntimeStore
  readonly #upstreams: UpstreamRegistry
  readonly #middlewares: MiddlewareRegistry
  readonly #metrics: Metrics
  readonly #pipeline: Pipeline
  readonly #access: AccessLog
  /** OpenTelemetry: each process (each worker) exports its own spans. */
  readonly #tracing: Tracing
  readonly #startedAt = Date.now()
  #front: Front | undefined
  #control: { key: string; server: http.Server } | undefined
  #redirect: { key: string; server: http.Server } | undefined
  /** server.ops_bind_address: probes and /metrics without a key (ops.ts). */
  #ops: { key: string; server: http.Server } | undefined
  #started = false
  /** Config changes and the metrics sum: this process, or (in a worker) the primary. */
  readonly #owner: Owner
  #lastReload: { at: string; result: string } | undefined
  /** config_store as the owner of the config sees it (a worker hears it from its primary). */
  #storeStatus: () => StoreStatus | undefined = () => undefined
  #stopping: Promise<void> | undefined
  /** server.tls.acme: the manager of the settings it was made for (a change makes a new one). */
  #acme: { key: string; manager: AcmeManager | AcmeMirror } | undefined

  private constructor(o: StartOptions, plan: Plan, text: string) {
    this.#o = o
    this.#log = o.logging.logger
    const link = o.primary
    // In a worker the primary runs the health checks and holds the memory rate-limit buckets.
    this.#metrics = new Metrics(
      () => this.#store.current().groups.values(),
      () => (this.#front?.tcp ?? this.#pipeline).inFlight,
    )
    this.#upstreams = new UpstreamRegistry(this.#log, undefined, {
      healthChecks: !link,
      client: o.upstreamClient.kind,
      metrics: this.#metrics.upstream,
      // The primary holds the circuit breakers: one state for the instance.
      ...(link
        ? {
            breakerLink: (_group: string, key: string) => ({
              report: (batch) => link.emit('breaker-outcomes', { key, batch }),
              probe: () => link.request('breaker-probe', { key }),
            }),
          }
        : {}),
    })
    this.#middlewares = new MiddlewareRegistry(
      this.#log,
      (type) => this.#countError(type),
      link && batchedTakes((batch) => link.request('takes', batch)),
    )
    const { snapshot } = plan
    this.#store = new RuntimeStore({
      ...plan,
      groups: this.#upstreams.build(snapshot),
      chains: this.#middlewares.build(snapshot, plan.middlewares),
    })
    certificateExpiryGauge(this.#metrics.registry, () => this.#servedCertificates())
    const access = new AccessLog(o.logging, this.#metrics, () => this.#store.current().snapshot.mode.kind)
    access.configure(snapshot.logging.access)
    this.#access = access
    this.#tracing = new Tracing(this.#log, o.env, o.version)
    this.#tracing.configure(snapshot.tracing)
    this.#pipeline = new Pipeline({ store: this.#store, log: this.#log, access, tracing: this.#tracing })
    if (link) {
      const owner = new PrimaryOwner(link)
      link
        .on('apply', (m) => owner.applied(m.unsaved, () => this.#applyFromPrimary(m.text)))
        .on('health', (h) => this.#upstreams.setHealth(h.group, h.address, h.healthy))
        .on('breaker', (e) => this.#upstreams.setBreaker(e))
        .on('metrics-json', () => this.#metrics.registry.getMetricsAsJSON())
        .on('series-local', () => this.#metrics.series.data())
        .on('purge-local', (m) => this.#middlewares.purge(m))
        .on('store-status', (s) => {
          this.#storeStatus = () => s
        })
        .on('acme-certificate', (c) => this.#mirror()?.setCertificate(c))
        .on('acme-status', (s) => this.#mirror()?.setStatus(s))
        .on('acme-challenge', (c) => this.#mirror()?.setChallenge(c))
      this.#owner = owner
    } else {
      const keeper = new ConfigKeeper(
        {
          file: o.file,
          env: o.env,
          overrides: o.overrides,
          log: this.#log,
          apply: (next) => this.#install(next),
          store: o.shared?.store,
          layered: o.shared?.layered,
          onReload: (result) => {
            this.#metrics.reload(result)
            this.#lastReload = { at: new Date().toISOString(), result }
          },
        },
        plan,
        text,
      )
      this.#owner = new LocalOwner(keeper, this.#metrics, (m) => this.#middlewares.purge(m))
    }
  }

  /** config_store: follow the shared runtime layer once this instance serves (single process). */
  #follow(): void {
    const shared = this.#o.shared
    if (!shared || !(this.#owner instanceof LocalOwner)) return
    const keeper = this.#owner.keeper
    this.#storeStatus = () => shared.store.status()
    shared.store.start(
      shared.layered?.layer ?? EMPTY_LAYER,
      (layer) => keeper.applyShared(layer),
      () => {
        const u = this.urls()
        return { listener: u.bind, control_api: u.control_api }
      },
    )
  }

  /** A config the primary validated: apply it as it is (every worker gets the same text). */
  async #applyFromPrimary(text: string): Promise<void> {
    const r = compilePlan(parseConfigText(this.#o.file, text, this.#o.env), this.#o.overrides)
    if (!r.ok)
      throw new ChangeRefused('invalid', 'invalid configuration', { problems: r.problems.map(formatProblem) })
    await this.#install(r.plan)
  }

  static async start(o: StartOptions, plan: Plan, text: string): Promise<ProxyInstance> {
    const { snapshot } = plan
    const inst = new ProxyInstance(o, plan, text)
    try {
      await inst.#bind(snapshot)
    } catch (err) {
      inst.#closeListeners(0)
      inst.#closeOps()
      inst.#middlewares.close()
      inst.#upstreams.destroy()
      throw err
    }
    const rt = inst.#store.current()
    inst.#upstreams.activate(snapshot, rt.groups as Map<string, never>)
    inst.#syncAcme(snapshot)
    // dns: and srv: servers: serve with their first answers (a failure or an empty answer waits no longer).
    await inst.#upstreams.discovered()
    inst.#started = true
    inst.#logListening(snapshot)
    inst.#follow()
    return inst
  }

  /**
   * Starts, replaces or stops the ACME manager when server.tls.acme changes. After the listeners
   * are bound: HTTP-01 and TLS-ALPN-01 challenges are answered by them. Stored certificates carry
   * over (the new manager reads them from storage_dir).
   */
  #syncAcme(s: Snapshot): void {
    const change = acmeChange(this.#acme, s.tls?.acme)
    if (!change) return
    this.#acme = undefined
    const { key, spec } = change
    if (!spec) return
    const link = this.#o.primary
    if (link) {
      // A worker: the primary orders and sends what to serve (primary.ts).
      const mirror = new AcmeMirror(spec, (host) => link.request('acme-on-demand', { host }))
      this.#acme = { key, manager: mirror }
      link.request('acme-state', undefined).then(
        (st) => {
          for (const c of st.certificates) mirror.setCertificate(c)
          for (const c of st.challenges) mirror.setChallenge(c)
          mirror.setStatus(st.status)
        },
        (err: Error) => this.#log.error({ err: err.message }, 'ACME state from the primary failed'),
      )
      return
    }
    const manager = new AcmeManager(spec, this.#log, {}, sharedAcmeStore(spec, this.#log))
    this.#acme = { key, manager }
    manager.start()
  }

  #mirror(): AcmeMirror | undefined {
    const m = this.#acme?.manager
    return m instanceof AcmeMirror ? m : undefined
  }

  /** Every certificate the TLS listener serves, static and ACME (for the expiry gauge). */
  *#servedCertificates(): Iterable<{ names: readonly string[]; cert: string }> {
    const t = this.#store.current().snapshot.tls
    if (!t) return
    yield* t.certificates
    for (const c of this.#acme?.manager.certificates() ?? []) yield { names: [c.name], cert: c.cert }
  }

  /** An error that is not a whole request (bad request line, Redis fail-open, TCP failure). */
  #countError(type: string): void {
    this.#metrics.error(this.#store.current().snapshot.mode.kind, type)
  }

  get metrics(): Metrics {
    return this.#metrics
  }

  /** Where this instance listens (port 0 in the config is the port the OS picked). */
  urls(): { bind: string; control_api: string | null; ops: string | null } {
    const s = this.#store.current().snapshot
    const f = this.#front!
    return {
      bind: `${f.tcp ? 'tcp' : s.tls ? 'https' : 'http'}://${bound(f.server, s.bind)}`,
      control_api: this.#control ? `http://${bound(this.#control.server, s.controlApi.bind)}` : null,
      ops: this.#ops && s.ops ? `http://${bound(this.#ops.server, s.ops)}` : null,
    }
  }

  /** What /readyz on the ops listener looks at. */
  #readiness(): ReadinessView {
    const rt = this.#store.current()
    const phase = this.#stopping ? 'draining' : this.#started ? 'running' : 'starting'
    return { phase, groups: rt.groups, activeUpstreams: rt.snapshot.activeUpstreams }
  }

  #logListening(s: Snapshot): void {
    this.#log.info(
      {
        mode: s.mode.kind,
        ...this.urls(),
        ...(this.#redirect
          ? { redirect_http: `http://${bound(this.#redirect.server, s.redirectHttp!)}` }
          : {}),
        ...(s.tls ? { http2: s.tls.http2 } : {}),
        ...(this.#front?.listener?.http1Server ? { http1_server: this.#front.listener.http1Server } : {}),
        upstreams: s.activeUpstreams,
        upstream_client: this.#o.upstreamClient.kind,
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
   * Binds what `s` needs and differs from what is bound now: the ops listener (first, so that
   * /readyz says `starting` until the rest is up), the front listener, the redirect listener,
   * the control API. New addresses are bound before anything is closed, so a failure leaves the
   * running config untouched; the same address must be released first.
   */
  async #bind(s: Snapshot): Promise<{ retired: Front | undefined }> {
    await this.#bindOps(s)
    const frontKey = JSON.stringify({
      bind: s.bind,
      protocol: s.mode.kind === 'load_balancer' ? s.mode.protocol : 'http',
      tls: s.tls ? [s.tls.http2, s.tls.minVersion, s.tls.acme?.challenge] : null,
      // Another kind of listener (server/listener.ts): a reload that turns it on or off rebinds.
      h2c: s.h2c,
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
          this.#access,
          () => this.#acme?.manager,
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
        const server = createControlServer({
          current: () => this.#store.current(),
          log: this.#log,
          actions: this,
        })
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

  /** The ops listener, (re)bound when its address changes; the old one takes no new connections. */
  async #bindOps(s: Snapshot): Promise<void> {
    const key = s.ops ? formatHostPort(s.ops) : ''
    if ((this.#ops?.key ?? '') === key) return
    const old = this.#ops
    if (s.ops) {
      const server = createOpsServer({
        readiness: () => this.#readiness(),
        metricsText: () => this.metricsText(),
        log: this.#log,
      })
      if (old && sameAddress(old.server, s.ops)) {
        old.server.close()
        this.#ops = undefined
      }
      await listen(server, s.ops.host, s.ops.port) // on failure the old one stays, if it can
      this.#ops = { key, server }
    } else {
      this.#ops = undefined
    }
    if (old) {
      old.server.close()
      setTimeout(() => old.server.closeAllConnections(), 1000).unref()
    }
  }

  #makeFront(s: Snapshot, key: string): Front {
    if (s.mode.kind === 'load_balancer' && s.mode.protocol === 'tcp') {
      const tcp = new TcpProxy(this.#store, this.#log, (type) => this.#countError(type))
      return { key, server: tcp.server, listener: undefined, tcp }
    }
    const listener = createListener(
      s,
      this.#pipeline.handle,
      this.#pipeline.upgrade,
      this.#log,
      (type) => this.#countError(type),
      () => this.#acme?.manager,
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

  /** Makes a validated plan live: listeners, pools, chains, one swap. */
  async #install(plan: Plan): Promise<void> {
    const prev = this.#store.current().snapshot
    const next = plan.snapshot
    const refuse = (err: Error) =>
      new ChangeRefused('invalid', 'invalid configuration', { problems: [`${this.#o.file}: ${err.message}`] })
    try {
      this.#access.configure(next.logging.access)
    } catch (err) {
      throw refuse(err as Error)
    }
    const { retired } = await this.#bind(next).catch((err: Error) => {
      this.#access.configure(prev.logging.access)
      throw refuse(err)
    })
    const groups = this.#upstreams.build(next)
    const chains = this.#middlewares.build(next, plan.middlewares)
    this.#store.swap({ ...plan, groups, chains })
    this.#upstreams.activate(next, groups)
    this.#syncAcme(next)
    this.#tracing.configure(next.tracing)
    if (retired) this.#retire(retired, next.shutdownTimeoutMs)
    if (next.logging.level !== prev.logging.level) this.#log.level = next.logging.level
    if (next.logging.format !== prev.logging.format || next.workers !== prev.workers) {
      this.#log.warn(
        { setting: next.workers !== prev.workers ? 'server.workers' : 'logging.format' },
        'this setting takes effect at the next restart',
      )
    }
  }

  reload(): Promise<ReloadResult> {
    return this.#owner.reload()
  }

  /** SIGUSR1: reopen the access log file (logrotate moved it away). */
  reopenLogs(): void {
    this.#access.reopen()
    this.#log.info({ signal: 'SIGUSR1' }, 'access log reopened')
  }

  change(c: ChangeOp, ifRevision?: number): Promise<ChangeResult> {
    return this.#owner.change(c, ifRevision)
  }

  metricsText(): Promise<MetricsText> {
    return this.#owner.metricsText()
  }

  status(): Record<string, unknown> {
    const s = this.#store.current().snapshot
    return {
      status: 'running',
      mode: s.mode.kind,
      lb_enabled: s.mode.kind === 'load_balancer',
      gateway_enabled: s.mode.kind === 'api_gateway',
      version: this.#o.version,
      pid: process.pid,
      workers: s.workers,
      uptime_secs: Math.round((Date.now() - this.#startedAt) / 1000),
      config_file: path.resolve(s.file),
      persist: s.raw.control_api.persist,
      ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}),
      unsaved_changes: this.#owner.unsaved,
      store: this.#storeStatus() ?? null,
      last_reload: this.#lastReload ?? null,
      requests_in_flight: (this.#front?.tcp ?? this.#pipeline).inFlight,
      ...(s.tls ? { tls_certificates: this.#certificateStatus(s.tls) } : {}),
    }
  }

  dashboard(): Promise<DashboardData> {
    return this.#owner.dashboard()
  }

  /** Per name: where the certificate comes from, its issuer and expiry, the last ACME result. */
  #certificateStatus(t: NonNullable<Snapshot['tls']>): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = t.certificates.flatMap((c) => {
      const x = new X509Certificate(c.cert)
      const issuer = /(?:^|\n)CN=([^\n]+)/.exec(x.issuer)?.[1] ?? x.issuer
      const notAfter = new Date(x.validTo).toISOString()
      return c.names.map((name) => ({
        name,
        source: 'file',
        issuer,
        not_after: notAfter,
        last_renewal: null,
      }))
    })
    for (const a of this.#acme?.manager.status() ?? []) out.push({ ...a, source: 'acme' })
    return out
  }

  async purgeCache(m: CachePurge): Promise<{ purged: number }> {
    return { purged: await this.#owner.purgeCache(m) }
  }

  explain(method: string, url: string, headers: string[]) {
    const rt = this.#store.current()
    return explain(rt, rt.groups, method, url, headers)
  }

  /** Probes are answered (readyz: draining) until the very end of a shutdown. */
  #closeOps(): void {
    this.#ops?.server.close()
    this.#ops?.server.closeAllConnections()
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
      if (this.#owner instanceof LocalOwner) this.#owner.keeper.close() // no reload while draining
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
      // The last answers may be queued for the end of this turn (net/direct-write.ts).
      await queuedWritesMade()
      front.listener?.closeAll()
      front.tcp?.destroyAll()
      this.#closeOps()
      this.#acme?.manager.close()
      this.#upstreams.destroy()
      this.#middlewares.close()
      await this.#o.shared?.store.close()
      this.#access.flush()
      await this.#tracing.shutdown() // the last spans, within a deadline
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
