// What changed between two snapshots, for the reload log line and the reload API answer.

import type { Snapshot } from './snapshot'

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
    const before = new Set(ua.peers.map((p) => p.address))
    const after = new Set(ub.peers.map((p) => p.address))
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
  for (const key of ['mode', 'server', 'logging', 'control_api', 'load_balancer'] as const) {
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
