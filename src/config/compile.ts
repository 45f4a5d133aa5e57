// compile(): the one path from a config file to a runtime Snapshot, used by start, `validate`,
// reload and control-API changes. It collects every problem (schema, cross-references, files on
// disk) with file, key path and line, and returns either all of them or a frozen Snapshot.

import { createHash } from 'node:crypto'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import type { z } from 'zod'
import { ACCESS_FIELDS, type AccessLogSpec } from '../observe/access-log'
import type { TracingProtocol } from '../observe/tracing'
import { addressMatcher, formatHostPort, type HostPort, parseHostPort } from './address'
import { parseDiscoveryEntry, parseResolver } from './discovery'
import type { SourceDocument } from './load'
import { formatPath, type KeyPath, type Problem, sortProblems } from './problems'
import { configSchema, type RawConfig, type RawMirror, type RawRoute, type RawSplitSticky } from './schema'
import { WeylSequence } from './sequence'
import {
  type AcmeSpec,
  type CircuitBreakerSpec,
  type DiscoveredServer,
  type DiscoverySpec,
  deepFreeze,
  type HashKey,
  type MiddlewareDeclaration,
  type MirrorSpec,
  type Mode,
  type ModeSpec,
  type OriginPolicy,
  type PeerSpec,
  type RouteSpec,
  type Snapshot,
  type SplitSpec,
  type SplitSticky,
  type Strategy,
  type UpstreamSpec,
} from './snapshot'
import { cookieSpec, setCookieValue, stickyToken } from './sticky'
import { didYouMean } from './suggest'
import {
  type CertificateMaterial,
  loadCertificatePair,
  loadUpstreamTls,
  parseCipherList,
  policyMinVersion,
  TLS12_SUITES,
  type UpstreamTlsMaterial,
} from './tls'

/** Values from CLI flags and environment variables, which win over the file (flag > environment > file > default). */
export interface Overrides {
  mode?: Mode | undefined
  bind?: string | undefined
  logLevel?: string | undefined
}

export type CompileResult = { ok: true; snapshot: Snapshot } | { ok: false; problems: Problem[] }

const LOOPBACK = addressMatcher(['127.0.0.0/8', '::1'])

/**
 * `checks` are the checks other folders own (see ConfigCheck); they run on every compile, with
 * the schema and the cross-section checks, so a file's problems are all reported at once.
 */
export function compile(
  source: SourceDocument,
  overrides: Overrides = {},
  checks: readonly ConfigCheck[] = [],
): CompileResult {
  const problems = [...source.problems]
  const { file } = source
  if (source.data === undefined) return { ok: false, problems: sortProblems(problems) }
  if (source.data === null || typeof source.data !== 'object' || Array.isArray(source.data)) {
    problems.push({ file, path: '', line: 1, message: 'the config must be a YAML mapping (key: value)' })
    return { ok: false, problems: sortProblems(problems) }
  }
  const data = structuredClone(source.data) as Record<string, unknown>
  applyOverrides(data, overrides)

  const at: At = (p, message) => {
    problems.push({ file, path: formatPath(p), line: source.lineOf(p), message })
  }

  const parsed = configSchema.safeParse(data)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) reportIssue(issue, at)
  }
  const tls = crossCheck(data, at, file)
  for (const check of checks) check(data, at, file)
  if (!parsed.success || problems.length > 0) return { ok: false, problems: sortProblems(dedupe(problems)) }
  return { ok: true, snapshot: build(parsed.data, file, tls) }
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

/**
 * Reports a zod issue of `schema` at `base` + its path, in the words the rest of compile uses.
 * An unknown key gets the closest key the schema allows there, if one is close.
 */
export function reportIssue(
  issue: z.core.$ZodIssue,
  at: At,
  schema: z.ZodType = configSchema,
  base: KeyPath = [],
): void {
  const rel = issue.path.filter((s): s is string | number => typeof s !== 'symbol')
  const p = [...base, ...rel]
  // Messages the schema wrote itself are used as they are; zod's generic ones are reworded.
  if (!/^(Invalid|Too (small|big)|Unrecognized)/.test(issue.message)) {
    at(p, issue.message)
    return
  }
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = keysAt(schema, rel)
      for (const key of issue.keys) at([...p, key], `unknown key "${key}"${didYouMean(key, allowed)}`)
      return
    }
    case 'invalid_union': {
      // The alternatives the value's type fits (a mapping for `{address, weight}`): when there is
      // one, its own findings say what is wrong, instead of "Invalid input".
      const fits = issue.errors.filter(
        (errs) =>
          !errs.some((e) => e.path.length === 0 && (e.code === 'invalid_type' || e.code === 'invalid_value')),
      )
      if (fits.length !== 1) at(p, issue.message)
      else for (const e of fits[0]!) reportIssue({ ...e, path: [...rel, ...e.path] }, at, schema, base)
      return
    }
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

/** What zod keeps of a schema, as far as the walks over it read (zod 4's `_zod.def`). */
export interface SchemaDef {
  type: string
  shape?: Record<string, z.ZodType>
  innerType?: z.ZodType
  options?: z.ZodType[]
  element?: z.ZodType
  valueType?: z.ZodType
  in?: z.ZodType
}

export function schemaDef(schema: z.ZodType): SchemaDef {
  return (schema as unknown as { _zod: { def: SchemaDef } })._zod.def
}

/**
 * The keys `schema` allows in the mapping at `path` (a record's entries are any name; a union
 * allows the keys of each of its mappings); empty when the path leads to no mapping.
 */
export function keysAt(schema: z.ZodType, path: KeyPath): string[] {
  const def = schemaDef(schema)
  switch (def.type) {
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
    case 'readonly':
    case 'catch':
      return keysAt(def.innerType!, path)
    case 'pipe':
      return keysAt(def.in!, path)
    case 'union':
      return [...new Set(def.options!.flatMap((o) => keysAt(o, path)))]
  }
  if (path.length === 0) return def.type === 'object' ? Object.keys(def.shape!) : []
  const [seg, ...rest] = path
  if (def.type === 'object') {
    const child = def.shape![String(seg)]
    return child ? keysAt(child, rest) : []
  }
  if (def.type === 'record') return keysAt(def.valueType!, rest)
  if (def.type === 'array' && typeof seg === 'number') return keysAt(def.element!, rest)
  return []
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

export function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Reports a problem at a key path of the file (the line is looked up). */
export type At = (p: KeyPath, message: string) => void

/**
 * A check another folder owns (middleware settings, route patterns): it reads the unvalidated
 * tree defensively and reports through `at`, together with the schema's findings.
 */
export type ConfigCheck = (data: Readonly<Record<string, unknown>>, at: At, file: string) => void

/**
 * The checks that span sections, each named for what it guards. They read the unvalidated tree
 * defensively, so their findings are reported together with the schema's instead of after the
 * user fixes those.
 */
function crossCheck(data: Record<string, unknown>, at: At, file: string): TlsMaterial {
  const t = tree(data)
  checkUpstreamStrategies(t, at)
  checkUpstreamProtocols(t, at)
  checkDiscovery(t, at)
  checkModeSections(t, at)
  checkTcpPassThrough(t, at)
  checkReferences(t, at)
  checkSplits(t, at)
  checkCircuitBreakers(t, at)
  checkMiddlewareDeclarations(t, at)
  checkListenerOptions(t, at)
  checkAcme(t, at)
  checkControlApi(t, at)
  checkConfigStore(t, at)
  checkOpsListener(t, at)
  return { listener: loadListenerCertificates(t, at, file), upstreams: loadUpstreamTlsFiles(t, at, file) }
}

/** The sections the checks read, each a mapping or undefined. */
interface Tree {
  data: Record<string, unknown>
  upstreams: Record<string, unknown> | undefined
  lb: Record<string, unknown> | undefined
  gw: Record<string, unknown> | undefined
  routes: Record<string, unknown> | undefined
  server: Record<string, unknown> | undefined
  tls: Record<string, unknown> | undefined
  control: Record<string, unknown> | undefined
}

function tree(data: Record<string, unknown>): Tree {
  const sub = (o: Record<string, unknown> | undefined, k: string) => (o && isRecord(o[k]) ? o[k] : undefined)
  const gw = sub(data, 'api_gateway')
  const server = sub(data, 'server')
  return {
    data,
    upstreams: sub(data, 'upstreams'),
    lb: sub(data, 'load_balancer'),
    gw,
    routes: sub(gw, 'routes'),
    server,
    tls: sub(server, 'tls'),
    control: sub(data, 'control_api'),
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

/** Weights and hash keys only mean something with the strategies that use them. */
function checkUpstreamStrategies(t: Tree, at: At): void {
  for (const [name, u] of Object.entries(t.upstreams ?? {})) {
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
}

/**
 * HTTP/2 to a group's servers: h2 and auto negotiate by ALPN, so they need tls: true (h2c is the
 * clear-text form); http2 settings and gRPC health checks need a protocol that speaks HTTP/2.
 */
function checkUpstreamProtocols(t: Tree, at: At): void {
  for (const [name, u] of Object.entries(t.upstreams ?? {})) {
    if (!isRecord(u)) continue
    const base = ['upstreams', name]
    const protocol = typeof u.protocol === 'string' ? u.protocol : 'http1'
    if ((protocol === 'h2' || protocol === 'auto') && u.tls !== true) {
      at(
        [...base, 'protocol'],
        `${protocol} is negotiated over TLS and needs tls: true (use h2c for clear-text HTTP/2)`,
      )
    }
    if (protocol === 'h2c' && u.tls === true) {
      at([...base, 'protocol'], 'h2c is clear-text HTTP/2; with tls: true use h2 (or auto)')
    }
    if (u.http2 !== undefined && protocol === 'http1') {
      at([...base, 'http2'], 'only applies with protocol: h2c, h2 or auto')
    }
    const hc = u.health_check
    if (!isRecord(hc)) continue
    if (hc.grpc === true) {
      if (protocol !== 'h2c' && protocol !== 'h2') {
        at([...base, 'health_check', 'grpc'], 'needs protocol: h2c or h2 (gRPC is HTTP/2)')
      }
      if (hc.path !== undefined) at([...base, 'health_check', 'path'], 'cannot be used with grpc: true')
    } else if (hc.service !== undefined) {
      at([...base, 'health_check', 'service'], 'only applies with grpc: true')
    }
  }
}

/** `resolver` only serves dns: and srv: servers; SRV records bring their own weights. */
function checkDiscovery(t: Tree, at: At): void {
  for (const [name, u] of Object.entries(t.upstreams ?? {})) {
    if (!isRecord(u) || !Array.isArray(u.servers)) continue
    let named = false
    u.servers.forEach((s, i) => {
      const address = isRecord(s) ? s.address : s
      const target = typeof address === 'string' ? parseDiscoveryEntry(address) : undefined
      if (!target || typeof target === 'string') return
      named = true
      if (target.kind === 'srv' && isRecord(s) && s.weight !== undefined) {
        at(
          ['upstreams', name, 'servers', i, 'weight'],
          'an srv: server takes its weights from the SRV records; remove weight',
        )
      }
    })
    if (u.resolver !== undefined && !named) {
      at(['upstreams', name, 'resolver'], 'only applies to dns: and srv: servers; this group has none')
    }
  }
  const min = t.server?.dns_min_ttl_secs
  const max = t.server?.dns_max_ttl_secs
  if (typeof min === 'number' && typeof max === 'number' && min > max) {
    at(['server', 'dns_min_ttl_secs'], `must not be more than dns_max_ttl_secs (${max})`)
  }
}

/** The section of the chosen mode must be there. */
function checkModeSections(t: Tree, at: At): void {
  if (t.data.mode === 'load_balancer' && !t.lb)
    at(['load_balancer'], 'is required when mode is load_balancer')
  if (t.data.mode === 'api_gateway' && !t.gw) at(['api_gateway'], 'is required when mode is api_gateway')
}

/** TCP pass-through sees bytes, not requests: HTTP-level settings cannot apply to it. */
function checkTcpPassThrough(t: Tree, at: At): void {
  const lb = t.lb
  if (lb?.protocol !== 'tcp') return
  if (Array.isArray(lb.middlewares) && lb.middlewares.length > 0) {
    at(['load_balancer', 'middlewares'], 'HTTP middlewares cannot run with load_balancer.protocol: tcp')
  }
  if (lb.mirror !== undefined) {
    at(['load_balancer', 'mirror'], 'requests cannot be mirrored with load_balancer.protocol: tcp')
  }
  if (t.data.mode !== 'load_balancer') return
  if (t.server?.tls !== undefined) {
    at(
      ['server', 'tls'],
      'cannot be used with load_balancer.protocol: tcp (TLS is passed through to the servers)',
    )
  }
  const u = typeof lb.upstream === 'string' && t.upstreams ? t.upstreams[lb.upstream] : undefined
  if (!isRecord(u)) return
  const base = ['upstreams', String(lb.upstream)]
  for (const key of ['tls', 'sni'] as const) {
    if (u[key] !== undefined && u[key] !== false && u[key] !== '') {
      at([...base, key], 'has no effect with load_balancer.protocol: tcp (bytes pass through as they are)')
    }
  }
  if (typeof u.protocol === 'string' && u.protocol !== 'http1') {
    at(
      [...base, 'protocol'],
      'has no effect with load_balancer.protocol: tcp (bytes pass through as they are)',
    )
  }
  if (t.server?.h2c === true) {
    at(['server', 'h2c'], 'has no effect with load_balancer.protocol: tcp (bytes pass through as they are)')
  }
  if (typeof u.hash_key === 'string' && u.hash_key !== 'client_ip') {
    at([...base, 'hash_key'], 'only client_ip can be used with load_balancer.protocol: tcp')
  }
  if (Array.isArray(u.retry_on) && u.retry_on.some((c) => c !== 'connect_failure')) {
    at([...base, 'retry_on'], 'only connect_failure applies with load_balancer.protocol: tcp')
  }
}

/** Every upstream and middleware a route or the load balancer names is defined. */
function checkReferences(t: Tree, at: At): void {
  const upstreamNames = Object.keys(t.upstreams ?? {})
  const defined =
    upstreamNames.length > 0 ? `defined: ${upstreamNames.join(', ')}` : 'no upstreams are defined'
  const upstreamRef = (p: KeyPath, ref: unknown): void => {
    if (typeof ref === 'string' && ref !== '' && t.upstreams && !(ref in t.upstreams)) {
      at(p, `upstream "${ref}" is not defined under upstreams${didYouMean(ref, upstreamNames)} (${defined})`)
    }
  }
  const declared = [...declarationsOf(t).keys()]
  const middlewareRefs = (base: KeyPath, list: unknown) => {
    if (!Array.isArray(list)) return
    list.forEach((mw, i) => {
      if (typeof mw !== 'string' || declared.includes(mw)) return
      at(
        [...base, i],
        `unknown middleware "${mw}"${didYouMean(mw, declared)} (${declared.length ? `declared: ${declared.join(', ')}` : 'none is declared under middlewares or api_gateway.middlewares'})`,
      )
    })
  }
  // A mirror may name the group its route uses (every request then reaches it twice: a load test).
  const mirrorRef = (base: KeyPath, m: unknown): void => {
    if (isRecord(m)) upstreamRef([...base, 'mirror', 'upstream'], m.upstream)
  }
  const splitRefs = (base: KeyPath, list: unknown) => {
    if (!Array.isArray(list)) return
    list.forEach((e, i) => {
      if (isRecord(e)) upstreamRef([...base, 'upstreams', i, 'name'], e.name)
    })
  }
  if (t.data.mode === 'load_balancer' && t.lb) {
    upstreamRef(['load_balancer', 'upstream'], t.lb.upstream)
    mirrorRef(['load_balancer'], t.lb.mirror)
    splitRefs(['load_balancer'], t.lb.upstreams)
  }
  // Routes are checked in both modes: a file is valid or not whichever mode a flag picks.
  for (const [name, route] of Object.entries(t.routes ?? {})) {
    if (!isRecord(route)) continue
    upstreamRef(['api_gateway', 'routes', name, 'upstream'], route.upstream)
    mirrorRef(['api_gateway', 'routes', name], route.mirror)
    splitRefs(['api_gateway', 'routes', name], route.upstreams)
    middlewareRefs(['api_gateway', 'routes', name, 'middlewares'], route.middlewares)
  }
  if (t.lb) middlewareRefs(['load_balancer', 'middlewares'], t.lb.middlewares)
}

/**
 * A route and the load balancer name exactly one of `upstream` and `upstreams`; `sticky` goes
 * with `upstreams`. TCP pass-through sees no requests: no split, and no cookie on its group.
 */
function checkSplits(t: Tree, at: At): void {
  const one = (base: KeyPath, o: Record<string, unknown>, section: boolean) => {
    const single = o.upstream !== undefined
    const split = o.upstreams !== undefined
    if (single && split)
      at([...base, 'upstreams'], 'cannot be used with upstream; name one group or a split, not both')
    else if (!single && !split && section)
      at(base, 'needs upstream (one group) or upstreams (a weighted split)')
    if (o.sticky !== undefined && !split)
      at([...base, 'sticky'], 'only applies with upstreams (a weighted split)')
  }
  if (t.lb) one(['load_balancer'], t.lb, true)
  for (const [name, route] of Object.entries(t.routes ?? {})) {
    if (isRecord(route)) one(['api_gateway', 'routes', name], route, true)
  }
  const lb = t.lb
  if (t.data.mode !== 'load_balancer' || lb?.protocol !== 'tcp') return
  if (lb.upstreams !== undefined) {
    at(
      ['load_balancer', 'upstreams'],
      'cannot be used with load_balancer.protocol: tcp; name one group with upstream',
    )
  }
  const u = typeof lb.upstream === 'string' && t.upstreams ? t.upstreams[lb.upstream] : undefined
  if (isRecord(u) && u.sticky !== undefined) {
    at(
      ['upstreams', String(lb.upstream), 'sticky'],
      'cannot be used with load_balancer.protocol: tcp (no cookies in a byte stream)',
    )
  }
}

/**
 * A breaker's fallback names another defined group, and following fallbacks never comes back
 * to where it started (the request would have nowhere to end). Window settings need a window
 * condition to apply to.
 */
function checkCircuitBreakers(t: Tree, at: At): void {
  const upstreams = t.upstreams ?? {}
  const names = Object.keys(upstreams)
  const fallbackOf = (name: string): string | undefined => {
    const u = upstreams[name]
    const cb = isRecord(u) && isRecord(u.circuit_breaker) ? u.circuit_breaker : undefined
    return typeof cb?.fallback === 'string' && cb.fallback !== '' ? cb.fallback : undefined
  }
  for (const name of names) {
    const u = upstreams[name]
    if (!isRecord(u) || !isRecord(u.circuit_breaker)) continue
    const cb = u.circuit_breaker
    const base = ['upstreams', name, 'circuit_breaker']
    const windowed = cb.error_ratio !== undefined || cb.latency_p99_ms !== undefined
    if (!windowed && cb.consecutive_failures !== undefined) {
      for (const key of ['min_requests', 'window_secs'] as const) {
        if (cb[key] !== undefined) at([...base, key], 'only applies with error_ratio or latency_p99_ms')
      }
    }
    const fallback = fallbackOf(name)
    if (fallback === undefined) continue
    if (fallback === name) {
      at([...base, 'fallback'], 'cannot name its own group')
      continue
    }
    if (!(fallback in upstreams)) {
      const others = names.filter((n) => n !== name)
      at(
        [...base, 'fallback'],
        `upstream "${fallback}" is not defined under upstreams${didYouMean(fallback, others)} (${others.length > 0 ? `defined: ${others.join(', ')}` : 'no other upstream is defined'})`,
      )
      continue
    }
    const chain = [name]
    for (let next: string | undefined = fallback; next !== undefined; next = fallbackOf(next)) {
      if (next === name) {
        at([...base, 'fallback'], `fallbacks form a cycle: ${[...chain, name].join(' -> ')}`)
        break
      }
      if (chain.includes(next) || !(next in upstreams)) break
      chain.push(next)
    }
  }
}

/** The two places a middleware may be declared, and where each declaration sits. */
const MIDDLEWARE_SECTIONS: readonly KeyPath[] = [['middlewares'], ['api_gateway', 'middlewares']]

/** Every declaration by name (the first one where a name is declared twice), with its key path. */
export function declarationsOf(t: {
  data: Readonly<Record<string, unknown>>
}): Map<string, { raw: unknown; path: KeyPath }> {
  const out = new Map<string, { raw: unknown; path: KeyPath }>()
  for (const base of MIDDLEWARE_SECTIONS) {
    let section: unknown = t.data
    for (const k of base) section = isRecord(section) ? section[k as string] : undefined
    if (!isRecord(section)) continue
    for (const [name, raw] of Object.entries(section)) {
      if (!out.has(name)) out.set(name, { raw, path: [...base, name] })
    }
  }
  return out
}

/** A name is declared once, in one of the two sections. */
function checkMiddlewareDeclarations(t: Tree, at: At): void {
  const top = isRecord(t.data.middlewares) ? t.data.middlewares : {}
  const gw = t.gw && isRecord(t.gw.middlewares) ? t.gw.middlewares : {}
  for (const name of Object.keys(gw)) {
    if (name in top) {
      at(
        ['api_gateway', 'middlewares', name],
        `middleware "${name}" is declared twice (under middlewares and api_gateway.middlewares)`,
      )
    }
  }
}

/** Listener settings that only mean something together with others. */
function checkListenerOptions(t: Tree, at: At): void {
  const h2c = t.server?.h2c === true
  if (isRecord(t.server?.http2) && !h2c && (!t.tls || t.tls.http2 === false)) {
    at(
      ['server', 'http2'],
      'has no effect without server.tls with http2: true or server.h2c: true (no HTTP/2 is offered)',
    )
  }
  if (h2c && t.tls) {
    at(['server', 'h2c'], 'is clear-text HTTP/2; with server.tls, HTTP/2 is offered by ALPN (tls.http2)')
  }
  if (t.server?.redirect_http_bind !== undefined && !t.tls) {
    at(['server', 'redirect_http_bind'], 'redirects to HTTPS, so it needs server.tls')
  }
}

/** Let's Encrypt's directories (acme-client lists the same; not loaded here, it is lazy). */
const ACME_PRESETS: Record<string, string> = {
  letsencrypt: 'https://acme-v02.api.letsencrypt.org/directory',
  'letsencrypt-staging': 'https://acme-staging-v02.api.letsencrypt.org/directory',
}

function acmeSpec(a: NonNullable<NonNullable<RawConfig['server']['tls']>['acme']>, file: string): AcmeSpec {
  return {
    email: a.email,
    directoryUrl: ACME_PRESETS[a.directory_url] ?? a.directory_url,
    domains: (a.domains ?? []).map((d) => d.toLowerCase()),
    onDemand: a.on_demand ? (a.allowed_domains ?? []).map((d) => d.toLowerCase()) : undefined,
    challenge: a.challenge,
    storageDir: resolveFrom(file, a.storage_dir),
    eab: a.eab && { kid: a.eab.kid, hmacKey: a.eab.hmac_key },
    redisUrl: a.store === 'redis' ? a.redis_url : undefined,
  }
}

/** server.tls.acme: the settings that only work together, and what this version cannot do yet. */
function checkAcme(t: Tree, at: At): void {
  const a = t.tls && isRecord(t.tls.acme) ? t.tls.acme : undefined
  if (!a) return
  const base = ['server', 'tls', 'acme']
  const onDemand = a.on_demand === true
  if (!Array.isArray(a.domains) && !onDemand)
    at(base, 'needs domains, or on_demand: true with allowed_domains')
  if (onDemand && !Array.isArray(a.allowed_domains)) {
    at(
      [...base, 'allowed_domains'],
      'is required with on_demand: true (without it anyone could make us order certificates)',
    )
  }
  if (!onDemand && a.allowed_domains !== undefined) {
    at([...base, 'allowed_domains'], 'only applies with on_demand: true')
  }
  if ((a.challenge ?? 'http-01') === 'http-01' && t.server?.redirect_http_bind === undefined) {
    at(
      [...base, 'challenge'],
      'http-01 is answered on server.redirect_http_bind (the CA connects to port 80); set it, or use challenge: tls-alpn-01',
    )
  }
  if (a.store === 'redis' && a.redis_url === undefined) {
    at([...base, 'redis_url'], 'is required with store: redis (redis://host:6379)')
  }
  if (a.store !== 'redis' && a.redis_url !== undefined) {
    at([...base, 'redis_url'], 'only applies with store: redis')
  }
}

/** The listener's certificates, read and checked (files, pairs); undefined without server.tls. */
function loadListenerCertificates(t: Tree, at: At, file: string): CertificateMaterial[] | undefined {
  const tls = t.tls
  if (!tls) return undefined
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
  } else if (single[0] === undefined && single[1] === undefined && !isRecord(tls.acme)) {
    at(['server', 'tls'], 'needs cert_path and key_path, certificates, or acme')
  }
  return certs
}

/** Upstream TLS files (CA, client certificate), read and checked; TLS keys without tls: true refused. */
function loadUpstreamTlsFiles(t: Tree, at: At, file: string): Map<string, UpstreamTlsMaterial> {
  const out = new Map<string, UpstreamTlsMaterial>()
  for (const [name, u] of Object.entries(t.upstreams ?? {})) {
    if (!isRecord(u)) continue
    const base = ['upstreams', name]
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
    const files = {
      ca: str(u.ca_path) && resolveFrom(file, String(u.ca_path)),
      cert: str(u.client_cert_path) && resolveFrom(file, String(u.client_cert_path)),
      key: str(u.client_key_path) && resolveFrom(file, String(u.client_key_path)),
    }
    if (u.tls_skip_verify === true && files.ca !== undefined) {
      at([...base, 'ca_path'], 'has no effect with tls_skip_verify: true (nothing is verified)')
    }
    const m = loadUpstreamTls(files, base, at)
    if (m) out.set(name, m)
  }
  return out
}

/**
 * The control API must not share the proxy's address, and it changes routes and upstreams:
 * reachable from other hosts, it needs a key, or an explicit `insecure: true`. Loopback is
 * 127.0.0.0/8, ::1 and localhost; a host name or 0.0.0.0/:: (every interface) is not. An empty
 * api_key refuses every request, so it counts.
 */
/**
 * With a config store the runtime layer lives in Redis on top of the file: writing a change into
 * the file as well would apply it twice (once from the file, once from the layer).
 */
function checkConfigStore(t: Tree, at: At): void {
  if (!isRecord(t.data.config_store) || t.control?.persist !== true) return
  at(
    ['control_api', 'persist'],
    'cannot be used with config_store: runtime changes are kept in the store, on top of the file',
  )
}

function checkControlApi(t: Tree, at: At): void {
  const control = t.control
  if (control?.enabled !== true) return
  const bindText = typeof control.bind_address === 'string' ? control.bind_address : '127.0.0.1:8485'
  if (t.server && typeof t.server.bind_address === 'string') {
    const a = parseHostPort(t.server.bind_address, { listen: true })
    const b = parseHostPort(bindText)
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
  if (control.insecure === true || control.api_key !== undefined) return
  const b = parseHostPort(bindText, { listen: true })
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

/** The ops listener needs a port of its own: it must not take the main, redirect or control one. */
function checkOpsListener(t: Tree, at: At): void {
  const ops = t.server?.ops_bind_address
  if (typeof ops !== 'string') return
  const a = parseHostPort(ops, { listen: true })
  if (typeof a === 'string' || a.port === 0) return
  const others: Array<[string, unknown]> = [
    ['server.bind_address', t.server?.bind_address ?? '0.0.0.0:8484'],
    ['server.redirect_http_bind', t.server?.redirect_http_bind],
    [
      'control_api.bind_address',
      t.control?.enabled === true ? (t.control.bind_address ?? '127.0.0.1:8485') : undefined,
    ],
  ]
  for (const [name, text] of others) {
    if (typeof text !== 'string') continue
    const b = parseHostPort(text, { listen: true })
    if (typeof b !== 'string' && a.port === b.port && sameHost(a, b)) {
      at(['server', 'ops_bind_address'], `uses the same address as ${name} (${formatHostPort(b)})`)
    }
  }
}

interface TlsMaterial {
  listener: CertificateMaterial[] | undefined
  upstreams: Map<string, UpstreamTlsMaterial>
}

function sameHost(a: HostPort, b: HostPort): boolean {
  const any = (h: string) => h === '0.0.0.0' || h === '::'
  return a.host === b.host || any(a.host) || any(b.host)
}

/** Paths in the config are relative to the config file's directory. */
export function resolveFrom(configFile: string, p: string): string {
  return path.resolve(path.dirname(configFile), p)
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

/** The trip conditions of a `circuit_breaker` that sets none of its own. */
export const CIRCUIT_BREAKER_DEFAULTS = { consecutive_failures: 5, error_ratio: 0.5 } as const

type RawBreaker = NonNullable<RawConfig['upstreams'][string]['circuit_breaker']>

function circuitBreakerSpec(c: RawBreaker): CircuitBreakerSpec {
  const none =
    c.consecutive_failures === undefined && c.error_ratio === undefined && c.latency_p99_ms === undefined
  return {
    consecutiveFailures: none ? CIRCUIT_BREAKER_DEFAULTS.consecutive_failures : c.consecutive_failures,
    errorRatio: none ? CIRCUIT_BREAKER_DEFAULTS.error_ratio : c.error_ratio,
    latencyP99Ms: c.latency_p99_ms,
    minRequests: c.min_requests,
    windowSecs: c.window_secs,
    openMs: c.open_secs * 1000,
    halfOpenRequests: c.half_open_requests,
    fallback: c.fallback,
  }
}

/** A group's servers: the host:port ones as peers, the dns: and srv: ones to resolve. */
function serverSpecs(
  u: RawConfig['upstreams'][string],
  server: RawConfig['server'],
): { peers: PeerSpec[]; discovery: DiscoverySpec | undefined } {
  const peers: PeerSpec[] = []
  const found: DiscoveredServer[] = []
  for (const s of u.servers) {
    const entry = typeof s === 'string' ? { address: s, weight: 1 } : s
    const target = parseDiscoveryEntry(entry.address)
    if (target && typeof target !== 'string') {
      found.push({ entry: entry.address, target, weight: entry.weight })
      continue
    }
    const hp = parseHostPort(entry.address) as HostPort
    peers.push({ address: formatHostPort(hp), host: hp.host, port: hp.port, weight: entry.weight })
  }
  const resolver = u.resolver ?? server.resolver
  const discovery: DiscoverySpec | undefined =
    found.length === 0
      ? undefined
      : {
          servers: found,
          resolver: resolver === undefined ? undefined : parseResolver(resolver),
          minTtlMs: server.dns_min_ttl_secs * 1000,
          maxTtlMs: server.dns_max_ttl_secs * 1000,
        }
  return { peers, discovery }
}

function build(raw: RawConfig, file: string, tlsMaterial: TlsMaterial): Snapshot {
  const bind = parseHostPort(raw.server.bind_address, { listen: true }) as HostPort
  const upstreams = new Map<string, UpstreamSpec>()
  for (const [name, u] of Object.entries(raw.upstreams)) {
    const hc = u.health_check
    const ph = u.passive_health
    upstreams.set(name, {
      name,
      ...serverSpecs(u, raw.server),
      strategy: u.strategy as Strategy,
      hashKey: parseHashKey(u.hash_key),
      protocol: u.protocol,
      http2: { maxSessions: u.http2.max_sessions, pingIntervalMs: u.http2.ping_interval_secs * 1000 },
      tls: u.tls,
      sni: u.sni ? u.sni : undefined,
      tlsOptions: u.tls ? { ...tlsMaterial.upstreams.get(name)!, skipVerify: u.tls_skip_verify } : undefined,
      healthCheck: hc && {
        intervalMs: hc.interval_secs * 1000,
        timeoutMs: hc.timeout_secs * 1000,
        path: hc.path,
        grpcService: hc.grpc ? (hc.service ?? '') : undefined,
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
      circuitBreaker: u.circuit_breaker && circuitBreakerSpec(u.circuit_breaker),
      sticky: u.sticky && cookieSpec(u.sticky),
    })
  }
  const own = (o: '*' | string[] | undefined): OriginPolicy => (o === undefined || o === '*' ? o : new Set(o))
  const mode: ModeSpec =
    raw.mode === 'api_gateway'
      ? { kind: 'api_gateway', routes: routeSpecs(raw.api_gateway?.routes ?? {}) }
      : {
          kind: 'load_balancer',
          upstream: raw.load_balancer!.upstream ?? raw.load_balancer!.upstreams![0]!.name,
          split:
            raw.load_balancer!.upstreams &&
            splitSpec(raw.load_balancer!.upstreams, raw.load_balancer!.sticky),
          protocol: raw.load_balancer!.protocol,
          middlewares: raw.load_balancer!.middlewares,
          websocketOrigins: own(raw.load_balancer!.websocket_origins),
          mirror: mirrorSpec(raw.load_balancer!.mirror),
        }
  // Every group of a split, weight 0 included: its health is known before it is ramped up.
  const activeUpstreams = [
    ...new Set(
      (mode.kind === 'api_gateway' ? mode.routes : [mode]).flatMap((r) => r.split?.groups ?? [r.upstream]),
    ),
  ]
  const middlewares = new Map<string, MiddlewareDeclaration>()
  for (const section of [raw.middlewares, raw.api_gateway?.middlewares ?? {}]) {
    for (const [name, settings] of Object.entries(section)) {
      if (!middlewares.has(name))
        middlewares.set(name, { type: typeof settings.type === 'string' ? settings.type : name, settings })
    }
  }
  const control = raw.control_api
  const snapshot: Snapshot = {
    file,
    raw,
    mode,
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
      acme: raw.server.tls.acme && acmeSpec(raw.server.tls.acme, file),
    },
    redirectHttp: raw.server.redirect_http_bind
      ? (parseHostPort(raw.server.redirect_http_bind, { listen: true }) as HostPort)
      : undefined,
    ops: raw.server.ops_bind_address
      ? (parseHostPort(raw.server.ops_bind_address, { listen: true }) as HostPort)
      : undefined,
    h2c: raw.server.h2c,
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
    logging: { level: raw.logging.level, format: raw.logging.format, access: accessLogSpec(raw, file) },
    upstreams,
    activeUpstreams,
    middlewares,
    controlApi: {
      enabled: control.enabled,
      bind: parseHostPort(control.bind_address, { listen: true }) as HostPort,
      apiKey: control.api_key,
      insecure: control.insecure,
    },
    watch: raw.watch,
    tracing: raw.tracing.enabled
      ? {
          endpoint: raw.tracing.otlp_endpoint,
          protocol: raw.tracing.protocol as TracingProtocol | undefined,
          samplingRatio: raw.tracing.sampling_ratio,
        }
      : undefined,
    debugHeader: raw.debug_header && {
      name: raw.debug_header.name.toLowerCase(),
      digest: createHash('sha256').update(raw.debug_header.secret).digest('hex'),
    },
    configStore: raw.config_store && {
      type: raw.config_store.type,
      url: raw.config_store.url,
      keyPrefix: raw.config_store.key_prefix,
    },
  }
  return deepFreeze(snapshot)
}

/** `upstreams` (and `sticky`) as the running sums and tokens a pick needs (upstream/split.ts). */
function splitSpec(
  entries: ReadonlyArray<{ name: string; weight: number }>,
  sticky: RawSplitSticky | undefined,
): SplitSpec {
  const groups = entries.map((e) => e.name)
  const weights = entries.map((e) => e.weight)
  let sum = 0
  const cumulative = weights.map((w) => (sum += w))
  let st: SplitSticky | undefined
  if (sticky?.cookie !== undefined) {
    const cookie = cookieSpec({ ...sticky, cookie: sticky.cookie })
    const tokens = groups.map((g) => stickyToken('split', g))
    st = {
      kind: 'cookie',
      cookie,
      byToken: new Map(tokens.map((tok, i) => [tok, i])),
      setCookie: tokens.map((tok) => setCookieValue(cookie, tok)),
    }
  } else if (sticky?.header !== undefined) {
    st = { kind: 'header', name: sticky.header.toLowerCase() }
  } else if (sticky?.client_ip) {
    st = { kind: 'client_ip' }
  }
  return { groups, weights, cumulative, total: sum, sticky: st, sequence: new WeylSequence() }
}

function accessLogSpec(raw: RawConfig, file: string): AccessLogSpec | undefined {
  const a = raw.logging.access_log
  if (a === undefined) return undefined
  const fields = a.fields ?? ACCESS_FIELDS.filter((f) => f !== 'query' || a.include_query)
  return {
    format: a.format,
    output: a.output === 'stdout' ? 'stdout' : resolveFrom(file, a.output),
    fields,
    includeQuery: a.include_query,
  }
}

function mirrorSpec(m: RawMirror | undefined): MirrorSpec | undefined {
  return (
    m && {
      upstream: m.upstream,
      percent: m.percent,
      maxBodyBytes: m.max_body_bytes,
      maxInFlight: m.max_in_flight,
    }
  )
}

/** Routes in the order they are tried: longest pattern first; Array.sort is stable, so ties keep file order. */
function routeSpecs(routes: Record<string, RawRoute>): RouteSpec[] {
  return Object.entries(routes)
    .map(
      ([name, r]): RouteSpec => ({
        name,
        pattern: r.path_pattern,
        methods: r.methods ? new Set(r.methods) : null,
        upstream: r.upstream ?? r.upstreams![0]!.name,
        split: r.upstreams && splitSpec(r.upstreams, r.sticky),
        stripPrefix: r.strip_prefix,
        timeoutMs: r.timeout_secs !== undefined ? r.timeout_secs * 1000 : undefined,
        middlewares: r.middlewares,
        retries: r.retries,
        retryOn: r.retry_on ? new Set(r.retry_on) : undefined,
        maxBodyBytes: r.max_body_bytes,
        websocketOrigins:
          r.websocket_origins === undefined || r.websocket_origins === '*'
            ? r.websocket_origins
            : new Set(r.websocket_origins),
        mirror: mirrorSpec(r.mirror),
      }),
    )
    .sort((a, b) => b.pattern.length - a.pattern.length)
}
