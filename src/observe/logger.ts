// The process logger: pino writing asynchronously to stdout, JSON lines by default or
// `key=value` lines with `logging.format: text`. The access log and every module log through it.

import pino, { type Logger } from 'pino'

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
    : pino.destination({ dest: opts.fd ?? 1, sync: false })
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
  // Access lines are joined and handed to the destination at most every 50 ms (or at 64 KiB),
  // as nginx's buffered access log does. Under load one write per line, or even per event-loop
  // turn, meant thousands of thread-pool writes a second: ~15 µs of CPU per request.
  let pending: string[] = []
  let pendingBytes = 0
  let timer: NodeJS.Timeout | undefined
  const writePending = () => {
    if (timer) clearTimeout(timer)
    timer = undefined
    if (pending.length === 0) return
    const text = pending.length === 1 ? pending[0]! : pending.join('')
    pending = []
    pendingBytes = 0
    dest.write(text)
  }
  return {
    logger,
    format: opts.format,
    writeLine: (line) => {
      pending.push(line)
      pendingBytes += line.length
      if (pendingBytes >= 65536) writePending()
      else if (timer === undefined) timer = setTimeout(writePending, 50)
    },
    flush: () => {
      writePending()
      try {
        dest.flushSync()
      } catch {
        // Not ready yet (nothing written) or already closed: nothing to flush.
      }
    },
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
    const s = typeof v === 'string' ? v : JSON.stringify(v)
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
