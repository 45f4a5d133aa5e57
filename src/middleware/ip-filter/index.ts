// ip_filter: refuses clients by address, 403 `ip_not_allowed`. The address is the one the
// proxy resolved (RequestContext.clientIp): the connection's peer, or behind proxies listed in
// server.trusted_proxies the client they name, so a client cannot pick it with a forged
// X-Forwarded-For. A denied address is refused even when allowed; with `allow`, anything
// else is refused. An address that cannot be read is refused: a filter fails closed.

import type { Middleware, Reply, RequestContext } from '../types'
import { type Cidr, CidrSet, parseCidr, parseIp } from './cidr'
import type { IpFilterConfig } from './config'

const REFUSED: Reply = { status: 403, kind: 'ip_not_allowed', headers: [] }

function set(list: readonly string[] | undefined): CidrSet | undefined {
  if (list === undefined) return undefined
  return new CidrSet(
    list.map((text) => {
      const r = parseCidr(text)
      if (typeof r === 'string') throw new Error(`unchecked ip_filter range ${text}: ${r}`)
      return r as Cidr
    }),
  )
}

export function ipFilter(cfg: IpFilterConfig): Middleware {
  const allow = set(cfg.allow)
  const deny = set(cfg.deny)
  return (ctx: RequestContext) => {
    const ip = parseIp(ctx.clientIp)
    if (ip === undefined) return REFUSED
    if (deny?.has(ip)) return REFUSED
    if (allow !== undefined && !allow.has(ip)) return REFUSED
    return undefined
  }
}
