// The forward_auth declaration: where the auth service is, how long to wait for it, which
// client headers it sees and which of its answer's headers go upstream.

import { z } from 'zod'
import { headerName, isHopByHop, reservedHeader } from '../header-name'
import type { Report } from '../types'

export const forwardAuth = z.strictObject({
  type: z.literal('forward_auth').optional(),
  /** The auth service's URL (http or https); every check is a GET to it. */
  address: z.url({ protocol: /^https?$/ }),
  /** Whole exchange with the auth service: connect, answer and body. */
  timeout_secs: z.number().positive().max(300).default(5),
  /** The client headers sent to the auth service; absent: all of them. */
  auth_request_headers: z.array(headerName).optional(),
  /** Headers of the auth service's 2xx answer set on the upstream request (clients cannot send them). */
  auth_response_headers: z.array(headerName).default([]),
})

export type ForwardAuthConfig = z.output<typeof forwardAuth>

export function checkForwardAuth(cfg: ForwardAuthConfig, report: Report): void {
  const url = new URL(cfg.address)
  if (url.username !== '' || url.password !== '') report('address', 'must not hold a user name or password')
  if (url.hash !== '') report('address', 'must not have a #fragment')
  for (const h of cfg.auth_request_headers ?? []) {
    const lower = h.toLowerCase()
    if (isHopByHop(lower) || lower === 'host' || lower === 'content-length')
      report('auth_request_headers', `${h} is never sent to the auth service (the proxy sets its own)`)
  }
  for (const h of cfg.auth_response_headers) {
    const problem = reservedHeader(h)
    if (problem !== undefined) report('auth_response_headers', problem)
  }
}

/**
 * The auth_response_headers (lower case) removed from every client request: all but
 * Authorization and Cookie, which clients send to every route. Those two are still never passed
 * from the client on a forward_auth route: the middleware replaces them with the service's.
 */
export function forwardAuthHeaders(cfg: ForwardAuthConfig): string[] {
  return cfg.auth_response_headers
    .map((h) => h.toLowerCase())
    .filter((h) => h !== 'authorization' && h !== 'cookie')
}
