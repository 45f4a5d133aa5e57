// Errors of the H1 client, with the `code` undici gives the same situation, so that
// proxy/errors.ts classifies both clients' failures alike. Socket errors (ECONNREFUSED,
// ECONNRESET, EPIPE, TLS verification) are passed on as Node raised them, as undici does.

export class H1Error extends Error {
  readonly code: string

  constructor(code: string, message: string) {
    super(message)
    this.name = 'H1Error'
    this.code = code
  }
}

export const CONNECT_TIMEOUT = 'UND_ERR_CONNECT_TIMEOUT'
export const HEADERS_TIMEOUT = 'UND_ERR_HEADERS_TIMEOUT'
export const HEADERS_OVERFLOW = 'UND_ERR_HEADERS_OVERFLOW'
export const BODY_TIMEOUT = 'UND_ERR_BODY_TIMEOUT'
export const INVALID_ARG = 'UND_ERR_INVALID_ARG'
export const NOT_SUPPORTED = 'UND_ERR_NOT_SUPPORTED'
export const ABORTED = 'UND_ERR_ABORTED'
export const SOCKET = 'UND_ERR_SOCKET'
export const CLOSED = 'UND_ERR_CLOSED'
export const DESTROYED = 'UND_ERR_DESTROYED'
export const REQ_CONTENT_LENGTH_MISMATCH = 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'
export const RES_CONTENT_LENGTH_MISMATCH = 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'

export function connectTimeout(host: string, port: number, ms: number): H1Error {
  return new H1Error(
    CONNECT_TIMEOUT,
    `Connect Timeout Error (attempted address: ${host}:${port}, timeout: ${ms}ms)`,
  )
}

export const invalidArg = (message: string): H1Error => new H1Error(INVALID_ARG, message)
export const socketError = (message: string): H1Error => new H1Error(SOCKET, message)
