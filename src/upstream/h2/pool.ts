// HTTP/2 to one upstream server (protocol h2c, h2 or auto): a bounded number of node:http2
// client sessions with requests multiplexed on them as streams. It takes the same dispatch
// options and the same (undici legacy) handler as the HTTP/1.1 pools, so proxy/forward.ts's
// Exchange, its timeouts, retries and passive health work unchanged; onComplete also hands over
// the response trailers (gRPC's grpc-status lives there).
//
// - A stream goes to the open session with the fewest streams below the server's
//   SETTINGS_MAX_CONCURRENT_STREAMS; with none, another session is opened up to max_sessions;
//   beyond that the request waits in a queue (Exchange's head deadline covers the wait).
// - Each session sends a PING every ping_interval_secs; one still unanswered at the next is a
//   dead connection (a silently dropped peer), destroyed so its streams fail and retry.
// - GOAWAY: the session takes no new stream, streams under the last stream id finish; streams
//   the server refused (REFUSED_STREAM, or above that id) never reached the application, so
//   they fail with H2_REFUSED_STREAM, which observe/errors.ts treats as a connect failure
//   (retried on another server) when no request body was read.
// - auto: the first session offers h2 and http/1.1 by ALPN; a server that picks http/1.1 gets
//   the HTTP/1.1 pool from then on (decided once per pool).

import http2 from 'node:http2'
import net from 'node:net'
import type { Duplex, Readable } from 'node:stream'
import tls, { type ConnectionOptions } from 'node:tls'
import { H2_REFUSED_STREAM } from '../../observe/errors'
import type { UpstreamHandler, UpstreamPool, UpstreamRequest } from '../client'

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  HTTP2_HEADER_AUTHORITY,
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_SCHEME,
  HTTP2_HEADER_STATUS,
} = http2.constants

/** Connection-specific fields that HTTP/2 forbids (RFC 9113 section 8.2.2); TE is handled apart. */
const CONNECTION_FIELDS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'host',
  'te',
])

/** Until the server's SETTINGS arrive (RFC 9113 section 6.5.2 recommends at least 100). */
const DEFAULT_MAX_STREAMS = 100

export interface H2PoolOptions {
  host: string
  port: number
  /** TLS options (SNI, CA, verification); undefined: h2c. */
  tls: ConnectionOptions | undefined
  /** Offer http/1.1 too by ALPN and hand the pool over to `http1()` if the server picks it. */
  auto: boolean
  maxSessions: number
  pingIntervalMs: number
  idleTimeoutMs: number
  connectTimeoutMs: number
  /** The HTTP/1.1 pool for auto when the server does not speak h2. */
  http1?: () => UpstreamPool
}

interface Pending {
  opts: UpstreamRequest
  handler: UpstreamHandler
}

class Session {
  readonly s: http2.ClientHttp2Session
  ready = false
  /** GOAWAY received or sent: no new streams. */
  draining = false
  active = 0
  pingOutstanding = false
  idleTimer: NodeJS.Timeout | undefined
  pingTimer: NodeJS.Timeout | undefined
  constructor(s: http2.ClientHttp2Session) {
    this.s = s
  }
  get capacity(): number {
    const max = this.s.remoteSettings?.maxConcurrentStreams ?? DEFAULT_MAX_STREAMS
    return Math.min(max, DEFAULT_MAX_STREAMS * 10) - this.active
  }
}

export class H2Pool implements UpstreamPool {
  readonly #o: H2PoolOptions
  readonly #authority: string
  readonly #scheme: 'http' | 'https'
  #sessions: Session[] = []
  #connecting = 0
  #queue: Pending[] = []
  #closed = false
  /** auto, after the server chose http/1.1. */
  #http1: UpstreamPool | undefined
  #onIdle: (() => void) | undefined

  constructor(o: H2PoolOptions) {
    this.#o = o
    this.#scheme = o.tls === undefined ? 'http' : 'https'
    const host = o.host.includes(':') ? `[${o.host}]` : o.host
    this.#authority = `${this.#scheme}://${host}:${o.port}`
  }

  get closed(): boolean {
    return this.#closed
  }

  dispatch(opts: UpstreamRequest, handler: UpstreamHandler): boolean {
    if (this.#closed) {
      handler.onError?.(Object.assign(new Error('pool closed'), { code: 'UND_ERR_CLOSED' }))
      return false
    }
    if (this.#http1 !== undefined) return this.#http1.dispatch(opts, handler)
    const s = this.#pick()
    if (s !== undefined) this.#start(s, opts, handler)
    else {
      this.#queue.push({ opts, handler })
      this.#grow()
    }
    return true
  }

  /** The ready session with the most room, or undefined. */
  #pick(): Session | undefined {
    let best: Session | undefined
    let room = 0
    for (const s of this.#sessions) {
      if (!s.ready || s.draining || s.s.destroyed) continue
      const c = s.capacity
      if (c > room) {
        best = s
        room = c
      }
    }
    return best
  }

  /** Opens another session when the queue has more than the sessions on their way can take. */
  #grow(): void {
    if (this.#connecting > 0) return
    // Sessions told GOAWAY take no new stream: they do not count against the bound (their
    // long streams would otherwise hold new requests back until they end).
    let live = 0
    for (const s of this.#sessions) if (!s.draining) live++
    if (live >= this.#o.maxSessions) return
    this.#connect()
  }

  #connect(): void {
    const o = this.#o
    this.#connecting++
    if (o.auto && o.tls !== undefined) {
      // ALPN first on a socket of our own: http2.connect would refuse an http/1.1 answer.
      const socket = tls.connect({ host: o.host, port: o.port, ...o.tls, ALPNProtocols: ['h2', 'http/1.1'] })
      socket.setNoDelay(true)
      const timer = setTimeout(() => {
        socket.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' }))
      }, o.connectTimeoutMs)
      socket.once('error', (err) => {
        clearTimeout(timer)
        this.#connecting--
        this.#failQueue(err)
      })
      socket.once('secureConnect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        if (socket.alpnProtocol === 'h2') {
          this.#connecting--
          this.#open(() => socket)
          return
        }
        socket.destroy()
        this.#connecting--
        this.#toHttp1()
      })
      return
    }
    this.#connecting--
    this.#open(undefined)
  }

  /** A session, on `socket()` when given (auto's ALPN socket), else connected by http2 itself. */
  #open(socket: (() => Duplex) | undefined): void {
    const o = this.#o
    this.#connecting++
    const options: http2.SecureClientSessionOptions = {
      // Flow control: a window of 1 MiB per stream (16 MiB per session below), so a gRPC message
      // of a MiB is not held back by 64 KiB round trips.
      settings: { initialWindowSize: 1 << 20, enablePush: false },
      maxSessionMemory: 64,
    }
    // Our own socket, to turn Nagle off (Node's session refuses setNoDelay afterwards): HTTP/2
    // writes small frames, and Nagle holding them for the peer's delayed ACK made a unary gRPC
    // call through the proxy wait tens of ms (0.29 x direct calls/s before, 0.47 after, on a
    // busy 2-core box).
    options.createConnection = socket ?? (() => this.#socket())
    let session: http2.ClientHttp2Session
    try {
      session = http2.connect(this.#authority, options)
    } catch (err) {
      this.#connecting--
      this.#failQueue(err as Error)
      return
    }
    const entry = new Session(session)
    this.#sessions.push(entry)
    let lastError: Error | undefined
    const timer = setTimeout(() => {
      session.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' }))
    }, o.connectTimeoutMs)
    // Each stream hears its own error; a session error is what a failed connect reports.
    session.on('error', (err: Error) => {
      lastError = err
    })
    // Ready with the server's first SETTINGS, not at 'connect': until then its
    // max_concurrent_streams is unknown, and a burst sent on the default would be refused.
    session.once('remoteSettings', () => {
      clearTimeout(timer)
      this.#connecting--
      entry.ready = true
      session.setLocalWindowSize(16 << 20)
      this.#startPings(entry)
      this.#drain()
      session.on('remoteSettings', () => this.#drain())
    })
    session.on('goaway', () => {
      entry.draining = true
      // New requests go to a new session (the queue's, or the next dispatch's).
      if (this.#queue.length > 0) this.#grow()
    })
    session.once('close', () => {
      clearTimeout(timer)
      const wasReady = entry.ready
      if (!wasReady) this.#connecting--
      this.#forget(entry)
      if (wasReady || this.#sessions.some((s) => s.ready && !s.draining)) {
        if (this.#queue.length > 0) this.#drain()
        return
      }
      // The connection never came up: what waits for it fails like a connect failure.
      this.#failQueue(lastError ?? Object.assign(new Error('HTTP/2 session closed'), { code: 'ECONNRESET' }))
    })
  }

  /** A new connection to the server: TCP, or TLS that must agree on h2 by ALPN. */
  #socket(): Duplex {
    const o = this.#o
    if (o.tls === undefined) return net.connect({ host: o.host, port: o.port }).setNoDelay(true)
    const socket = tls.connect({ host: o.host, port: o.port, ...o.tls, ALPNProtocols: ['h2'] })
    socket.setNoDelay(true)
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2')
        socket.destroy(
          Object.assign(new Error('the server did not agree to HTTP/2 (ALPN)'), { code: 'ECONNREFUSED' }),
        )
    })
    return socket
  }

  /** auto: the server speaks HTTP/1.1 only; hand everything to the HTTP/1.1 pool for good. */
  #toHttp1(): void {
    const pool = this.#o.http1!()
    this.#http1 = pool
    for (const s of this.#sessions) s.s.destroy()
    this.#sessions = []
    const queue = this.#queue
    this.#queue = []
    for (const p of queue) pool.dispatch(p.opts, p.handler)
  }

  #forget(entry: Session): void {
    clearInterval(entry.pingTimer)
    clearTimeout(entry.idleTimer)
    const i = this.#sessions.indexOf(entry)
    if (i >= 0) this.#sessions.splice(i, 1)
    this.#checkIdle()
  }

  #failQueue(err: Error): void {
    const queue = this.#queue
    this.#queue = []
    for (const p of queue) p.handler.onError?.(err)
  }

  #drain(): void {
    while (this.#queue.length > 0) {
      const s = this.#pick()
      if (s === undefined) break
      const p = this.#queue.shift()!
      this.#start(s, p.opts, p.handler)
    }
    if (this.#queue.length > 0) this.#grow()
  }

  #startPings(entry: Session): void {
    entry.pingTimer = setInterval(() => {
      if (entry.pingOutstanding) {
        entry.s.destroy(Object.assign(new Error('HTTP/2 PING unanswered'), { code: 'ECONNRESET' }))
        return
      }
      entry.pingOutstanding = true
      try {
        entry.s.ping((err) => {
          if (!err) entry.pingOutstanding = false
        })
      } catch {
        entry.s.destroy()
      }
    }, this.#o.pingIntervalMs)
    entry.pingTimer.unref()
  }

  #idle(entry: Session): void {
    if (entry.active > 0) return
    clearTimeout(entry.idleTimer)
    entry.idleTimer = setTimeout(() => {
      if (entry.active === 0) entry.s.close()
    }, this.#o.idleTimeoutMs)
    entry.idleTimer.unref()
  }

  #start(entry: Session, opts: UpstreamRequest, handler: UpstreamHandler): void {
    entry.active++
    clearTimeout(entry.idleTimer)
    new H2Stream(entry, opts, handler, this.#scheme, () => {
      entry.active--
      this.#idle(entry)
      if (this.#queue.length > 0) this.#drain()
      this.#checkIdle()
    })
  }

  #checkIdle(): void {
    if (this.#onIdle === undefined) return
    if (this.#sessions.every((s) => s.active === 0)) {
      const done = this.#onIdle
      this.#onIdle = undefined
      done()
    }
  }

  close(): Promise<void> {
    this.#closed = true
    const h1 = this.#http1?.close()
    return new Promise<void>((resolve) => {
      this.#onIdle = () => {
        for (const s of this.#sessions) s.s.close()
        resolve()
      }
      this.#checkIdle()
    }).then(() => h1)
  }

  destroy(): Promise<void> {
    this.#closed = true
    this.#failQueue(Object.assign(new Error('pool destroyed'), { code: 'UND_ERR_DESTROYED' }))
    for (const s of this.#sessions) s.s.destroy()
    this.#sessions = []
    return this.#http1?.destroy() ?? Promise.resolve()
  }
}

/** HTTP/2 request headers from the proxy's flat upstream head. */
export function h2RequestHeaders(opts: UpstreamRequest, scheme: string): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {
    [HTTP2_HEADER_METHOD]: opts.method,
    [HTTP2_HEADER_PATH]: opts.path,
    [HTTP2_HEADER_SCHEME]: scheme,
  }
  const h = opts.headers
  let grpc = false
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase()
    const value = h[i + 1]!
    if (name === 'host') {
      out[HTTP2_HEADER_AUTHORITY] = value
      continue
    }
    if (CONNECTION_FIELDS.has(name) || name.charCodeAt(0) === 58) continue
    if (name === 'content-type' && value.startsWith('application/grpc')) grpc = true
    const prev = out[name]
    if (prev === undefined) out[name] = value
    else if (name === 'cookie') out[name] = `${prev}; ${value}`
    else if (Array.isArray(prev)) prev.push(value)
    else out[name] = [String(prev), value]
  }
  // gRPC servers may insist on it (RFC 9113 allows TE only with "trailers"); the client's own TE
  // was dropped with the hop-by-hop fields.
  if (grpc) out.te = 'trailers'
  return out
}

/** Flat [name, value, ...] strings from HTTP/2 headers, pseudo-headers left out. */
export function flatHeaders(headers: http2.IncomingHttpHeaders): string[] {
  const out: string[] = []
  for (const name in headers) {
    if (name.charCodeAt(0) === 58) continue
    const v = headers[name]
    if (v === undefined) continue
    if (Array.isArray(v)) for (const x of v) out.push(name, x)
    else out.push(name, String(v))
  }
  return out
}

/** One request on a session: the handler's callbacks, each terminal one called once. */
class H2Stream {
  readonly #handler: UpstreamHandler
  readonly #onEnd: () => void
  readonly #body: Readable | null
  #stream: http2.ClientHttp2Stream | undefined
  #done = false
  #gotHead = false
  #paused = false
  #bodyRead = false
  #trailers: string[] | null = null
  #idle: NodeJS.Timeout | undefined
  readonly #bodyTimeout: number

  constructor(
    entry: Session,
    opts: UpstreamRequest,
    handler: UpstreamHandler,
    scheme: string,
    onEnd: () => void,
  ) {
    this.#handler = handler
    this.#onEnd = onEnd
    this.#body = opts.body
    this.#bodyTimeout = opts.bodyTimeout
    let stream: http2.ClientHttp2Stream
    try {
      stream = entry.s.request(h2RequestHeaders(opts, scheme), { endStream: opts.body === null })
    } catch (err) {
      this.#fail(err as Error)
      return
    }
    this.#stream = stream
    stream.on('response', this.#onResponse)
    stream.on('data', this.#onData)
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      this.#trailers = flatHeaders(t)
    })
    stream.once('end', this.#onStreamEnd)
    stream.on('error', (err: Error) => this.#onStreamError(err))
    stream.once('close', this.#onClose)
    try {
      handler.onConnect?.(this.#abort)
    } catch (err) {
      this.#abort(err as Error)
      return
    }
    if (this.#done) return
    const body = opts.body
    if (body !== null) {
      body.once('data', () => {
        this.#bodyRead = true
      })
      body.pipe(stream)
      body.once('error', (err) => this.#abort(err))
    }
  }

  #abort = (err?: Error): void => {
    if (this.#done) return
    const e = err ?? new Error('request aborted')
    const s = this.#stream
    if (s !== undefined && !s.destroyed) s.close(NGHTTP2_CANCEL)
    this.#fail(e)
  }

  #armIdle(): void {
    if (this.#bodyTimeout <= 0) return
    clearTimeout(this.#idle)
    this.#idle = setTimeout(() => {
      this.#abort(Object.assign(new Error('upstream body timed out'), { code: 'UND_ERR_BODY_TIMEOUT' }))
    }, this.#bodyTimeout)
  }

  #onResponse = (headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void => {
    if (this.#done) return
    const status = Number(headers[HTTP2_HEADER_STATUS] ?? 0)
    if (status < 200) return
    this.#gotHead = true
    const fields = flatHeaders(headers)
    const h = this.#handler
    let go: boolean
    try {
      go = h.onHeaderStrings
        ? h.onHeaderStrings(status, fields, this.#resume, '')
        : (h.onHeaders?.(
            status,
            fields.map((f) => Buffer.from(f, 'latin1')),
            this.#resume,
            '',
          ) ?? true)
    } catch (err) {
      this.#abort(err as Error)
      return
    }
    if (this.#done) return
    if (go === false) this.#pause()
    this.#armIdle()
  }

  #onData = (chunk: Buffer): void => {
    if (this.#done) return
    this.#armIdle()
    let go: boolean
    try {
      go = this.#handler.onData?.(chunk) ?? true
    } catch (err) {
      this.#abort(err as Error)
      return
    }
    if (go === false) this.#pause()
  }

  #pause(): void {
    if (this.#paused || this.#stream === undefined) return
    this.#paused = true
    this.#stream.pause()
  }

  #resume = (): void => {
    if (!this.#paused || this.#done) return
    this.#paused = false
    this.#stream?.resume()
  }

  #onStreamEnd = (): void => {
    // 'end' comes before the trailers event in some orders; completion waits for 'close'.
  }

  #onStreamError = (err: Error): void => {
    if (this.#done) return
    this.#fail(this.#classify(err))
  }

  #onClose = (): void => {
    clearTimeout(this.#idle)
    const s = this.#stream!
    if (!this.#done) {
      if (s.rstCode === http2.constants.NGHTTP2_NO_ERROR && this.#gotHead && s.readableEnded) {
        this.#done = true
        this.#cleanup()
        try {
          ;(this.#handler.onComplete as ((t: string[] | null) => void) | undefined)?.(this.#trailers)
        } finally {
          this.#onEnd()
        }
        return
      }
      this.#fail(this.#classify(Object.assign(new Error(`stream closed (code ${s.rstCode})`), {})))
      return
    }
  }

  /** The error Exchange hears: refused streams as H2_REFUSED_STREAM, resets as ECONNRESET. */
  #classify(err: Error & { code?: string }): Error {
    const s = this.#stream
    const rst = s?.rstCode
    if (!this.#gotHead && rst === NGHTTP2_REFUSED_STREAM && !this.#bodyRead) {
      return Object.assign(new Error('stream refused by the server'), {
        code: H2_REFUSED_STREAM,
        rstCode: rst,
      })
    }
    if (err.code === undefined || err.code.startsWith('ERR_HTTP2')) {
      return Object.assign(new Error(err.message), { code: 'ECONNRESET', rstCode: rst })
    }
    return err
  }

  #cleanup(): void {
    clearTimeout(this.#idle)
    if (this.#body !== null && this.#stream !== undefined) this.#body.unpipe(this.#stream)
  }

  #fail(err: Error): void {
    if (this.#done) return
    this.#done = true
    this.#cleanup()
    const s = this.#stream
    if (s !== undefined && !s.destroyed) s.close(NGHTTP2_CANCEL)
    try {
      this.#handler.onError?.(err)
    } finally {
      this.#onEnd()
    }
  }
}
