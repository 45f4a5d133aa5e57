// The closed catalogue of failures: every failure the proxy can report is one ErrorKind, and one
// table (ERRORS) says what it means on the wire (status, short body), in the logs (level, the
// `error_type` label) and metrics (the same label), whether it is an upstream server's fault,
// and which `retry_on` condition it falls under. Node, undici and the proxy's own error codes
// are mapped to kinds in exactly one function, errorKind(). docs/GUIDE.md (Errors) lists every
// kind with its status; errors.test.ts holds the two together.

import type { Logger } from './logger'

/** Failures of a whole connection rather than of one request: no HTTP answer, it is closed. */
export type ConnectionKind = 'connection_limit' | 'http2_rapid_reset' | 'idle_timeout'

/** Failures answered with an HTTP status (or, client_aborted, logged with one). */
export type ReplyKind =
  // The request's own faults: answered before or instead of an upstream, never charged to one.
  | 'bad_request'
  | 'header_too_large'
  | 'header_timeout'
  | 'payload_too_large'
  | 'body_timeout'
  | 'version_not_supported'
  | 'unknown_transfer_coding'
  | 'origin_not_allowed'
  | 'no_route'
  | 'method_not_allowed'
  | 'unauthorized'
  | 'basic_auth_failed'
  | 'api_key_invalid'
  | 'rate_limited'
  | 'ip_not_allowed'
  | 'client_aborted'
  // A service the proxy depends on (not an upstream server).
  | 'rate_limiter_unavailable'
  | 'auth_unavailable'
  | 'auth_busy'
  | 'forward_auth_unavailable'
  | 'forward_auth_timeout'
  | 'forward_auth_error'
  // The upstream group or one of its servers.
  | 'no_healthy_peer'
  | 'circuit_open'
  | 'connect_failed'
  | 'connect_timeout'
  | 'upstream_timeout'
  | 'upstream_reset'
  | 'upstream_error'
  // The proxy's own fault.
  | 'internal'

export type ErrorKind = ReplyKind | ConnectionKind

/** The `retry_on` conditions a failure can fall under (config/snapshot.ts RetryCondition). */
export type RetryableAs = 'connect_failure' | 'timeout' | 'reset'

export interface ErrorEntry {
  /**
   * The status the client gets; client_aborted: the one logged (nobody reads a reply); 0 for a
   * ConnectionKind (no HTTP answer).
   */
  readonly status: number
  /** The reply body after the status (`<status> <body>\n`, text/plain). */
  readonly body: string
  /** `error_type` in the log lines and in `locci_errors_total`. */
  readonly label: string
  /** Level of the line that reports the failure where it is detected (beside the access line). */
  readonly level: 'info' | 'warn' | 'error'
  /**
   * Charged to the upstream: the fault of the group or of the server tried, reported to passive
   * health when a server was tried, logged as `upstream error` and with the group in the access
   * line. Never the case for a fault of the request or of the proxy.
   */
  readonly upstream?: true
  /** The `retry_on` condition it falls under; absent: never retried. */
  readonly retry?: RetryableAs
}

export const ERRORS: Readonly<Record<ErrorKind, ErrorEntry>> = {
  // Malformed requests, refused by Node's parser before a handler runs (listener.ts) or by the
  // pipeline (a path it cannot normalize, a forged or conflicting header). Node's 431 and 408
  // keep the label they always had: to a dashboard they are bad requests.
  bad_request: { status: 400, label: 'bad_request', level: 'info', body: 'malformed request' },
  header_too_large: {
    status: 431,
    label: 'bad_request',
    level: 'info',
    body: 'request header fields too large',
  },
  /** The request head did not arrive in time (Node's headersTimeout / requestTimeout). */
  header_timeout: { status: 408, label: 'bad_request', level: 'info', body: 'request timed out' },
  payload_too_large: {
    status: 413,
    label: 'payload_too_large',
    level: 'info',
    body: 'request body too large',
  },
  /** The request body sent nothing for server.body_timeout_secs (body-guard.ts). */
  body_timeout: { status: 408, label: 'request_timeout', level: 'info', body: 'request body timed out' },
  version_not_supported: {
    status: 505,
    label: 'version_not_supported',
    level: 'info',
    body: 'HTTP version not supported',
  },
  // RFC 9112 section 6.1: a transfer coding the server does not know gets this status.
  unknown_transfer_coding: {
    status: 501,
    label: 'unknown_transfer_coding',
    level: 'info',
    body: 'unknown transfer coding',
  },
  origin_not_allowed: {
    status: 403,
    label: 'origin_not_allowed',
    level: 'info',
    body: 'origin not allowed to open a WebSocket here',
  },
  no_route: { status: 404, label: 'no_route', level: 'info', body: 'no route for this path' },
  method_not_allowed: {
    status: 405,
    label: 'method_not_allowed',
    level: 'info',
    body: 'method not allowed for this path',
  },
  unauthorized: {
    status: 401,
    label: 'unauthorized',
    level: 'info',
    body: 'a valid bearer token is required',
  },
  basic_auth_failed: {
    status: 401,
    label: 'basic_auth_failed',
    level: 'info',
    body: 'a valid user name and password are required',
  },
  api_key_invalid: {
    status: 401,
    label: 'api_key_invalid',
    level: 'info',
    body: 'a valid API key is required',
  },
  rate_limited: { status: 429, label: 'rate_limited', level: 'info', body: 'too many requests' },
  // An ip_filter middleware refused the client address.
  ip_not_allowed: { status: 403, label: 'ip_not_allowed', level: 'info', body: 'client address not allowed' },
  // Nobody reads the reply; 499 (nginx's "client closed request") is what the log records.
  client_aborted: { status: 499, label: 'client_aborted', level: 'info', body: '' },
  // A service a middleware depends on; the middleware logs it (rate-limit throttles its lines).
  rate_limiter_unavailable: {
    status: 503,
    label: 'rate_limiter_unavailable',
    level: 'warn',
    body: 'rate limiter unavailable',
  },
  auth_unavailable: {
    status: 503,
    label: 'auth_unavailable',
    level: 'warn',
    body: 'token verification keys unavailable',
  },
  /** basic_auth: more password checks waiting than it queues (each costs milliseconds of CPU). */
  auth_busy: {
    status: 503,
    label: 'auth_busy',
    level: 'warn',
    body: 'too many password checks at once, retry shortly',
  },
  /** forward_auth: the auth service could not be reached (refused, reset, DNS). */
  forward_auth_unavailable: {
    status: 503,
    label: 'forward_auth_unavailable',
    level: 'warn',
    body: 'authentication service unavailable',
  },
  /** forward_auth: no complete answer within timeout_secs. */
  forward_auth_timeout: {
    status: 504,
    label: 'forward_auth_timeout',
    level: 'warn',
    body: 'authentication service timed out',
  },
  /** forward_auth: an answer that cannot be relayed (a header value unsafe to send, a body over 64 KiB). */
  forward_auth_error: {
    status: 502,
    label: 'forward_auth_error',
    level: 'warn',
    body: 'invalid answer from the authentication service',
  },
  // The upstream group, or the server tried.
  no_healthy_peer: {
    status: 503,
    label: 'no_healthy_peer',
    level: 'warn',
    body: 'no healthy upstream server',
    upstream: true,
  },
  // The group's circuit breaker is open (or half-open with its probes taken) and no fallback
  // group took the request (upstream/circuit-breaker.ts): refused without trying a server.
  circuit_open: {
    status: 503,
    label: 'circuit_open',
    level: 'warn',
    body: 'upstream circuit breaker open',
    upstream: true,
  },
  connect_failed: {
    status: 502,
    label: 'connect_failed',
    level: 'warn',
    body: 'could not connect to an upstream server',
    upstream: true,
    retry: 'connect_failure',
  },
  connect_timeout: {
    status: 504,
    label: 'connect_timeout',
    level: 'warn',
    body: 'timed out connecting to an upstream server',
    upstream: true,
    retry: 'connect_failure',
  },
  upstream_timeout: {
    status: 504,
    label: 'upstream_timeout',
    level: 'warn',
    body: 'upstream server timed out',
    upstream: true,
    retry: 'timeout',
  },
  upstream_reset: {
    status: 502,
    label: 'upstream_reset',
    level: 'warn',
    body: 'upstream server closed the connection',
    upstream: true,
    retry: 'reset',
  },
  upstream_error: {
    status: 502,
    label: 'upstream_error',
    level: 'warn',
    body: 'invalid response from upstream server',
    upstream: true,
    retry: 'reset',
  },
  // A fault in the proxy's own handling of one request.
  internal: { status: 500, label: 'internal', level: 'error', body: 'internal proxy error' },
  // server.max_connections reached: Node closes the connection on arrival (logged every 10 s).
  connection_limit: { status: 0, label: 'connection_limit', level: 'warn', body: '' },
  // An HTTP/2 client cancelling streams faster than allowed: GOAWAY, then closed (listener.ts).
  http2_rapid_reset: { status: 0, label: 'http2_rapid_reset', level: 'warn', body: '' },
  // A TCP pass-through connection with no byte either way for tcp_idle_timeout_secs.
  idle_timeout: { status: 0, label: 'idle_timeout', level: 'info', body: '' },
}

/**
 * The gRPC status code a gRPC client gets for `kind` (proxy/grpc.ts): a timeout is
 * DEADLINE_EXCEEDED, too much (rate, size) RESOURCE_EXHAUSTED, a cancelled call CANCELLED, the
 * proxy's fault INTERNAL; every other kind by its HTTP status as gRPC maps one
 * (doc/http-grpc-status-mapping.md: 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
 * 502-504 UNAVAILABLE, other 4xx INTERNAL, otherwise UNKNOWN).
 */
export function grpcStatus(kind: ReplyKind): number {
  switch (kind) {
    case 'connect_timeout':
    case 'upstream_timeout':
    case 'forward_auth_timeout':
    case 'header_timeout':
    case 'body_timeout':
      return 4
    case 'rate_limited':
    case 'payload_too_large':
    case 'auth_busy':
      return 8
    case 'client_aborted':
      return 1
    case 'internal':
      return 13
    case 'method_not_allowed':
      return 12
  }
  const status = ERRORS[kind].status
  if (status === 401) return 16
  if (status === 403) return 7
  if (status === 404) return 12
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14
  if (status >= 400 && status < 500) return 13
  return 2
}

/** Every kind, in table order. */
export const ERROR_KINDS = Object.keys(ERRORS) as readonly ErrorKind[]

/** Every `error_type` label, once each (for a metric's label list or a dashboard). */
export const ERROR_LABELS: readonly string[] = [...new Set(ERROR_KINDS.map((k) => ERRORS[k].label))]

/** `<status> <body>\n`, the whole reply body of each ReplyKind, built once. */
const REPLY_BODIES = Object.fromEntries(
  ERROR_KINDS.map((k) => [k, ERRORS[k].body === '' ? '' : `${ERRORS[k].status} ${ERRORS[k].body}\n`]),
) as Readonly<Record<ErrorKind, string>>

export function replyBody(kind: ReplyKind): string {
  return REPLY_BODIES[kind]
}

/** The proxy's own codes for a request body that broke a limit (body-guard.ts). */
export const BODY_TOO_LARGE = 'LOCCI_BODY_TOO_LARGE'
export const BODY_TIMEOUT = 'LOCCI_BODY_TIMEOUT'
/** The code of the error a proxy deadline raises (as Node's own socket timeouts do). */
export const TIMED_OUT = 'ETIMEDOUT'
/** An HTTP/2 stream the upstream refused before processing it (upstream/h2/pool.ts). */
export const H2_REFUSED_STREAM = 'LOCCI_H2_REFUSED_STREAM'

/**
 * Where a failure happened, which decides what a code means:
 * - `connect`: on the way to an upstream server, before anything of the request reached it
 *   (undici had not called onConnect; a socket not yet connected);
 * - `exchange`: on a connection to an upstream server, the request (or tunnel) under way;
 * - `client`: on the client's side (its connection, its request head or body).
 */
export type FailureSide = 'connect' | 'exchange' | 'client'

/** The one mapping from an error code (Node, undici, llhttp, the proxy's own) to a kind. */
export function errorKind(code: string | undefined, side: FailureSide): ReplyKind {
  if (side === 'client') {
    switch (code) {
      case 'HPE_HEADER_OVERFLOW':
        return 'header_too_large'
      case 'ERR_HTTP_REQUEST_TIMEOUT':
        return 'header_timeout'
      case BODY_TOO_LARGE:
        return 'payload_too_large'
      case BODY_TIMEOUT:
        return 'body_timeout'
      case 'ECONNRESET':
      case 'EPIPE':
      case 'ECONNABORTED':
        return 'client_aborted'
      default:
        return 'bad_request'
    }
  }
  // undici's connect timeout is a connect failure whenever it is reported.
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect_timeout'
  // An HTTP/2 stream the server refused (REFUSED_STREAM, or above a GOAWAY's last stream id)
  // never reached its application: like a connect failure, safe on another server.
  if (code === H2_REFUSED_STREAM) return 'connect_failed'
  if (side === 'connect') return code === TIMED_OUT ? 'connect_timeout' : 'connect_failed'
  switch (code) {
    case TIMED_OUT:
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

/**
 * The status an access line records: client_aborted always logs 499 (whatever was sent before
 * the client left); otherwise what was sent, or the kind's status when nothing was.
 */
export function loggedStatus(sent: number, kind: ErrorKind | undefined): number {
  if (kind === undefined) return sent
  if (kind === 'client_aborted') return ERRORS.client_aborted.status
  return sent || ERRORS[kind].status
}

/**
 * Writes the line that reports a failure of `kind` where it was detected: at the kind's level,
 * with its label as `error_type` (set on `fields`, which the caller builds for this line).
 */
export function logFailure(log: Logger, kind: ErrorKind, fields: Record<string, unknown>, msg: string): void {
  const e = ERRORS[kind]
  fields.error_type = e.label
  log[e.level](fields, msg)
}
