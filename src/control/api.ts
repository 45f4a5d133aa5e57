// The control API, on its own listener (control_api.bind_address): JSON in and out, Prometheus
// text on /metrics. With `api_key` set every request but the liveness probe `GET /healthz`
// needs `Authorization: Bearer <key>` (401 otherwise). Changes go through ControlActions, which
// validates them exactly like the config file and swaps in a new snapshot.

import http from 'node:http'
import { redact } from '../config/redact'
import type { SnapshotStore } from '../config/store'
import type { Logger } from '../observe/logger'
import type { Explanation } from '../routing/explain'
import { bearerMatches } from './auth'
import { ApiError, type ChangeOp } from './mutations'

export interface ControlActions {
  status(): Record<string, unknown>
  reload(): Promise<{ result: string; problems?: string[] }>
  change(c: ChangeOp): Promise<{ change: string; saved: boolean }>
  /** Prometheus text for the whole instance (all workers). */
  metricsText(): Promise<{ text: string; contentType: string }>
  explain(method: string, url: string, headers: string[]): Explanation
}

export interface ControlApiOptions {
  store: SnapshotStore
  log: Logger
  actions: ControlActions
}

interface Reply {
  status: number
  body: unknown
  headers?: Record<string, string>
}

type Handler = (req: http.IncomingMessage, params: string[], query: URLSearchParams) => Promise<Reply> | Reply

const MAX_BODY = 1024 * 1024

export function createControlServer(o: ControlApiOptions): http.Server {
  const a = o.actions
  const metrics = async (): Promise<Reply> => {
    const m = await a.metricsText()
    return { status: 200, body: m.text, headers: { 'content-type': m.contentType } }
  }
  const change = async (c: ChangeOp): Promise<Reply> => ({ status: 201, body: await a.change(c) })
  const routes: Array<[string, RegExp, Handler]> = [
    ['GET', /^\/healthz$/, () => ({ status: 200, body: { status: 'ok' } })],
    ['GET', /^\/api\/v1\/status$/, () => ({ status: 200, body: a.status() })],
    ['GET', /^\/api\/v1\/config$/, () => ({ status: 200, body: redact(o.store.current().snapshot.raw) })],
    ['GET', /^\/api\/v1\/metrics$/, metrics],
    ['GET', /^\/metrics$/, metrics],
    ['GET', /^\/api\/v1\/routes$/, () => ({ status: 200, body: routesView(o.store) })],
    ['GET', /^\/api\/v1\/upstreams$/, () => ({ status: 200, body: upstreamsView(o.store) })],
    ['POST', /^\/api\/v1\/routes$/, async (req) => change({ op: 'addRoute', body: await readJson(req) })],
    [
      'DELETE',
      /^\/api\/v1\/routes\/([^/]+)$/,
      async (_req, [name]) => {
        await a.change({ op: 'removeRoute', name: name! })
        return { status: 204, body: undefined }
      },
    ],
    [
      'POST',
      /^\/api\/v1\/upstreams$/,
      async (req) => change({ op: 'addUpstream', body: await readJson(req) }),
    ],
    [
      'DELETE',
      /^\/api\/v1\/upstreams\/([^/]+)\/servers\/([^/]+)$/,
      async (_req, [name, server]) => {
        await a.change({ op: 'removeServer', name: name!, server: server! })
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

  return http.createServer((req, res) => {
    void handle(req).then((r) => send(res, r))
  })

  async function handle(req: http.IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://control')
    const path = url.pathname
    try {
      const apiKey = o.store.current().snapshot.controlApi.apiKey
      if (apiKey !== undefined && path !== '/healthz' && !bearerMatches(req.headers.authorization, apiKey)) {
        throw new ApiError(
          401,
          'missing or wrong API key',
          {},
          { 'www-authenticate': 'Bearer realm="locci-proxy control"' },
        )
      }
      const matching = routes.filter(([, re]) => re.test(path))
      if (matching.length === 0) throw new ApiError(404, `no such endpoint: ${path}`)
      const hit = matching.find(([m]) => m === req.method)
      if (!hit) {
        throw new ApiError(
          405,
          `${req.method} not allowed here`,
          {},
          { allow: matching.map(([m]) => m).join(', ') },
        )
      }
      const params = (hit[1].exec(path) ?? []).slice(1).map((p) => decodeURIComponent(p))
      return await hit[2](req, params, url.searchParams)
    } catch (err) {
      if (err instanceof ApiError)
        return { status: err.status, body: { error: err.message, ...err.details }, headers: err.headers }
      o.log.error({ err: (err as Error).message }, 'control API handler failed')
      return { status: 500, body: { error: 'internal error' } }
    } finally {
      req.resume()
    }
  }
}

function send(res: http.ServerResponse, r: Reply): void {
  if (r.status === 204) {
    res.writeHead(204, r.headers ?? {})
    res.end()
    return
  }
  const text = typeof r.body === 'string' ? r.body : `${JSON.stringify(r.body, null, 2)}\n`
  res.writeHead(r.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...r.headers,
  })
  res.end(text)
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'the body is larger than 1 MiB'))
        req.destroy()
      } else chunks.push(c)
    })
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      try {
        resolve(text === '' ? undefined : JSON.parse(text))
      } catch (err) {
        reject(new ApiError(400, `the body is not valid JSON: ${(err as Error).message}`))
      }
    })
    req.on('error', reject)
  })
}

function routesView(store: SnapshotStore) {
  const s = store.current().snapshot
  return {
    routes: (s.routes?.routes ?? []).map((r) => ({
      name: r.name,
      path_pattern: r.pattern,
      methods: r.methods ? [...r.methods] : null,
      upstream: r.upstream,
      strip_prefix: r.stripPrefix,
      timeout_secs: r.timeoutMs !== undefined ? r.timeoutMs / 1000 : null,
      middlewares: r.middlewares,
    })),
  }
}

function upstreamsView(store: SnapshotStore) {
  const { snapshot, groups } = store.current()
  const now = Date.now()
  return {
    upstreams: [...groups.values()].map((g) => ({
      name: g.name,
      strategy: g.spec.strategy,
      available: g.availableCount(now),
      tls: g.tls,
      active: snapshot.activeUpstreams.includes(g.name),
      health_check: g.spec.healthCheck ? (g.spec.healthCheck.path ? 'http' : 'tcp') : null,
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
