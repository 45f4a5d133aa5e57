// Web pages must not drive the control API. A browser on the proxy's host can reach a loopback
// control API: a page can POST to it blind (CSRF: `fetch(url, {method: 'POST', mode: 'no-cors'})`)
// and a page whose domain is made to resolve to 127.0.0.1 (DNS rebinding) can read its answers,
// since the browser then takes it for the page's own origin. The API serves no pages, so no
// legitimate client is a page: curl, the admin commands and Prometheus send no Origin and no
// Sec-Fetch-Site, and name the API by address. The guard, as Docker, Consul and the Kubernetes
// API server do it:
// - `Origin`, when sent, must be the API's own origin (`http(s)://` + the Host header);
// - `Sec-Fetch-Site`, when sent, must be `same-origin` or `none` (typed in the address bar);
// - without api_key, Host must be an IP address, `localhost` or the configured bind host: a
//   rebinding page's requests carry its own domain there. With a key the key is the defence, and
//   users reach the API through DNS names (a reverse proxy), so Host is not checked.

import type { IncomingHttpHeaders } from 'node:http'
import { isIP } from 'node:net'

export interface BrowserGuard {
  apiKey: string | undefined
  /** control_api.bind_address's host, as configured (`127.0.0.1`, `::1`, `localhost`, a name). */
  bindHost: string
}

/** Why a request looks like it comes from a web page, or undefined when it does not. */
export function browserRefusal(h: IncomingHttpHeaders, g: BrowserGuard): string | undefined {
  const host = h.host
  const site = h['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return `refused a request sent by a web browser for another site (Sec-Fetch-Site: ${clip(site)}); the control API is for clients such as curl and the admin commands`
  }
  const origin = h.origin
  if (origin !== undefined && !ownOrigin(origin, host)) {
    return `refused a request from a web page (Origin: ${clip(origin)}); the control API is for clients such as curl and the admin commands`
  }
  if (g.apiKey === undefined && host !== undefined && !knownHost(host, g.bindHost)) {
    return (
      `refused Host "${clip(host)}": without control_api.api_key the control API answers only requests ` +
      'addressed to an IP address, localhost or its bind_address host (a guard against DNS rebinding); ' +
      'use the address, or set api_key'
    )
  }
  return undefined
}

/** The API's own origin is the Host the client addressed, over http or https (a TLS front). */
function ownOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined || host === '') return false
  const o = origin.toLowerCase()
  const h = host.toLowerCase()
  return o === `http://${h}` || o === `https://${h}`
}

/** Host header (`name[:port]`, `v4[:port]`, `[v6][:port]`) naming an IP, localhost or the bind host. */
export function knownHost(header: string, bindHost: string): boolean {
  if (header.startsWith('[')) {
    const end = header.indexOf(']')
    if (end < 0) return false
    const rest = header.slice(end + 1)
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return false
    return isIP(header.slice(1, end)) === 6
  }
  const m = /^([^:]+)(?::\d{1,5})?$/.exec(header)
  if (!m) return false
  const name = m[1]!.toLowerCase().replace(/\.$/, '')
  if (isIP(name) === 4) return true
  const bind = bindHost.toLowerCase().replace(/\.$/, '')
  return name === 'localhost' || name === bind
}

function clip(s: string): string {
  return s.length > 100 ? `${s.slice(0, 100)}...` : s
}
