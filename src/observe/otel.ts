// The OpenTelemetry SDK side of tracing, loaded (require) by tracing.ts only when tracing is on,
// so a proxy without tracing never loads @opentelemetry/*. No global provider, propagator or
// context manager is registered: every span's parent is passed explicitly, which keeps the cost
// to the spans themselves (no AsyncLocalStorage on the request path).
//
// Spans per request: a SERVER span named `METHOD route` (or `METHOD` without a route); under it
// one INTERNAL span per middleware that waits (JWKS fetch, Redis rate limit, forward auth: any
// middleware that returns a Promise) and one CLIENT span per upstream attempt, whose context the
// upstream receives as `traceparent` (and `tracestate`).

import { context as apiContext, type Context, type Span, type Tracer, trace } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base'
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_PATH,
} from '@opentelemetry/semantic-conventions'
import type { Logger } from './logger'
import type { TracingSettings } from './tracing'

const SERVER = 1 // SpanKind.SERVER
const CLIENT = 2 // SpanKind.CLIENT
const ERROR = 2 // SpanStatusCode.ERROR

/** A client header longer than this is not a W3C traceparent (55 characters in version 00). */
const MAX_TRACEPARENT = 512

const propagator = new W3CTraceContextPropagator()

/** Reads the two W3C headers from a raw (name, value, ...) header list. */
const rawGetter = {
  keys: (raw: readonly string[]): string[] => raw.filter((_, i) => i % 2 === 0),
  get(raw: readonly string[], key: string): string | undefined {
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.length === key.length && raw[i]!.toLowerCase() === key) {
        const v = raw[i + 1]!
        return key === 'traceparent' && v.length > MAX_TRACEPARENT ? undefined : v
      }
    }
    return undefined
  },
}

export class OtelTracer {
  readonly #provider: BasicTracerProvider
  readonly #tracer: Tracer

  constructor(s: TracingSettings, log: Logger) {
    const root: Sampler = new TraceIdRatioBasedSampler(s.ratio)
    const { OTLPTraceExporter } = (
      s.protocol === 'http/json'
        ? require('@opentelemetry/exporter-trace-otlp-http')
        : require('@opentelemetry/exporter-trace-otlp-proto')
    ) as typeof import('@opentelemetry/exporter-trace-otlp-http')
    const exporter = new OTLPTraceExporter({ url: s.endpoint, timeoutMillis: 10_000 })
    let reported = 0
    const processor = new BatchSpanProcessor(
      {
        export: (spans, done) =>
          exporter.export(spans, (r) => {
            // A receiver that is down is said once a minute, never fatal; the spans are dropped.
            if (r.code !== 0 && Date.now() - reported > 60_000) {
              reported = Date.now()
              log.warn({ endpoint: s.endpoint, err: r.error?.message }, 'trace export failed')
            }
            done(r)
          }),
        shutdown: () => exporter.shutdown(),
        forceFlush: () => exporter.forceFlush(),
      },
      // OTEL_BSP_* apply; by default at most 2048 spans wait for export and more are dropped
      // (the receiver is down or slow): memory stays bounded.
    )
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: s.serviceName,
        [ATTR_SERVICE_VERSION]: s.serviceVersion,
        // Each worker exports its own spans: the pid tells them apart.
        'process.pid': process.pid,
      }),
      sampler: s.parentBased ? new ParentBasedSampler({ root }) : root,
      spanProcessors: [processor],
    })
    this.#tracer = this.#provider.getTracer('locci-proxy', s.serviceVersion)
  }

  /** The SERVER span of a request, child of the client's traceparent when it sent a valid one. */
  server(rawHeaders: readonly string[], method: string, host: string | undefined, start: number): ServerSpan {
    const parent = propagator.extract(apiContext.active(), rawHeaders, rawGetter)
    const span = this.#tracer.startSpan(
      method,
      { kind: SERVER, startTime: start, attributes: { [ATTR_HTTP_REQUEST_METHOD]: method } },
      parent,
    )
    if (host !== undefined) span.setAttribute(ATTR_SERVER_ADDRESS, hostOnly(host))
    return new ServerSpan(this.#tracer, span)
  }

  /** Exports what is queued, then stops; gives up after `deadlineMs`. */
  async shutdown(deadlineMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs)
      timer.unref()
    })
    await Promise.race([this.#provider.shutdown().catch(() => undefined), deadline])
    clearTimeout(timer)
  }
}

export class ServerSpan {
  readonly #tracer: Tracer
  readonly #span: Span
  readonly #ctx: Context
  readonly traceId: string

  constructor(tracer: Tracer, span: Span) {
    this.#tracer = tracer
    this.#span = span
    this.#ctx = trace.setSpan(apiContext.active(), span)
    this.traceId = span.spanContext().traceId
  }

  routed(method: string, path: string, route: string | undefined, upstream: string): void {
    const s = this.#span
    s.setAttribute(ATTR_URL_PATH, path)
    if (route !== undefined) {
      s.updateName(`${method} ${route}`)
      s.setAttribute(ATTR_HTTP_ROUTE, route)
    }
    if (upstream !== '') s.setAttribute('locci.upstream', upstream)
  }

  /** A middleware that waits; the returned function ends its span (`failed`: its error type). */
  middleware(name: string, start: number): (failed: string | undefined) => void {
    const span = this.#tracer.startSpan(
      `middleware ${name}`,
      { startTime: start, attributes: { 'locci.middleware': name } },
      this.#ctx,
    )
    return (failed) => {
      if (failed !== undefined) {
        span.setAttribute(ATTR_ERROR_TYPE, failed)
        span.setStatus({ code: ERROR })
      }
      span.end()
    }
  }

  /** A CLIENT span for one upstream attempt, and the traceparent the upstream is sent. */
  attempt(method: string, upstream: string, host: string, port: number): AttemptSpan {
    const span = this.#tracer.startSpan(
      method,
      {
        kind: CLIENT,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: method,
          [ATTR_SERVER_ADDRESS]: host,
          [ATTR_SERVER_PORT]: port,
          [ATTR_NETWORK_PEER_ADDRESS]: host,
          [ATTR_NETWORK_PEER_PORT]: port,
          'locci.upstream': upstream,
        },
      },
      this.#ctx,
    )
    return new AttemptSpan(span)
  }

  end(status: number, errorType: string | undefined): void {
    const s = this.#span
    if (status > 0) s.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
    // Semantic conventions: a SERVER span is an error for 5xx (and failures with no status), not 4xx.
    if (status >= 500 || status === 0) {
      s.setAttribute(ATTR_ERROR_TYPE, errorType ?? String(status))
      s.setStatus({ code: ERROR })
    }
    s.end()
  }
}

export class AttemptSpan {
  readonly #span: Span
  readonly traceparent: string
  readonly tracestate: string | undefined

  constructor(span: Span) {
    this.#span = span
    const c = span.spanContext()
    this.traceparent = `00-${c.traceId}-${c.spanId}-0${(c.traceFlags & 1).toString(16)}`
    this.tracestate = c.traceState?.serialize() || undefined
  }

  /** `status`: the answer's (0 if none came); `errorType`: why the attempt failed, if it did. */
  end(status: number, errorType: string | undefined): void {
    const s = this.#span
    if (status > 0) s.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
    if (errorType !== undefined || status >= 500) {
      s.setAttribute(ATTR_ERROR_TYPE, errorType ?? String(status))
      s.setStatus({ code: ERROR })
    }
    s.end()
  }
}

/** `example.com:8443` -> `example.com`, `[::1]:80` -> `::1`. */
function hostOnly(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end > 0 ? host.slice(1, end) : host
  }
  const colon = host.lastIndexOf(':')
  return colon > 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host
}
