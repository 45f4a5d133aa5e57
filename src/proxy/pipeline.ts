// The request path: snapshot -> request ID -> route (gateway mode) -> upstream group ->
// candidates -> Exchange (forward.ts). Early answers (404, 405, 503) are written here; failures
// once an upstream is involved are written by the Exchange, both through errors.ts.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RetryCondition, RetryPolicy } from '../config/snapshot'
import type { SnapshotStore } from '../config/store'
import type { AccessLog } from '../observe/access-log'
import type { Logger } from '../observe/logger'
import { stripPrefix } from '../routing/route-table'
import { ERRORS, type ErrorKind, replyError } from './errors'
import { Exchange } from './forward'
import { clientIp, upstreamRequestHead } from './headers'

export interface PipelineOptions {
  store: SnapshotStore
  log: Logger
  access: AccessLog
  proto: 'http' | 'https'
}

export class Pipeline {
  readonly #store: SnapshotStore
  readonly #log: Logger
  readonly #access: AccessLog
  readonly #proto: 'http' | 'https'
  #draining = false
  #inFlight = 0
  #idleWaiters: Array<() => void> = []

  constructor(o: PipelineOptions) {
    this.#store = o.store
    this.#log = o.log
    this.#access = o.access
    this.#proto = o.proto
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
    const start = performance.now()
    this.#inFlight++
    const { snapshot, groups } = this.#store.current()
    const method = req.method!
    const url = originForm(req.url!)
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)

    let upstreamName: string
    let routeName: string | undefined
    let upstreamPath = url
    let timeoutMs = snapshot.upstreamTimeoutMs
    let routeRetries: number | undefined
    let routeRetryOn: ReadonlySet<RetryCondition> | undefined

    const group0 = snapshot.routes ? undefined : groups.get(snapshot.lbUpstream!)
    const head = upstreamRequestHead(req.rawHeaders, {
      clientIp: clientIp(req.socket.remoteAddress),
      proto: this.#proto,
      hostOverride: group0?.hostOverride,
    })

    if (snapshot.routes) {
      const m = snapshot.routes.match(method, path)
      if (m.kind === 'no_route') {
        this.#early(req, res, start, head.requestId, path, 'no_route')
        return
      }
      if (m.kind === 'method_not_allowed') {
        this.#early(req, res, start, head.requestId, path, 'method_not_allowed', undefined, [
          'allow',
          m.allow,
        ])
        return
      }
      const route = m.route
      routeName = route.name
      upstreamName = route.upstream
      if (route.stripPrefix) upstreamPath = stripPrefix(route.regex, url)
      if (route.timeoutMs !== undefined) timeoutMs = route.timeoutMs
      routeRetries = route.retries
      routeRetryOn = route.retryOn
    } else {
      upstreamName = snapshot.lbUpstream!
    }

    const group = group0 ?? groups.get(upstreamName)!
    if (group0 === undefined && group.hostOverride !== undefined) {
      // Gateway routes learn their group only now; apply its Host override.
      setHeader(head.headers, 'host', group.hostOverride)
    }
    const now = Date.now()
    group.budget.request(now)
    const candidates = group.candidates({ clientIp: head.clientIp, path, rawHeaders: req.rawHeaders }, now)
    if (candidates.length === 0) {
      this.#early(
        req,
        res,
        start,
        head.requestId,
        path,
        'no_healthy_peer',
        routeName,
        undefined,
        upstreamName,
      )
      return
    }
    new Exchange({
      req,
      res,
      log: this.#log,
      access: this.#access,
      start,
      requestId: head.requestId,
      method,
      upstreamPath,
      logPath: path,
      headers: head.headers,
      hasBody: head.hasBody,
      timeoutMs,
      route: routeName,
      upstream: upstreamName,
      group,
      retry: retryPolicy(group.retry, routeRetries, routeRetryOn),
      candidates,
      closing: this.#closing,
      onDone: this.#done,
    }).start()
  }

  #early(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    requestId: string,
    path: string,
    kind: ErrorKind,
    route?: string,
    extra?: string[],
    upstream?: string,
  ): void {
    replyError(res, kind, requestId, this.#draining, extra)
    if (ERRORS[kind].warn) {
      this.#log.warn({ request_id: requestId, upstream, error_type: kind }, 'upstream error')
    }
    this.#access.write({
      method: req.method!,
      path,
      route,
      upstream,
      server: undefined,
      status: ERRORS[kind].status,
      duration_ms: Math.round((performance.now() - start) * 1000) / 1000,
      request_id: requestId,
      error_type: kind,
    })
    this.#done()
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
