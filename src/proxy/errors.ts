// Request-time failures: one closed set of error kinds, and the one table that says what each
// means on the wire (status, short body, extra headers), in the logs (level) and in metrics
// (error_type). Node and undici error codes are mapped to kinds in exactly one place, here.

import type { ServerResponse } from 'node:http'
import type { RetryCondition } from '../config/snapshot'

export type ErrorKind =
  | 'bad_request'
  | 'payload_too_large'
  | 'request_timeout'
  | 'version_not_supported'
  | 'unknown_transfer_coding'
  | 'origin_not_allowed'
  | 'no_route'
  | 'method_not_allowed'
  | 'unauthorized'
  | 'rate_limited'
  | 'rate_limiter_unavailable'
  | 'auth_unavailable'
  | 'no_healthy_peer'
  | 'connect_failed'
  | 'connect_timeout'
  | 'upstream_timeout'
  | 'upstream_reset'
  | 'upstream_error'
  | 'client_aborted'
  | 'internal'

interface ErrorEntry {
  status: number
  body: string
  /** Level of the upstream-error log line; undefined: the access log line says it all. */
  warn: boolean
}

export const ERRORS: Readonly<Record<ErrorKind, ErrorEntry>> = {
  // Faults of the request itself: answered before or instead of an upstream, never charged to one.
  bad_request: { status: 400, body: 'malformed request', warn: false },
  payload_too_large: { status: 413, body: 'request body too large', warn: false },
  request_timeout: { status: 408, body: 'request body timed out', warn: false },
  version_not_supported: { status: 505, body: 'HTTP version not supported', warn: false },
  // RFC 9112 section 6.1: a transfer coding the server does not know gets this status.
  unknown_transfer_coding: { status: 501, body: 'unknown transfer coding', warn: false },
  origin_not_allowed: { status: 403, body: 'origin not allowed to open a WebSocket here', warn: false },
  no_route: { status: 404, body: 'no route for this path', warn: false },
  method_not_allowed: { status: 405, body: 'method not allowed for this path', warn: false },
  unauthorized: { status: 401, body: 'a valid bearer token is required', warn: false },
  rate_limited: { status: 429, body: 'too many requests', warn: false },
  rate_limiter_unavailable: { status: 503, body: 'rate limiter unavailable', warn: true },
  auth_unavailable: { status: 503, body: 'token verification keys unavailable', warn: true },
  no_healthy_peer: { status: 503, body: 'no healthy upstream server', warn: true },
  connect_failed: { status: 502, body: 'could not connect to an upstream server', warn: true },
  connect_timeout: { status: 504, body: 'timed out connecting to an upstream server', warn: true },
  upstream_timeout: { status: 504, body: 'upstream server timed out', warn: true },
  upstream_reset: { status: 502, body: 'upstream server closed the connection', warn: true },
  upstream_error: { status: 502, body: 'invalid response from upstream server', warn: true },
  // Nobody reads the reply; 499 (nginx's "client closed request") is what the log records.
  client_aborted: { status: 499, body: '', warn: false },
  internal: { status: 500, body: 'internal proxy error', warn: true },
}

/**
 * Classifies an upstream failure. `sent` says whether undici had started writing the request
 * (its onConnect ran): before that, nothing reached the peer and another peer may be tried.
 */
export function classifyUpstreamError(err: Error & { code?: string }, sent: boolean): ErrorKind {
  const code = err.code ?? ''
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect_timeout'
  if (!sent) return 'connect_failed'
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'upstream_timeout'
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return 'upstream_reset'
    default:
      return 'upstream_error'
  }
}

/** Which `retry_on` condition a failure falls under; undefined: never retried. */
export function retryCondition(kind: ErrorKind): RetryCondition | undefined {
  switch (kind) {
    case 'connect_failed':
    case 'connect_timeout':
      return 'connect_failure'
    case 'upstream_timeout':
      return 'timeout'
    case 'upstream_reset':
    case 'upstream_error':
      return 'reset'
    default:
      return undefined
  }
}

/** Writes the short plain-text reply for `kind`. The caller makes sure headers were not sent. */
export function replyError(
  res: ServerResponse,
  kind: ErrorKind,
  requestId: string,
  closeConnection: boolean,
  extra?: readonly string[],
): void {
  const entry = ERRORS[kind]
  const body = `${entry.status} ${entry.body}\n`
  const headers = [
    'content-type',
    'text/plain; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    'x-request-id',
    requestId,
  ]
  if (extra) headers.push(...extra)
  if (closeConnection) headers.push('connection', 'close')
  res.writeHead(entry.status, headers)
  res.end(body)
}
