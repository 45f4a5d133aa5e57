// The access log: one line per request at `info` with the fields of the guide's Access log
// section, in the logger's format (JSON, or key=value with `logging.format: text`) and into the
// logger's buffered output.
// This one fixed-shape line is serialized here rather than through pino's generic path: it is
// written once per request, and pino's object serialization cost ~5 µs a line on the reference
// machine against under 1 µs for this (see README, Performance). Everything else logs via pino.

import { ERRORS, type ErrorKind, loggedStatus } from './errors'
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

/** What every access line of a request says, whoever ends it (pipeline, Exchange, upgrade). */
export interface RequestFacts {
  readonly method: string
  /** The normalized path without the query string (what routes and middlewares saw). */
  readonly path: string
  readonly route: string | undefined
  readonly requestId: string
  /** The client's address (behind trusted proxies, the one they name). */
  readonly client: string
  /** performance.now() when the request arrived. */
  readonly start: number
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

  /**
   * The one place a request's access record is built: `sent` is the status written to the
   * client (0 if none), `kind` the failure that ended it, if any (observe/errors.ts).
   */
  request(
    f: RequestFacts,
    upstream: string | undefined,
    server: string | undefined,
    sent: number,
    kind: ErrorKind | undefined,
  ): void {
    this.write({
      method: f.method,
      path: f.path,
      route: f.route,
      upstream,
      server,
      status: loggedStatus(sent, kind),
      duration_ms: Math.round((performance.now() - f.start) * 1000) / 1000,
      request_id: f.requestId,
      client: f.client,
      error_type: kind === undefined ? undefined : ERRORS[kind].label,
    })
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
