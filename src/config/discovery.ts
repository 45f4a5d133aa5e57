// Upstream servers found by DNS: `dns:NAME:PORT` (every A and AAAA address of NAME is a server
// on PORT) and `srv:_service._proto.NAME` (the SRV records give targets, ports, priorities and
// weights). The entries are parsed here, once, for the schema, compile() and the control API;
// upstream/discovery.ts resolves them.

import { isIP } from 'node:net'
import { type HostPort, hostProblem, parseHostPort } from './address'

export type DiscoveryEntry =
  | { readonly kind: 'dns'; readonly name: string; readonly port: number }
  | { readonly kind: 'srv'; readonly name: string }

/** `_service._proto.` then a name: `_http._tcp.api.internal`. */
const SRV = /^_[A-Za-z0-9-]{1,62}\._[A-Za-z0-9-]{1,62}\.(.+)$/

/**
 * A `servers` entry that starts with `dns:` or `srv:`, parsed; a reason string when it is
 * malformed; undefined when it is neither (a plain host:port, parsed by parseHostPort).
 */
export function parseDiscoveryEntry(text: string): DiscoveryEntry | string | undefined {
  if (text.startsWith('dns:')) {
    const rest = text.slice(4)
    const colon = rest.lastIndexOf(':')
    if (colon < 0) return `must be dns:NAME:PORT; the port is missing (got "${text}")`
    const name = rest.slice(0, colon)
    const portText = rest.slice(colon + 1)
    const bad = nameProblem(name, text)
    if (bad) return bad
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)
      return `port must be a number from 1 to 65535 (got "${text}")`
    return { kind: 'dns', name: lower(name), port: Number(portText) }
  }
  if (text.startsWith('srv:')) {
    const name = text.slice(4)
    const m = SRV.exec(name)
    if (!m) return `must be srv:_service._proto.NAME, such as srv:_http._tcp.api.internal (got "${text}")`
    const bad = nameProblem(name, text)
    if (bad) return bad
    if (isIP(m[1]!))
      return `the name after _service._proto. must be a DNS name, not an address (got "${text}")`
    return { kind: 'srv', name: lower(name) }
  }
  return undefined
}

function nameProblem(name: string, text: string): string | undefined {
  if (name === '') return `the name is missing (got "${text}")`
  if (isIP(name) || name.startsWith('['))
    return `"${name}" is an address, not a name to resolve; write it without the prefix (got "${text}")`
  const bad = hostProblem(name)
  return bad ? `${bad} (got "${text}")` : undefined
}

/** DNS names compare without case; one spelling keeps peers and logs alike. */
function lower(name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

/** A server entry of any kind: why it is not one, or undefined. */
export function serverEntryProblem(text: string): string | undefined {
  const d = parseDiscoveryEntry(text)
  if (typeof d === 'string') return d
  if (d) return undefined
  const hp = parseHostPort(text)
  return typeof hp === 'string' ? hp : undefined
}

/** A resolver is an IP address and port: the resolver itself cannot be found by name. */
export function resolverProblem(text: string): string | undefined {
  const hp = parseHostPort(text)
  if (typeof hp === 'string') return hp
  if (!isIP(hp.host)) return `must be an IP address and port such as 127.0.0.1:53 (got "${text}")`
  return undefined
}

export function parseResolver(text: string): HostPort {
  return parseHostPort(text) as HostPort
}
