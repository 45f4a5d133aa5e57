// Prometheus metrics (prom-client): the five of the guide's Metrics section, with its names and
// labels, plus requests in flight, config reloads and Node's process metrics. Labels carry route
// and upstream *names*, never raw paths, so cardinality stays bounded by the config. The two
// recorded on every request use request-metrics.ts (no label hashing on the hot path); the rest
// are prom-client's own.

import { X509Certificate } from 'node:crypto'
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { FastCounter, FastHistogram, type HistogramSeries } from './request-metrics'
import { DURATION_BUCKETS, Series } from './series'

export { DURATION_BUCKETS }

export interface RequestSample {
  mode: string
  route: string | undefined
  upstream: string | undefined
  status: number
  durationMs: number
  errorType: string | undefined
}

type CounterChild = ReturnType<Counter<string>['labels']>

/** What the gauges read from an upstream group (upstream/group.ts) at scrape time. */
export interface GroupGauges {
  readonly name: string
  readonly peers: Iterable<{
    readonly address: string
    readonly inFlight: number
    available(now: number): boolean
  }>
  /** Its circuit breaker, if it has one: `code` 0 closed, 1 open, 2 half_open. */
  readonly breaker: { readonly code: number } | undefined
}

/**
 * What upstream/ reports per server: each attempt (status 0 when no answer came), retries,
 * passive ejections and active health checks. Held by the upstream groups.
 */
export interface UpstreamMetrics {
  attempt(upstream: string, server: string, status: number, seconds: number): void
  retry(upstream: string): void
  ejection(upstream: string, server: string): void
  healthCheck(upstream: string, server: string, ok: boolean): void
  /** A round of resolving one of the group's dns: or srv: servers that failed (the last set is kept). */
  dnsFailure(upstream: string): void
  /** A mirrored copy's answer (status 0: none came, counted as `error`), by the mirror group. */
  mirror(upstream: string, status: number): void
  /** A copy that was not sent, and why (MirrorDropReason). */
  mirrorDropped(upstream: string, reason: string): void
}

const STATUS_CLASSES = ['error', '1xx', '2xx', '3xx', '4xx', '5xx'] as const

interface ServerSeries {
  duration: HistogramSeries
  /** By status class: index 0 no answer, else the status's first digit. */
  byClass: Array<{ value: number } | undefined>
}

/** The per-server upstream metrics in `registry` (the instance's, or the primary's for health). */
export function upstreamMetrics(registry: Registry): UpstreamMetrics {
  const requests = new FastCounter(
    'locci_upstream_requests_total',
    'Attempts sent to each upstream server (retries included), by status class; error: no answer.',
  )
  const duration = new FastHistogram(
    'locci_upstream_request_duration_seconds',
    'Time from sending an attempt to an upstream server to the end of its answer (or its failure).',
    DURATION_BUCKETS,
  )
  registry.registerMetric(requests as never)
  registry.registerMetric(duration as never)
  const registers = [registry]
  const retries = new Counter({
    name: 'locci_upstream_retries_total',
    help: 'Attempts retried on another server of the group (HTTP, WebSocket handshakes, TCP).',
    labelNames: ['upstream'],
    registers,
  })
  const ejections = new Counter({
    name: 'locci_upstream_ejections_total',
    help: 'Servers taken out of rotation by passive health (consecutive failures).',
    labelNames: ['upstream', 'server'],
    registers,
  })
  const checks = new Counter({
    name: 'locci_health_checks_total',
    help: 'Active health checks, by result: success or failure.',
    labelNames: ['upstream', 'server', 'result'],
    registers,
  })
  const dnsFailures = new Counter({
    name: 'locci_dns_resolution_failures_total',
    help: 'Failed resolutions of dns: and srv: servers (timeout, SERVFAIL, refused); the last good set is kept.',
    labelNames: ['upstream'],
    registers,
  })
  const mirrored = new Counter({
    name: 'locci_mirror_requests_total',
    help: 'Mirrored copies answered, by mirror group and status class; error: no answer (connection error, reset, timeout).',
    labelNames: ['upstream', 'status_class'],
    registers,
  })
  const dropped = new Counter({
    name: 'locci_mirror_dropped_total',
    help: 'Copies not mirrored, by mirror group and reason: max_in_flight, body_too_large, incomplete_body, no_healthy_peer.',
    labelNames: ['upstream', 'reason'],
    registers,
  })
  // upstream -> server -> series: the config's own strings as keys, nothing built per request.
  const cache = new Map<string, Map<string, ServerSeries>>()
  return {
    attempt(upstream, server, status, seconds) {
      let byServer = cache.get(upstream)
      if (byServer === undefined) {
        byServer = new Map()
        cache.set(upstream, byServer)
      }
      let s = byServer.get(server)
      if (s === undefined) {
        s = { duration: duration.series(`${upstream}\0${server}`, () => ({ upstream, server })), byClass: [] }
        byServer.set(server, s)
      }
      const c = status >= 100 && status < 600 ? Math.floor(status / 100) : 0
      let counter = s.byClass[c]
      if (counter === undefined) {
        const status_class = STATUS_CLASSES[c]!
        counter = requests.series(`${upstream}\0${server}\0${status_class}`, () => ({
          upstream,
          server,
          status_class,
        }))
        s.byClass[c] = counter
      }
      counter.value++
      duration.observe(s.duration, seconds)
    },
    retry: (upstream) => retries.labels(upstream).inc(),
    ejection: (upstream, server) => ejections.labels(upstream, server).inc(),
    healthCheck: (upstream, server, ok) => checks.labels(upstream, server, ok ? 'success' : 'failure').inc(),
    dnsFailure: (upstream) => dnsFailures.labels(upstream).inc(),
    // Mirrored copies are a sampled share of traffic, so prom-client's label lookup is cheap enough.
    mirror: (upstream, status) =>
      mirrored
        .labels(upstream, STATUS_CLASSES[status >= 100 && status < 600 ? Math.floor(status / 100) : 0]!)
        .inc(),
    mirrorDropped: (upstream, reason) => dropped.labels(upstream, reason).inc(),
  }
}

export class Metrics {
  readonly registry = new Registry()
  /** The last minutes per 5-second slot, for the dashboard (series.ts). */
  readonly series = new Series()
  /** Per-server upstream metrics, handed to the upstream registry. */
  readonly upstream = upstreamMetrics(this.registry)
  readonly #requests = new FastCounter(
    'locci_requests_total',
    'Requests answered, by mode, route, upstream group and status code.',
  )
  readonly #duration = new FastHistogram(
    'locci_request_duration_seconds',
    'Time from a request arriving to its response being handed to the client.',
    DURATION_BUCKETS,
  )
  readonly #errors: Counter<'mode' | 'error_type'>
  readonly #reloads: Counter<'result'>
  readonly #errorChildren = new Map<string, CounterChild>()
  readonly #cache = new Map<
    string,
    Map<string, Map<string, { duration: HistogramSeries; byStatus: Map<number, { value: number }> }>>
  >()

  /** `groups` is read at scrape time for the health and connection gauges. */
  constructor(groups: () => Iterable<GroupGauges>, inFlight: () => number) {
    const registers = [this.registry]
    this.registry.registerMetric(this.#requests as never)
    this.registry.registerMetric(this.#duration as never)
    this.#errors = new Counter({
      name: 'locci_errors_total',
      help: 'Requests that ended in an error, by mode and error type (the log line error_type).',
      labelNames: ['mode', 'error_type'],
      registers,
    })
    new Gauge({
      name: 'locci_requests_in_flight',
      help: 'Requests being handled now.',
      registers,
      collect() {
        this.set(inFlight())
      },
    })
    this.#reloads = new Counter({
      name: 'locci_config_reloads_total',
      help: 'Config reloads (SIGHUP, POST /api/v1/reload), by result: success or failure.',
      labelNames: ['result'],
      registers,
    })
    this.#reloads.labels('success').inc(0)
    this.#reloads.labels('failure').inc(0)
    new Gauge({
      name: 'locci_upstream_health',
      help: 'Whether an upstream server is in rotation: 1 healthy (active checks) and not ejected, else 0.',
      labelNames: ['upstream', 'server'],
      registers,
      // With several workers: in rotation if it is in rotation anywhere (not a sum).
      aggregator: 'max',
      collect() {
        this.reset()
        const now = Date.now()
        for (const g of groups()) {
          for (const p of g.peers) this.labels(g.name, p.address).set(p.available(now) ? 1 : 0)
        }
      },
    })
    new Gauge({
      name: 'locci_active_connections',
      help: 'Requests (or TCP connections) in flight to each upstream group.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset()
        for (const g of groups()) {
          let n = 0
          for (const p of g.peers) n += p.inFlight
          this.labels(g.name).set(n)
        }
      },
    })
    new Gauge({
      name: 'locci_circuit_breaker_state',
      help: 'Circuit breaker of each upstream group that has one: 0 closed, 1 open, 2 half_open.',
      labelNames: ['upstream'],
      registers,
      // With several workers, each follows the primary's breaker: they agree but for a moment
      // after a transition, when the highest code shows the one that has not heard yet.
      aggregator: 'max',
      collect() {
        this.reset()
        for (const g of groups()) if (g.breaker) this.labels(g.name).set(g.breaker.code)
      },
    })
    collectDefaultMetrics({ register: this.registry })
    // prom-client names these gauges *_total, which Prometheus reserves for counters
    // (promtool check metrics flags them); the rest of the process metrics stay.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      this.registry.removeSingleMetric(name)
    }
  }

  record(s: RequestSample): void {
    // Nested maps on the config's own strings (their hashes are cached) and the numeric status:
    // no key strings are built per request.
    let byRoute = this.#cache.get(s.mode)
    if (byRoute === undefined) {
      byRoute = new Map()
      this.#cache.set(s.mode, byRoute)
    }
    const route = s.route ?? ''
    let byUpstream = byRoute.get(route)
    if (byUpstream === undefined) {
      byUpstream = new Map()
      byRoute.set(route, byUpstream)
    }
    const upstream = s.upstream ?? ''
    let entry = byUpstream.get(upstream)
    if (entry === undefined) {
      const labels = { mode: s.mode, route, upstream }
      entry = {
        duration: this.#duration.series(`${s.mode}\0${route}\0${upstream}`, () => labels),
        byStatus: new Map(),
      }
      byUpstream.set(upstream, entry)
    }
    let counter = entry.byStatus.get(s.status)
    if (counter === undefined) {
      const status = String(s.status)
      counter = this.#requests.series(`${s.mode}\0${route}\0${upstream}\0${status}`, () => ({
        mode: s.mode,
        route,
        upstream,
        status,
      }))
      entry.byStatus.set(s.status, counter)
    }
    counter.value++
    this.#duration.observe(entry.duration, s.durationMs / 1000)
    this.series.record(s.route, s.status, s.errorType !== undefined, s.durationMs)
    if (s.errorType !== undefined) {
      const ekey = `${s.mode}\0${s.errorType}`
      let e = this.#errorChildren.get(ekey)
      if (e === undefined) {
        e = this.#errors.labels(s.mode, s.errorType)
        this.#errorChildren.set(ekey, e)
      }
      e.inc()
    }
  }

  /** Errors that are not requests (a bad request line, a Redis outage): counted, not timed. */
  error(mode: string, errorType: string): void {
    this.#errors.labels(mode, errorType).inc()
  }

  reload(result: 'success' | 'failure'): void {
    this.#reloads.labels(result).inc()
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}

/**
 * locci_tls_certificate_expiry_seconds{name}: the notAfter (Unix time) of each certificate the
 * TLS listener serves, static or obtained by ACME, one series per name it covers (as the
 * blackbox exporter's probe_ssl_earliest_cert_expiry). Alert on `... - time() < 14 * 86400`.
 */
export function certificateExpiryGauge(
  registry: Registry,
  certificates: () => Iterable<{ readonly names: readonly string[]; readonly cert: string }>,
): void {
  // Read once per certificate object (they are replaced, not changed, on reload or renewal).
  const notAfter = new WeakMap<object, number>()
  new Gauge({
    name: 'locci_tls_certificate_expiry_seconds',
    help: 'When each served TLS certificate expires (notAfter, Unix seconds), by name.',
    labelNames: ['name'],
    registers: [registry],
    // Every worker serves the same certificates: the same value, not a sum.
    aggregator: 'max',
    collect() {
      this.reset()
      for (const c of certificates()) {
        let t = notAfter.get(c)
        if (t === undefined) {
          t = Math.floor(Date.parse(new X509Certificate(c.cert).validTo) / 1000)
          notAfter.set(c, t)
        }
        for (const name of c.names) this.labels(name).set(t)
      }
    },
  })
}
