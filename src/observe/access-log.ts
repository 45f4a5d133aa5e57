// The access log: one line per request at `info`, written when the exchange ends, with the
// fields SPEC names. Upstream failures add an `error_type` and a `warn` line of their own.

import type { Logger } from './logger'

export interface AccessRecord {
  method: string
  path: string
  route: string | undefined
  upstream: string | undefined
  server: string | undefined
  status: number
  duration_ms: number
  request_id: string
  error_type?: string | undefined
}

export function logAccess(log: Logger, rec: AccessRecord): void {
  log.info(rec, 'request')
}
