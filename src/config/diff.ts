// What changed between two snapshots, for the reload log line and the reload API answer.

import type { Snapshot, UpstreamSpec } from './snapshot'

export interface ConfigDiff {
  routes_added: string[]
  routes_removed: string[]
  routes_changed: string[]
  upstreams_added: string[]
  upstreams_removed: string[]
  upstreams_changed: string[]
  servers_added: string[]
  servers_removed: string[]
  middlewares_changed: string[]
  settings_changed: string[]
}

export function diffSnapshots(a: Snapshot, b: Snapshot): ConfigDiff {
  const d: ConfigDiff = {
    routes_added: [],
    routes_removed: [],
    routes_changed: [],
    upstreams_added: [],
    upstreams_removed: [],
    upstreams_changed: [],
    servers_added: [],
    servers_removed: [],
    middlewares_changed: [],
    settings_changed: [],
  }
  const ra = a.raw.api_gateway?.routes ?? {}
  const rb = b.raw.api_gateway?.routes ?? {}
  for (const n of Object.keys(rb)) {
    if (!(n in ra)) d.routes_added.push(n)
    else if (JSON.stringify(ra[n]) !== JSON.stringify(rb[n])) d.routes_changed.push(n)
  }
  for (const n of Object.keys(ra)) if (!(n in rb)) d.routes_removed.push(n)

  for (const [n, ub] of b.upstreams) {
    const ua = a.upstreams.get(n)
    if (!ua) {
      d.upstreams_added.push(n)
      continue
    }
    const before = new Set(serverNames(ua))
    const after = new Set(serverNames(ub))
    for (const s of after) if (!before.has(s)) d.servers_added.push(`${n}/${s}`)
    for (const s of before) if (!after.has(s)) d.servers_removed.push(`${n}/${s}`)
    const { servers: _sa, ...restA } = a.raw.upstreams[n]!
    const { servers: _sb, ...restB } = b.raw.upstreams[n]!
    if (JSON.stringify(restA) !== JSON.stringify(restB)) d.upstreams_changed.push(n)
  }
  for (const n of a.upstreams.keys()) if (!b.upstreams.has(n)) d.upstreams_removed.push(n)

  const names = new Set([...a.middlewares.keys(), ...b.middlewares.keys()])
  for (const n of names) {
    if (JSON.stringify(a.middlewares.get(n)) !== JSON.stringify(b.middlewares.get(n)))
      d.middlewares_changed.push(n)
  }
  for (const key of [
    'mode',
    'server',
    'logging',
    'control_api',
    'load_balancer',
    'watch',
    'tracing',
    'debug_header',
  ] as const) {
    if (JSON.stringify(a.raw[key]) !== JSON.stringify(b.raw[key])) d.settings_changed.push(key)
  }
  if (tlsFingerprint(a) !== tlsFingerprint(b)) d.settings_changed.push('certificates')
  return d
}

function tlsFingerprint(s: Snapshot): string {
  return (s.tls?.certificates ?? []).map((c) => c.cert).join('')
}

export function isEmpty(d: ConfigDiff): boolean {
  return Object.values(d).every((v) => v.length === 0)
}

/**
 * A diff in the words of the control API's change descriptions (`added route x`), for the
 * runtime changes not saved to the file: the diff from the file's config to the live one, so a
 * change undone is no change. `live` is the config the diff leads to (server counts).
 */
export function describeDiff(d: ConfigDiff, live: Snapshot): string[] {
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`
  // `group/host:port`: a server address has no `/`, a group name may.
  const server = (s: string) => [s.slice(0, s.lastIndexOf('/')), s.slice(s.lastIndexOf('/') + 1)] as const
  return [
    ...d.routes_added.map((n) => `added route ${n}`),
    ...d.routes_removed.map((n) => `removed route ${n}`),
    ...d.routes_changed.map((n) => `changed route ${n}`),
    ...d.upstreams_added.map(
      (n) =>
        `added upstream group ${n} (${plural(live.upstreams.get(n) ? serverNames(live.upstreams.get(n)!).length : 0, 'server')})`,
    ),
    ...d.upstreams_removed.map((n) => `removed upstream group ${n}`),
    ...d.upstreams_changed.map((n) => `changed upstream group ${n}`),
    ...d.servers_added.map((s) => `added server ${server(s)[1]} to ${server(s)[0]}`),
    ...d.servers_removed.map((s) => `removed server ${server(s)[1]} from ${server(s)[0]}`),
    ...d.middlewares_changed.map((n) => `changed middleware ${n}`),
    ...d.settings_changed.map((k) => `changed ${k}`),
  ]
}

/** A group's servers as written: host:port ones and dns:/srv: entries. */
function serverNames(u: UpstreamSpec): string[] {
  return [...u.peers.map((p) => p.address), ...(u.discovery?.servers.map((s) => s.entry) ?? [])]
}
