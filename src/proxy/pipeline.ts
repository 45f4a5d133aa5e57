// The request path: snapshot -> request ID -> route (gateway mode) -> middleware chain ->
// upstream group -> candidates -> Exchange (forward.ts). Answers given before an upstream is
// involved (404, 405, a middleware's 401/429/204, 503 with no server) are written here; later
// failures by the Exchange; both through errors.ts.

import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { RetryCondition, RetryPolicy } from '../config/snapshot'
import type { Runtime, SnapshotStore } from '../config/store'
import { isPreflight } from '../middleware/cors/index'
import { type Chain, LB_CHAIN } from '../middleware/registry'
import {
  type MiddlewareResult,
  type Reply,
  type RequestContext,
  rawHeader,
  runChain,
} from '../middleware/types'
import type { AccessLog } from '../observe/access-log'
import type { Logger } from '../observe/logger'
import { stripPrefix } from '../routing/route-table'
import { ERRORS, type ErrorKind, replyError } from './errors'
import { Exchange } from './forward'
import { clientIp, type UpstreamRequestHead, upstreamRequestHead } from './headers'
import { forwardUpgrade } from './upgrade'

export interface PipelineOptions {
  store: SnapshotStore
  log: Logger
  access: AccessLog
}

/** One request on its way through the pipeline, once routed. */
interface Routed {
  req: IncomingMessage
  /** A ServerResponse, or for an Upgrade request a writer of raw replies on its socket. */
  res: ServerResponse
  /** The request came over HTTP/2: no h1-only headers (Connection) and no reason phrase. */
  h2: boolean
  /** Set for an Upgrade (WebSocket) request. */
  upgrade: { socket: Socket; head: Buffer; protocol: string } | undefined
  start: number
  rt: Runtime
  method: string
  path: string
  upstreamPath: string
  head: UpstreamRequestHead
  route: string | undefined
  upstream: string
  timeoutMs: number
  retries: number | undefined
  retryOn: ReadonlySet<RetryCondition> | undefined
  ctx: RequestContext | undefined
}

export class Pipeline {
  readonly #store: SnapshotStore
  readonly #log: Logger
  readonly #access: AccessLog
  #draining = false
  #inFlight = 0
  #idleWaiters: Array<() => void> = []

  constructor(o: PipelineOptions) {
    this.#store = o.store
    this.#log = o.log
    this.#access = o.access
  }

  get inFlight(): number {
    return this.#inFlight
  }

  /** From now on every response asks the client to close its connection. */
  drain(): void {
    this.#draining = true
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  #closing = (): boolean => this.#draining

  #done = (): void => {
    if (--this.#inFlight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#begin(req, res, undefined)
  }

  /** An HTTP/1.1 Upgrade request (WebSocket): routed and checked like any request. */
  upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    const protocol = rawHeader(req.rawHeaders, 'upgrade') ?? ''
    this.#begin(req, new RawReply(socket) as unknown as ServerResponse, { socket, head, protocol })
  }

  #begin(req: IncomingMessage, res: ServerResponse, upgrade: Routed['upgrade']): void {
    const start = performance.now()
    this.#inFlight++
    const rt = this.#store.current()
    const { snapshot } = rt
    const method = req.method!
    const url = originForm(req.url!)
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    const head = upstreamRequestHead(req.rawHeaders, {
      clientIp: clientIp(req.socket.remoteAddress),
      proto: snapshot.tls ? 'https' : 'http',
      hostOverride: undefined,
    })

    const r: Routed = {
      req,
      res,
      h2: req.httpVersionMajor === 2,
      upgrade,
      start,
      rt,
      method,
      path,
      upstreamPath: url,
      head,
      route: undefined,
      upstream: snapshot.lbUpstream ?? '',
      timeoutMs: snapshot.upstreamTimeoutMs,
      retries: undefined,
      retryOn: undefined,
      ctx: undefined,
    }
    let chain: Chain | undefined
    const preflight = isPreflight(method, req.rawHeaders)
    if (snapshot.routes) {
      // A CORS preflight is routed by the method it asks about, when that route answers CORS.
      let m = snapshot.routes.match(
        preflight ? rawHeader(req.rawHeaders, 'access-control-request-method')!.toUpperCase() : method,
        path,
      )
      if (preflight && (m.kind !== 'route' || !rt.chains.get(m.route.name)?.preflight.length)) {
        m = snapshot.routes.match(method, path)
      }
      if (m.kind === 'no_route') return this.#reply(r, { status: 404, kind: 'no_route', headers: [] })
      if (m.kind === 'method_not_allowed') {
        return this.#reply(r, { status: 405, kind: 'method_not_allowed', headers: ['allow', m.allow] })
      }
      const route = m.route
      r.route = route.name
      r.upstream = route.upstream
      if (route.stripPrefix) r.upstreamPath = stripPrefix(route.regex, url)
      if (route.timeoutMs !== undefined) r.timeoutMs = route.timeoutMs
      r.retries = route.retries
      r.retryOn = route.retryOn
      chain = rt.chains.get(route.name)
    } else {
      chain = rt.chains.get(LB_CHAIN)
    }

    if (chain === undefined) return this.#forward(r)
    const ctx: RequestContext = {
      method,
      path,
      clientIp: head.clientIp,
      rawHeaders: req.rawHeaders,
      requestId: head.requestId,
      upstreamHeaders: head.headers,
      responseHeaders: [],
      dropResponseHeaders: undefined,
    }
    r.ctx = ctx
    const result = runChain(
      preflight && chain.preflight.length > 0 ? chain.preflight : chain.middlewares,
      ctx,
    )
    if (result instanceof Promise) {
      result.then(
        (reply) => this.#afterChain(r, reply),
        (err: Error) => {
          this.#log.error({ request_id: head.requestId, err: err.message }, 'middleware failed')
          this.#reply(r, { status: 500, kind: 'internal', headers: [] })
        },
      )
    } else {
      this.#afterChain(r, result)
    }
  }

  #afterChain(r: Routed, reply: MiddlewareResult): void {
    if (reply !== undefined) return this.#reply(r, reply)
    r.head.headers = r.ctx!.upstreamHeaders
    this.#forward(r)
  }

  #forward(r: Routed): void {
    const group = r.rt.groups.get(r.upstream)!
    if (group.hostOverride !== undefined) setHeader(r.head.headers, 'host', group.hostOverride)
    const now = Date.now()
    group.budget.request(now)
    const candidates = group.candidates(
      { clientIp: r.head.clientIp, path: r.path, rawHeaders: r.req.rawHeaders },
      now,
    )
    if (candidates.length === 0) return this.#reply(r, { status: 503, kind: 'no_healthy_peer', headers: [] })
    if (r.upgrade) {
      return forwardUpgrade({
        socket: r.upgrade.socket,
        head: r.upgrade.head,
        method: r.method,
        upstreamPath: r.upstreamPath,
        logPath: r.path,
        headers: r.head.headers,
        upgrade: r.upgrade.protocol,
        requestId: r.head.requestId,
        route: r.route,
        upstream: r.upstream,
        group,
        candidates,
        responseHeaders: r.ctx?.responseHeaders,
        connectTimeoutMs: r.rt.snapshot.pool.connectTimeoutMs,
        idleTimeoutMs: r.rt.snapshot.websocketIdleMs,
        log: this.#log,
        access: this.#access,
        start: r.start,
        onDone: this.#done,
      })
    }
    new Exchange({
      req: r.req,
      res: r.res,
      log: this.#log,
      access: this.#access,
      start: r.start,
      requestId: r.head.requestId,
      method: r.method,
      upstreamPath: r.upstreamPath,
      logPath: r.path,
      headers: r.head.headers,
      responseHeaders: r.ctx?.responseHeaders,
      dropResponseHeaders: r.ctx?.dropResponseHeaders,
      hasBody: r.head.hasBody,
      timeoutMs: r.timeoutMs,
      route: r.route,
      upstream: r.upstream,
      group,
      retry: retryPolicy(group.retry, r.retries, r.retryOn),
      candidates,
      h2: r.h2,
      closing: r.h2 ? never : this.#closing,
      onDone: this.#done,
    }).start()
  }

  /** Answers without an upstream: routing errors, a middleware's reply, no available server. */
  #reply(r: Routed, reply: Reply): void {
    const { res } = r
    const extra = r.ctx ? [...r.ctx.responseHeaders, ...reply.headers] : reply.headers
    if (res.destroyed) {
      // The client left while a middleware was waiting.
    } else if (reply.kind !== undefined) {
      replyError(res, reply.kind, r.head.requestId, this.#draining && !r.h2, extra)
    } else {
      const headers = [...extra, 'content-length', '0', 'x-request-id', r.head.requestId]
      if (this.#draining && !r.h2) headers.push('connection', 'close')
      res.writeHead(reply.status, headers)
      res.end()
    }
    const kind: ErrorKind | undefined = reply.kind
    const upstream = kind === 'no_healthy_peer' ? r.upstream : undefined
    if (kind !== undefined && ERRORS[kind].warn) {
      this.#log.warn({ request_id: r.head.requestId, upstream, error_type: kind }, 'upstream error')
    }
    this.#access.write({
      method: r.method,
      path: r.path,
      route: r.route,
      upstream,
      server: undefined,
      status: reply.status,
      duration_ms: Math.round((performance.now() - r.start) * 1000) / 1000,
      request_id: r.head.requestId,
      error_type: kind,
    })
    this.#done()
  }
}

const never = (): boolean => false

/**
 * Stands in for a ServerResponse when answering an Upgrade request without an upstream
 * (404, 401, 429...): writes the answer as raw HTTP/1.1 on the socket and closes it.
 */
class RawReply {
  readonly #socket: Socket
  #status = 0
  #headers: readonly string[] = []
  headersSent = false

  constructor(socket: Socket) {
    this.#socket = socket
  }

  get destroyed(): boolean {
    return this.#socket.destroyed
  }

  writeHead(status: number, headers: readonly string[]): this {
    this.#status = status
    this.#headers = headers
    this.headersSent = true
    return this
  }

  end(body?: string): void {
    let head = `HTTP/1.1 ${this.#status} ${STATUS_CODES[this.#status] ?? ''}\r\n`
    for (let i = 0; i < this.#headers.length; i += 2) {
      if (this.#headers[i] !== 'connection') head += `${this.#headers[i]}: ${this.#headers[i + 1]}\r\n`
    }
    this.#socket.end(`${head}connection: close\r\n\r\n${body ?? ''}`)
  }
}

function retryPolicy(
  group: RetryPolicy,
  retries: number | undefined,
  on: ReadonlySet<RetryCondition> | undefined,
): RetryPolicy {
  if (retries === undefined && on === undefined) return group
  return { retries: retries ?? group.retries, on: on ?? group.on }
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
