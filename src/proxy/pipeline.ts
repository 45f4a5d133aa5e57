// The request path: snapshot -> request ID -> route (gateway mode) -> middleware chain ->
// upstream group -> candidates -> Exchange (forward.ts). Answers given before an upstream is
// involved (404, 405, a middleware's 401/429/204, 503 with no server) are written here; later
// failures by the Exchange; both through errors.ts.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import type { Socket } from 'node:net'
import type { MirrorSpec, OriginPolicy, RetryCondition, RetryPolicy, SplitSpec } from '../config/snapshot'
import { type Chain, LB_CHAIN } from '../middleware/registry'
import {
  type MiddlewareResult,
  type Reply,
  type RequestContext,
  rawHeader,
  runChain,
  runChainObserved,
  type StoredAnswer,
} from '../middleware/types'
import type { AccessLog } from '../observe/access-log'
import { ERRORS, logFailure } from '../observe/errors'
import { InFlight } from '../observe/in-flight'
import type { Logger } from '../observe/logger'
import type { Tracing } from '../observe/tracing'
import { normalizePath, withNormalizedPath } from '../routing/normalize-path'
import { ROUTABLE_METHODS, refusesMethod, resolve } from '../routing/resolve'
import { stripPrefix } from '../routing/route-table'
import { admittingGroup } from '../upstream/circuit-breaker'
import type { Peer } from '../upstream/peer'
import { pickGroup, SET_COOKIE } from '../upstream/split'
import { DetachedResponse } from './detached-response'
import { replyError } from './errors'
import { Exchange } from './forward'
import { grpcTimeoutMs, isGrpcContentType } from './grpc'
import { clientIp, type UpstreamRequestHead, upstreamRequestHead, writeResponseHead } from './headers'
import { Mirrors } from './mirror'
import { RawResponse } from './raw-response'
import type { Runtime, RuntimeStore } from './runtime'
import { debugRequested, RequestTrace } from './trace'
import { forwardUpgrade } from './upgrade'

const NONE: Peer[] = []

/** The response headers the proxy itself adds before any middleware does: the split's cookie. */
function ownResponseHeaders(r: { splitCookie: string | undefined }): string[] | undefined {
  return r.splitCookie === undefined ? undefined : ['set-cookie', r.splitCookie]
}

export interface PipelineOptions {
  store: RuntimeStore
  log: Logger
  access: AccessLog
  /** OpenTelemetry: `active` is undefined while tracing is off. */
  tracing?: Tracing | undefined
}

/** One request on its way through the pipeline, once routed. */
interface Routed {
  req: IncomingMessage
  /** A ServerResponse, or for an Upgrade request a writer of raw replies on its socket. */
  res: ServerResponse
  /** The request came over HTTP/2: no h1-only headers (Connection) and no reason phrase. */
  h2: boolean
  /** Set for a WebSocket Upgrade request. */
  upgrade: { socket: Socket; head: Buffer; protocol: string } | undefined
  start: number
  rt: Runtime
  method: string
  /** The normalized path (normalize-path.ts): what routes, middlewares and the log see. */
  path: string
  /** head.requestId, head.clientIp and head.host, for the access line (RequestFacts). */
  requestId: string
  client: string
  host: string | undefined
  upstreamPath: string
  head: UpstreamRequestHead
  /**
   * head.headers as upstreamRequestHead made them from an HTTP/1.1 client's head (held to the
   * same field rules by the server side's strict parser; undefined over HTTP/2): fields still
   * equal to these are not checked again by the upstream client (h1/request.ts).
   */
  checkedHeaders: readonly string[] | undefined
  hasBody: boolean
  route: string | undefined
  upstream: string
  /** The route's (or load balancer's) weighted split, if it has one; `upstream` is its pick. */
  split: SplitSpec | undefined
  /** The split's Set-Cookie value, when the client must be told its group. */
  splitCookie: string | undefined
  timeoutMs: number
  maxBodyBytes: number
  retries: number | undefined
  retryOn: ReadonlySet<RetryCondition> | undefined
  /** The route's (or load balancer's) `mirror`. */
  mirror: MirrorSpec | undefined
  ctx: RequestContext | undefined
  /** #watchTap has run. */
  tapWatched: boolean
  /** Set once the request has been counted out of #inFlight and logged. */
  ended: boolean
  /** Spans and/or X-Locci-Trace (trace.ts); undefined unless one of them is wanted. */
  trace: RequestTrace | undefined
}

export class Pipeline {
  readonly #store: RuntimeStore
  readonly #log: Logger
  readonly #access: AccessLog
  readonly #tracing: Tracing | undefined
  #draining = false
  readonly #inFlight = new InFlight()
  readonly #mirrors: Mirrors

  constructor(o: PipelineOptions) {
    this.#store = o.store
    this.#log = o.log
    this.#access = o.access
    this.#mirrors = new Mirrors(o.log)
    this.#tracing = o.tracing
  }

  get inFlight(): number {
    return this.#inFlight.count
  }

  /** From now on every response asks the client to close its connection. */
  drain(): void {
    this.#draining = true
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    return this.#inFlight.idle()
  }

  #closing = (): boolean => this.#draining

  /** Counts a request out, once, whoever ends it. */
  #end(r: Routed): void {
    if (r.ended) return
    r.ended = true
    this.#inFlight.leave()
  }

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#begin(req, res, undefined)
  }

  /**
   * An HTTP/1.1 Upgrade request. `websocket` is routed and checked like any request, then
   * tunnelled (upgrade.ts). Any other token (h2c, anything) is not upgraded: the request is
   * proxied as an ordinary one without Upgrade, its answer written raw on the socket.
   */
  upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    socket.on('error', () => socket.destroy())
    const protocol = rawHeader(req.rawHeaders, 'upgrade') ?? ''
    const ws = protocol.trim().toLowerCase() === 'websocket'
    this.#begin(
      req,
      new RawResponse(socket) as unknown as ServerResponse,
      ws ? { socket, head, protocol } : undefined,
      true,
    )
  }

  /** Runs `f` for request `r`; a fault in it ends that request (500) and nothing else. */
  #guard(r: Routed, f: () => void): void {
    try {
      f()
    } catch (err) {
      this.#crashed(r, err)
    }
  }

  #crashed(r: Routed, err: unknown): void {
    this.#log.error(
      { request_id: r.head.requestId, err: (err as Error)?.stack ?? String(err) },
      'internal error while handling a request',
    )
    this.#reply(r, { status: 500, kind: 'internal', headers: [] })
  }

  #begin(req: IncomingMessage, res: ServerResponse, upgrade: Routed['upgrade'], raw = false): void {
    const start = performance.now()
    this.#inFlight.enter()
    const rt = this.#store.current()
    const { snapshot } = rt
    // HTTP/2 is the compatibility request with a stream; `GET / HTTP/2.0` on an HTTP/1 connection
    // is not HTTP/2 (it gets 505 below).
    const h2 = req.httpVersionMajor === 2 && (req as unknown as Http2ServerRequest).stream !== undefined
    const r: Routed = {
      req,
      res,
      h2,
      upgrade,
      start,
      rt,
      method: req.method ?? '',
      path: '',
      requestId: EMPTY_HEAD.requestId,
      client: EMPTY_HEAD.clientIp,
      host: undefined,
      upstreamPath: '',
      head: EMPTY_HEAD,
      checkedHeaders: undefined,
      hasBody: false,
      route: undefined,
      upstream: snapshot.mode.kind === 'load_balancer' ? snapshot.mode.upstream : '',
      split: undefined,
      splitCookie: undefined,
      timeoutMs: snapshot.upstreamTimeoutMs,
      maxBodyBytes: snapshot.limits.maxBodyBytes,
      retries: undefined,
      retryOn: undefined,
      mirror: snapshot.mode.kind === 'load_balancer' ? snapshot.mode.mirror : undefined,
      ctx: undefined,
      tapWatched: false,
      ended: false,
      trace: undefined,
    }
    try {
      this.#route(r, raw)
    } catch (err) {
      this.#crashed(r, err)
    }
  }

  #route(r: Routed, raw: boolean): void {
    const { req } = r
    const { snapshot } = r.rt
    const remote = req.socket?.remoteAddress
    if (remote === undefined) {
      // The connection closed before this request was handled (Node forgets a closed socket's
      // address): nobody is waiting for an answer, and the upstream must not get a request
      // whose X-Forwarded-For names nobody.
      r.res.destroy()
      return this.#reply(r, { status: ERRORS.client_aborted.status, kind: 'client_aborted', headers: [] })
    }
    const head = upstreamRequestHead(req.rawHeaders, {
      peer: clientIp(remote),
      proto: snapshot.tls ? 'https' : 'http',
      trusted: snapshot.limits.trustedProxy,
      protectedHeaders: r.rt.protectedHeaders,
      h2: r.h2,
    })
    r.head = head
    // A copy: middlewares and the Host rules below may change head.headers in place.
    if (!r.h2) r.checkedHeaders = head.headers.slice()
    r.requestId = head.requestId
    r.client = head.clientIp
    r.host = head.host
    // Tracing off and no debug_header: two field reads, nothing else.
    const tracer = this.#tracing?.active
    const debug = snapshot.debugHeader
    if (tracer !== undefined || debug !== undefined) {
      const asked = debug !== undefined && debugRequested(req.rawHeaders, debug)
      if (tracer !== undefined || asked)
        r.trace = new RequestTrace(tracer, asked, req.rawHeaders, r.method, head.host, r.start)
    }
    // HTTP/1.0 and 1.1 on an HTTP/1 connection; anything else (2.0, 0.9, 1.2) is not spoken here.
    if (!r.h2 && (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1)) {
      return this.#reply(r, { status: 505, kind: 'version_not_supported', headers: [] })
    }
    // HTTP/2 says whether a body follows in the HEADERS frame, not in headers (RFC 9113 8.1).
    r.hasBody = r.h2 ? !(req as unknown as Http2ServerRequest).stream.endAfterHeaders : head.hasBody
    const method = r.method
    // CONNECT and TRACE (routing/resolve.ts says why), before anything else is looked at.
    if (refusesMethod(method, snapshot.limits.allowTrace)) {
      return this.#reply(r, { status: 405, kind: 'method_not_allowed', headers: ['allow', ROUTABLE_METHODS] })
    }
    // RFC 9112 section 6.1: a transfer coding the proxy does not know gets its own status; only
    // chunked is known (Node frames the body by the final chunked and drops the others silently).
    const te = r.h2 ? undefined : head.transferEncoding
    if (te !== undefined && !isChunked(te)) {
      const kind = 'unknown_transfer_coding'
      return this.#reply(r, { status: ERRORS[kind].status, kind, headers: [] })
    }
    const target = req.url ?? ''
    const url = originForm(target)
    // RFC 9112 section 3.2.2: with an absolute-form target, its authority is the Host.
    if (target.charCodeAt(0) !== 47 && url !== target) {
      useTargetHost(head, target)
      r.host = head.host
    }
    const q = url.indexOf('?')
    const rawPath = q < 0 ? url : url.slice(0, q)
    const normalized = normalizePath(rawPath, snapshot.limits.escapedSlashes === 'keep')
    if (!normalized.ok || head.problem !== undefined) {
      r.path = normalized.ok ? normalized.path : rawPath.slice(0, 200)
      const reason = head.problem ?? (normalized as { reason: string }).reason
      logFailure(this.#log, 'bad_request', { request_id: head.requestId, reason }, 'request refused')
      return this.#reply(r, { status: 400, kind: 'bad_request', headers: [] })
    }
    const path = normalized.path
    r.path = path
    r.upstreamPath = withNormalizedPath(url, rawPath, path)
    // On a socket Node handed over for an Upgrade, no request body has been framed for us: a
    // WebSocket handshake has none, and any other upgrade is proxied without one.
    if (raw && head.hasBody) return this.#reply(r, { status: 400, kind: 'bad_request', headers: [] })

    let chain: Chain | undefined
    let origins: OriginPolicy
    const { rt } = r
    // The routing decision, by the function `explain` uses too (routing/resolve.ts).
    const d = resolve(rt, method, path, req.rawHeaders)
    r.trace?.routed(method, path, undefined, r.upstream)
    if (d.kind === 'no_route') return this.#reply(r, { status: 404, kind: 'no_route', headers: [] })
    if (d.kind === 'method_not_allowed') {
      return this.#reply(r, { status: 405, kind: 'method_not_allowed', headers: ['allow', d.allow] })
    }
    const route = d.kind === 'load_balancer' ? undefined : d.route
    if (route !== undefined) {
      r.route = route.name
      r.upstream = route.upstream
      if (route.stripPrefix) r.upstreamPath = stripPrefix(route.regex, r.upstreamPath)
      if (route.timeoutMs !== undefined) r.timeoutMs = route.timeoutMs
      if (route.maxBodyBytes !== undefined) r.maxBodyBytes = route.maxBodyBytes
      r.retries = route.retries
      r.retryOn = route.retryOn
      r.mirror = route.mirror
      chain = rt.chains.get(route.name)
      origins = route.websocketOrigins
      r.split = route.split
    } else {
      chain = rt.chains.get(LB_CHAIN)
      origins = rt.lbOrigins
      r.split = (snapshot.mode as { split?: SplitSpec }).split
    }
    // The split is decided before the middlewares, so they (and the access line) see the group.
    const split = r.split
    if (split !== undefined) {
      const pick = pickGroup(split, head.clientIp, req.rawHeaders)
      const i = pick & ~SET_COOKIE
      r.upstream = split.groups[i]!
      if (pick !== i && split.sticky?.kind === 'cookie') r.splitCookie = split.sticky.setCookie[i]
    }
    if (route !== undefined) r.trace?.routed(method, path, r.route, r.upstream)
    // Browsers do not apply CORS to WebSocket: without this a page on any site could open an
    // authenticated socket with the user's cookies (cross-site WebSocket hijacking).
    if (r.upgrade && origins !== undefined && origins !== '*') {
      const origin = rawHeader(req.rawHeaders, 'origin')
      if (origin !== undefined && !origins.has(origin)) {
        return this.#reply(r, { status: 403, kind: 'origin_not_allowed', headers: [] })
      }
    }
    if (head.contentLength > r.maxBodyBytes) {
      return this.#reply(r, { status: 413, kind: 'payload_too_large', headers: [] })
    }

    if (chain === undefined) return this.#forward(r)
    const ctx: RequestContext = {
      method,
      path,
      clientIp: head.clientIp,
      host: head.host,
      route: r.route,
      upstream: r.upstream,
      rawHeaders: req.rawHeaders,
      requestId: head.requestId,
      upstreamHeaders: head.headers,
      upstreamPath: r.upstreamPath,
      responseHeaders: ownResponseHeaders(r) ?? [],
      dropResponseHeaders: undefined,
      responseTransform: undefined,
      responseTap: undefined,
      stored: undefined,
    }
    r.ctx = ctx
    // A preflight the chain answers meets its cors middlewares only (Chain.preflight).
    const preflight = d.kind === 'preflight'
    const result =
      r.trace === undefined
        ? runChain(preflight ? chain.preflight : chain.middlewares, ctx)
        : runChainObserved(
            preflight ? chain.preflight : chain.middlewares,
            preflight ? chain.preflightNames : chain.names,
            ctx,
            r.trace,
          )
    if (result instanceof Promise) {
      result.then(
        (reply) => this.#guard(r, () => this.#afterChain(r, reply)),
        (err: Error) => {
          this.#log.error({ request_id: head.requestId, err: err?.message }, 'middleware failed')
          this.#guard(r, () => this.#reply(r, { status: 500, kind: 'internal', headers: [] }))
        },
      )
    } else {
      this.#afterChain(r, result)
    }
  }

  #afterChain(r: Routed, reply: MiddlewareResult): void {
    const ctx = r.ctx!
    const stored = reply === undefined ? ctx.stored : undefined
    if (stored !== undefined) return this.#answerStored(r, stored)
    this.#watchTap(r)
    if (reply !== undefined) return this.#reply(r, reply)
    this.#toUpstream(r)
  }

  /**
   * The chain passed the request and a cache holds its answer: the client gets it now. With
   * `revalidate` (stale-while-revalidate) the request also goes upstream, on its own with a
   * DetachedResponse: only the cache's tap sees that answer, and it has its own access line.
   */
  #answerStored(r: Routed, stored: StoredAnswer): void {
    const ctx = r.ctx!
    const { answer } = stored
    let background: Routed | undefined
    if (stored.revalidate) {
      background = {
        ...r,
        res: new DetachedResponse() as unknown as ServerResponse,
        h2: false,
        start: performance.now(),
        tapWatched: false,
        ended: false,
        // The client's trace ends with its answer; the revalidation is not part of it.
        trace: undefined,
      }
      r.ctx = { ...ctx, responseTap: undefined, stored: undefined }
    }
    this.#reply(r, { status: answer.status, kind: undefined, headers: answer.headers, body: answer.body })
    if (background !== undefined) {
      const b = background
      this.#inFlight.enter()
      this.#guard(b, () => {
        this.#watchTap(b)
        this.#toUpstream(b)
      })
    }
  }

  #toUpstream(r: Routed): void {
    const ctx = r.ctx!
    r.head.headers = ctx.upstreamHeaders
    if (ctx.upstreamPath !== r.upstreamPath) {
      // A middleware (rewrite) chose the upstream path: it is normalized like a client's, so
      // the upstream never sees `//`, dot segments or escapes the listener would have refused.
      const target = renormalized(ctx.upstreamPath, r.rt.snapshot.limits.escapedSlashes === 'keep')
      if (typeof target !== 'string') {
        logFailure(
          this.#log,
          'bad_request',
          { request_id: r.requestId, reason: `rewritten path: ${target.reason}` },
          'request refused',
        )
        return this.#reply(r, { status: 400, kind: 'bad_request', headers: [] })
      }
      r.upstreamPath = target
    }
    this.#forward(r)
  }

  /**
   * A middleware's ResponseTap is told once when the response is over, however it ends (a cache
   * stores only what the client received in full, and lets requests waiting for this one go on).
   */
  #watchTap(r: Routed): void {
    const tap = r.ctx?.responseTap
    if (tap === undefined || r.tapWatched) return
    r.tapWatched = true
    const { res } = r
    if (res.destroyed) tap.close(false)
    else res.once('close', () => tap.close(res.writableFinished))
  }

  #forward(r: Routed): void {
    const groups = r.rt.groups
    // A closed breaker (or none) is one field read; an open one refuses or names a fallback.
    let group = admittingGroup(groups.get(r.upstream)!, groups)
    if (group === undefined && r.split === undefined) {
      return this.#reply(r, { status: 503, kind: 'circuit_open', headers: [] })
    }
    const now = Date.now()
    const select = { clientIp: r.head.clientIp, path: r.path, rawHeaders: r.req.rawHeaders }
    let candidates = group === undefined ? NONE : group.candidates(select, now)
    if (candidates.length === 0 && r.split !== undefined) {
      // A split's group that can take nothing (no server available, breaker open without a
      // fallback) passes its share to the split's other groups of weight > 0, in their order.
      const s = r.split
      for (let i = 0; i < s.groups.length && candidates.length === 0; i++) {
        if (s.weights[i] === 0 || s.groups[i] === r.upstream) continue
        const other = admittingGroup(groups.get(s.groups[i]!)!, groups)
        if (other === undefined) continue
        const c = other.candidates(select, now)
        if (c.length > 0) {
          group = other
          candidates = c
        }
      }
      if (group === undefined) return this.#reply(r, { status: 503, kind: 'circuit_open', headers: [] })
    }
    // The access line and metrics name the group that took the request.
    const g = group!
    r.upstream = g.name
    g.budget.request(now)
    if (candidates.length === 0) return this.#reply(r, { status: 503, kind: 'no_healthy_peer', headers: [] })
    // Copied before the main group's sni replaces Host; a WebSocket is not mirrored.
    const copyHeaders = r.mirror !== undefined && !r.upgrade ? r.head.headers.slice() : undefined
    if (g.hostOverride !== undefined) setHeader(r.head.headers, 'host', g.hostOverride)
    const responseHeaders = r.ctx !== undefined ? r.ctx.responseHeaders : ownResponseHeaders(r)
    const bodyTee =
      copyHeaders === undefined
        ? undefined
        : this.#mirrors.start({
            spec: r.mirror!,
            groups,
            method: r.method,
            path: r.path,
            rawHeaders: r.req.rawHeaders,
            clientIp: r.head.clientIp,
            upstreamPath: r.upstreamPath,
            headers: copyHeaders,
            host: r.host,
            requestId: r.requestId,
            hasBody: r.hasBody,
            contentLength: r.head.contentLength,
            timeoutMs: r.timeoutMs,
          })
    if (r.upgrade) {
      return forwardUpgrade({
        socket: r.upgrade.socket,
        res: r.res,
        head: r.upgrade.head,
        method: r.method,
        upstreamPath: r.upstreamPath,
        path: r.path,
        headers: r.head.headers,
        upgrade: r.upgrade.protocol,
        requestId: r.requestId,
        route: r.route,
        upstream: r.upstream,
        group: g,
        retry: retryPolicy(g.retry, r.retries, r.retryOn),
        candidates,
        responseHeaders,
        connectTimeoutMs: r.rt.snapshot.pool.connectTimeoutMs,
        idleTimeoutMs: r.rt.snapshot.websocketIdleMs,
        log: this.#log,
        access: this.#access,
        start: r.start,
        client: r.client,
        req: r.req,
        host: r.host,
        trace: r.trace,
        onDone: () => this.#end(r),
      })
    }
    // gRPC needs HTTP/2 from the client (gRPC-Web, on HTTP/1.1, is its middleware's): an
    // HTTP/1.1 request costs nothing here.
    const grpc = r.h2 && isGrpcContentType(rawHeader(r.req.rawHeaders, 'content-type'))
    new Exchange({
      req: r.req,
      res: r.res,
      log: this.#log,
      access: this.#access,
      start: r.start,
      requestId: r.requestId,
      method: r.method,
      upstreamPath: r.upstreamPath,
      path: r.path,
      headers: r.head.headers,
      checkedHeaders: r.checkedHeaders,
      responseHeaders,
      dropResponseHeaders: r.ctx?.dropResponseHeaders,
      transform: r.ctx?.responseTransform,
      requestTransform: r.ctx?.requestTransform,
      tap: r.ctx?.responseTap,
      hasBody: r.hasBody,
      bodyTee,
      maxBodyBytes: r.maxBodyBytes,
      bodyTimeoutMs: r.rt.snapshot.limits.bodyTimeoutMs,
      timeoutMs: r.timeoutMs,
      route: r.route,
      upstream: r.upstream,
      group: g,
      retry: retryPolicy(g.retry, r.retries, r.retryOn),
      candidates,
      h2: r.h2,
      grpc,
      deadlineMs: grpc ? (grpcTimeoutMs(rawHeader(r.req.rawHeaders, 'grpc-timeout')) ?? 0) : 0,
      closing: r.h2 ? never : this.#closing,
      client: r.client,
      host: r.host,
      trace: r.trace,
      onDone: () => this.#end(r),
    }).start()
  }

  /** Answers without an upstream: routing errors, a middleware's reply, no available server. */
  #reply(r: Routed, reply: Reply): void {
    if (r.ended) return
    this.#watchTap(r)
    if (reply.kind !== undefined && ERRORS[reply.kind].upstream) {
      // No server to try: a cache may still answer with a stale entry (stale-if-error).
      const sub = r.ctx?.responseTap?.rescue()
      if (sub !== undefined)
        reply = { status: sub.status, kind: undefined, headers: sub.headers, body: sub.body }
    }
    const { res } = r
    const own = r.ctx ? [...r.ctx.responseHeaders, ...reply.headers] : reply.headers
    const extra =
      r.trace === undefined
        ? own
        : r.trace.responseHeaders(own, reply.kind === undefined ? undefined : ERRORS[reply.kind].label)!
    // A refused request may still be sending its body: close the connection after the answer.
    const close = !r.h2 && (this.#draining || (r.hasBody && reply.status >= 400))
    let bytes = 0
    try {
      if (res.destroyed || res.headersSent) {
        // The client left while a middleware was waiting (or a fault came after the head).
        if (res.headersSent) res.destroy()
      } else if (reply.body !== undefined) {
        const headers = [
          ...extra,
          'content-length',
          String(reply.body.length),
          'x-request-id',
          r.head.requestId,
        ]
        if (close) headers.push('connection', 'close')
        // Relayed or stored heads are another server's: cleaned like a proxied one when Node
        // refuses them (a second Content-Type for an HTTP/2 client...).
        if (!writeResponseHead(res, reply.status, undefined, headers, r.h2))
          throw new Error('reply head refused')
        res.end(reply.body)
        bytes = reply.body.length
      } else if (reply.kind !== undefined) {
        bytes = replyError(res, reply.kind, r.head.requestId, close, extra)
      } else {
        const headers = [...extra, 'content-length', '0', 'x-request-id', r.head.requestId]
        if (close) headers.push('connection', 'close')
        res.writeHead(reply.status, headers)
        res.end()
      }
    } catch (err) {
      this.#log.error(
        { request_id: r.head.requestId, err: (err as Error)?.message },
        'reply could not be written',
      )
      res.destroy()
    }
    const kind = reply.kind
    // A failure of the group (no server to try) names it; any other was logged where it arose.
    const upstream = kind !== undefined && ERRORS[kind].upstream ? r.upstream : undefined
    if (upstream !== undefined) {
      logFailure(this.#log, kind!, { request_id: r.requestId, upstream }, 'upstream error')
    }
    const sent = r.method === 'HEAD' ? 0 : bytes
    this.#access.request(r, upstream, undefined, reply.status, kind, {
      bytesReceived: 0,
      bytesSent: sent,
      upstreamMs: -1,
      attempts: 0,
    })
    this.#end(r)
  }
}

const never = (): boolean => false

/** `target` (path and query) with its path normalized (normalize-path.ts), or why it cannot be. */
function renormalized(target: string, keepEscapedSlashes: boolean): string | { reason: string } {
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  const n = normalizePath(path, keepEscapedSlashes)
  if (!n.ok) return { reason: n.reason }
  return withNormalizedPath(target, path, n.path)
}

/** Placeholder until the head is built (a fault before that still has something to log). */
const EMPTY_HEAD: UpstreamRequestHead = {
  headers: [],
  requestId: '-',
  hasBody: false,
  contentLength: -1,
  transferEncoding: undefined,
  host: undefined,
  clientIp: 'unknown',
  problem: undefined,
}

function retryPolicy(
  group: RetryPolicy,
  retries: number | undefined,
  on: ReadonlySet<RetryCondition> | undefined,
): RetryPolicy {
  if (retries === undefined && on === undefined) return group
  return { retries: retries ?? group.retries, on: on ?? group.on }
}

function isChunked(te: string): boolean {
  return te.length === 7 ? te.toLowerCase() === 'chunked' : te.trim().toLowerCase() === 'chunked'
}

/** The authority of an absolute-form target replaces the Host header (and X-Forwarded-Host). */
function useTargetHost(head: UpstreamRequestHead, target: string): void {
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^/?#]*)/.exec(target)
  const authority = m?.[1]
  if (!authority) return
  const old = head.host
  head.host = authority
  setHeader(head.headers, 'host', authority)
  for (let i = 0; i < head.headers.length; i += 2) {
    if (head.headers[i] === 'x-forwarded-host' && head.headers[i + 1] === old) head.headers[i + 1] = authority
  }
}

/** Absolute-form request targets (`GET http://host/path`) are reduced to their path. */
function originForm(url: string): string {
  if (url.charCodeAt(0) === 47 /* / */) return url
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*/.exec(url)
  if (m) {
    const rest = url.slice(m[0].length)
    return rest === '' || rest[0] === '?' ? `/${rest}` : rest
  }
  return url
}

function setHeader(headers: string[], lowerName: string, value: string): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === lowerName) {
      headers[i + 1] = value
      return
    }
  }
  headers.push(lowerName, value)
}
