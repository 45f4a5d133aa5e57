// Tools for the upstream-client tests (src/upstream/h1/*.test.ts): a recording dispatch handler
// that also checks the handler contract (one onConnect, nothing after the end, exactly one of
// onComplete/onError), the two clients configured alike, and raw `net` origins that see each
// request (head and body) and answer with exact bytes.

import { createHash } from 'node:crypto'
import net from 'node:net'
import type { Readable } from 'node:stream'
import { Pool } from 'undici'
import { type H1Handler, H1Pool, type H1Tls } from '../../src/upstream/h1/pool'

export interface Outcome {
  /** Status of every head, 1xx included. */
  statuses: number[]
  /** The final head's fields, `name: value` lines. */
  headers: string[]
  bodyLength: number
  bodySha256: string
  /** 'complete' or the error's code (its message when it has none). */
  end: string
  message: string
  /** Contract violations seen by the recorder (must stay empty). */
  violations: string[]
  /** onConnect was called: the request reached a connection (proxy/errors.ts's `sent`). */
  connected: boolean
  body: Buffer
}

export interface RecordOptions {
  /** Return false from onData on these chunk indexes and resume after `resumeAfterMs`. */
  pauseOn?: (index: number) => boolean
  resumeAfterMs?: number
  /** Called with the abort function once connected. */
  onConnect?: (abort: (err?: Error) => void) => void
  /** Give up waiting after this long (the outcome's end is then 'hang'). */
  timeoutMs?: number
  /** Take heads through H1Pool's onHeaderStrings (as Exchange does) instead of onHeaders. */
  strings?: boolean
  /** Take body chunks through H1Pool's onDataView (as Exchange does), copied at once. */
  views?: boolean
}

export interface Dispatching {
  dispatch(opts: DispatchOpts, handler: H1Handler): boolean
}

export interface DispatchOpts {
  path: string
  method: string
  headers?: string[]
  body?: Readable | null
  headersTimeout?: number
  bodyTimeout?: number
}

/** Sends one request and resolves with what the handler saw. */
export function record(d: Dispatching, opts: DispatchOpts, ro: RecordOptions = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const violations: string[] = []
    const statuses: number[] = []
    let headers: string[] = []
    const chunks: Buffer[] = []
    let connects = 0
    let ended = false
    let sawFinalHead = false
    let chunkIndex = 0
    let timer: NodeJS.Timeout | undefined
    const finish = (end: string, message: string) => {
      if (ended) {
        violations.push(`second end (${end}) after the first`)
        return
      }
      ended = true
      if (timer) clearTimeout(timer)
      const body = Buffer.concat(chunks)
      // Give late calls a moment to show up as violations.
      setImmediate(() =>
        resolve({
          statuses,
          headers,
          bodyLength: body.length,
          bodySha256: createHash('sha256').update(body).digest('hex'),
          end,
          message,
          violations,
          connected: connects > 0,
          body,
        }),
      )
    }
    if (ro.timeoutMs) timer = setTimeout(() => finish('hang', 'no end within the deadline'), ro.timeoutMs)
    const handler: H1Handler = {
      onConnect(abort) {
        if (ended) violations.push('onConnect after the end')
        if (++connects > 1) violations.push('onConnect twice')
        ro.onConnect?.(abort)
      },
      onHeaders(status, raw, resume, _text) {
        if (ended) violations.push('onHeaders after the end')
        statuses.push(status)
        if (status >= 200) {
          if (sawFinalHead) violations.push('two final heads')
          sawFinalHead = true
          headers = []
          for (let i = 0; i < raw.length; i += 2) {
            headers.push(`${raw[i]!.toString('latin1').toLowerCase()}: ${raw[i + 1]!.toString('latin1')}`)
          }
          this.resume = resume
        }
        return true
      },
      onData(chunk) {
        if (ended) violations.push('onData after the end')
        if (!sawFinalHead) violations.push('onData before the head')
        chunks.push(Buffer.from(chunk))
        const i = chunkIndex++
        if (ro.pauseOn?.(i)) {
          const resume = (this as { resume?: () => void }).resume
          setTimeout(() => resume?.(), ro.resumeAfterMs ?? 50)
          return false
        }
        return true
      },
      onComplete() {
        finish('complete', '')
      },
      onError(err: Error & { code?: string }) {
        finish(err.code ?? err.message, err.message)
      },
    } as H1Handler & { resume?: () => void }
    if (ro.views) handler.onDataView = handler.onData!.bind(handler)
    if (ro.strings) {
      let viaStrings = false
      const onHeaders = handler.onHeaders!.bind(handler)
      handler.onHeaders = (status, raw, resume, text) => {
        if (!viaStrings) violations.push('onHeaders called although onHeaderStrings is there')
        return onHeaders(status, raw, resume, text)
      }
      handler.onHeaderStrings = (status, fields, resume, text) => {
        if (!fields.every((f) => typeof f === 'string')) violations.push('a field that is not a string')
        viaStrings = true
        try {
          return handler.onHeaders!(
            status,
            fields.map((f) => Buffer.from(f, 'latin1')),
            resume,
            text,
          )
        } finally {
          viaStrings = false
        }
      }
    }
    try {
      d.dispatch(opts, handler)
    } catch (err) {
      finish(
        `threw ${(err as Error & { code?: string }).code ?? (err as Error).message}`,
        (err as Error).message,
      )
    }
  })
}

export interface ClientPair {
  undici: Pool
  h1: H1Pool
  close(): Promise<void>
}

export interface PairOptions {
  connections?: number
  idleTimeoutMs?: number
  connectTimeoutMs?: number
  tls?: H1Tls & { servername?: string }
}

/** undici's Pool configured as src/upstream/peer.ts does, and an H1Pool with the same settings. */
export function clients(host: string, port: number, o: PairOptions = {}): ClientPair {
  const connections = o.connections ?? 4
  const idle = o.idleTimeoutMs ?? 10_000
  const connectTimeout = o.connectTimeoutMs ?? 2000
  const t = o.tls
  const undici = new Pool(`${t ? 'https' : 'http'}://${host}:${port}`, {
    connections,
    pipelining: 1,
    keepAliveTimeout: idle,
    keepAliveMaxTimeout: idle,
    connect: {
      timeout: connectTimeout,
      ...(t
        ? {
            servername: t.servername ?? host,
            rejectUnauthorized: t.rejectUnauthorized !== false,
            ...(t.ca !== undefined ? { ca: t.ca } : {}),
            ...(t.cert !== undefined ? { cert: t.cert, key: t.key } : {}),
          }
        : {}),
    },
    headersTimeout: 0,
    bodyTimeout: 0,
  })
  const h1 = new H1Pool(
    { host, port, tls: t },
    { connections, idleTimeoutMs: idle, connectTimeoutMs: connectTimeout },
  )
  return {
    undici,
    h1,
    close: async () => {
      await Promise.all([undici.destroy().catch(() => undefined), h1.destroy()])
    },
  }
}

export interface RawRequest {
  head: string
  body: Buffer
  /** Index of this request on its connection (0 = first). */
  index: number
  /** Index of the connection on this origin (0 = first). */
  connection: number
}

export interface RawOrigin {
  port: number
  requests: RawRequest[]
  connections: number
  sockets: Set<net.Socket>
  close(): Promise<void>
}

/**
 * A raw origin: each complete request (head plus a Content-Length or chunked body) is handed
 * to `answer`, which writes what it likes on the socket (and may end or destroy it).
 */
export async function rawOrigin(answer: (sock: net.Socket, req: RawRequest) => void): Promise<RawOrigin> {
  const sockets = new Set<net.Socket>()
  const requests: RawRequest[] = []
  let connections = 0
  const server = net.createServer((sock) => {
    const connection = connections++
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => undefined)
    let buf = Buffer.alloc(0)
    let index = 0
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.subarray(0, end).toString('latin1')
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head)
        const chunked = /\r\ntransfer-encoding: *chunked/i.test(head)
        let body = Buffer.alloc(0)
        let used = end + 4
        if (cl) {
          const n = Number(cl[1])
          if (buf.length < used + n) return
          body = buf.subarray(used, used + n)
          used += n
        } else if (chunked) {
          const parts: Buffer[] = []
          let at = used
          for (;;) {
            const eol = buf.indexOf('\r\n', at)
            if (eol < 0) return
            const size = Number.parseInt(buf.subarray(at, eol).toString('latin1'), 16)
            if (size === 0) {
              const fin = buf.indexOf('\r\n\r\n', eol)
              if (fin < 0) return
              at = fin + 4
              break
            }
            if (buf.length < eol + 2 + size + 2) return
            parts.push(buf.subarray(eol + 2, eol + 2 + size))
            at = eol + 2 + size + 2
          }
          body = Buffer.concat(parts)
          used = at
        }
        buf = buf.subarray(used)
        const req = { head, body: Buffer.from(body), index: index++, connection }
        requests.push(req)
        answer(sock, req)
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    get connections() {
      return connections
    },
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/** A comparable summary of an outcome (the body by length and hash). */
export function summary(o: Outcome): {
  statuses: number[]
  bodyLength: number
  bodySha256: string
  end: string
} {
  return { statuses: o.statuses, bodyLength: o.bodyLength, bodySha256: o.bodySha256, end: o.end }
}
