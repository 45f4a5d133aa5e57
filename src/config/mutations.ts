// Runtime changes from the control API, made the way a user would make them: by editing the
// YAML document (comments and ${VAR} references survive) and running the result through the same
// compile() as the file, so a change is valid exactly when the file would be. Each function edits
// a Document and returns what it did, or throws a ChangeRefused (invalid, not_found, conflict). What a client sends
// is taken literally: its strings are written with `${` escaped, so they are never expanded from
// the proxy's environment (now, or when a persisted file is read again).

import { type Document, isMap, isScalar, isSeq, type YAMLMap, type YAMLSeq } from 'yaml'
import { formatHostPort, parseHostPort } from './address'
import { serverEntryProblem } from './discovery'
import { escapeEnv } from './env'
import { ChangeRefused } from './refused'
import { didYouMean } from './suggest'

const NAME = /^[A-Za-z0-9_.-]{1,100}$/
const ROUTE_FIELDS = [
  'path_pattern',
  'methods',
  'upstream',
  'upstreams',
  'sticky',
  'strip_prefix',
  'timeout_secs',
  'middlewares',
  'retries',
  'retry_on',
  'max_body_bytes',
  'websocket_origins',
]

function body(input: unknown): Record<string, unknown> {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw new ChangeRefused('invalid', 'the body must be a JSON object')
  return input as Record<string, unknown>
}

/** A JSON value as it must be written into the document to mean itself (see escapeEnv). */
export function literal(v: unknown): unknown {
  if (typeof v === 'string') return escapeEnv(v)
  if (Array.isArray(v)) return v.map(literal)
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, literal(x)]))
  return v
}

function nameOf(b: Record<string, unknown>, what: string): string {
  if (typeof b.name !== 'string' || !NAME.test(b.name)) {
    throw new ChangeRefused('invalid', `"name" is required: the ${what}'s name (letters, digits, _ . -)`)
  }
  return b.name
}

/** POST /api/v1/routes */
export function addRoute(doc: Document, input: unknown): string {
  const b = body(input)
  const name = nameOf(b, 'route')
  const unknown = Object.keys(b).filter((k) => k !== 'name' && !ROUTE_FIELDS.includes(k))
  if (unknown.length) {
    const hint = unknown.length === 1 ? didYouMean(unknown[0]!, ROUTE_FIELDS) : ''
    throw new ChangeRefused(
      'invalid',
      `unknown field${unknown.length > 1 ? 's' : ''}: ${unknown.map(clip).join(', ')}${hint}`,
    )
  }
  if (doc.hasIn(['api_gateway', 'routes', name]))
    throw new ChangeRefused('conflict', `route "${name}" already exists`)
  const route: Record<string, unknown> = {}
  for (const k of ROUTE_FIELDS) if (b[k] !== undefined) route[k] = literal(b[k])
  doc.setIn(['api_gateway', 'routes', name], doc.createNode(route))
  return `added route ${name}`
}

/** DELETE /api/v1/routes/:name */
export function removeRoute(doc: Document, name: string): string {
  if (!doc.hasIn(['api_gateway', 'routes', name])) throw new ChangeRefused('not_found', `no route "${name}"`)
  doc.deleteIn(['api_gateway', 'routes', name])
  return `removed route ${name}`
}

/**
 * PATCH /api/v1/routes/:name: the route's weighted split, replaced whole (a route that named one
 * `upstream` gets a split instead). Its `sticky` stays; compile() checks the rest.
 */
export function setRouteWeights(doc: Document, name: string, input: unknown): string {
  if (!doc.hasIn(['api_gateway', 'routes', name])) throw new ChangeRefused('not_found', `no route "${name}"`)
  const b = body(input)
  const other = Object.keys(b).filter((k) => k !== 'upstreams')
  if (other.length) {
    throw new ChangeRefused(
      'invalid',
      `only "upstreams" can be changed here (got ${other.map(clip).join(', ')}); remove and add the route to change the rest`,
    )
  }
  if (!Array.isArray(b.upstreams) || b.upstreams.length === 0) {
    throw new ChangeRefused('invalid', '"upstreams" is required: a list of {name, weight}')
  }
  doc.setIn(['api_gateway', 'routes', name, 'upstreams'], doc.createNode(literal(b.upstreams)))
  doc.deleteIn(['api_gateway', 'routes', name, 'upstream'])
  const shares = b.upstreams.map((e) =>
    e !== null && typeof e === 'object'
      ? `${clip(String((e as { name?: unknown }).name))} ${String((e as { weight?: unknown }).weight)}`
      : '?',
  )
  return `set the weights of route ${name}: ${shares.join(', ')}`
}

/** The upstream fields naming a file on the proxy's host (schema.ts `upstream`). */
const UPSTREAM_FILE_FIELDS = ['ca_path', 'client_cert_path', 'client_key_path']
/** Any other key that names a file or directory, at any depth (`health_check.path` is a URL path). */
const FILE_KEY = /_(?:path|file|dir)$/

/**
 * Where `v` sets a field that names a file (dotted paths). A client of the API must not make the
 * proxy open a file of its choosing: the answer (missing, unreadable, not PEM) would tell it
 * what exists on the host, and the file could be a device that never ends.
 */
export function fileFields(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => fileFields(x, `${at}[${i}]`))
  if (v === null || typeof v !== 'object') return []
  return Object.entries(v).flatMap(([k, x]) => {
    const here = at === '' ? k : `${at}.${k}`
    return (at === '' && UPSTREAM_FILE_FIELDS.includes(k)) || FILE_KEY.test(k) ? [here] : fileFields(x, here)
  })
}

/** `servers` entries as given: each must be a real host:port, or a dns:/srv: name (config/discovery.ts). */
function checkServers(servers: unknown[]): void {
  for (const s of servers) {
    const address = s !== null && typeof s === 'object' ? (s as { address?: unknown }).address : s
    if (typeof address !== 'string') continue // not an address at all: compile() says what is expected
    const problem = serverEntryProblem(address)
    if (problem) throw new ChangeRefused('invalid', `servers: ${clip(problem)}`)
  }
}

function clip(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}...` : s
}

/** POST /api/v1/upstreams: a new group, or more servers for an existing one. */
export function addUpstream(doc: Document, input: unknown): string {
  const b = body(input)
  const name = nameOf(b, 'upstream group')
  const files = fileFields(b)
  if (files.length) {
    throw new ChangeRefused(
      'invalid',
      'file paths cannot be set through the control API; edit the config file and reload',
      { fields: files },
    )
  }
  if (!Array.isArray(b.servers) || b.servers.length === 0) {
    throw new ChangeRefused('invalid', '"servers" is required: a list of "host:port" (or {address, weight})')
  }
  checkServers(b.servers)
  const group = doc.getIn(['upstreams', name], true)
  if (group === undefined) {
    const { name: _n, ...rest } = b
    doc.setIn(['upstreams', name], doc.createNode(literal(rest)))
    return `added upstream group ${name} (${b.servers.length} server${b.servers.length === 1 ? '' : 's'})`
  }
  const extra = Object.keys(b).filter((k) => k !== 'name' && k !== 'servers')
  if (extra.length) {
    throw new ChangeRefused(
      'invalid',
      `upstream "${name}" exists; only servers can be added to it (got ${extra.join(', ')}). Edit the file and reload to change its settings`,
    )
  }
  const seq = isMap(group) ? group.get('servers', true) : undefined
  if (!isSeq(seq)) throw new ChangeRefused('invalid', `upstream "${name}" has no servers list to add to`)
  const present = new Set(seq.items.map((i) => normalized(addressOf(i))))
  const added: unknown[] = []
  for (const given of b.servers) {
    // Compared and written as the document spells it, escaped.
    const s = literal(given)
    const addr = normalized(typeof s === 'object' && s !== null ? (s as { address?: unknown }).address : s)
    if (addr !== undefined && present.has(addr)) continue
    seq.add(doc.createNode(s))
    added.push(given)
    if (addr !== undefined) present.add(addr)
  }
  if (added.length === 0)
    throw new ChangeRefused('conflict', `every server given is already in upstream "${name}"`)
  return `added ${added.length} server${added.length === 1 ? '' : 's'} to ${name}`
}

/** DELETE /api/v1/upstreams/:name/servers/:server */
export function removeServer(doc: Document, name: string, server: string): string {
  const group = doc.getIn(['upstreams', name], true)
  if (group === undefined) throw new ChangeRefused('not_found', `no upstream "${name}"`)
  const seq: unknown = isMap(group) ? (group as YAMLMap).get('servers', true) : undefined
  const target = normalized(server)
  const index = isSeq(seq) ? (seq as YAMLSeq).items.findIndex((i) => normalized(addressOf(i)) === target) : -1
  if (index < 0) throw new ChangeRefused('not_found', `no server "${server}" in upstream "${name}"`)
  ;(seq as YAMLSeq).delete(index)
  return `removed server ${server} from ${name}`
}

function addressOf(item: unknown): unknown {
  if (isScalar(item)) return item.value
  if (isMap(item)) {
    const a = item.get('address', true)
    return isScalar(a) ? a.value : undefined
  }
  return undefined
}

/** `host:port` in one spelling, so `[::1]:80` and an IPv6 given either way compare equal. */
function normalized(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined
  const hp = parseHostPort(v)
  return typeof hp === 'string' ? v : formatHostPort(hp)
}

/** Runtime changes as data, so they can travel to the primary process with several workers. */
export type ChangeOp =
  | { op: 'addRoute'; body: unknown }
  | { op: 'removeRoute'; name: string }
  | { op: 'addUpstream'; body: unknown }
  | { op: 'removeServer'; name: string; server: string }
  | { op: 'setRouteWeights'; name: string; body: unknown }

export function applyChange(doc: Document, c: ChangeOp): string {
  switch (c.op) {
    case 'addRoute':
      return addRoute(doc, c.body)
    case 'removeRoute':
      return removeRoute(doc, c.name)
    case 'addUpstream':
      return addUpstream(doc, c.body)
    case 'removeServer':
      return removeServer(doc, c.name, c.server)
    case 'setRouteWeights':
      return setRouteWeights(doc, c.name, c.body)
    default:
      // Reachable from data: a change read back from a shared store (config/runtime-layer.ts).
      throw new ChangeRefused('invalid', `unknown change "${clip(String((c as { op?: unknown }).op))}"`)
  }
}
