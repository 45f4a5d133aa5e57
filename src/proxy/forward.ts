// One proxied exchange: tries candidate peers in turn as the retry policy allows, streams the
// request body up and the response down with backpressure, tears down both ways (client gone:
// abort upstream; upstream drops mid-response: cut the client's response short), reports each
// attempt's outcome to passive health, and writes the access log line once at the end.
//
// It is an undici dispatch handler (the legacy callback form, the fastest in undici 7), so the
// response is written straight into Node's ServerResponse with no intermediate stream.
//
// Retry safety: a connect failure never reached the peer, so any request may go elsewhere. Any
// other failure (timeout, reset, 5xx) is retried only for idempotent methods without a body,
// and only before a byte of the response reached the client: a streamed body is never sent twice.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { RetryCondition, RetryPolicy } from '../config/snapshot'
import type { AccessLog } from '../observe/access-log'
import type { Logger } from '../observe/logger'
import type { UpstreamGroup } from '../upstream/group'
import type { Peer } from '../upstream/peer'
import { classifyUpstreamError, ERRORS, type ErrorKind, replyError, retryCondition } from './errors'
import { downstreamResponseHeaders } from './headers'

/** RFC 9110 section 9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

export interface ExchangeOptions {
  req: IncomingMessage
  res: ServerResponse
  log: Logger
  access: AccessLog
  start: number
  requestId: string
  method: string
  /** Path (and query) sent upstream, after strip_prefix. */
  upstreamPath: string
  /** Path logged: the client's path without the query string. */
  logPath: string
  headers: string[]
  /** Headers middlewares add to the response (CORS, RateLimit-*). */
  responseHeaders: readonly string[] | undefined
  /** Upstream response headers the proxy replaces (lower case). */
  dropResponseHeaders: ReadonlySet<string> | undefined
  hasBody: boolean
  timeoutMs: number
  route: string | undefined
  upstream: string
  group: UpstreamGroup
  retry: RetryPolicy
  candidates: Peer[]
  /** HTTP/2 downstream: HTTP/2 has no reason phrase. */
  h2: boolean
  /** Ask the client to close its connection (the proxy is draining). */
  closing: () => boolean
  onDone: () => void
}

const RETRYING = new Error('retrying on another server')

export class Exchange implements Dispatcher.DispatchHandler {
  readonly #o: ExchangeOptions
  #index = 0
  #peer: Peer | undefined
  #abort: ((err?: Error) => void) | undefined
  #sent = false
  #clientGone = false
  #finished = false
  /** This attempt was aborted by us to retry (a 5xx answer); its onError starts the next. */
  #retryPending = false
  #status = 0
  #remaining = -1
  /** Set by downstreamResponseHeaders: the response's Content-Length, or -1. */
  contentLength = -1
  #resume: (() => void) | undefined

  constructor(o: ExchangeOptions) {
    this.#o = o
    o.res.once('close', this.#onClientClose)
  }

  start(): void {
    this.#attempt()
  }

  #attempt(): void {
    const o = this.#o
    const peer = o.candidates[this.#index]!
    this.#peer = peer
    this.#sent = false
    this.#abort = undefined
    peer.inFlight++
    try {
      peer.pool.dispatch(
        {
          path: o.upstreamPath,
          method: o.method,
          headers: o.headers,
          body: o.hasBody ? o.req : null,
          headersTimeout: o.timeoutMs,
          bodyTimeout: o.timeoutMs,
        },
        this,
      )
    } catch (err) {
      // undici refused the request outright (e.g. a header value it will not send).
      o.log.warn(
        { request_id: o.requestId, err: (err as Error).message },
        'request could not be sent upstream',
      )
      this.#fail('internal')
    }
  }

  /** Whether a failure under `cond` may be retried on the next candidate, and takes the budget. */
  #mayRetry(cond: RetryCondition | undefined): boolean {
    const o = this.#o
    if (cond === undefined || !o.retry.on.has(cond)) return false
    if (this.#index >= o.retry.retries || this.#index + 1 >= o.candidates.length) return false
    if (cond !== 'connect_failure' && (o.hasBody || !IDEMPOTENT.has(o.method))) return false
    return o.group.budget.tryRetry(Date.now())
  }

  #next(): void {
    this.#peer!.inFlight--
    this.#index++
    this.#attempt()
  }

  #onClientClose = (): void => {
    // writableEnded: the whole response was handed to Node; the close is the normal end.
    if (this.#finished || this.#o.res.writableEnded) return
    this.#clientGone = true
    // Not yet on a socket (queued or connecting): onConnect sees #clientGone and aborts there.
    this.#abort?.(new Error('client closed the connection'))
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#sent = true
    this.#abort = abort
    if (this.#clientGone) abort(new Error('client closed the connection'))
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    const o = this.#o
    if (statusCode < 200) return true // 1xx informational: Node answers `100 Continue` itself.
    const peer = this.#peer!
    if (statusCode >= 500) {
      o.group.reportFailure(peer, `status ${statusCode}`)
      if (this.#mayRetry('5xx')) {
        o.log.warn(
          { request_id: o.requestId, upstream: o.upstream, server: peer.address, status: statusCode },
          'upstream answered 5xx; retrying on another server',
        )
        this.#retryPending = true
        this.#abort?.(RETRYING)
        return false
      }
    } else {
      o.group.reportSuccess(peer)
    }
    this.#status = statusCode
    this.#resume = resume
    const headers = downstreamResponseHeaders(
      rawHeaders,
      o.requestId,
      o.closing(),
      o.responseHeaders,
      o.dropResponseHeaders,
      this,
    )
    this.#remaining = this.contentLength
    if (statusText && !o.h2) o.res.writeHead(statusCode, statusText, headers)
    else o.res.writeHead(statusCode, headers)
    return true
  }

  onData(chunk: Buffer): boolean {
    const res = this.#o.res
    if (this.#remaining > 0) {
      this.#remaining -= chunk.length
      // The last chunk of a known-length body goes out with end().
      if (this.#remaining === 0) {
        res.end(chunk)
        return true
      }
    }
    if (res.write(chunk)) return true
    res.once('drain', this.#onDrain)
    return false
  }

  #onDrain = (): void => {
    this.#resume?.()
  }

  onComplete(): void {
    const res = this.#o.res
    if (!res.writableEnded) res.end()
    this.#finish(undefined)
  }

  onError(err: Error & { code?: string }): void {
    const o = this.#o
    const peer = this.#peer!
    if (this.#retryPending) {
      this.#retryPending = false
      // Leave undici's call stack before dispatching again.
      queueMicrotask(() => (this.#clientGone ? this.#finish('client_aborted') : this.#next()))
      return
    }
    if (this.#clientGone) {
      this.#finish('client_aborted')
      return
    }
    const kind = classifyUpstreamError(err, this.#sent)
    o.group.reportFailure(peer, kind)
    const retry = !o.res.headersSent && this.#mayRetry(retryCondition(kind))
    o.log.warn(
      {
        request_id: o.requestId,
        upstream: o.upstream,
        server: peer.address,
        error_type: kind,
        err: err.code ?? err.message,
        retry,
      },
      'upstream error',
    )
    if (retry) {
      this.#next()
      return
    }
    if (o.res.headersSent) {
      // Mid-response: the status is already out, so the client must see the response cut short.
      o.res.destroy(err)
      this.#finish(kind)
      return
    }
    this.#fail(kind)
  }

  #fail(kind: ErrorKind): void {
    const o = this.#o
    if (!o.res.headersSent && !this.#clientGone) {
      replyError(o.res, kind, o.requestId, o.closing(), o.responseHeaders)
    }
    this.#status = ERRORS[kind].status
    this.#finish(kind)
  }

  #finish(kind: ErrorKind | undefined): void {
    if (this.#finished) return
    this.#finished = true
    const o = this.#o
    if (this.#peer) this.#peer.inFlight--
    const status = kind === 'client_aborted' ? 499 : this.#status || (kind ? ERRORS[kind].status : 0)
    o.access.write({
      method: o.method,
      path: o.logPath,
      route: o.route,
      upstream: o.upstream,
      server: this.#peer?.address,
      status,
      duration_ms: Math.round((performance.now() - o.start) * 1000) / 1000,
      request_id: o.requestId,
      error_type: kind ?? undefined,
    })
    o.onDone()
  }
}
