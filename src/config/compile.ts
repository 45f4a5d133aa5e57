// compile(): the one path from a config file to a runtime Snapshot, used by start, `validate`,
// reload and control-API changes. It collects every problem (schema, cross-references, files on
// disk) with file, key path and line, and returns either all of them or a frozen Snapshot.

import { accessSync, constants, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import type { z } from 'zod'
import {
  declaredType,
  MIDDLEWARE_SCHEMAS,
  MIDDLEWARE_TYPES,
  type MiddlewareConfig,
  type MiddlewareType,
} from '../middleware/schema'
import { RouteTable } from '../routing/route-table'
import { addressMatcher, formatHostPort, type HostPort, parseHostPort } from './address'
import { readConfigFile, type SourceDocument } from './load'
import { fileErrorReason, formatPath, type KeyPath, type Problem } from './problems'
import { configSchema, type RawConfig } from './schema'
import {
  deepFreeze,
  type HashKey,
  type Mode,
  type OriginPolicy,
  type Snapshot,
  type Strategy,
  type UpstreamSpec,
} from './snapshot'
import {
  type CertificateMaterial,
  loadCertificatePair,
  loadUpstreamTls,
  parseCipherList,
  policyMinVersion,
  TLS12_SUITES,
  type UpstreamTlsMaterial,
} from './tls'

/** Values from CLI flags and environment variables, which win over the file (SPEC precedence). */
export interface Overrides {
  mode?: Mode | undefined
  bind?: string | undefined
  logLevel?: string | undefined
}

export type CompileResult = { ok: true; snapshot: Snapshot } | { ok: false; problems: Problem[] }

export function loadConfig(file: string, overrides: Overrides = {}, env = process.env): CompileResult {
  return compile(readConfigFile(file, env), overrides)
}

const LOOPBACK = addressMatcher(['127.0.0.0/8', '::1'])

export function compile(source: SourceDocument, overrides: Overrides = {}): CompileResult {
  const problems = [...source.problems]
  const { file } = source
  if (source.data === undefined) return { ok: false, problems }
  if (source.data === null || typeof source.data !== 'object' || Array.isArray(source.data)) {
    problems.push({ file, path: '', line: 1, message: 'the config must be a YAML mapping (key: value)' })
    return { ok: false, problems }
  }
  const data = structuredClone(source.data) as Record<string, unknown>
  applyOverrides(data, overrides)

  const at = (p: KeyPath, message: string): void => {
    problems.push({ file, path: formatPath(p), line: source.lineOf(p), message })
  }

  const parsed = configSchema.safeParse(data)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) reportIssue(issue, at)
  }
  const checked = crossCheck(data, at, file)
  if (!parsed.success || problems.length > 0) return { ok: false, problems: dedupe(problems) }
  return { ok: true, snapshot: build(parsed.data, file, checked.middlewares, checked.tls) }
}

function applyOverrides(data: Record<string, unknown>, o: Overrides): void {
  if (o.mode) data.mode = o.mode
  if (o.bind !== undefined || o.logLevel !== undefined) {
    if (o.bind !== undefined) {
      const server = isRecord(data.server) ? data.server : {}
      data.server = { ...server, bind_address: o.bind }
    }
    if (o.logLevel !== undefined) {
      const logging = isRecord(data.logging) ? data.logging : {}
      data.logging = { ...logging, level: o.logLevel }
    }
  }
}

function reportIssue(issue: z.core.$ZodIssue, at: (p: KeyPath, m: string) => void): void {
  const p = issue.path.filter((s): s is string | number => typeof s !== 'symbol')
  // Messages the schema wrote itself are used as they are; zod's generic ones are reworded.
  if (!/^(Invalid|Too (small|big)|Unrecognized)/.test(issue.message)) {
    at(p, issue.message)
    return
  }
  switch (issue.code) {
    case 'unrecognized_keys':
      for (const key of issue.keys) at([...p, key], `unknown key "${key}"`)
      return
    case 'invalid_type':
      if (/received undefined$/.test(issue.message)) at(p, 'is required')
      else at(p, `must be ${article(issue.expected)}${receivedOf(issue.message)}`)
      return
    case 'invalid_value':
      at(p, `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`)
      return
    case 'too_small':
      at(p, issue.message.startsWith('Too small') ? `must be ${tooSmall(issue)}` : issue.message)
      return
    case 'too_big':
      at(p, `must be at most ${String(issue.maximum)}`)
      return
    default:
      at(p, issue.message)
  }
}

function article(expected: string): string {
  if (expected === 'record' || expected === 'object') return 'a mapping (key: value)'
  if (expected === 'array') return 'a list'
  if (expected === 'int') return 'a whole number'
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`
}

function receivedOf(message: string): string {
  const m = /received (\w+)$/.exec(message)
  return m ? ` (got ${m[1] === 'object' ? 'a mapping' : m[1]})` : ''
}

function tooSmall(issue: z.core.$ZodIssueTooSmall): string {
  if (issue.origin === 'array') return `a list of at least ${String(issue.minimum)}`
  if (issue.origin === 'string') return 'a non-empty string'
  if (issue.minimum === 0 && !issue.inclusive) return 'greater than 0'
  return `at least ${String(issue.minimum)}`
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/**
 * Checks that span sections. It reads the unvalidated tree defensively, so its findings are
 * reported together with the schema's instead of after the user fixes those.
 */
function crossCheck(
  data: Record<string, unknown>,
  at: (p: KeyPath, m: string) => void,
  file: string,
): { middlewares: Map<string, MiddlewareConfig>; tls: TlsMaterial } {
  const upstreams = isRecord(data.upstreams) ? data.upstreams : undefined
  const upstreamNames = upstreams ? Object.keys(upstreams) : []
  const defined =
    upstreamNames.length > 0 ? `defined: ${upstreamNames.join(', ')}` : 'no upstreams are defined'
  const checkUpstreamRef = (p: KeyPath, ref: unknown): void => {
    if (typeof ref === 'string' && ref !== '' && upstreams && !(ref in upstreams)) {
      at(p, `upstream "${ref}" is not defined under upstreams (${defined})`)
    }
  }

  for (const [name, u] of Object.entries(upstreams ?? {})) {
    if (!isRecord(u)) continue
    const strategy = typeof u.strategy === 'string' ? u.strategy : 'round_robin'
    if (Array.isArray(u.servers) && strategy === 'round_robin') {
      u.servers.forEach((s, i) => {
        if (isRecord(s) && s.weight !== undefined && s.weight !== 1) {
          at(
            ['upstreams', name, 'servers', i, 'weight'],
            'round_robin treats every server alike; use strategy: weighted (or least_connections, random, consistent_hash) for weights',
          )
        }
      })
    }
    if (u.hash_key !== undefined && strategy !== 'consistent_hash') {
      at(['upstreams', name, 'hash_key'], 'only applies with strategy: consistent_hash')
    }
  }

  const lb = isRecord(data.load_balancer) ? data.load_balancer : undefined
  if (data.mode === 'load_balancer') {
    if (!lb) at(['load_balancer'], 'is required when mode is load_balancer')
    else checkUpstreamRef(['load_balancer', 'upstream'], lb.upstream)
  }
  if (lb?.protocol === 'tcp' && data.mode === 'load_balancer') {
    if (isRecord(data.server) && data.server.tls !== undefined) {
      at(
        ['server', 'tls'],
        'cannot be used with load_balancer.protocol: tcp (TLS is passed through to the servers)',
      )
    }
    const u = typeof lb.upstream === 'string' && upstreams ? upstreams[lb.upstream] : undefined
    if (isRecord(u)) {
      for (const key of ['tls', 'sni'] as const) {
        if (u[key] !== undefined && u[key] !== false && u[key] !== '') {
          at(
            ['upstreams', String(lb.upstream), key],
            'has no effect with load_balancer.protocol: tcp (bytes pass through as they are)',
          )
        }
      }
      if (typeof u.hash_key === 'string' && u.hash_key !== 'client_ip') {
        at(
          ['upstreams', String(lb.upstream), 'hash_key'],
          'only client_ip can be used with load_balancer.protocol: tcp',
        )
      }
      if (Array.isArray(u.retry_on) && u.retry_on.some((c) => c !== 'connect_failure')) {
        at(
          ['upstreams', String(lb.upstream), 'retry_on'],
          'only connect_failure applies with load_balancer.protocol: tcp',
        )
      }
    }
  }
  if (data.mode === 'api_gateway' && !isRecord(data.api_gateway)) {
    at(['api_gateway'], 'is required when mode is api_gateway')
  }

  // Middleware declarations: both sections, each entry by its type's schema.
  const gw = isRecord(data.api_gateway) ? data.api_gateway : undefined
  const declared = checkMiddlewares(data, gw, at, file)
  const names = [...declared.keys()]
  const checkMiddlewareRefs = (base: KeyPath, list: unknown) => {
    if (!Array.isArray(list)) return
    list.forEach((mw, i) => {
      if (typeof mw !== 'string' || declared.has(mw)) return
      at(
        [...base, i],
        `unknown middleware "${mw}" (${names.length ? `declared: ${names.join(', ')}` : 'none is declared under middlewares or api_gateway.middlewares'})`,
      )
    })
  }

  // Routes are checked in both modes: a file is valid or not whichever mode a flag picks.
  const routes = gw && isRecord(gw.routes) ? gw.routes : undefined
  for (const [name, route] of Object.entries(routes ?? {})) {
    if (!isRecord(route)) continue
    checkUpstreamRef(['api_gateway', 'routes', name, 'upstream'], route.upstream)
    checkMiddlewareRefs(['api_gateway', 'routes', name, 'middlewares'], route.middlewares)
  }
  if (lb) checkMiddlewareRefs(['load_balancer', 'middlewares'], lb.middlewares)
  if (lb?.protocol === 'tcp' && Array.isArray(lb.middlewares) && lb.middlewares.length > 0) {
    at(['load_balancer', 'middlewares'], 'HTTP middlewares cannot run with load_balancer.protocol: tcp')
  }

  const server = isRecord(data.server) ? data.server : undefined
  const tls = server && isRecord(server.tls) ? server.tls : undefined
  const material: TlsMaterial = { listener: undefined, upstreams: new Map() }
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
  if (tls) {
    const certs: CertificateMaterial[] = []
    const single = [str(tls.cert_path), str(tls.key_path)]
    if (single[0] !== undefined || single[1] !== undefined) {
      if (single[0] === undefined || single[1] === undefined) {
        at(['server', 'tls'], 'cert_path and key_path go together')
      } else {
        const pair = loadCertificatePair(
          resolveFrom(file, single[0]),
          resolveFrom(file, single[1]),
          ['server', 'tls', 'cert_path'],
          ['server', 'tls', 'key_path'],
          at,
        )
        if (pair) certs.push(pair)
      }
    }
    if (Array.isArray(tls.certificates)) {
      tls.certificates.forEach((c, i) => {
        if (!isRecord(c) || str(c.cert_path) === undefined || str(c.key_path) === undefined) return
        const base = ['server', 'tls', 'certificates', i]
        const pair = loadCertificatePair(
          resolveFrom(file, String(c.cert_path)),
          resolveFrom(file, String(c.key_path)),
          [...base, 'cert_path'],
          [...base, 'key_path'],
          at,
        )
        if (pair) certs.push(pair)
      })
    } else if (single[0] === undefined && single[1] === undefined) {
      at(['server', 'tls'], 'needs cert_path and key_path, or certificates')
    }
    material.listener = certs
  }
  if (isRecord(server?.http2) && (!tls || tls.http2 === false)) {
    at(
      ['server', 'http2'],
      'has no effect without server.tls with http2: true (HTTP/2 is offered over TLS only)',
    )
  }
  if (server?.redirect_http_bind !== undefined && !tls) {
    at(['server', 'redirect_http_bind'], 'redirects to HTTPS, so it needs server.tls')
  }
  for (const [name, u] of Object.entries(upstreams ?? {})) {
    if (!isRecord(u)) continue
    const base = ['upstreams', name]
    const files = {
      ca: str(u.ca_path) && resolveFrom(file, String(u.ca_path)),
      cert: str(u.client_cert_path) && resolveFrom(file, String(u.client_cert_path)),
      key: str(u.client_key_path) && resolveFrom(file, String(u.client_key_path)),
    }
    if (u.tls !== true) {
      for (const key of [
        'ca_path',
        'tls_skip_verify',
        'client_cert_path',
        'client_key_path',
        'sni',
      ] as const) {
        if (u[key] !== undefined && u[key] !== false && u[key] !== '')
          at([...base, key], 'is only used with tls: true')
      }
      continue
    }
    if (u.tls_skip_verify === true && files.ca !== undefined) {
      at([...base, 'ca_path'], 'has no effect with tls_skip_verify: true (nothing is verified)')
    }
    const m = loadUpstreamTls(files, base, at)
    if (m) material.upstreams.set(name, m)
  }

  const control = isRecord(data.control_api) ? data.control_api : undefined
  if (server && control && control.enabled === true && typeof server.bind_address === 'string') {
    const a = parseHostPort(server.bind_address, { listen: true })
    const b = parseHostPort(
      typeof control.bind_address === 'string' ? control.bind_address : '127.0.0.1:8485',
    )
    if (
      typeof a !== 'string' &&
      typeof b !== 'string' &&
      a.port !== 0 &&
      a.port === b.port &&
      sameHost(a, b)
    ) {
      at(
        ['control_api', 'bind_address'],
        `uses the same address as server.bind_address (${formatHostPort(a)})`,
      )
    }
  }
  // The control API changes routes and upstreams: reachable from other hosts, it needs a key,
  // or an explicit `insecure: true`. Loopback is 127.0.0.0/8, ::1 and localhost; a host name or
  // 0.0.0.0/:: (every interface) is not. An empty api_key refuses every request, so it counts.
  if (control && control.enabled === true && control.insecure !== true && control.api_key === undefined) {
    const b = parseHostPort(
      typeof control.bind_address === 'string' ? control.bind_address : '127.0.0.1:8485',
      { listen: true },
    )
    const host = typeof b === 'string' ? undefined : b.host.toLowerCase()
    if (host !== undefined && host !== 'localhost' && host !== 'localhost.' && !LOOPBACK(host)) {
      at(
        ['control_api', 'api_key'],
        `is required: the control API listens on ${formatHostPort(b as HostPort)}, which is not a loopback address, ` +
          'and anyone who reaches it could change routes and upstreams. Write `api_key: ${LOCCI_API_KEY}` ' +
          '(and set LOCCI_API_KEY), bind it to 127.0.0.1, or write `insecure: true` to allow it without a key',
      )
    }
  }
  return { middlewares: declared, tls: material }
}

interface TlsMaterial {
  listener: CertificateMaterial[] | undefined
  upstreams: Map<string, UpstreamTlsMaterial>
}

/**
 * Validates every middleware declaration (top-level `middlewares` and `api_gateway.middlewares`)
 * and returns the valid ones by name.
 */
function checkMiddlewares(
  data: Record<string, unknown>,
  gw: Record<string, unknown> | undefined,
  at: (p: KeyPath, m: string) => void,
  file: string,
): Map<string, MiddlewareConfig> {
  const out = new Map<string, MiddlewareConfig>()
  const sections: Array<[KeyPath, unknown]> = [
    [['middlewares'], data.middlewares],
    [['api_gateway', 'middlewares'], gw?.middlewares],
  ]
  for (const [base, section] of sections) {
    if (!isRecord(section)) continue
    for (const [name, raw] of Object.entries(section)) {
      const p = [...base, name]
      if (out.has(name)) {
        at(p, `middleware "${name}" is declared twice (under middlewares and api_gateway.middlewares)`)
        continue
      }
      const type = declaredType(name, raw)
      if (type === undefined || !(MIDDLEWARE_TYPES as readonly string[]).includes(type)) {
        at(
          isRecord(raw) && raw.type !== undefined ? [...p, 'type'] : p,
          type === undefined
            ? `needs a type: ${MIDDLEWARE_TYPES.join(', ')} (or use one of those as its name)`
            : `unknown middleware type "${type}"; use ${MIDDLEWARE_TYPES.join(', ')}`,
        )
        continue
      }
      const kind = type as MiddlewareType
      const parsed = MIDDLEWARE_SCHEMAS[kind].safeParse(raw ?? {})
      if (!parsed.success) {
        for (const issue of parsed.error.issues) reportIssue({ ...issue, path: [...p, ...issue.path] }, at)
        continue
      }
      const cfg = { kind, ...parsed.data } as MiddlewareConfig
      let ok = true
      const bad = (key: string, message: string) => {
        at([...p, key], message)
        ok = false
      }
      if (cfg.kind === 'authentication') {
        const sources = (['jwt_secret', 'public_key_path', 'jwks_url'] as const).filter(
          (k) => cfg[k] !== undefined,
        )
        if (sources.length !== 1) {
          at(
            p,
            `needs exactly one of jwt_secret, public_key_path or jwks_url${sources.length ? ` (got ${sources.join(' and ')})` : ''}`,
          )
          ok = false
        }
        if (cfg.public_key_path !== undefined) {
          const problem = fileProblem(resolveFrom(file, cfg.public_key_path))
          if (problem) bad('public_key_path', `${problem}: ${cfg.public_key_path}`)
        }
        const hmac = cfg.algorithms?.filter((a) => a.startsWith('HS')) ?? []
        if (cfg.jwt_secret !== undefined && cfg.algorithms && hmac.length !== cfg.algorithms.length) {
          bad('algorithms', 'a jwt_secret can only verify HS256, HS384 or HS512')
        }
        if (cfg.jwt_secret === undefined && hmac.length > 0) {
          bad(
            'algorithms',
            'HS* algorithms need jwt_secret (a public key must never be used as an HMAC secret)',
          )
        }
      } else if (cfg.kind === 'cors') {
        if (cfg.allow_credentials && (cfg.allowed_origins === '*' || cfg.allowed_origins.includes('*'))) {
          bad(
            'allow_credentials',
            'cannot be true with allowed_origins "*" (browsers refuse it); list the origins',
          )
        }
      } else {
        if (cfg.store === 'redis' && cfg.redis_url === undefined)
          bad('redis_url', 'is required with store: redis')
        if (cfg.store === 'memory' && cfg.redis_url !== undefined)
          bad('redis_url', 'is only used with store: redis')
      }
      if (ok) out.set(name, cfg)
    }
  }
  return out
}

function sameHost(a: HostPort, b: HostPort): boolean {
  const any = (h: string) => h === '0.0.0.0' || h === '::'
  return a.host === b.host || any(a.host) || any(b.host)
}

/** Paths in the config are relative to the config file's directory. */
export function resolveFrom(configFile: string, p: string): string {
  return path.resolve(path.dirname(configFile), p)
}

function fileProblem(p: string): string | undefined {
  try {
    if (!statSync(p).isFile()) return 'is not a file'
    accessSync(p, constants.R_OK)
    return undefined
  } catch (err) {
    return fileErrorReason(err)
  }
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>()
  return problems.filter((p) => {
    const key = `${p.path}\0${p.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

function parseHashKey(k: string): HashKey {
  if (k === 'client_ip' || k === 'path') return { kind: k }
  const colon = k.indexOf(':')
  const kind = k.slice(0, colon) as 'header' | 'cookie'
  const name = k.slice(colon + 1)
  return { kind, name: kind === 'header' ? name.toLowerCase() : name }
}

function build(
  raw: RawConfig,
  file: string,
  middlewares: Map<string, MiddlewareConfig>,
  tlsMaterial: TlsMaterial,
): Snapshot {
  const bind = parseHostPort(raw.server.bind_address, { listen: true }) as HostPort
  const upstreams = new Map<string, UpstreamSpec>()
  for (const [name, u] of Object.entries(raw.upstreams)) {
    const hc = u.health_check
    const ph = u.passive_health
    upstreams.set(name, {
      name,
      peers: u.servers.map((s) => {
        const entry = typeof s === 'string' ? { address: s, weight: 1 } : s
        const hp = parseHostPort(entry.address) as HostPort
        return { address: formatHostPort(hp), host: hp.host, port: hp.port, weight: entry.weight }
      }),
      strategy: u.strategy as Strategy,
      hashKey: parseHashKey(u.hash_key),
      tls: u.tls,
      sni: u.sni ? u.sni : undefined,
      tlsOptions: u.tls ? { ...tlsMaterial.upstreams.get(name)!, skipVerify: u.tls_skip_verify } : undefined,
      healthCheck: hc && {
        intervalMs: hc.interval_secs * 1000,
        timeoutMs: hc.timeout_secs * 1000,
        path: hc.path,
        healthyThreshold: hc.healthy_threshold,
        unhealthyThreshold: hc.unhealthy_threshold,
      },
      passiveHealth: ph.enabled
        ? {
            consecutiveFailures: ph.consecutive_failures,
            baseEjectionMs: ph.base_ejection_secs * 1000,
            maxEjectionMs: ph.max_ejection_secs * 1000,
            maxEjectionPercent: ph.max_ejection_percent,
          }
        : undefined,
      retry: { retries: u.retries, on: new Set(u.retry_on) },
      retryBudget: { percent: u.retry_budget.percent, minPerSec: u.retry_budget.min_per_sec },
    })
  }
  const gateway = raw.mode === 'api_gateway'
  // A route's WebSocket origins: its own list, else those its cors middlewares allow.
  const originPolicy = (own: '*' | string[] | undefined, chain: readonly string[]): OriginPolicy => {
    if (own !== undefined) return own === '*' ? '*' : new Set(own)
    const allowed: string[] = []
    for (const name of chain) {
      const m = middlewares.get(name)
      if (m?.kind !== 'cors') continue
      if (m.allowed_origins === '*' || m.allowed_origins.includes('*')) return '*'
      allowed.push(...m.allowed_origins)
    }
    return allowed.length > 0 ? new Set(allowed) : undefined
  }
  const routes = gateway
    ? new RouteTable(
        Object.entries(raw.api_gateway?.routes ?? {}).map(([name, r]) => ({
          name,
          ...r,
          websocketOrigins: originPolicy(r.websocket_origins, r.middlewares),
        })),
      )
    : undefined
  const activeUpstreams = gateway
    ? [...new Set(routes!.routes.map((r) => r.upstream))]
    : [raw.load_balancer!.upstream]
  const control = raw.control_api
  const snapshot: Snapshot = {
    file,
    raw,
    mode: raw.mode,
    bind,
    workers: raw.server.workers === 'auto' ? availableParallelism() : raw.server.workers,
    tls: raw.server.tls && {
      certificates: tlsMaterial.listener ?? [],
      policy: raw.server.tls.policy,
      minVersion: raw.server.tls.min_version ?? policyMinVersion(raw.server.tls.policy),
      ciphers: raw.server.tls.ciphers
        ? (parseCipherList(raw.server.tls.ciphers) as { ciphers: string }).ciphers
        : TLS12_SUITES.join(':'),
      http2: raw.server.tls.http2,
      redirectHost: raw.server.tls.redirect_host,
    },
    redirectHttp: raw.server.redirect_http_bind
      ? (parseHostPort(raw.server.redirect_http_bind, { listen: true }) as HostPort)
      : undefined,
    websocketIdleMs: raw.server.websocket_idle_timeout_secs * 1000,
    upstreamTimeoutMs: raw.server.upstream_timeout_secs * 1000,
    shutdownTimeoutMs: raw.server.shutdown_timeout_secs * 1000,
    pool: {
      maxConnections: raw.server.connection_pool.max_idle,
      idleTimeoutMs: raw.server.connection_pool.idle_timeout_secs * 1000,
      connectTimeoutMs: raw.server.connection_pool.connect_timeout_secs * 1000,
    },
    limits: {
      trustedProxy: raw.server.trusted_proxies.length
        ? addressMatcher(raw.server.trusted_proxies)
        : undefined,
      maxConnections: raw.server.max_connections,
      maxBodyBytes: raw.server.max_body_bytes,
      bodyTimeoutMs: raw.server.body_timeout_secs * 1000,
      tcpIdleTimeoutMs: raw.server.tcp_idle_timeout_secs * 1000,
      escapedSlashes: raw.server.escaped_slashes,
      allowTrace: raw.server.allow_trace,
      http2: {
        maxConcurrentStreams: raw.server.http2.max_concurrent_streams,
        maxHeaderListBytes: raw.server.http2.max_header_list_bytes,
      },
    },
    protectedHeaders: new Set(
      [...middlewares.values()].flatMap((m) =>
        m.kind === 'authentication'
          ? Object.values(m.forward_claims).map((h) => h.toLowerCase().replaceAll('_', '-'))
          : [],
      ),
    ),
    logging: { level: raw.logging.level, format: raw.logging.format },
    upstreams,
    activeUpstreams,
    lbUpstream: gateway ? undefined : raw.load_balancer!.upstream,
    lbProtocol: gateway ? 'http' : raw.load_balancer!.protocol,
    lbMiddlewares: gateway ? [] : raw.load_balancer!.middlewares,
    lbWebsocketOrigins: gateway
      ? undefined
      : originPolicy(raw.load_balancer!.websocket_origins, raw.load_balancer!.middlewares),
    middlewares,
    routes,
    controlApi: {
      enabled: control.enabled,
      bind: parseHostPort(control.bind_address, { listen: true }) as HostPort,
      apiKey: control.api_key,
      insecure: control.insecure,
    },
  }
  return deepFreeze(snapshot)
}
