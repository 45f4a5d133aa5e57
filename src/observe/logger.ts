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
  const dest: Pick<ByteDestination, 'write' | 'flushSync'> = opts.sink
    ? { write: (b: Buffer) => opts.sink!.write(b.toString()), flushSync() {} }
    : logDestination(opts.fd ?? 1)
  // pino hands over strings; the destination takes bytes (see logDestination). Its lines are
  // few (not one per request): encoding each is no cost that matters.
  const stream = {
    write:
      opts.format === 'text'
        ? (line: string) => dest.write(Buffer.from(toLogfmt(line)))
        : (line: string) => dest.write(Buffer.from(line)),
  }
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

/** A log output that takes bytes: sonic-boom in buffer mode (its typings describe only strings). */
export interface ByteDestination {
  write(chunk: Buffer): unknown
  flushSync(): void
  reopen(): void
  end(): void
}

/**
 * Where log lines go (a file descriptor such as stdout's, or a file's path), written
 * asynchronously, as bytes: sonic-boom's string mode encodes every chunk twice (once to write
 * it, once more when the write completes, to find what was written) and measures its byte
 * length twice on the way in; its buffer mode writes the Buffers it is given as they are.
 * sonic-boom 5 itself rather than pino.destination (which bundles sonic-boom 4):
 * 4's flushSync retried every write error forever, so the flush at exit, with stdout a pipe
 * whose reader had gone, never returned: SIGTERM (and the second one) could not stop the
 * process. A reader that goes away (EPIPE) ends the output: later lines are dropped, as
 * pino.destination does. Any other error goes to `onError` (never thrown: no unhandled 'error').
 */
export function logDestination(dest: number | string, onError?: (err: Error) => void): ByteDestination {
  const out = new SonicBoom({ dest, sync: false, append: true, mkdir: false, contentMode: 'buffer' })
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') {
      const drop = (): boolean => true
      out.write = drop
      out.flushSync = () => undefined
      return
    }
    onError?.(err)
  })
  return out as unknown as ByteDestination
}

/** How many bytes of access lines are gathered before they are written. */
const LINE_BUFFER_BYTES = 64 * 1024
/** A flush with less than this copies it out and keeps the buffer (a quiet server's lines). */
const LINE_BUFFER_KEEP = 8 * 1024

/**
 * Access lines, gathered and handed to `dest` at most every 50 ms (or at 64 KiB), as nginx's
 * buffered access log does. Under load one write per line, or even per event-loop turn, meant
 * thousands of thread-pool writes a second: ~15 µs of CPU per request. Each line is encoded
 * once, straight into the buffer that is written. Joining the strings instead, with sonic-boom's
 * string mode after it, cost 1.23 µs of CPU a line to buffer and write against 1.08 now (a
 * 400,000-line run on the reference machine, the same lines built in both, medians of four).
 */
export class LineBuffer {
  readonly #dest: { write(chunk: Buffer): unknown }
  #buf = Buffer.allocUnsafe(LINE_BUFFER_BYTES)
  #used = 0
  #timer: NodeJS.Timeout | undefined

  constructor(dest: { write(chunk: Buffer): unknown }) {
    this.#dest = dest
  }

  push(line: string): void {
    // A UTF-16 code unit is at most 3 bytes of UTF-8: a line that might not fit goes after a
    // flush, and one longer than the whole buffer on its own.
    if (this.#used + line.length * 3 > LINE_BUFFER_BYTES) {
      this.flush()
      if (line.length * 3 > LINE_BUFFER_BYTES) {
        this.#dest.write(Buffer.from(line))
        return
      }
    }
    this.#used += this.#buf.write(line, this.#used)
    if (this.#timer === undefined) this.#timer = setTimeout(this.flush, 50)
  }

  /** Hands everything pending to the destination now. */
  flush = (): void => {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    const used = this.#used
    if (used === 0) return
    this.#used = 0
    const filled = this.#buf.subarray(0, used)
    if (used < LINE_BUFFER_KEEP) {
      this.#dest.write(Buffer.from(filled))
      return
    }
    // The destination keeps the bytes until they are written: the next lines go to a new buffer.
    this.#buf = Buffer.allocUnsafe(LINE_BUFFER_BYTES)
    this.#dest.write(filled)
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
