// The ops listener (server.ops_bind_address): what probes and scrapers need, without the control
// API's key and without any way to change anything. GET or HEAD only:
// - /healthz: 200 while the process is up (liveness);
// - /readyz: 200 when the proxy should get traffic, 503 while it starts, while it drains after
//   SIGTERM, or while an upstream group with health checks has no healthy server (readiness);
//   the JSON body says which;
// - /metrics: the Prometheus text of the control API's /metrics (every worker summed).
// The request target is read the control API's way (requestTarget), a body is never read (the
// connection is closed after the answer instead), and slow request heads are cut off by Node.
// Host is not checked: Prometheus names its targets by DNS name, and nothing here is secret
// enough to refuse them for (see docs/GUIDE.md, "Probes and scraping").

import http from 'node:http'
import { ADMIN_SERVER_OPTIONS, requestTarget } from '../control/api'
import type { Logger } from '../observe/logger'
import type { UpstreamGroup } from '../upstream/group'
import type { MetricsText } from './protocol'

/** Where the instance is in its life: only `running` can be ready. */
export type Phase = 'starting' | 'running' | 'draining'

/** What readiness looks at, read once per request. */
export interface ReadinessView {
  phase: Phase
  /** The live upstream groups, and which of them the active mode sends traffic to. */
  groups: ReadonlyMap<string, UpstreamGroup>
  activeUpstreams: readonly string[]
}

export interface OpsOptions {
  readiness: () => ReadinessView
  metricsText: () => Promise<MetricsText>
  log: Logger
}

interface Reply {
  status: number
  body: string
  headers: Record<string, string>
}

/** The checked groups' health, as /readyz shows it. */
interface GroupHealth {
  name: string
  healthy: number
  servers: number
}

/** Probes and scrapes are a handful of connections; a flood of idle ones is refused beyond this. */
const MAX_CONNECTIONS = 1000
const PATHS = new Set(['/healthz', '/readyz', '/metrics'])

/**
 * The /readyz answer. Not ready while starting or draining, nor while an active group that has
 * health checks has no server the checks call healthy (passive ejections do not count: they
 * are short and would make readiness flap with the traffic).
 */
export function readiness(v: ReadinessView): { status: number; body: Record<string, unknown> } {
  const checked: GroupHealth[] = []
  for (const name of v.activeUpstreams) {
    const g = v.groups.get(name)
    if (!g?.spec.healthCheck) continue
    checked.push({ name, healthy: g.peers.filter((p) => p.healthy).length, servers: g.peers.length })
  }
  const upstreams = { upstreams: checked }
  if (v.phase === 'starting')
    return { status: 503, body: { status: 'starting', reason: 'the proxy is starting', ...upstreams } }
  if (v.phase === 'draining') {
    const reason = 'the proxy is shutting down: finishing in-flight requests, taking no new ones'
    return { status: 503, body: { status: 'draining', reason, ...upstreams } }
  }
  const down = checked.filter((g) => g.healthy === 0).map((g) => g.name)
  if (down.length > 0) {
    const reason = `no healthy server in upstream group${down.length === 1 ? '' : 's'} ${down.join(', ')}`
    return { status: 503, body: { status: 'no_healthy_upstream', reason, ...upstreams } }
  }
  return { status: 200, body: { status: 'ready', ...upstreams } }
}

export function createOpsServer(o: OpsOptions): http.Server {
  const server = http.createServer(ADMIN_SERVER_OPTIONS, (req, res) => {
    res.on('error', () => undefined) // the client went away: nothing to tell it
    respond(req).then(
      (r) => send(req, res, r),
      (err: unknown) => {
        o.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'ops listener failed to answer')
        send(req, res, json(500, { error: 'internal error' }))
      },
    )
  })
  server.maxConnections = MAX_CONNECTIONS
  return server

  async function respond(req: http.IncomingMessage): Promise<Reply> {
    const t = requestTarget(req.url ?? '')
    if (t === undefined) return json(400, { error: 'the request target must be a path, such as /readyz' })
    if (!PATHS.has(t.path)) return json(404, { error: `no such endpoint: ${clip(t.path)}` })
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const r = json(405, { error: `${clip(req.method ?? '')} not allowed here` })
      return { ...r, headers: { ...r.headers, allow: 'GET, HEAD' } }
    }
    if (t.path === '/healthz') return json(200, { status: 'ok' })
    if (t.path === '/readyz') {
      const r = readiness(o.readiness())
      return json(r.status, r.body)
    }
    const m = await o.metricsText()
    return { status: 200, body: m.text, headers: { 'content-type': m.contentType } }
  }
}

function json(status: number, body: unknown): Reply {
  return {
    status,
    body: `${JSON.stringify(body, null, 2)}\n`,
    headers: { 'content-type': 'application/json' },
  }
}

/** Probe answers are never cached; a request whose body was not read closes its connection. */
function send(req: http.IncomingMessage, res: http.ServerResponse, r: Reply): void {
  if (res.destroyed || res.headersSent) return
  res.writeHead(r.status, {
    ...r.headers,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(r.body),
    ...(req.complete ? {} : { connection: 'close' }),
  })
  res.end(r.body)
  req.resume()
}

/** Echoed request parts are cut short: a 10 KB path need not come back whole. */
function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}...` : s
}
