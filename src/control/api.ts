// The control API, on its own listener (control_api.bind_address): JSON in and out, Prometheus
// text on /metrics. With `api_key` set every request but the liveness probe `GET /healthz`
// needs `Authorization: Bearer <key>` (401 otherwise). Requests sent by web pages (CSRF, DNS
// rebinding) are refused with 403, key or not (browser.ts). Changes go through ControlActions,
// which validates them exactly like the config file and swaps in a new snapshot. No request can
// end the process: the key is checked first, client mistakes are 4xx, anything else a logged 500.

import http from 'node:http'
import type { ChangeOp } from '../config/mutations'
import { redact } from '../config/redact'
import { ChangeRefused, type RefusalReason } from '../config/refused'
import type { Snapshot } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import { summarize } from '../observe/series'
import type { Explanation } from '../routing/explain'
import type { UpstreamGroup } from '../upstream/group'
import { bearerMatches } from './auth'
import { browserRefusal } from './browser'
import { DASHBOARD_CSP, type DashboardData, EventHub, loadDashboardFiles, type StaticFile } from './dashboard'

/** A refusal this API answers with a status of its own choosing (bad query, wrong method, ...). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

/** A config change the config refused, as HTTP sees it. */
const REFUSAL_STATUS: Readonly<Record<RefusalReason, number>> = {
  invalid: 400,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
}

export interface ControlActions {
  status(): Record<string, unknown>
  reload(): Promise<{ result: string; problems?: string[] }>
  /**
   * `ifRevision`: the runtime layer's revision the client last read (If-Match); another one
   * refuses the change as a conflict.
   */
  change(c: ChangeOp, ifRevision?: number): Promise<{ change: string; saved: boolean; revision?: number }>
  /** Prometheus text for the whole instance (all workers). */
  metricsText(): Promise<{ text: string; contentType: string }>
  explain(method: string, url: string, headers: string[]): Explanation
  /** Drops cached responses (every cache middleware, every worker) for a path or under a prefix. */
  purgeCache(m: CachePurge): Promise<{ purged: number }>
  /** The instance's recent series (every worker) and the config's revision and history. */
  dashboard(): Promise<DashboardData>
}

/** One of the two: `path` (exactly) or `prefix` (every path starting with it). */
export interface CachePurge {
  path?: string
  prefix?: string
}

/** What the API shows: the live config and the upstream groups serving it. */
export interface ControlView {
  readonly snapshot: Snapshot
  readonly groups: ReadonlyMap<string, UpstreamGroup>
}

export interface ControlApiOptions {
  /** The live view, read once per request. */
  current: () => ControlView
  log: Logger
  actions: ControlActions
  /** Deadline for a request body; BODY_TIMEOUT_MS unless a test wants it shorter. */
  bodyTimeoutMs?: number
  /** The dashboard's files (loadDashboardFiles() unless a test brings its own). */
  dashboardFiles?: Map<string, StaticFile> | undefined
  /** The event stream's limits, for tests (dashboard.ts has the defaults). */
  events?: { tickMs?: number; maxStreams?: number; stallTicks?: number }
}

interface Reply {
  status: number
  body: unknown
  headers?: Record<string, string>
  /** Set for a reply that takes over the response (the event stream); status and body unused. */
  stream?: (res: http.ServerResponse) => void
}

/** Paths answered without the key: the liveness probe and the dashboard's static files. */
const OPEN_PATHS = new Set([
  '/healthz',
  '/dashboard',
  '/dashboard/',
  '/dashboard/app.js',
  '/dashboard/app.css',
])

type Handler = (req: http.IncomingMessage, params: string[], query: URLSearchParams) => Promise<Reply> | Reply

const MAX_BODY = 1024 * 1024
const MAX_DEPTH = 32
/** How long a request body may take to arrive (a slow client holds a connection, not the API). */
export const BODY_TIMEOUT_MS = 10_000

/**
 * Server options for the proxy's own small HTTP servers (control API, ops listener): slow or
 * never-ending request heads are cut off by Node (408 and close), whole requests after 30 s.
 */
export const ADMIN_SERVER_OPTIONS: http.ServerOptions = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  connectionsCheckingInterval: 1000,
}

export function createControlServer(o: ControlApiOptions): http.Server {
  const a = o.actions
  const bodyTimeout = o.bodyTimeoutMs ?? BODY_TIMEOUT_MS
  const metrics = async (): Promise<Reply> => {
    const m = await a.metricsText()
    return { status: 200, body: m.text, headers: { 'content-type': m.contentType } }
  }
  const change = async (c: ChangeOp, req?: http.IncomingMessage): Promise<Reply> => ({
    status: 201,
    body: await a.change(c, req && ifMatch(req)),
  })
  const files = 'dashboardFiles' in o ? o.dashboardFiles : loadDashboardFiles()
  const page = (name: string): Reply => {
    const f = files?.get(name)
    if (f === undefined) {
      throw new ApiError(
        503,
        'the dashboard files are missing from this installation (dashboard/ beside dist/); the API works without them',
      )
    }
    return {
      status: 200,
      body: f.body,
      headers: {
        'content-type': f.type,
        'content-security-policy': DASHBOARD_CSP,
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-cache',
      },
    }
  }
  const hub = new EventHub({
    ...o.events,
    payload: async () => dashboardState(o.current(), a, await a.dashboard()),
    onError: (err) =>
      o.log.error({ err: errorText(err) }, 'dashboard event stream: building the state failed'),
  })
  const routes: Array<[string, RegExp, Handler]> = [
    ['GET', /^\/healthz$/, () => ({ status: 200, body: { status: 'ok' } })],
    ['GET', /^\/dashboard$/, () => ({ status: 308, body: undefined, headers: { location: '/dashboard/' } })],
    ['GET', /^\/dashboard\/$/, () => page('index.html')],
    ['GET', /^\/dashboard\/(app\.js|app\.css)$/, (_req, [name]) => page(name!)],
    [
      'GET',
      /^\/api\/v1\/events$/,
      () => ({
        status: 200,
        body: undefined,
        stream: (res) => {
          if (!hub.open(res)) {
            send(res, {
              status: 429,
              body: { error: 'too many dashboard event streams are open; close a dashboard tab and retry' },
              headers: { 'retry-after': '5' },
            })
          }
        },
      }),
    ],
    ['GET', /^\/api\/v1\/status$/, () => ({ status: 200, body: a.status() })],
    ['GET', /^\/api\/v1\/config$/, () => ({ status: 200, body: redact(o.current().snapshot.raw) })],
    ['GET', /^\/api\/v1\/metrics$/, metrics],
    ['GET', /^\/metrics$/, metrics],
    ['GET', /^\/api\/v1\/routes$/, () => ({ status: 200, body: routesView(o.current()) })],
    ['GET', /^\/api\/v1\/upstreams$/, () => ({ status: 200, body: upstreamsView(o.current()) })],
    [
      'POST',
      /^\/api\/v1\/routes$/,
      async (req) => change({ op: 'addRoute', body: await readJson(req, bodyTimeout) }, req),
    ],
    [
      'DELETE',
      /^\/api\/v1\/routes\/([^/]+)$/,
      async (req, [name]) => {
        await a.change({ op: 'removeRoute', name: name! }, ifMatch(req))
        return { status: 204, body: undefined }
      },
    ],
    [
      'PATCH',
      /^\/api\/v1\/routes\/([^/]+)$/,
      async (req, [name]) => ({
        status: 200,
        body: await a.change(
          { op: 'setRouteWeights', name: name!, body: await readJson(req, bodyTimeout) },
          ifMatch(req),
        ),
      }),
    ],
    [
      'POST',
      /^\/api\/v1\/upstreams$/,
      async (req) => change({ op: 'addUpstream', body: await readJson(req, bodyTimeout) }, req),
    ],
    [
      'DELETE',
      /^\/api\/v1\/upstreams\/([^/]+)\/servers\/([^/]+)$/,
      async (req, [name, server]) => {
        await a.change({ op: 'removeServer', name: name!, server: server! }, ifMatch(req))
        return { status: 204, body: undefined }
      },
    ],
    [
      'POST',
      /^\/api\/v1\/reload$/,
      async () => {
        const r = await a.reload()
        return { status: r.result === 'failure' ? 422 : 200, body: r }
      },
    ],
    [
      'DELETE',
      /^\/api\/v1\/cache$/,
      async (_req, _p, q) => {
        const path = q.get('path') ?? undefined
        const prefix = q.get('prefix') ?? undefined
        if ((path === undefined) === (prefix === undefined))
          throw new ApiError(400, 'give one query parameter: "path" or "prefix"')
        const value = (path ?? prefix)!
        if (!value.startsWith('/')) throw new ApiError(400, `"${path ? 'path' : 'prefix'}" must start with /`)
        return { status: 200, body: await a.purgeCache(path !== undefined ? { path } : { prefix }) }
      },
    ],
    [
      'GET',
      /^\/api\/v1\/explain$/,
      (_req, _p, q) => {
        const method = q.get('method') ?? 'GET'
        const path = q.get('path')
        if (!path?.startsWith('/'))
          throw new ApiError(400, 'query parameter "path" is required and must start with /')
        const headers = q.getAll('header').flatMap((h) => {
          const colon = h.indexOf(':')
          if (colon <= 0) throw new ApiError(400, `header "${h}" must be "Name: value"`)
          return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()]
        })
        return { status: 200, body: a.explain(method, path, headers) }
      },
    ],
  ]

  // Bodies have their own deadline in readJson.
  const server = http.createServer(ADMIN_SERVER_OPTIONS, (req, res) => {
    res.on('error', () => undefined) // the client went away: nothing to tell it
    if (o.log.isLevelEnabled('debug')) logWhenDone(req, res)
    serve(req, res).catch((err: unknown) => fault(res, err))
  })
  server.on('close', () => hub.close())
  return server

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const r = await respond(req)
    if (res.destroyed) return
    // A reply sent before the body was read (401, 413, 408, 415...) closes the connection, so
    // an unread (maybe endless) body is never drained on a kept-alive socket.
    if (!req.complete) r.headers = { ...r.headers, connection: 'close' }
    if (r.stream) r.stream(res)
    else send(res, r)
  }

  /** Control-API requests are logged at debug (the query string left out: it may name secrets). */
  function logWhenDone(req: http.IncomingMessage, res: http.ServerResponse): void {
    const start = performance.now()
    res.once('close', () => {
      o.log.debug(
        {
          method: req.method,
          path: requestTarget(req.url ?? '')?.path ?? '-',
          status: res.headersSent ? res.statusCode : 499,
          duration_ms: Math.round((performance.now() - start) * 1000) / 1000,
          client: req.socket.remoteAddress,
        },
        'control API request',
      )
    })
  }

  /** A fault outside respond() (a reply that cannot be serialized or written): 500, logged. */
  function fault(res: http.ServerResponse, err: unknown): void {
    o.log.error({ err: errorText(err) }, 'control API failed to answer')
    try {
      if (res.headersSent) res.destroy()
      else send(res, { status: 500, body: { error: 'internal error' }, headers: { connection: 'close' } })
    } catch {
      res.destroy()
    }
  }

  /**
   * Every request ends here with a reply, whatever it sent: the key is checked first (nothing
   * else is looked at for an unauthenticated request but its path, to let /healthz through),
   * then requests from web pages are refused (403, see browser.ts), a client mistake is a 4xx ApiError, and anything else is a 500 logged at error.
   */
  async function respond(req: http.IncomingMessage): Promise<Reply> {
    try {
      const t = requestTarget(req.url ?? '')
      const control = o.current().snapshot.controlApi
      const apiKey = control.apiKey
      if (
        apiKey !== undefined &&
        !(t !== undefined && OPEN_PATHS.has(t.path)) &&
        !bearerMatches(req.headers.authorization, apiKey)
      ) {
        throw new ApiError(
          401,
          'missing or wrong API key',
          {},
          { 'www-authenticate': 'Bearer realm="locci-proxy control"' },
        )
      }
      const refusal = browserRefusal(req.headers, { apiKey, bindHost: control.bind.host })
      if (refusal !== undefined) throw new ApiError(403, refusal)
      if (t === undefined)
        throw new ApiError(400, 'the request target must be a path, such as /api/v1/status')
      const path = t.path
      const matching = routes.filter(([, re]) => re.test(path))
      if (matching.length === 0) throw new ApiError(404, `no such endpoint: ${clip(path)}`)
      const hit = matching.find(([m]) => m === req.method)
      if (!hit) {
        throw new ApiError(
          405,
          `${req.method} not allowed here`,
          {},
          { allow: matching.map(([m]) => m).join(', ') },
        )
      }
      const params = (hit[1].exec(path) ?? []).slice(1).map(decodeParam)
      return await hit[2](req, params, t.query)
    } catch (err) {
      if (err instanceof ApiError)
        return { status: err.status, body: { error: err.message, ...err.details }, headers: err.headers }
      if (err instanceof ChangeRefused)
        return { status: REFUSAL_STATUS[err.reason], body: { error: err.message, ...err.details } }
      o.log.error(
        { err: errorText(err), method: req.method, url: clip(req.url ?? '') },
        'control API handler failed',
      )
      return { status: 500, body: { error: 'internal error' } }
    } finally {
      req.resume()
    }
  }
}

/**
 * The path and query of a request target, or undefined when it is not one this API serves.
 * Origin-form (`/a?b`) is split by hand, never parsed as a URL: `//a:99999/` is a path here,
 * not a scheme-relative URL with a bad port. Absolute-form (RFC 9112 3.2.2) is accepted; `*`
 * and anything unparsable are not. Never throws.
 */
export function requestTarget(raw: string): { path: string; query: URLSearchParams } | undefined {
  if (raw.startsWith('/')) {
    const q = raw.indexOf('?')
    return q < 0
      ? { path: raw, query: new URLSearchParams() }
      : { path: raw.slice(0, q), query: new URLSearchParams(raw.slice(q + 1)) }
  }
  if (!/^https?:\/\//i.test(raw) || !URL.canParse(raw)) return undefined
  const u = new URL(raw)
  return { path: u.pathname, query: u.searchParams }
}

/**
 * The revision in an If-Match header (`"7"`, `7`, `W/"7"`): a change is made only if the runtime
 * config is still at that revision (`revision` in /api/v1/status and in every change's answer).
 * Absent or `*`: any revision.
 */
export function ifMatch(req: http.IncomingMessage): number | undefined {
  const v = req.headers['if-match']?.trim()
  if (v === undefined || v === '*') return undefined
  const m = /^(?:W\/)?"?(\d{1,15})"?$/.exec(v)
  if (!m) throw new ApiError(400, `If-Match must be a runtime config revision such as "7" (got ${clip(v)})`)
  return Number(m[1])
}

function decodeParam(p: string): string {
  try {
    return decodeURIComponent(p)
  } catch {
    throw new ApiError(400, `bad percent-encoding in the path: ${clip(p)}`)
  }
}

/** Echoed request parts are cut short: a 10 KB path need not come back whole. */
function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}...` : s
}

function errorText(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err)
}

function send(res: http.ServerResponse, r: Reply): void {
  if (r.status === 204 || r.body === undefined) {
    res.writeHead(r.status, r.headers ?? {})
    res.end()
    return
  }
  const text =
    typeof r.body === 'string' || Buffer.isBuffer(r.body) ? r.body : `${JSON.stringify(r.body, null, 2)}\n`
  res.writeHead(r.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...r.headers,
  })
  res.end(text)
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json[ \t]*(?:;|$)/i

/**
 * The request body parsed as JSON (undefined when empty). Refused: a body that is not declared
 * `application/json` (415; this also keeps a web page's form or text/plain POST, which a
 * browser sends without asking, away from a control API without a key), more than 1 MiB (413),
 * not complete within `deadlineMs` (408), nested deeper than MAX_DEPTH (400), not JSON (400).
 * A client that leaves early rejects with a 400 nobody will read.
 */
function readJson(req: http.IncomingMessage, deadlineMs: number): Promise<unknown> {
  const length = req.headers['content-length']
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  if (!hasBody) return Promise.resolve(undefined)
  if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) {
    return Promise.reject(
      new ApiError(415, 'the body must be JSON, sent with content-type: application/json'),
    )
  }
  if (Number(length) > MAX_BODY) return Promise.reject(new ApiError(413, 'the body is larger than 1 MiB'))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let settled = false
    const finish = (err: Error | undefined, value?: unknown) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.off('data', onData)
      if (err) reject(err)
      else resolve(value)
    }
    const timer = setTimeout(
      () => finish(new ApiError(408, `the body did not arrive within ${deadlineMs / 1000} s`)),
      deadlineMs,
    )
    const onData = (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) finish(new ApiError(413, 'the body is larger than 1 MiB'))
      else chunks.push(c)
    }
    req.on('data', onData)
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      let value: unknown
      try {
        value = text === '' ? undefined : JSON.parse(text)
      } catch (err) {
        finish(new ApiError(400, `the body is not valid JSON: ${(err as Error).message}`))
        return
      }
      if (tooDeep(value, MAX_DEPTH))
        finish(new ApiError(400, `the body is nested deeper than ${MAX_DEPTH} levels`))
      else finish(undefined, value)
    })
    const gone = () =>
      finish(new ApiError(400, 'the client closed the connection before the body was complete'))
    req.on('error', gone)
    req.on('close', gone)
  })
}

/** Config documents are shallow; a deep body would only exhaust the stack further on. */
function tooDeep(v: unknown, left: number): boolean {
  if (v === null || typeof v !== 'object') return false
  if (left === 0) return true
  for (const x of Object.values(v)) if (tooDeep(x, left - 1)) return true
  return false
}

/** One tick of the dashboard's event stream: everything every panel shows. */
function dashboardState(view: ControlView, a: ControlActions, d: DashboardData) {
  const { points, routes } = summarize(d.series)
  return {
    at: new Date().toISOString(),
    status: a.status(),
    config: d.config,
    series: points,
    routes: routesView(view).routes.map((r) => ({ ...r, stats: routes[r.name] ?? null })),
    // The load balancer has no routes: its traffic counts under ''.
    traffic: routes[''] ?? null,
    upstreams: upstreamsView(view).upstreams,
  }
}

function routesView({ snapshot }: ControlView) {
  return {
    routes: (snapshot.mode.kind === 'api_gateway' ? snapshot.mode.routes : []).map((r) => ({
      name: r.name,
      path_pattern: r.pattern,
      methods: r.methods ? [...r.methods] : null,
      upstream: r.upstream,
      upstreams: r.split ? r.split.groups.map((name, i) => ({ name, weight: r.split!.weights[i] })) : null,
      strip_prefix: r.stripPrefix,
      timeout_secs: r.timeoutMs !== undefined ? r.timeoutMs / 1000 : null,
      middlewares: r.middlewares,
    })),
  }
}

function upstreamsView({ snapshot, groups }: ControlView) {
  const now = Date.now()
  return {
    upstreams: [...groups.values()].map((g) => ({
      name: g.name,
      strategy: g.spec.strategy,
      available: g.availableCount(now),
      tls: g.tls,
      active: snapshot.activeUpstreams.includes(g.name),
      health_check: g.spec.healthCheck ? (g.spec.healthCheck.path ? 'http' : 'tcp') : null,
      circuit_breaker: g.breaker
        ? {
            state: g.breaker.state,
            fallback: g.breaker.spec.fallback ?? null,
            opened_at: g.breaker.openedAt > 0 ? new Date(g.breaker.openedAt).toISOString() : null,
          }
        : null,
      // dns: and srv: servers as written, with the addresses they resolve to now (also in servers).
      discovery: g.discovery ? g.discovery.view() : null,
      servers: g.peers.map((p) => ({
        address: p.address,
        weight: p.weight,
        healthy: p.healthy,
        ejected: p.ejectedUntil > now,
        ejected_until: p.ejectedUntil > now ? new Date(p.ejectedUntil).toISOString() : null,
        consecutive_failures: p.consecutiveFailures,
        in_flight: p.inFlight,
      })),
    })),
  }
}
