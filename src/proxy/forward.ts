// One proxied exchange: tries candidate peers in turn as the retry policy allows, streams the
// request body up and the response down with backpressure, tears down both ways (client gone:
// abort upstream; upstream drops mid-response: cut the client's response short), reports each
// attempt's outcome to passive health, and writes the access log line once at the end.
//
// It is a dispatch handler in undici's legacy callback form (the fastest in undici 7), which both
// upstream clients take (upstream/client.ts: the built-in H1Pool, or undici's Pool), so the
// response is written straight into Node's ServerResponse with no intermediate stream.
//
// Retry safety: a connect failure never reached the peer, so any request may go elsewhere. Any
// other failure (timeout, reset, 5xx) is retried only for idempotent methods without a body,
// and only before a byte of the response reached the client: a streamed body is never sent twice.
// With a body transformer (compress, grpc_web) the upstream's head is held until the transformer
// has output, so an upstream failing before then is retried or answered 502/504 like one that
// failed before its head, not cut short under a head the client never got.
// A GET or HEAD whose connection is reset before any response byte (a server dying under load)
// is always retried on another server when retries and the budget allow.
//
// Deadlines: each attempt has `timeoutMs` from the moment it is dispatched to the response head,
// time queued for a pooled connection included; the response body has `timeoutMs` between
// chunks; the request body goes through a BodyGuard (size limit, stall timeout). Faults of the
// request itself (too large, stalled) are answered 413/408 and never charged to the upstream.
// Every callback the client calls is guarded: a fault ends this exchange, never the process.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import type { Transform } from 'node:stream'
import type { RetryCondition, RetryPolicy } from '../config/snapshot'
import type { ResponseTap, ResponseTransformer, Substitute, TrailerTransform } from '../middleware/types'
import type { AccessLog, Outcome, RequestFacts } from '../observe/access-log'
import {
  BODY_TIMEOUT,
  BODY_TOO_LARGE,
  ERRORS,
  type ErrorKind,
  errorKind,
  logFailure,
  type ReplyKind,
  TIMED_OUT,
} from '../observe/errors'
import type { Logger } from '../observe/logger'
import type { UpstreamHandler } from '../upstream/client'
import type { UpstreamGroup } from '../upstream/group'
import type { Peer } from '../upstream/peer'
import { mayRetry, retryCondition } from '../upstream/retry'
import { BodyGuard, type BodyTee } from './body-guard'
import { replyError } from './errors'
import { respondTrailersOnly } from './grpc'
import { downstreamResponseHeaders, writeResponseHead } from './headers'
import type { RequestTrace } from './trace'

/** The own server side's response (server/h1/response.ts): end() may copy the body it is given. */
interface CopyingEnd {
  endCopies?(bytes: number): boolean
}

export interface ExchangeOptions extends RequestFacts {
  req: IncomingMessage
  res: ServerResponse
  log: Logger
  access: AccessLog
  /** Path (and query) sent upstream, after strip_prefix. */
  upstreamPath: string
  headers: string[]
  /** Fields of `headers` known valid where still equal (DispatchOptions.checkedHeaders). */
  checkedHeaders: readonly string[] | undefined
  /** Headers middlewares add to the response (CORS, RateLimit-*). */
  responseHeaders: readonly string[] | undefined
  /** Upstream response headers the proxy replaces (lower case). */
  dropResponseHeaders: ReadonlySet<string> | undefined
  /** A middleware's response body transformer (compress), asked at each response head relayed. */
  transform: ResponseTransformer | undefined
  /** A middleware's request body transformer (grpc_web's base64), between client and limits. */
  requestTransform: (() => Transform) | undefined
  /** A middleware's view of the answer (cache): may substitute a stored one, sees the body. */
  tap: ResponseTap | undefined
  hasBody: boolean
  /** Gets a copy of the request body as the upstream reads it (mirror.ts). */
  bodyTee: BodyTee | undefined
  /** Request body limits (only used when hasBody). */
  maxBodyBytes: number
  bodyTimeoutMs: number
  timeoutMs: number
  upstream: string
  group: UpstreamGroup
  retry: RetryPolicy
  candidates: Peer[]
  /** HTTP/2 downstream: HTTP/2 has no reason phrase. */
  h2: boolean
  /** A gRPC call (its content-type): Trailers-Only answers are relayed as such (proxy/grpc.ts). */
  grpc: boolean
  /** A gRPC call's grpc-timeout: the whole call ends DEADLINE_EXCEEDED after it; 0: none. */
  deadlineMs: number
  /** Ask the client to close its connection (the proxy is draining). */
  closing: () => boolean
  onDone: () => void
  /** Set when the request is traced (trace.ts): told each attempt, adds X-Locci-Trace. */
  trace?: RequestTrace | undefined
}

const RETRYING = new Error('retrying on another server')
const HEADERS_TIMEOUT = Object.assign(new Error('upstream did not answer in time'), { code: TIMED_OUT })
const CLIENT_FAULT = new Error('the request was refused')

export class Exchange implements UpstreamHandler, Outcome {
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
  /** Set by downstreamResponseHeaders: how many entries at its start are the upstream's fields. */
  fieldCount = 0
  /**
   * A copy of the upstream's fields as a strict HTTP/1.1 parser passed them (the built-in
   * client's), for the response writer: a field still equal to the one at its index is not
   * checked again (H1Response.checkedFields). Undefined for undici's and HTTP/2's fields.
   */
  #checkedFields: readonly string[] | undefined
  #resume: (() => void) | undefined
  /** This attempt's deadline for the response head (queue time included). */
  #headTimer: NodeJS.Timeout | undefined
  #headersSeen = false
  #body: BodyGuard | undefined
  /** The request transformer between the client and #body, if a middleware set one. */
  #source: Transform | undefined
  /** The body goes through this on its way to the client (see #through). */
  #transform: TrailerTransform | undefined
  /** The head held until #transform has output (#sendHeld), with #status and #heldReason. */
  #heldHeaders: string[] | undefined
  #heldReason = ''
  /** The whole call's deadline (gRPC's grpc-timeout). */
  #deadline: NodeJS.Timeout | undefined
  /** The upstream answered Trailers-Only (gRPC): sent with END_STREAM, nothing follows. */
  #trailersOnly = false
  /** The tap wants the body (its head() said so). */
  #tapping = false
  /** A tap's stored answer was sent instead of the upstream's: its body is discarded. */
  #substituted = false
  /** performance.now() when the current attempt was dispatched. */
  #attemptStart = 0
  /** The current attempt's answer status (0 until its head arrives): the attempts metric. */
  #attemptStatus = 0
  /** Outcome (the access line): response body bytes written to the client. */
  bytesSent = 0
  /** Outcome: from dispatching the attempt that answered to its response head; -1 if none did. */
  upstreamMs = -1

  /**
   * Some of the answer was handed to the client (its head at least): it can no longer be replaced
   * by another answer, nor the attempt retried. A held head (#heldHeaders) is not written yet, so
   * this stays false until the transformer's first output. The one place the exchange asks.
   */
  get #responseStarted(): boolean {
    return this.#o.res.headersSent
  }

  /** Outcome: request body bytes read from the client. */
  get bytesReceived(): number {
    return this.#body?.bytes ?? 0
  }

  /** Outcome: upstream attempts made. */
  get attempts(): number {
    return this.#peer === undefined ? 0 : this.#index + 1
  }

  constructor(o: ExchangeOptions) {
    this.#o = o
    // 'close' comes once: `on` spares the one-time wrapper `once` binds for every request.
    o.res.on('close', this.#onClientClose)
  }

  start(): void {
    const o = this.#o
    // The client may have left while a middleware was waiting: its 'close' has been and gone.
    if (o.res.destroyed) {
      this.#clientGone = true
      this.#finish('client_aborted')
      return
    }
    if (o.hasBody) {
      const body = new BodyGuard(o.maxBodyBytes, o.bodyTimeoutMs, o.bodyTee)
      this.#body = body
      body.once('error', (err: Error) => this.#onBodyError(err))
      // pipe, not pipeline: a refused body must not destroy the request (and its socket)
      // before the 413 or 408 reply is written.
      if (o.requestTransform !== undefined) {
        const t = o.requestTransform()
        this.#source = t
        t.once('error', (err: Error) => this.#onRequestTransformError(err))
        o.req.pipe(t).pipe(body)
      } else {
        o.req.pipe(body)
      }
    }
    if (o.deadlineMs > 0) this.#deadline = setTimeout(() => this.#onDeadline(), o.deadlineMs)
    this.#attempt()
  }

  // Handlers most exchanges never need (deadline, body and transformer errors, drain) are
  // methods wrapped where they are attached, not arrow fields made for every exchange.

  /**
   * The client's grpc-timeout passed: DEADLINE_EXCEEDED, as a Trailers-Only answer before the
   * head, or as trailers after it; the upstream's stream is cancelled. The client chose the
   * deadline: nothing is charged to the server.
   */
  #onDeadline(): void {
    this.#deadline = undefined
    if (this.#finished) return
    const o = this.#o
    o.log.info(
      { request_id: o.requestId, upstream: o.upstream, deadline_ms: o.deadlineMs },
      'gRPC deadline exceeded',
    )
    if (!this.#responseStarted) {
      this.#fail('upstream_timeout')
    } else {
      try {
        if (o.h2) o.res.addTrailers({ 'grpc-status': '4', 'grpc-message': 'Deadline Exceeded' })
        o.res.end()
      } catch {
        o.res.destroy()
      }
      this.#finish('upstream_timeout')
    }
    this.#abort?.(CLIENT_FAULT)
  }

  #attempt(): void {
    const o = this.#o
    const peer = o.candidates[this.#index]!
    this.#peer = peer
    this.#sent = false
    this.#abort = undefined
    this.#headersSeen = false
    peer.inFlight++
    o.trace?.attemptStart(peer, o.method, o.upstream, o.headers)
    this.#attemptStart = performance.now()
    this.#attemptStatus = 0
    try {
      peer.pool.dispatch(
        {
          path: o.upstreamPath,
          method: o.method,
          headers: o.headers,
          checkedHeaders: o.checkedHeaders,
          body: this.#body ?? null,
          // The head deadline is #headTimer's, which also covers time in the pool's queue.
          headersTimeout: 0,
          bodyTimeout: o.timeoutMs,
        },
        this,
      )
    } catch (err) {
      // The client threw instead of calling onError (neither is known to; a guard all the same).
      o.log.warn(
        { request_id: o.requestId, err: (err as Error).message },
        'request could not be sent upstream',
      )
      this.#fail('internal')
      return
    }
    if (!this.#finished && !this.#headersSeen) {
      this.#headTimer = setTimeout(this.#onHeadTimeout, o.timeoutMs)
    }
  }

  /** The request body's transformer refused it (not base64...): the client's fault, 400. */
  #onRequestTransformError(err: Error): void {
    if (this.#finished) return
    const o = this.#o
    logFailure(o.log, 'bad_request', { request_id: o.requestId, err: err.message }, 'request refused')
    o.req.unpipe(this.#source)
    this.#fail('bad_request', true)
    this.#abort?.(CLIENT_FAULT)
  }

  #onHeadTimeout = (): void => {
    this.#headTimer = undefined
    if (this.#finished || this.#headersSeen) return
    if (this.#abort) {
      // On a connection: an upstream timeout like any other (passive health, retry policy).
      this.#abort(HEADERS_TIMEOUT)
      return
    }
    // Still queued for a connection of a busy pool: answer now; onConnect aborts it later.
    this.#o.log.warn(
      { request_id: this.#o.requestId, upstream: this.#o.upstream, server: this.#peer?.address },
      'timed out waiting for a free upstream connection',
    )
    this.#fail('upstream_timeout')
  }

  #clearHeadTimer(): void {
    if (this.#headTimer !== undefined) {
      clearTimeout(this.#headTimer)
      this.#headTimer = undefined
    }
  }

  /** The request body broke a limit: the client's fault, answered here, never the upstream's. */
  #onBodyError(err: Error & { code?: string }): void {
    if (this.#finished) return
    // Not a limit of the guard's: the client aborting the attempt, or the client gone (#onClientClose).
    if (err.code !== BODY_TOO_LARGE && err.code !== BODY_TIMEOUT) return
    const kind = errorKind(err.code, 'client')
    logFailure(this.#o.log, kind, { request_id: this.#o.requestId, err: err.message }, 'request refused')
    if (this.#source !== undefined) this.#source.unpipe(this.#body)
    else this.#o.req.unpipe(this.#body)
    // Answer first: aborting calls onError at once, which must find this exchange finished.
    this.#fail(kind, true)
    this.#abort?.(CLIENT_FAULT)
  }

  /** Whether a failure under `condition` may go to the next candidate (upstream/retry.ts). */
  #mayRetry(condition: RetryCondition | undefined): boolean {
    const o = this.#o
    if (condition === undefined || this.#body?.destroyed) return false
    return mayRetry({
      policy: o.retry,
      condition,
      attempt: this.#index,
      candidates: o.candidates.length,
      method: o.method,
      hasBody: o.hasBody,
      responseStarted: this.#responseStarted,
      budget: o.group.budget,
    })
  }

  /**
   * The attempt on `#peer` is over: counted per server (upstream/group metrics), unless
   * `counted` is false (the client left before the server answered: not the server's doing).
   */
  #attemptDone(counted: boolean, kind: ErrorKind | undefined): void {
    const peer = this.#peer!
    peer.inFlight--
    this.#o.trace?.attemptEnd(this.#attemptStatus, kind === undefined ? undefined : ERRORS[kind].label)
    if (counted)
      this.#o.group.metrics?.attempt(
        this.#o.upstream,
        peer.address,
        this.#attemptStatus,
        (performance.now() - this.#attemptStart) / 1000,
      )
  }

  /** Retries on the next candidate; `kind`: why the last attempt failed (none: it answered 5xx). */
  #next(kind: ErrorKind | undefined): void {
    this.#clearHeadTimer()
    // The failed attempt's transformer (its head held, nothing sent): the next head makes its own.
    this.#dropHeld()
    this.#attemptDone(true, kind)
    this.#index++
    this.#attempt()
  }

  #onClientClose = (): void => {
    this.#transform?.destroy()
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
    // Answered while queued (deadline, refused body): nothing more to do upstream.
    else if (this.#finished) abort(CLIENT_FAULT)
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    return this.#onHead(statusCode, rawHeaders, resume, statusText)
  }

  /** The built-in clients' form of onHeaders: the fields as strings, no Buffer round trip. */
  onHeaderStrings(
    statusCode: number,
    fields: string[],
    resume: () => void,
    statusText: string,
    checked?: boolean,
  ): boolean {
    return this.#onHead(statusCode, fields, resume, statusText, checked === true)
  }

  #onHead(
    statusCode: number,
    rawHeaders: readonly (Buffer | string)[],
    resume: () => void,
    statusText: string,
    checked = false,
  ): boolean {
    const o = this.#o
    if (statusCode < 200) return true // 1xx informational: Node answers `100 Continue` itself.
    if (this.#finished) return false
    this.#headersSeen = true
    this.#clearHeadTimer()
    this.upstreamMs = Math.round((performance.now() - this.#attemptStart) * 1000) / 1000
    this.#attemptStatus = statusCode
    const peer = this.#peer!
    if (statusCode >= 500) {
      o.group.reportFailure(peer, `status ${statusCode}`, this.upstreamMs)
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
      o.group.reportSuccess(peer, this.upstreamMs)
    }
    this.#status = statusCode
    this.#resume = resume
    // A sticky group names the server that answered, unless the client's cookie already does.
    const cookie = o.group.stickyCookieFor(peer, o.req.rawHeaders)
    const extra = this.#extra(statusCode)
    const headers = downstreamResponseHeaders(
      rawHeaders,
      o.requestId,
      o.closing(),
      cookie === undefined ? extra : [...(extra ?? []), 'set-cookie', cookie],
      o.dropResponseHeaders,
      this,
    )
    // Copied now: a tap or transformer may still change `headers` in place.
    this.#checkedFields = checked ? headers.slice(0, this.fieldCount) : undefined
    const sub = o.tap?.substitute(statusCode, headers)
    if (sub !== undefined) {
      this.#substitute(sub)
      return true
    }
    if (o.grpc && o.h2 && hasField(headers, 'grpc-status')) {
      // Trailers-Only (the status in the head): with END_STREAM on it, or the client sees a call
      // without a status. A transformer still edits the head (grpc_web's content-type).
      o.transform?.(statusCode, headers)?.destroy()
      this.#trailersOnly = true
      respondTrailersOnly(o.res, headers)
      return true
    }
    const transform = o.transform?.(statusCode, headers)
    if (transform !== undefined) {
      // Nothing reaches the client until the transformer has something for it (#sendHeld).
      this.#remaining = -1
      this.#heldHeaders = headers
      this.#heldReason = statusText
      this.#through(transform)
      return true
    }
    this.#remaining = this.contentLength
    return this.#writeHead(statusText, headers)
  }

  /**
   * Writes the head with #status; the tap sees it here, as it goes out (and may add to it).
   * False when Node refuses it: the exchange has answered 502 instead.
   */
  #writeHead(reason: string, headers: string[]): boolean {
    const o = this.#o
    if (o.tap !== undefined) this.#tapping = o.tap.head(this.#status, headers)
    if (writeResponseHead(o.res, this.#status, reason, headers, o.h2, this.#checkedFields)) return true
    o.log.warn(
      { request_id: o.requestId, upstream: o.upstream, server: this.#peer!.address, status: this.#status },
      'upstream response head cannot be relayed',
    )
    o.group.reportFailure(this.#peer!, 'invalid response head')
    this.#status = 0
    this.#fail('upstream_error')
    this.#abort?.(CLIENT_FAULT)
    return false
  }

  /** Writes the held head, if any, once the transformer has output or ended; false as #writeHead. */
  #sendHeld(): boolean {
    const headers = this.#heldHeaders
    if (headers === undefined) return true
    this.#heldHeaders = undefined
    return this.#writeHead(this.#heldReason, headers)
  }

  /** Drops the transformer of a head still held: the upstream's answer will not be sent. */
  #dropHeld(): void {
    const t = this.#transform
    if (t === undefined) return
    this.#transform = undefined
    this.#heldHeaders = undefined
    t.destroy()
  }

  onData(chunk: Buffer): boolean {
    if (this.#finished) return false
    if (this.#substituted || this.#trailersOnly) return true
    const t = this.#transform
    if (t !== undefined) {
      // The tap sees what the client is sent: the transformer's output (#through), not this.
      if (t.write(chunk)) return true
      t.once('drain', () => this.#onDrain())
      return false
    }
    if (this.#tapping) this.#o.tap!.data(chunk)
    const res = this.#o.res
    this.bytesSent += chunk.length
    if (this.#remaining > 0) {
      this.#remaining -= chunk.length
      // The last chunk of a known-length body goes out with end().
      if (this.#remaining === 0) {
        res.end(chunk)
        return true
      }
    }
    if (res.write(chunk)) return true
    if (res.destroyed) {
      // No 'drain' will ever come; end this exchange instead of pausing it for good.
      this.#onClientClose()
      return false
    }
    res.once('drain', () => this.#onDrain())
    return false
  }

  /**
   * A chunk of the built-in client's shared read buffer, valid during this call only. The usual
   * short answer's last (or only) chunk goes to a response whose end() copies it into the one
   * buffer it writes (the own server side's, endCopies): no copy here. Anything else that may
   * keep the bytes (a write left queued, a transformer, the cache's tap, HTTP/2) gets a copy.
   */
  onDataView(chunk: Buffer): boolean {
    // onData drops a chunk it does not send (finished, substituted, trailers-only) without
    // keeping it; what it sends is kept unless end() copies it.
    const sent = !this.#finished && !this.#substituted && !this.#trailersOnly
    const kept =
      sent &&
      (this.#transform !== undefined ||
        this.#tapping ||
        this.#remaining !== chunk.length ||
        (this.#o.res as CopyingEnd).endCopies?.(chunk.length) !== true)
    return this.onData(kept ? Buffer.from(chunk) : chunk)
  }

  #onDrain(): void {
    this.#resume?.()
  }

  /**
   * Sends the body through `t`: its output goes to the client, and while the client is slow `t`
   * is paused, so its buffers fill and its write() (onData) says so to the client. The held head
   * goes out with the first output (or at the end of an empty one). A fault in `t` ends the
   * response like an internal error; the client leaving destroys `t` (#onClientClose). Events of
   * a `t` dropped since (#dropHeld: a retry, another answer) are ignored.
   */
  #through(t: TrailerTransform): void {
    const res = this.#o.res
    this.#transform = t
    t.on('error', (err: Error) => {
      if (t === this.#transform) this.#onTransformError(err)
    })
    t.on('data', (out: Buffer) => {
      if (t !== this.#transform || !this.#sendHeld()) return
      this.bytesSent += out.length
      if (this.#tapping) this.#o.tap!.data(out)
      if (!res.write(out) && !res.destroyed) {
        t.pause()
        res.once('drain', () => t.resume())
      }
    })
    t.once('end', () => {
      if (t === this.#transform && this.#sendHeld()) res.end()
    })
  }

  /**
   * Answers with a tap's stored response instead of the upstream's (whose body, if any, is then
   * read and dropped, keeping the connection).
   */
  #substitute(sub: Substitute): void {
    const o = this.#o
    const headers = [...sub.headers]
    const extra = this.#extra('stored')
    if (extra !== undefined) headers.push(...extra)
    headers.push('content-length', String(sub.body.length), 'x-request-id', o.requestId)
    if (o.closing()) headers.push('connection', 'close')
    this.#substituted = true
    this.#status = sub.status
    this.#remaining = -1
    if (!writeResponseHead(o.res, sub.status, undefined, headers, o.h2)) {
      this.#fail('internal')
      return
    }
    o.res.end(sub.body)
    if (o.method !== 'HEAD') this.bytesSent = sub.body.length
  }

  #onTransformError(err: Error): void {
    if (this.#clientGone) return
    // Over (the upstream's body all in) with something sent: only cutting it short is left.
    if (this.#finished && this.#responseStarted) this.#o.res.destroy()
    else this.#internal(err)
  }

  /**
   * `trailers`: flat [name, value, ...] (the HTTP/2 pool; gRPC's status is there) or undici's
   * raw Buffers. Relayed to an HTTP/2 client only: an HTTP/1.1 response here has no chunked
   * trailer section of its own (gRPC-Web puts them in the body, middleware/grpc-web).
   */
  onComplete(trailers?: readonly (string | Buffer)[] | null): void {
    if (this.#finished) return
    const res = this.#o.res
    try {
      if (this.#trailersOnly) {
        this.#finish(undefined)
        return
      }
      const t = this.#transform
      if (t?.setTrailers !== undefined) t.setTrailers(trailers ? trailers.map(String) : [])
      else if (trailers && trailers.length > 0 && this.#o.h2 && !this.#substituted) {
        this.#relayTrailers(trailers)
      }
      // With a transform, its 'end' ends the response once its last bytes are out.
      if (this.#transform !== undefined) this.#transform.end()
      else if (!res.writableEnded) res.end()
    } catch (err) {
      this.#internal(err)
      return
    }
    this.#finish(undefined)
  }

  #relayTrailers(trailers: readonly (string | Buffer)[]): void {
    const t: Record<string, string | string[]> = {}
    for (let i = 0; i + 1 < trailers.length; i += 2) {
      const name = String(trailers[i]).toLowerCase()
      // Fields HTTP/2 forbids anywhere, and those a trailer section must not carry.
      if (name === 'connection' || name === 'transfer-encoding' || name === 'content-length') continue
      const value = String(trailers[i + 1])
      const prev = t[name]
      t[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
    }
    this.#o.res.addTrailers(t)
  }

  onError(err: Error & { code?: string }): void {
    this.#clearHeadTimer()
    if (this.#finished) return
    try {
      this.#onError(err)
    } catch (e) {
      this.#internal(e)
    }
  }

  /** A fault in the proxy's own handling: logged and counted, this exchange ends, nothing else. */
  #internal(err: unknown): void {
    const o = this.#o
    o.log.error(
      { request_id: o.requestId, err: (err as Error)?.stack ?? String(err) },
      'internal error while proxying',
    )
    if (this.#responseStarted) {
      o.res.destroy()
      this.#finish('internal')
    } else {
      this.#fail('internal')
    }
    this.#abort?.(CLIENT_FAULT)
  }

  #onError(err: Error & { code?: string }): void {
    const o = this.#o
    const peer = this.#peer!
    if (this.#retryPending) {
      this.#retryPending = false
      // Leave the client's call stack before dispatching again.
      queueMicrotask(() => (this.#clientGone ? this.#finish('client_aborted') : this.#next(undefined)))
      return
    }
    if (this.#clientGone) {
      this.#finish('client_aborted')
      return
    }
    if (
      err.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' &&
      (this.#status === 304 || this.#status === 204)
    ) {
      // undici (not H1Pool) holds a 304's Content-Length (that of the cached representation,
      // RFC 9110 section 8.6) against its empty body; the answer is complete.
      this.onComplete()
      return
    }
    const kind = errorKind(err.code, this.#sent ? 'exchange' : 'connect')
    o.group.reportFailure(peer, kind)
    const retry = this.#mayRetry(retryCondition(kind))
    logFailure(
      o.log,
      kind,
      {
        request_id: o.requestId,
        upstream: o.upstream,
        server: peer.address,
        err: err.code ?? err.message,
        retry,
      },
      'upstream error',
    )
    if (retry) {
      this.#next(kind)
      return
    }
    if (this.#responseStarted) {
      // Mid-response: the status is already out, so the client must see the response cut short.
      // An HTTP/2 upstream's stream reset reaches an HTTP/2 client with its code (a gRPC server
      // cancelling a call is CANCEL to the client too, not INTERNAL_ERROR).
      const rst = (err as { rstCode?: number }).rstCode
      const stream = o.h2 ? (o.res as unknown as Http2ServerResponse).stream : undefined
      if (rst !== undefined && rst !== 0 && stream !== undefined && !stream.destroyed) stream.close(rst)
      else o.res.destroy(err)
      this.#finish(kind)
      return
    }
    this.#fail(kind)
  }

  /** Answers with `kind`'s reply; `close`: the connection ends after it (unread body left). */
  #fail(kind: ReplyKind, close = false): void {
    const o = this.#o
    const started = this.#responseStarted
    if (!started) this.#dropHeld()
    if (ERRORS[kind].upstream && !this.#substituted && !started) {
      const sub = o.tap?.rescue()
      if (sub !== undefined) {
        this.#substitute(sub)
        this.#finish(undefined)
        return
      }
    }
    if (!started && !this.#clientGone && !o.res.destroyed) {
      try {
        const n = replyError(
          o.res,
          kind,
          o.requestId,
          (close && !o.h2) || o.closing(),
          this.#extra(ERRORS[kind].label),
        )
        if (o.method !== 'HEAD') this.bytesSent = n
      } catch {
        o.res.destroy()
      }
    }
    this.#status = ERRORS[kind].status
    this.#finish(kind)
  }

  /** Headers middlewares add to the response, and X-Locci-Trace (`current`: this attempt's outcome). */
  #extra(current: string | number): readonly string[] | undefined {
    const o = this.#o
    // Untraced (the usual case): no string is made for the status.
    return o.trace === undefined
      ? o.responseHeaders
      : o.trace.responseHeaders(o.responseHeaders, String(current))
  }

  #finish(kind: ErrorKind | undefined): void {
    if (this.#finished) return
    this.#finished = true
    this.#clearHeadTimer()
    if (this.#deadline !== undefined) clearTimeout(this.#deadline)
    const o = this.#o
    // A body still coming when the exchange is over never reaches the mirror whole.
    o.bodyTee?.abort()
    if (this.#peer) this.#attemptDone(kind !== 'client_aborted' || this.#attemptStatus !== 0, kind)
    o.access.request(o, o.upstream, this.#peer?.address, this.#status, kind, this)
    o.onDone()
  }
}

function hasField(flat: readonly string[], lower: string): boolean {
  for (let i = 0; i < flat.length; i += 2) if (flat[i]!.toLowerCase() === lower) return true
  return false
}
