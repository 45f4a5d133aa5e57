// `host:port` strings, as written for `bind_address` and upstream servers (never with a scheme).

import { BlockList, isIP } from 'node:net'

export interface HostPort {
  host: string
  port: number
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/**
 * Parses `host:port` or `[v6]:port`; returns a reason string when the text is not one.
 * `listen: true` allows port 0 (the OS picks a free port; the start-up log line shows which).
 */
export function parseHostPort(text: string, opts: { listen?: boolean } = {}): HostPort | string {
  if (SCHEME.test(text)) {
    return `must be host:port without a scheme (got "${text}"; write "${text.replace(SCHEME, '').replace(/\/.*$/, '')}")`
  }
  if (/[\s/]/.test(text)) return `must be host:port with no spaces or path (got "${text}")`
  let host: string
  let portText: string
  if (text.startsWith('[')) {
    const end = text.indexOf(']')
    if (end < 0 || text[end + 1] !== ':') return `must be [ipv6]:port (got "${text}")`
    host = text.slice(1, end)
    portText = text.slice(end + 2)
  } else {
    const colon = text.lastIndexOf(':')
    if (colon < 0) return `must be host:port; the port is missing (got "${text}")`
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (host.includes(':')) return `an IPv6 address must be written in brackets: [${host}]:${portText}`
  }
  if (host === '') return `must be host:port; the host is missing (got "${text}")`
  const bad = hostProblem(host, text.startsWith('['))
  if (bad) return `${bad} (got "${text}")`
  const min = opts.listen ? 0 : 1
  const range = `port must be a number from ${min} to 65535 (got "${text}")`
  if (!/^\d{1,5}$/.test(portText)) return range
  const port = Number(portText)
  if (port < min || port > 65535) return range
  return { host, port }
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** `10.0.0.0/8`, `fd00::/8` or a single address; the reason when the text is none of these. */
export function cidrProblem(text: string): string | undefined {
  const slash = text.indexOf('/')
  const addr = slash < 0 ? text : text.slice(0, slash)
  const family = isIP(addr)
  if (family === 0) return `must be an IP address or CIDR block such as 10.0.0.0/8 (got "${text}")`
  if (slash < 0) return undefined
  const bits = text.slice(slash + 1)
  const max = family === 4 ? 32 : 128
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) {
    return `the prefix length after "/" must be a number from 0 to ${max} (got "${text}")`
  }
  return undefined
}

/**
 * A matcher for a list of valid CIDR blocks (checked by cidrProblem), on node:net's BlockList.
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) match their IPv4 blocks.
 */
export function addressMatcher(cidrs: readonly string[]): (ip: string) => boolean {
  const list = new BlockList()
  for (const c of cidrs) {
    const slash = c.indexOf('/')
    const addr = slash < 0 ? c : c.slice(0, slash)
    const type = isIP(addr) === 4 ? 'ipv4' : 'ipv6'
    if (slash < 0) list.addAddress(addr, type)
    else list.addSubnet(addr, Number(c.slice(slash + 1)), type)
  }
  return (ip) => {
    const family = isIP(ip)
    if (family === 4) return list.check(ip, 'ipv4')
    if (family === 6) {
      if (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4) return list.check(ip.slice(7), 'ipv4')
      return list.check(ip, 'ipv6')
    }
    return false
  }
}

const LABEL = /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/

/**
 * Why `host` (from host:port) is neither an IP address nor a DNS name, or undefined. A name is
 * dot-separated labels of letters, digits and hyphens (RFC 1123: 1-63 characters, no hyphen at
 * either end), 253 characters at most, with an optional final dot. `_` is allowed too: Docker
 * Compose resolves service and container names such as `my_api` or `app_web_1`. Anything else
 * (`{`, `$`, `%`, `@`, spaces...) names no host, so it is refused rather than handed to DNS.
 * `bracketed`: the host was written `[...]`, so it must be an IPv6 address.
 */
export function hostProblem(host: string, bracketed = false): string | undefined {
  if (bracketed) return isIP(host) === 6 ? undefined : 'the host in brackets must be an IPv6 address'
  if (isIP(host) === 4) return undefined
  const name = host.endsWith('.') ? host.slice(0, -1) : host
  const labels = name.split('.')
  if (/^[\d.]+$/.test(name)) return `"${host}" is not an IPv4 address`
  if (name.length <= 253 && labels.every((l) => LABEL.test(l))) return undefined
  return 'the host must be a DNS name (letters, digits, hyphens and dots) or an IP address'
}
