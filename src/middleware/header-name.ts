// Header names in middleware settings: an RFC 9110 token, checked where the setting is declared.

import { z } from 'zod'

export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
export const headerName = z.string().regex(TOKEN, { message: 'is not a valid header name' })

/**
 * Request headers the proxy itself writes or removes (hop-by-hop, framing, Host, forwarding and
 * the request id): a middleware setting may not name one as a header it sends upstream. Returns
 * why, or undefined for a name a middleware may send.
 */
export function reservedHeader(name: string): string | undefined {
  const lower = name.toLowerCase()
  if (isHopByHop(lower)) return `${name} is a hop-by-hop header`
  if (lower === 'host' || lower === 'content-length') return `${name} is set by the proxy`
  if (lower.startsWith('x-forwarded-') || lower === 'forwarded' || lower === 'x-real-ip')
    return `${name} is a forwarding header the proxy builds`
  if (lower === 'x-request-id') return 'X-Request-Id carries the request id the proxy keeps or makes'
  return undefined
}

/**
 * Why `name` cannot be a header only the proxy may send (forward_user, consumer_header), which is
 * removed from every client request: a reserved one, or a credential clients send everywhere.
 */
export function protectedHeaderProblem(name: string): string | undefined {
  const lower = name.toLowerCase()
  if (lower === 'authorization' || lower === 'cookie')
    return `${name} cannot be vouched for by the proxy: it would be removed from every client request`
  return reservedHeader(name)
}

/** A hop-by-hop header (RFC 9110 section 7.6.1, and those in common use); `lower` in lower case. */
export function isHopByHop(lower: string): boolean {
  return HOP_BY_HOP.test(lower)
}
const HOP_BY_HOP =
  /^(?:connection|keep-alive|proxy-[a-z-]+|te|trailer|transfer-encoding|upgrade|http2-settings)$/
