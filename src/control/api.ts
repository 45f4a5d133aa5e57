// The control API, on its own listener (control_api.bind_address): JSON in and out. With
// `api_key` set every request but the liveness probe `GET /healthz` needs `Authorization: Bearer`.

import http from 'node:http'
import { redact } from '../config/redact'
import type { SnapshotStore } from '../config/store'
import type { Logger } from '../observe/logger'
import { bearerMatches } from './auth'

export interface ControlApiOptions {
  store: SnapshotStore
  log: Logger
  version: string
  startedAt: number
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

type Handler = () => unknown

export function createControlServer(o: ControlApiOptions): http.Server {
  const routes: Record<string, Record<string, Handler>> = {
    '/healthz': { GET: () => ({ status: 'ok' }) },
    '/api/v1/status': { GET: () => status(o) },
    '/api/v1/config': { GET: () => redact(o.store.current().snapshot.raw) },
    '/api/v1/routes': { GET: () => routesView(o) },
    '/api/v1/upstreams': { GET: () => upstreamsView(o) },
  }
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    let status = 200
    let body: unknown
    let headers: Record<string, string> = {}
    try {
      const apiKey = o.store.current().snapshot.controlApi.apiKey
      if (apiKey !== undefined && path !== '/healthz' && !bearerMatches(req.headers.authorization, apiKey)) {
        throw new ApiError(401, 'missing or wrong API key', {
          'www-authenticate': 'Bearer realm="locci-proxy"',
        })
      }
      const methods = routes[path]
      if (!methods) throw new ApiError(404, `no such endpoint: ${path}`)
      const handler = methods[req.method ?? 'GET']
      if (!handler)
        throw new ApiError(405, `${req.method} not allowed`, { allow: Object.keys(methods).join(', ') })
      body = handler()
    } catch (err) {
      if (err instanceof ApiError) {
        status = err.status
        headers = err.headers
        body = { error: err.message }
      } else {
        status = 500
        body = { error: 'internal error' }
        o.log.error({ err }, 'control API handler failed')
      }
    }
    const text = `${JSON.stringify(body, null, 2)}\n`
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    })
    res.end(text)
    req.resume()
  })
}

function status(o: ControlApiOptions) {
  const s = o.store.current().snapshot
  return {
    status: 'running',
    mode: s.mode,
    lb_enabled: s.mode === 'load_balancer',
    gateway_enabled: s.mode === 'api_gateway',
    version: o.version,
    pid: process.pid,
    workers: s.workers,
    uptime_secs: Math.round((Date.now() - o.startedAt) / 1000),
    config_file: s.file,
  }
}

function routesView(o: ControlApiOptions) {
  const s = o.store.current().snapshot
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

function upstreamsView(o: ControlApiOptions) {
  const { snapshot, groups } = o.store.current()
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
