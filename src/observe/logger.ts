// The process logger: pino writing asynchronously to stdout, JSON lines by default or
// `key=value` lines with `logging.format: text`. The access log and every module log through it.

import pino, { type Logger } from 'pino'
import SonicBoom from 'sonic-boom'

export type { Logger }

export interface LoggerOptions {
  level: string
  format: 'json' | 'text'
  /** Where lines go; stdout by default. */
  fd?: number
  /** Instead of `fd`: a sink that receives the formatted text (the in-process test harness). */
  sink?: { write(text: string): unknown }
}

export interface LoggerHandle {
  logger: Logger
  format: 'json' | 'text'
  /** Appends one complete, already formatted line to the logger's buffered output. */
  writeLine(line: string): void
  /** Writes out anything buffered; call before the process exits. */
  flush(): void
}

export function createLogger(opts: LoggerOptions): LoggerHandle {
  const dest = opts.sink
    ? { write: (t: string) => opts.sink!.write(t), flushSync() {} }
    : logDestination(opts.fd ?? 1)
  const stream = opts.format === 'text' ? { write: (line: string) => dest.write(toLogfmt(line)) } : dest
  const logger = pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  )
  const lines = new LineBuffer(dest)
  return {
    logger,
    format: opts.format,
    writeLine: (line) => lines.push(line),
    flush: () => {
      lines.flush()
      try {
        dest.flushSync()
      } catch {
        // Not ready yet (nothing written) or already closed: nothing to flush.
      }
    },
  }
}

/**
 * Where log lines go (a file descriptor such as stdout's, or a file's path), written
 * asynchronously. sonic-boom 5 itself rather than pino.destination (which bundles sonic-boom 4):
 * 4's flushSync retried every write error forever, so the flush at exit, with stdout a pipe
 * whose reader had gone, never returned: SIGTERM (and the second one) could not stop the
 * process. A reader that goes away (EPIPE) ends the output: later lines are dropped, as
 * pino.destination does. Any other error goes to `onError` (never thrown: no unhandled 'error').
 */
export function logDestination(dest: number | string, onError?: (err: Error) => void): SonicBoom {
  const out = new SonicBoom({ dest, sync: false, append: true, mkdir: false })
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') {
      const drop = (): boolean => true
      out.write = drop
      out.flushSync = () => undefined
      return
    }
    onError?.(err)
  })
  return out
}

/**
 * Access lines, joined and handed to `dest` at most every 50 ms (or at 64 KiB), as nginx's
 * buffered access log does. Under load one write per line, or even per event-loop turn, meant
 * thousands of thread-pool writes a second: ~15 µs of CPU per request.
 */
export class LineBuffer {
  readonly #dest: { write(text: string): unknown }
  #pending: string[] = []
  #bytes = 0
  #timer: NodeJS.Timeout | undefined

  constructor(dest: { write(text: string): unknown }) {
    this.#dest = dest
  }

  push(line: string): void {
    this.#pending.push(line)
    this.#bytes += line.length
    if (this.#bytes >= 65536) this.flush()
    else if (this.#timer === undefined) this.#timer = setTimeout(this.flush, 50)
  }

  /** Hands everything pending to the destination now. */
  flush = (): void => {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pending.length === 0) return
    const text = this.#pending.length === 1 ? this.#pending[0]! : this.#pending.join('')
    this.#pending = []
    this.#bytes = 0
    this.#dest.write(text)
  }
}

const BARE = /^[^\s"=\\]+$/

/** One pino JSON line to `key=value` pairs, time and level first, as logfmt readers expect. */
export function toLogfmt(line: string): string {
  let obj: Record<string, unknown>
  try {
    obj = JSON.parse(line)
  } catch {
    return line
  }
  const parts: string[] = []
  const add = (k: string, v: unknown) => {
    if (v === undefined) return
    // Lists of plain values as `a,b` (the listening line's upstreams); anything else as JSON.
    const s =
      typeof v === 'string'
        ? v
        : Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null)
          ? v.join(',')
          : JSON.stringify(v)
    parts.push(`${k}=${s !== '' && BARE.test(s) ? s : JSON.stringify(s)}`)
  }
  add('time', obj.time)
  add('level', obj.level)
  add('msg', obj.msg)
  for (const [k, v] of Object.entries(obj)) {
    if (k !== 'time' && k !== 'level' && k !== 'msg') add(k, v)
  }
  return `${parts.join(' ')}\n`
}
