// One request's trace: its OpenTelemetry spans (tracing on) and/or the routing summary sent back
// as X-Locci-Trace (the client sent debug_header with its secret). Made by the pipeline only
// when one of the two is wanted; otherwise a request carries `trace: undefined` and pays nothing.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { Snapshot } from '../config/snapshot'
import type { ChainObserver, MiddlewareResult } from '../middleware/types'
import type { RequestEnd } from '../observe/access-log'
import { ERRORS } from '../observe/errors'
import type { AttemptSpan, OtelTracer, ServerSpan } from '../observe/otel'
import type { Peer } from '../upstream/peer'

export const TRACE_HEADER = 'x-locci-trace'
/** X-Locci-Trace is cut at this length (a proxy in front may refuse long headers). */
export const MAX_TRACE_HEADER = 1024

/** Whether `raw` carries the debug header with exactly the configured secret. */
export function debugRequested(raw: readonly string[], debug: NonNullable<Snapshot['debugHeader']>): boolean {
  const name = debug.name
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) {
      // Digests of equal length compared in constant time: neither the secret's content nor its
      // length shows in the timing.
      const got = createHash('sha256')
        .update(raw[i + 1]!)
        .digest()
      return timingSafeEqual(got, Buffer.from(debug.digest, 'hex'))
    }
  }
  return false
}

interface AttemptRecord {
  peer: string
  start: number
  outcome: string | undefined
  ms: number
}

export class RequestTrace implements ChainObserver, RequestEnd {
  readonly traceId: string | undefined
  readonly #server: ServerSpan | undefined
  readonly #start: number
  #attempt: AttemptSpan | undefined
  /** The X-Locci-Trace record; undefined when it was not asked for. */
  readonly #debug: { route: string; upstream: string; mw: string[]; attempts: AttemptRecord[] } | undefined
  #ended = false

  constructor(
    tracer: OtelTracer | undefined,
    debug: boolean,
    raw: readonly string[],
    method: string,
    host: string | undefined,
    start: number,
  ) {
    this.#start = start
    this.#server = tracer?.server(raw, method, host, start)
    this.traceId = this.#server?.traceId
    this.#debug = debug ? { route: '-', upstream: '-', mw: [], attempts: [] } : undefined
  }

  /** The routing decision (route undefined in load_balancer mode or before a route matched). */
  routed(method: string, path: string, route: string | undefined, upstream: string): void {
    this.#server?.routed(method, path, route, upstream)
    if (this.#debug !== undefined) {
      if (route !== undefined) this.#debug.route = route
      if (upstream !== '') this.#debug.upstream = upstream
    }
  }

  ran(name: string, start: number, result: MiddlewareResult | Error): void {
    this.#debug?.mw.push(`${name}:${verdict(result)}@${ms(start)}ms`)
  }

  waits(name: string, start: number): (result: MiddlewareResult | Error) => void {
    const end = this.#server?.middleware(name, start)
    return (result) => {
      // A refusal (401, 429) is the middleware doing its job; its service failing is an error.
      end?.(
        result instanceof Error
          ? 'internal'
          : result?.kind !== undefined && ERRORS[result.kind].status >= 500
            ? ERRORS[result.kind].label
            : undefined,
      )
      this.ran(name, start, result)
    }
  }

  /** An upstream attempt on `peer` starts: its span's traceparent goes in `headers`. */
  attemptStart(peer: Peer, method: string, upstream: string, headers: string[]): void {
    if (this.#server !== undefined) {
      const a = this.#server.attempt(method, upstream, peer.host, peer.port)
      this.#attempt = a
      setHeader(headers, 'traceparent', a.traceparent)
      if (a.tracestate !== undefined) setHeader(headers, 'tracestate', a.tracestate)
      else removeHeader(headers, 'tracestate')
    }
    this.#debug?.attempts.push({ peer: peer.address, start: performance.now(), outcome: undefined, ms: 0 })
  }

  /** The current attempt is over: `status` its answer's (0: none), `errorType` why it failed. */
  attemptEnd(status: number, errorType: string | undefined): void {
    this.#attempt?.end(status, errorType)
    this.#attempt = undefined
    const a = this.#debug?.attempts.at(-1)
    if (a !== undefined && a.outcome === undefined) {
      a.outcome = errorType ?? String(status)
      a.ms = ms(a.start)
    }
  }

  /**
   * The response's extra headers plus X-Locci-Trace when it was asked for; `current` is the
   * outcome of the attempt still open (its status, or why there is no answer).
   */
  responseHeaders(
    extra: readonly string[] | undefined,
    current: string | undefined,
  ): readonly string[] | undefined {
    if (this.#debug === undefined) return extra
    const summary = this.#summary(current)
    return extra === undefined ? [TRACE_HEADER, summary] : [...extra, TRACE_HEADER, summary]
  }

  #summary(current: string | undefined): string {
    const d = this.#debug!
    const attempts = d.attempts.map(
      (a) => `${a.peer}:${a.outcome ?? current ?? '-'}@${a.outcome === undefined ? ms(a.start) : a.ms}ms`,
    )
    const s =
      `route=${safe(d.route)}; mw=${d.mw.length === 0 ? '-' : d.mw.map(safe).join(',')}; ` +
      `upstream=${safe(d.upstream)}; attempts=${attempts.length === 0 ? '-' : attempts.join(',')}; ` +
      `total=${ms(this.#start)}ms`
    return s.length <= MAX_TRACE_HEADER ? s : `${s.slice(0, MAX_TRACE_HEADER - 3)}...`
  }

  end(status: number, errorType: string | undefined): void {
    if (this.#ended) return
    this.#ended = true
    // An attempt still open (the client left, the exchange ended some other way) ends with it.
    if (this.#attempt !== undefined) this.attemptEnd(0, errorType ?? 'aborted')
    this.#server?.end(status, errorType)
  }
}

function verdict(r: MiddlewareResult | Error): string {
  if (r === undefined) return 'pass'
  if (r instanceof Error) return 'error'
  return String(r.status)
}

function ms(since: number): number {
  return Math.round((performance.now() - since) * 10) / 10
}

/**
 * Config names in a header value: visible ASCII except the summary's own separators; anything
 * else becomes `_`, so no name can break the header or forge a field.
 */
function safe(s: string): string {
  return /^[\x21-\x2b\x2d-\x3a\x3c-\x7e]*$/.test(s) ? s : s.replace(/[^\x21-\x2b\x2d-\x3a\x3c-\x7e]/g, '_')
}

function setHeader(headers: string[], lower: string, value: string): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === lower.length && headers[i]!.toLowerCase() === lower) {
      headers[i + 1] = value
      // A second field of the same name (a client sent two) would contradict this one.
      for (let j = headers.length - 2; j > i; j -= 2) {
        if (headers[j]!.length === lower.length && headers[j]!.toLowerCase() === lower) headers.splice(j, 2)
      }
      return
    }
  }
  headers.push(lower, value)
}

function removeHeader(headers: string[], lower: string): void {
  for (let j = headers.length - 2; j >= 0; j -= 2) {
    if (headers[j]!.length === lower.length && headers[j]!.toLowerCase() === lower) headers.splice(j, 2)
  }
}
