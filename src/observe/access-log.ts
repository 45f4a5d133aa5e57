// The access log: one line per request at `info` with SPEC's fields, in the logger's format
// (JSON, or key=value with `logging.format: text`) and into the logger's buffered output.
// This one fixed-shape line is serialized here rather than through pino's generic path: it is
// written once per request, and pino's object serialization cost ~5 µs a line on the reference
// machine against under 1 µs for this (see README, Performance). Everything else logs via pino.

import type { LoggerHandle } from './logger'
import type { Metrics } from './metrics'

export interface AccessRecord {
  method: string
  path: string
  route: string | undefined
  upstream: string | undefined
  server: string | undefined
  status: number
  duration_ms: number
  request_id: string
  /** The client's address (behind trusted proxies, the one they name). */
  client?: string | undefined
  error_type?: string | undefined
}

export class AccessLog {
  readonly #handle: LoggerHandle
  readonly #pid = process.pid
  readonly #metrics: Metrics | undefined
  readonly #mode: () => string

  constructor(handle: LoggerHandle, metrics?: Metrics, mode: () => string = () => '') {
    this.#handle = handle
    this.#metrics = metrics
    this.#mode = mode
  }

  /** Every request ends here: one log line, and its metrics. */
  write(r: AccessRecord): void {
    this.#metrics?.record({
      mode: this.#mode(),
      route: r.route,
      upstream: r.upstream,
      status: r.status,
      durationMs: r.duration_ms,
      errorType: r.error_type,
    })
    const h = this.#handle
    if (!h.logger.isLevelEnabled('info')) return
    const time = isoNow()
    if (h.format === 'json') {
      h.writeLine(
        // method (an HTTP token), server (host:port) and request_id (validated characters) need
        // no escaping; the path, route and upstream names may.
        `{"level":"info","time":"${time}","pid":${this.#pid},"method":"${r.method}","path":${JSON.stringify(r.path)}` +
          (r.route !== undefined ? `,"route":${JSON.stringify(r.route)}` : '') +
          (r.upstream !== undefined ? `,"upstream":${JSON.stringify(r.upstream)}` : '') +
          (r.server !== undefined ? `,"server":"${r.server}"` : '') +
          `,"status":${r.status},"duration_ms":${r.duration_ms},"request_id":"${r.request_id}"` +
          // An IP address (validated by node:net) or "unknown": nothing to escape.
          (r.client !== undefined ? `,"client":"${r.client}"` : '') +
          (r.error_type !== undefined ? `,"error_type":"${r.error_type}"` : '') +
          ',"msg":"request"}\n',
      )
    } else {
      h.writeLine(
        `time=${time} level=info msg=request pid=${this.#pid} method=${kv(r.method)} path=${kv(r.path)}` +
          (r.route !== undefined ? ` route=${kv(r.route)}` : '') +
          (r.upstream !== undefined ? ` upstream=${kv(r.upstream)}` : '') +
          (r.server !== undefined ? ` server=${kv(r.server)}` : '') +
          ` status=${r.status} duration_ms=${r.duration_ms} request_id=${kv(r.request_id)}` +
          (r.client !== undefined ? ` client=${r.client}` : '') +
          (r.error_type !== undefined ? ` error_type=${r.error_type}` : '') +
          '\n',
      )
    }
  }
}

let lastMs = 0
let lastIso = ''

/** The ISO timestamp, formatted once per millisecond (toISOString costs ~0.7 µs a call). */
function isoNow(): string {
  const ms = Date.now()
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

const BARE = /^[^\s"=\\]+$/

function kv(s: string): string {
  return s !== '' && BARE.test(s) ? s : JSON.stringify(s)
}
