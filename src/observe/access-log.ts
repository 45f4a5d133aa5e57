// The access log: one line per request. Without `logging.access_log` the line goes through the
// process log at `info` with the fields of the guide's Logging section (the contract scripts
// rely on). With it, the line has its own layout (json, text, or Apache/nginx common and
// combined), its own fields and its own output (stdout, or a file reopened on SIGUSR1 for
// logrotate), written whatever `logging.level` says, as nginx's access_log is.
// Lines are serialized here rather than through pino's generic path: one is written per
// request, and pino's object serialization cost ~5 µs a line on the reference machine against
// under 1 µs for these (see README, Performance). The layout is compiled once per config
// (`configure`), so a request only runs the field writers its config asks for.

import { closeSync, openSync } from 'node:fs'
import { ERRORS, type ErrorKind, loggedStatus } from './errors'
import { type ByteDestination, LineBuffer, type Logger, type LoggerHandle, logDestination } from './logger'
import type { Metrics } from './metrics'

/** The access log's fields (logging.access_log.fields), in their default order. */
export const ACCESS_FIELDS = [
  'time',
  'client_ip',
  'method',
  'host',
  'path',
  'query',
  'protocol',
  'status',
  'bytes_received',
  'bytes_sent',
  'duration_ms',
  'upstream_time_ms',
  'user_agent',
  'referer',
  'request_id',
  'route',
  'upstream',
  'server',
  'attempts',
  'error_type',
  'trace_id',
] as const

export type AccessField = (typeof ACCESS_FIELDS)[number]

/** logging.access_log, compiled: fields resolved to their defaults, output to an absolute path. */
export interface AccessLogSpec {
  readonly format: 'json' | 'text' | 'common' | 'combined'
  /** 'stdout' or an absolute file path. */
  readonly output: string
  readonly fields: readonly AccessField[]
  readonly includeQuery: boolean
}

/** What the request line gave: protocol version, target (for the query) and header fields. */
export interface RequestLine {
  readonly url?: string | undefined
  /** "1.1", "1.0", "2.0". */
  readonly httpVersion: string
  readonly rawHeaders: readonly string[]
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
  readonly req: RequestLine
  /** The Host (or :authority, or an absolute-form target's authority), if any. */
  readonly host: string | undefined
  /** Set when the request is traced (proxy/trace.ts): told the end, names the trace. */
  readonly trace?: RequestEnd | undefined
}

/** What a request's trace needs from its end: the status sent and the failure, if any. */
export interface RequestEnd {
  /** The OpenTelemetry trace id (32 hex digits); undefined when only X-Locci-Trace was asked for. */
  readonly traceId: string | undefined
  end(status: number, errorType: string | undefined): void
}

/** What only the end of a request knows (bytes both ways, upstream timing). */
export interface Outcome {
  /** Request body bytes read from the client. */
  readonly bytesReceived: number
  /** Response body bytes written to the client (Apache's %b). */
  readonly bytesSent: number
  /** From sending the last attempt to its response head; -1 when no answer came. */
  readonly upstreamMs: number
  /** Upstream attempts made (retries included). */
  readonly attempts: number
}

/** The legacy line's record (logging.access_log not set). */
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
  /** The OpenTelemetry trace id, when the request is traced. */
  trace_id?: string | undefined
}

/** One request's line, as the field writers read it. */
interface Entry {
  readonly f: RequestFacts
  readonly upstream: string | undefined
  readonly server: string | undefined
  readonly status: number
  readonly durationMs: number
  readonly errorType: string | undefined
  readonly out: Outcome | undefined
}

/** A configured access log: where lines go and how one is laid out. */
interface Sink {
  readonly key: string
  readonly line: (e: Entry) => string
  readonly buffer: { push(line: string): void; flush(): void }
  readonly file: ByteDestination | undefined
}

export class AccessLog {
  readonly #handle: LoggerHandle
  readonly #pid = process.pid
  readonly #metrics: Metrics | undefined
  readonly #mode: () => string
  #sink: Sink | undefined

  constructor(handle: LoggerHandle, metrics?: Metrics, mode: () => string = () => '') {
    this.#handle = handle
    this.#metrics = metrics
    this.#mode = mode
  }

  /**
   * Applies `logging.access_log` (at start and on every reload): a new output is opened before
   * the old one is closed, so a path that cannot be written refuses the config and the log in
   * use stays. Throws with a message that names the path.
   */
  configure(spec: AccessLogSpec | undefined): void {
    const key = spec === undefined ? '' : JSON.stringify(spec)
    if ((this.#sink?.key ?? '') === key) return
    const old = this.#sink
    this.#sink = spec === undefined ? undefined : this.#open(spec, key)
    if (old?.file) {
      old.buffer.flush()
      old.file.end()
    }
  }

  /** SIGUSR1: the file is reopened by its path (logrotate moved the old one away). */
  reopen(): void {
    const s = this.#sink
    if (s?.file === undefined) return
    s.buffer.flush()
    s.file.reopen()
  }

  /** Writes out anything buffered (before the process exits). */
  flush(): void {
    const s = this.#sink
    if (s === undefined) return
    s.buffer.flush()
    try {
      s.file?.flushSync()
    } catch {
      // Not open yet or already closed: nothing to flush.
    }
  }

  #open(spec: AccessLogSpec, key: string): Sink {
    const line = layout(spec)
    if (spec.output === 'stdout') {
      return {
        key,
        line,
        buffer: { push: this.#handle.writeLine, flush: this.#handle.flush },
        file: undefined,
      }
    }
    // Checked now, synchronously, so a bad path is a clear refusal instead of a later async error.
    try {
      closeSync(openSync(spec.output, 'a'))
    } catch (err) {
      throw new Error(`logging.access_log.output: cannot write ${spec.output}: ${(err as Error).message}`)
    }
    const log: Logger = this.#handle.logger
    let reported = 0
    const file = logDestination(spec.output, (err) => {
      // A full disk or a removed directory: said once a minute, never fatal.
      const now = Date.now()
      if (now - reported < 60_000) return
      reported = now
      log.error({ output: spec.output, err: err.message }, 'access log write failed')
    })
    return { key, line, buffer: new LineBuffer(file), file }
  }

  /**
   * The one place a request's access line is built: `sent` is the status written to the client
   * (0 if none), `kind` the failure that ended it, if any (observe/errors.ts), `out` what the
   * exchange measured (bytes, upstream time, attempts).
   */
  request(
    f: RequestFacts,
    upstream: string | undefined,
    server: string | undefined,
    sent: number,
    kind: ErrorKind | undefined,
    out?: Outcome,
  ): void {
    const status = loggedStatus(sent, kind)
    const durationMs = Math.round((performance.now() - f.start) * 1000) / 1000
    const errorType = kind === undefined ? undefined : ERRORS[kind].label
    f.trace?.end(status, errorType)
    const s = this.#sink
    if (s === undefined) {
      this.write({
        method: f.method,
        path: f.path,
        route: f.route,
        upstream,
        server,
        status,
        duration_ms: durationMs,
        request_id: f.requestId,
        client: f.client,
        error_type: errorType,
        trace_id: f.trace?.traceId,
      })
      return
    }
    this.#record(f.route, upstream, status, durationMs, errorType)
    s.buffer.push(
      s.line({
        f,
        upstream,
        server,
        status,
        durationMs,
        errorType,
        out,
      }),
    )
  }

  #record(
    route: string | undefined,
    upstream: string | undefined,
    status: number,
    durationMs: number,
    errorType: string | undefined,
  ): void {
    this.#metrics?.record({ mode: this.#mode(), route, upstream, status, durationMs, errorType })
  }

  /** The legacy line (logging.access_log not set), through the process log at info. */
  write(r: AccessRecord): void {
    this.#record(r.route, r.upstream, r.status, r.duration_ms, r.error_type)
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
          `,"status":${r.status},"duration_ms":${numberText(r.duration_ms)},"request_id":"${r.request_id}"` +
          // An IP address (validated by node:net) or "unknown": nothing to escape.
          (r.client !== undefined ? `,"client":"${r.client}"` : '') +
          (r.error_type !== undefined ? `,"error_type":"${r.error_type}"` : '') +
          (r.trace_id !== undefined ? `,"trace_id":"${r.trace_id}"` : '') +
          ',"msg":"request"}\n',
      )
    } else {
      h.writeLine(
        `time=${time} level=info msg=request pid=${this.#pid} method=${kv(r.method)} path=${kv(r.path)}` +
          (r.route !== undefined ? ` route=${kv(r.route)}` : '') +
          (r.upstream !== undefined ? ` upstream=${kv(r.upstream)}` : '') +
          (r.server !== undefined ? ` server=${kv(r.server)}` : '') +
          ` status=${r.status} duration_ms=${numberText(r.duration_ms)} request_id=${kv(r.request_id)}` +
          (r.client !== undefined ? ` client=${r.client}` : '') +
          (r.error_type !== undefined ? ` error_type=${r.error_type}` : '') +
          (r.trace_id !== undefined ? ` trace_id=${r.trace_id}` : '') +
          '\n',
      )
    }
  }
}

/** A field's value for a line; undefined when the request has none (no route, no Referer...). */
type Getter = (e: Entry) => string | number | undefined

const FIELDS: Record<AccessField, { get: Getter; quote: boolean }> = {
  time: { get: () => isoNow(), quote: false },
  client_ip: { get: (e) => e.f.client, quote: false },
  // An HTTP token: nothing to escape.
  method: { get: (e) => e.f.method, quote: false },
  host: { get: (e) => e.f.host, quote: true },
  path: { get: (e) => e.f.path, quote: true },
  query: { get: (e) => queryOf(e.f.req.url), quote: true },
  protocol: { get: (e) => protocolOf(e.f.req), quote: false },
  status: { get: (e) => e.status, quote: false },
  bytes_received: { get: (e) => e.out?.bytesReceived ?? 0, quote: false },
  bytes_sent: { get: (e) => e.out?.bytesSent ?? 0, quote: false },
  duration_ms: { get: (e) => e.durationMs, quote: false },
  upstream_time_ms: {
    get: (e) => (e.out === undefined || e.out.upstreamMs < 0 ? undefined : e.out.upstreamMs),
    quote: false,
  },
  user_agent: { get: (e) => headerOf(e.f.req.rawHeaders, 'user-agent'), quote: true },
  referer: { get: (e) => headerOf(e.f.req.rawHeaders, 'referer'), quote: true },
  // Validated characters or a UUID (proxy/headers.ts): nothing to escape.
  request_id: { get: (e) => e.f.requestId, quote: false },
  route: { get: (e) => e.f.route, quote: true },
  upstream: { get: (e) => e.upstream, quote: true },
  server: { get: (e) => e.server, quote: false },
  attempts: { get: (e) => e.out?.attempts ?? 0, quote: false },
  error_type: { get: (e) => e.errorType, quote: false },
  // 32 hex digits: nothing to escape.
  trace_id: { get: (e) => e.f.trace?.traceId, quote: false },
}

/** The line writer of a config: the fields' writers chosen once, here. */
function layout(spec: AccessLogSpec): (e: Entry) => string {
  switch (spec.format) {
    case 'common':
      return (e) => `${clfPrefix(e, spec.includeQuery)}\n`
    case 'combined':
      return (e) =>
        `${clfPrefix(e, spec.includeQuery)} "${clf(headerOf(e.f.req.rawHeaders, 'referer'))}" "${clf(
          headerOf(e.f.req.rawHeaders, 'user-agent'),
        )}"\n`
    case 'json': {
      const parts = spec.fields.map((name) => {
        const { get, quote } = FIELDS[name]
        const key = `"${name}":`
        return (e: Entry): string => {
          const v = get(e)
          if (v === undefined) return ''
          return key + (typeof v === 'number' ? numberText(v) : quote ? JSON.stringify(v) : `"${v}"`)
        }
      })
      return (e) => {
        let s = ''
        for (const p of parts) {
          const part = p(e)
          if (part !== '') s = s === '' ? part : `${s},${part}`
        }
        return `{${s}}\n`
      }
    }
    case 'text': {
      const parts = spec.fields.map((name) => {
        const { get, quote } = FIELDS[name]
        const key = `${name}=`
        return (e: Entry): string => {
          const v = get(e)
          if (v === undefined) return ''
          return key + (typeof v === 'number' ? numberText(v) : !quote ? v : kv(v))
        }
      })
      return (e) => {
        let s = ''
        for (const p of parts) {
          const part = p(e)
          if (part !== '') s = s === '' ? part : `${s} ${part}`
        }
        return `${s}\n`
      }
    }
  }
}

/** `%h %l %u %t "%r" %>s %b`: Apache's common log format, as nginx writes it. */
function clfPrefix(e: Entry, includeQuery: boolean): string {
  const query = includeQuery ? queryOf(e.f.req.url) : undefined
  const target = query === undefined ? e.f.path : `${e.f.path}?${query}`
  const sent = e.out?.bytesSent ?? 0
  const bytes = sent > 0 ? String(sent) : '-'
  return `${e.f.client} - - [${clfNow()}] "${e.f.method} ${clf(target)} ${protocolOf(e.f.req)}" ${e.status} ${bytes}`
}

/** The query string of a request target, without `?`; undefined when there is none. */
function queryOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const q = url.indexOf('?')
  return q < 0 || q === url.length - 1 ? undefined : url.slice(q + 1)
}

function protocolOf(req: RequestLine): string {
  return req.httpVersion === '2.0' ? 'HTTP/2' : `HTTP/${req.httpVersion}`
}

/** The first field named `lower` (lower case) in a raw header list. */
function headerOf(raw: readonly string[], lower: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === lower.length && name.toLowerCase() === lower) return raw[i + 1]
  }
  return undefined
}

const CLF_PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/**
 * A value inside a common/combined line's quotes, escaped as nginx does: `"`, `\`, control
 * characters and bytes above 0x7e as `\xHH`, so no header a client sends can end the quoted
 * field or the line. `-` when absent or empty.
 */
function clf(v: string | undefined): string {
  if (v === undefined || v === '') return '-'
  if (CLF_PLAIN.test(v)) return v
  let out = ''
  for (const byte of Buffer.from(v, 'latin1')) {
    out +=
      byte < 0x20 || byte > 0x7e || byte === 0x22 || byte === 0x5c
        ? `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(byte)
  }
  return out
}

/**
 * `v` as String(v) writes it. The times a line holds are milliseconds rounded to microseconds
 * (1.234): V8's double-to-text conversion took ~190 ns for one (0.33 µs a request in a `perf`
 * profile of the proxy under load); the integer parts here take ~50. Below 1e13 µs two doubles
 * are less than 0.5 µs apart, so no shorter decimal than `whole.frac` names the same double and
 * the text is String's (access-log.test.ts compares them). Other numbers (not a whole count of
 * microseconds, negative, larger) go to String.
 */
export function numberText(v: number): string {
  const us = Math.round(v * 1000)
  if (us / 1000 !== v || us < 0 || us > 1e13) return String(v)
  const whole = Math.floor(us / 1000)
  const frac = us - whole * 1000
  if (frac === 0) return `${whole}`
  if (frac % 10 !== 0) return `${whole}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`
  if (frac % 100 !== 0) return `${whole}.${frac < 100 ? '0' : ''}${frac / 10}`
  return `${whole}.${frac / 100}`
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

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
let lastSec = 0
let lastClf = ''

/** `30/Nov/2026:11:30:31 +0000` (UTC), formatted once per second. */
function clfNow(): string {
  const sec = Math.floor(Date.now() / 1000)
  if (sec !== lastSec) {
    lastSec = sec
    const d = new Date(sec * 1000)
    const p = (n: number) => (n < 10 ? `0${n}` : String(n))
    lastClf = `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(
      d.getUTCMinutes(),
    )}:${p(d.getUTCSeconds())} +0000`
  }
  return lastClf
}

const BARE = /^[^\s"=\\]+$/

function kv(s: string): string {
  return s !== '' && BARE.test(s) ? s : JSON.stringify(s)
}
