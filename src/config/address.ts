// `host:port` strings, as written for `bind_address` and upstream servers (never with a scheme).

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
