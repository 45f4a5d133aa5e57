// The own upstream HTTP/1.1 client: a pool of keep-alive connections to one origin, each with
// one long-lived llhttp parser (binding.ts), driven through undici's legacy dispatch-handler
// contract so that proxy/forward.ts's Exchange can use it in place of undici's Pool.
//
// Shape (measured in ../shared/bench/README.md): idle sockets on a LIFO stack (the warmest one
// first), a FIFO queue when all `connections` are busy, the request head written as one string
// in one write (with the first body chunk when there is a body), plain sockets read with
// `onread` into one shared buffer (safe: the binding hands body chunks over as copies and
// headers as strings, which binding.ts checks at start), TLS sockets through 'data' events.
// A Content-Length body goes past the parser: when a read holds a response's whole head, only
// the head is parsed (headers-complete answers "no body" to llhttp, as for HEAD) and the body's
// bytes are counted off the reads as they come, handed over without the binding's copy (a malloc'd
// Buffer per chunk, alive until the next scavenge): as views of the shared buffer to a handler
// that takes them (onDataView), else copied. Such a head in its plainest form (quick-head.ts) is
// read without llhttp at all; any other goes to llhttp, alone, without its message-begin call.
//
// Failures carry undici's codes (errors.ts) so proxy/errors.ts classifies both clients alike.
// A socket that has served a response and fails before any byte of the next response arrived
// (the server closed it while idle: a stale keep-alive socket) is retried once on a new
// connection, for idempotent methods whose body, if any, was not read yet (RFC 9112 section
// 9.3.1). Every handler callback is guarded: a handler's throw ends its request, not the socket
// loop; nothing is called on a handler after its onComplete or onError.

import net from 'node:net'
import type { Readable } from 'node:stream'
import tls from 'node:tls'
import { canWriteDirectly, queueText } from '../../net/direct-write'
import { type LlhttpParser, type ParseError, type ParserBinding, parserBinding } from './binding'
import {
  ABORTED,
  BODY_TIMEOUT,
  CLOSED,
  connectTimeout,
  DESTROYED,
  H1Error,
  HEADERS_OVERFLOW,
  HEADERS_TIMEOUT,
  invalidArg,
  REQ_CONTENT_LENGTH_MISMATCH,
  RES_CONTENT_LENGTH_MISMATCH,
  socketError,
} from './errors'
import { type QuickHead, quickHead } from './quick-head'
import { type DispatchOptions, type RequestHead, requestHead } from './request'

export type { DispatchOptions } from './request'

/** undici's legacy dispatch handler, as proxy/forward.ts implements it. */
export interface H1Handler {
  onConnect?(abort: (err?: Error) => void): void
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean
  /**
   * When present, called instead of onHeaders with the fields as the parser gave them (latin1
   * strings), which saves turning each into a Buffer that the handler turns back into a string.
   * undici knows nothing of it: a handler for both keeps onHeaders. `checked`: the fields passed
   * a strict HTTP/1.1 parser (llhttp without lenient flags, or quick-head.ts): token names; tab,
   * visible ASCII and obs-text values (the HTTP/2 pool passes none).
   */
  onHeaderStrings?(
    statusCode: number,
    fields: string[],
    resume: () => void,
    statusText: string,
    checked?: boolean,
  ): boolean
  onData?(chunk: Buffer): boolean
  /**
   * When present, called instead of onData with a chunk that is a view of the connection's read
   * buffer, shared by every plain connection: valid during the call only, the next read
   * overwrites it. A handler that keeps the bytes (queues, stores or writes them later) copies
   * them first. undici knows nothing of it.
   */
  onDataView?(chunk: Buffer): boolean
  onComplete?(trailers: Buffer[] | null): void
  onError?(err: Error): void
}

export interface H1Tls {
  /** SNI and the name the certificate must carry; an IP address is verified but not sent. */
  servername?: string | undefined
  ca?: string | Buffer | undefined
  cert?: string | Buffer | undefined
  key?: string | Buffer | undefined
  rejectUnauthorized?: boolean | undefined
}

export interface H1Origin {
  /** Host name or IP address (IPv6 with or without brackets). */
  host: string
  port: number
  tls?: H1Tls | undefined
}

export interface H1PoolOptions {
  /** Most sockets open at once; more requests wait in the queue. */
  connections: number
  /** An idle socket is closed after this long (less when the server's Keep-Alive says so). */
  idleTimeoutMs: number
  connectTimeoutMs: number
  /** A response head larger than this is refused (UND_ERR_HEADERS_OVERFLOW). Default 64 KiB. */
  maxHeaderSize?: number
}

/** undici's PoolStats names. */
export interface H1PoolStats {
  /** Sockets connected (idle or busy). */
  connected: number
  /** Idle sockets. */
  free: number
  /** Requests waiting for a socket. */
  pending: number
  /** Requests on a socket. */
  running: number
  /** pending + running. */
  size: number
}

const QUEUED = 0
const ACTIVE = 1
const DONE = 2

const NO_TIMER = 0
const HEAD_TIMER = 1
const BODY_TIMER = 2

/** undici's keepAliveTimeoutThreshold: a server's Keep-Alive timeout minus this is trusted. */
const KEEP_ALIVE_THRESHOLD_MS = 2000
const DEFAULT_MAX_HEADER_SIZE = 64 * 1024
const EMPTY: Buffer[] = []

/** Plain sockets read into this one buffer; see the module comment for why sharing is safe. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

const kConn = Symbol('h1.conn')
const noop = (): void => undefined

class Request {
  state = QUEUED
  conn: Conn | null = null
  /** onConnect has been called (once per request, also across a stale-socket retry). */
  connected = false
  retried = false
  /** Some bytes of the request (head or body) went to a socket. */
  written = false
  /** A chunk of the body stream was read: the request can no longer be sent again. */
  bodyStarted = false
  bodyEnded = false
  bodyBytes = 0
  /** The body is still being written (a response may come first). */
  writing = false
  /** The handler returned false from onData: chunks wait here until it resumes. */
  paused = false
  held: Buffer[] | null = null
  completeHeld = false
  readonly bodyTimeout: number
  readonly headersTimeout: number

  constructor(
    readonly pool: H1Pool,
    readonly handler: H1Handler,
    readonly head: RequestHead,
    readonly body: Readable | null,
    readonly isHead: boolean,
    opts: DispatchOptions,
  ) {
    this.bodyTimeout = opts.bodyTimeout ?? 0
    this.headersTimeout = opts.headersTimeout ?? 0
    if (body !== null) this.listen()
  }

  /** Handed to onConnect; undici's semantics: ends the request now with `err` (or ABORTED). */
  readonly abort = (err?: Error): void => {
    if (this.state !== ACTIVE) return
    fail(this, err ?? new H1Error(ABORTED, 'Request aborted'))
  }

  /** Handed to onHeaders: the handler is ready for more body after returning false. */
  readonly resume = (): void => {
    if (this.state !== ACTIVE || !this.paused) return
    this.paused = false
    const held = this.held
    while (held !== null && held.length > 0) {
      const chunk = held.shift()!
      if (!deliver(this, chunk)) return
    }
    const c = this.conn
    if (c === null) return
    if (this.completeHeld) {
      c.complete(this)
      if (!c.executing) c.afterParse()
      return
    }
    c.sock.resume()
    c.arm(BODY_TIMER, this.bodyTimeout)
  }

  // Body stream listeners: made only for requests that have a body (most have none).
  onBodyData: (chunk: Buffer | string) => void = noop
  onBodyEnd: () => void = noop
  onBodyError: (err: Error) => void = noop
  onBodyClose: () => void = noop
  onDrain: () => void = noop

  private listen(): void {
    this.onBodyData = (chunk) => {
      const c = this.conn
      if (this.state !== ACTIVE || c === null) return
      this.bodyStarted = true
      c.writeBody(this, typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
    }
    this.onBodyEnd = () => {
      this.bodyEnded = true
      const c = this.conn
      if (this.state !== ACTIVE || c === null) return
      c.endBody(this)
    }
    this.onBodyError = (err) => {
      if (this.state === ACTIVE || this.state === QUEUED) fail(this, err)
    }
    this.onBodyClose = () => {
      // 'close' before 'end': the stream was destroyed without an error (undici: aborted).
      if (!this.bodyEnded && this.state === ACTIVE) {
        queueMicrotask(() => {
          if (this.state === ACTIVE) fail(this, new H1Error(ABORTED, 'Request aborted'))
        })
      }
    }
    this.onDrain = () => {
      if (this.state === ACTIVE && this.writing) this.body?.resume()
    }
  }

  /** Stops writing the body; `final`: the request is over, its error listener goes too. */
  detachBody(final: boolean): void {
    const b = this.body
    if (b === null) return
    b.removeListener('data', this.onBodyData)
    b.removeListener('end', this.onBodyEnd)
    b.removeListener('close', this.onBodyClose)
    if (final) b.removeListener('error', this.onBodyError)
    this.conn?.sock.removeListener('drain', this.onDrain)
    this.writing = false
  }
}

/**
 * Calls onData (onDataView for a `view` of the shared read buffer, or onData with a copy of it);
 * false when the handler asked to pause (or the request ended meanwhile).
 */
function deliver(req: Request, chunk: Buffer, view = false): boolean {
  const h = req.handler
  let more: boolean
  try {
    if (!view) more = h.onData?.(chunk) !== false
    else if (h.onDataView !== undefined) more = h.onDataView(chunk) !== false
    else more = h.onData?.(Buffer.from(chunk)) !== false
  } catch (err) {
    fail(req, err as Error)
    return false
  }
  if (req.state !== ACTIVE) return false
  if (!more) {
    req.paused = true
    req.conn?.sock.pause()
    return false
  }
  return true
}

/** Ends `req` with `err`: one onError, its socket closed (or kept when nothing was written). */
function fail(req: Request, err: Error): void {
  if (req.state === DONE) return
  const wasQueued = req.state === QUEUED
  req.state = DONE
  req.pool.requestDone(req, wasQueued)
  const body = req.body
  const reading = req.writing || req.bodyStarted
  req.detachBody(true)
  // As undici: the body of a request that failed while its body was going up is destroyed (the
  // exchange reads `destroyed` from it: a body partly sent cannot go to another server); one
  // that failed before (queued, connect refused) is left whole for the next attempt.
  if (body !== null && reading && !body.destroyed) body.destroy()
  const c = req.conn
  req.conn = null
  if (c !== null && c.req === req) {
    c.req = null
    // Nothing of this request reached the socket: it can serve another (after this turn).
    if (!req.written && !c.dead) req.pool.releaseSoon(c)
    else c.destroy()
  }
  try {
    req.handler.onError?.(err)
  } catch {
    // The handler's own fault while handling an error: nothing is left to tell.
  }
}

function toBuffers(headers: string[]): Buffer[] {
  const out = new Array<Buffer>(headers.length)
  for (let i = 0; i < headers.length; i++) out[i] = Buffer.from(headers[i]!, 'latin1')
  return out
}

/** Hands a head to the handler: as strings when it takes them, else as undici's Buffers. */
function showHead(req: Request, status: number, fields: string[], statusText: string): boolean {
  const h = req.handler
  if (h.onHeaderStrings !== undefined)
    return h.onHeaderStrings(status, fields, req.resume, statusText, true) !== false
  return h.onHeaders?.(status, toBuffers(fields), req.resume, statusText) !== false
}

/** The binding's parse error as undici reports it (HTTPParserError keeps llhttp's HPE_ code). */
function parseError(err: ParseError): Error {
  if (err.code === 'HPE_HEADER_OVERFLOW') return new H1Error(HEADERS_OVERFLOW, 'Headers Overflow Error')
  return new H1Error(err.code, `Response does not match the HTTP/1.1 protocol (${err.reason ?? err.message})`)
}

// ---- parser callbacks: `this` is the parser, `this[kConn]` its connection
type BoundParser = LlhttpParser & { [kConn]: Conn }

function onMessageBegin(this: BoundParser): number {
  beginMessage(this[kConn])
  return 0
}

/** A response begins (llhttp's message-begin, or Conn.parseHead before a head parsed alone). */
function beginMessage(c: Conn): void {
  // A response nobody asked for (after the last one ended, or where a body was expected): the
  // connection cannot be trusted.
  if (c.req === null || c.messageDone || c.bodyLeft > 0) c.poisoned = true
  c.inHead = true
  c.fields.length = 0
}

function onHeaders(this: BoundParser, headers: string[]): number {
  const c = this[kConn]
  if (!c.inHead) return 0 // a trailer section: dropped
  for (let i = 0; i < headers.length; i++) c.fields.push(headers[i]!)
  return 0
}

function onHeadersComplete(
  this: BoundParser,
  _major: number,
  _minor: number,
  headers: string[] | undefined,
  _method: unknown,
  _url: unknown,
  status: number,
  statusText: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  const c = this[kConn]
  c.inHead = false
  const r = headComplete(
    c,
    headers === undefined ? c.fields.splice(0) : headers,
    status,
    statusText,
    upgrade,
    keepAlive,
  )
  // The body goes past the parser: to llhttp this message ends now, and onMessageComplete would
  // have nothing to do; it is not called (parseHead restores it).
  if (r === 1 && c.bodyLeft > 0) this[c.kComplete] = undefined
  return r
}

/**
 * A response head, from llhttp or quickHead: llhttp's return codes (0: a body follows as its
 * framing says, 1: none to parse, either none at all or one that goes past the parser, -1: stop).
 */
function headComplete(
  c: Conn,
  fields: string[],
  status: number,
  statusText: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  const req = c.req
  if (req === null || c.poisoned || req.state !== ACTIVE) {
    c.poisoned = true
    return -1
  }
  if (upgrade || status === 101) {
    c.error = socketError('bad upgrade')
    return -1
  }
  if (status < 200) {
    // 1xx (100 Continue, 103 Early Hints): shown to the handler, then the final answer follows
    // (RFC 9110 section 15.2: a client must parse 1xx responses it did not ask for).
    c.info = true
    try {
      showHead(req, status, fields, statusText)
    } catch (err) {
      fail(req, err as Error)
      return -1
    }
    return req.state === ACTIVE ? 0 : -1
  }
  c.status = status
  c.responseKeepAlive = keepAlive
  c.contentLength = -1
  c.bytesRead = 0
  c.idleMs = c.pool.idleTimeoutMs
  let coded = false
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!
    if (name.length === 10) {
      if (name.toLowerCase() === 'keep-alive') c.idleMs = keepAliveHint(c, fields[i + 1]!, c.idleMs)
    } else if (name.length === 14 && name.toLowerCase() === 'content-length') {
      c.contentLength = Number(fields[i + 1])
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      coded = true
    }
  }
  let more: boolean
  try {
    more = showHead(req, status, fields, statusText)
  } catch (err) {
    fail(req, err as Error)
    return -1
  }
  if (req.state !== ACTIVE) return -1
  if (!more) {
    req.paused = true
    c.sock.pause()
  }
  if (req.isHead) return 1
  if (
    c.headOnly &&
    c.contentLength > 0 &&
    Number.isSafeInteger(c.contentLength) &&
    !coded &&
    status !== 204 &&
    status !== 304
  ) {
    // The body goes past the parser (Conn.bodyBytes).
    c.bodyLeft = c.contentLength
    return 1
  }
  return 0
}

function onBody(this: BoundParser, chunk: Buffer): number {
  const c = this[kConn]
  const req = c.req
  if (req === null || req.state !== ACTIVE || c.info || c.poisoned) return 0
  c.bytesRead += chunk.length
  if (req.paused) {
    if (req.held === null) req.held = []
    req.held.push(chunk)
    return 0
  }
  deliver(req, chunk)
  return 0
}

function onMessageComplete(this: BoundParser): number {
  const c = this[kConn]
  if (c.info) {
    c.info = false
    return 0
  }
  // The end llhttp sees of a head whose body goes past it: the body is still to come.
  if (c.bodyLeft > 0) return 0
  messageEnd(c)
  return 0
}

/** The response ended (llhttp's message end, or a quick head without a body). */
function messageEnd(c: Conn): void {
  const req = c.req
  if (req === null || req.state !== ACTIVE || c.messageDone || c.poisoned) return
  c.messageDone = true
  if (req.paused) req.completeHeld = true
  else c.complete(req)
}

const LF_CRLF = Buffer.from('\n\r\n', 'latin1')
const LF_LF = Buffer.from('\n\n', 'latin1')

/**
 * Where the head at the start of `b` ends (just past its empty line), or -1 when its end is not
 * in `b`. llhttp ends a line at LF (a CR before it is checked, not needed), so the first "\n\n"
 * or "\n\r\n" is the empty line; a head llhttp refuses is refused either way.
 */
function headEnd(b: Buffer): number {
  const i = b.indexOf(LF_CRLF)
  const j = (i === -1 ? b : b.subarray(0, i + 1)).indexOf(LF_LF)
  if (j !== -1) return j + 2
  return i === -1 ? -1 : i + 3
}

/** `Keep-Alive: timeout=N` (seconds): trusted minus undici's 2 s threshold, capped by ours. */
function keepAliveHint(c: Conn, value: string, cap: number): number {
  // A server sends the same value every time: parse it once per connection.
  if (value !== c.keepAliveValue) {
    const m = /timeout\s*=\s*(\d+)/i.exec(value)
    c.keepAliveValue = value
    c.keepAliveMs = m === null ? Number.POSITIVE_INFINITY : Number(m[1]) * 1000 - KEEP_ALIVE_THRESHOLD_MS
  }
  return Math.min(cap, c.keepAliveMs)
}

function onConnTimer(c: Conn): void {
  const req = c.req
  if (req === null || req.state !== ACTIVE) return
  if (c.timerKind === BODY_TIMER && !req.paused && !c.messageDone) {
    fail(req, new H1Error(BODY_TIMEOUT, 'Body Timeout Error'))
  } else if (c.timerKind === HEAD_TIMER) {
    fail(req, new H1Error(HEADERS_TIMEOUT, 'Headers Timeout Error'))
  }
}

function onIdleTimer(c: Conn): void {
  if (c.idle && !c.dead) c.destroy()
}

/** One socket and its parser. */
class Conn {
  readonly sock: net.Socket
  readonly parser: BoundParser
  req: Request | null = null
  /** The request this connection is being opened for (read by H1Pool.destroy). */
  waiting: Request | null
  connecting = true
  dead = false
  idle = false
  /** Has completed a response: a failure before the next response's first byte may be stale. */
  reused = false
  /** A byte arrived since the current request was assigned. */
  gotBytes = false
  executing = false
  poisoned = false
  /** The current response ended (its completion may wait for a paused handler). */
  messageDone = false
  /** Release this connection once the current parse returns. */
  releasePending = false
  error: Error | null = null
  // Current response
  inHead = false
  info = false
  fields: string[] = []
  status = 0
  responseKeepAlive = false
  contentLength = -1
  bytesRead = 0
  /** Bytes of a Content-Length body still to come past the parser (bodyBytes). */
  bodyLeft = 0
  /** The parser is being given a whole head alone: headers-complete may send the body past it. */
  headOnly = false
  /** The parser's slots for the message-begin and message-complete callbacks (parseHead). */
  readonly kBegin: number
  readonly kComplete: number
  /** Reads land in the shared READ_BUFFER (plain sockets): body bytes are views of it. */
  readonly shared: boolean
  /** A bodiless request's head may be queued for the TCP handle with the turn's other writes (direct-write.ts). */
  direct = false
  idleMs: number
  /** The last Keep-Alive value seen and what keepAliveHint made of it. */
  keepAliveValue = ''
  keepAliveMs = Number.POSITIVE_INFINITY
  // One timer for the head/body deadlines, one for idleness; re-armed with refresh().
  timer: NodeJS.Timeout | null = null
  timerMs = 0
  timerKind = NO_TIMER
  idleTimer: NodeJS.Timeout | null = null
  idleTimerMs = 0
  private connectTimer: NodeJS.Timeout | null = null

  constructor(
    readonly pool: H1Pool,
    binding: ParserBinding,
    first: Request,
  ) {
    this.waiting = first
    this.idleMs = pool.idleTimeoutMs
    const o = pool.origin
    const t = o.tls
    this.shared = t === undefined
    if (t === undefined) {
      this.sock = net.connect({
        host: pool.connectHost,
        port: o.port,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: 60_000,
        onread: {
          buffer: READ_BUFFER,
          // Returning false would pause the socket; pausing is done explicitly instead.
          callback: (n: number, buf: Uint8Array): boolean => {
            this.onRead(n, buf)
            return true
          },
        },
      })
      this.sock.once('connect', this.onConnected)
    } else {
      const servername = t.servername ?? o.host
      const sock = tls.connect({
        host: pool.connectHost,
        port: o.port,
        // RFC 6066 section 3: an IP address is not a server name; it is still verified.
        ...(net.isIP(servername) === 0 ? { servername } : {}),
        checkServerIdentity: (_host, cert) => tls.checkServerIdentity(servername, cert),
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        rejectUnauthorized: t.rejectUnauthorized !== false,
        session: pool.tlsSession,
        ALPNProtocols: ['http/1.1'],
      })
      sock.on('session', (s: Buffer) => {
        pool.tlsSession = s
      })
      sock.setNoDelay(true)
      sock.setKeepAlive(true, 60_000)
      sock.on('data', (chunk: Buffer) => this.onRead(chunk.length, chunk))
      sock.once('secureConnect', this.onConnected)
      this.sock = sock
    }
    const sock = this.sock
    sock.on('error', this.onError)
    sock.on('end', this.onEnd)
    sock.on('close', this.onClose)
    if (pool.connectTimeoutMs > 0) {
      this.connectTimer = setTimeout(() => {
        // Let a socket error that is already due win over the timeout (as undici does).
        setImmediate(() => {
          if (this.connecting && !this.dead) {
            sock.destroy(connectTimeout(o.host, o.port, pool.connectTimeoutMs))
          }
        })
      }, pool.connectTimeoutMs)
    }
    this.kBegin = binding.kOnMessageBegin
    this.kComplete = binding.kOnMessageComplete
    const p = new binding.Parser() as BoundParser
    p.initialize(binding.RESPONSE, {}, pool.maxHeaderSize, 0)
    p[binding.kOnMessageBegin] = onMessageBegin
    p[binding.kOnHeaders] = onHeaders
    p[binding.kOnHeadersComplete] = onHeadersComplete
    p[binding.kOnBody] = onBody
    p[binding.kOnMessageComplete] = onMessageComplete
    p[kConn] = this
    this.parser = p
  }

  private onConnected = (): void => {
    this.connecting = false
    this.direct = this.shared && canWriteDirectly(this.sock)
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    this.connectTimer = null
    const req = this.waiting
    this.waiting = null
    if (this.dead) return
    if (req === null || req.state === DONE) this.pool.release(this)
    else this.assign(req)
  }

  /** Puts `req` on this connection: onConnect, then the head (with the body's first chunk). */
  assign(req: Request): void {
    this.req = req
    req.conn = this
    req.state = ACTIVE
    this.idle = false
    this.gotBytes = false
    this.messageDone = false
    this.status = 0
    this.info = false
    this.bodyLeft = 0
    this.error = null
    this.sock.ref()
    if (!req.connected) {
      req.connected = true
      try {
        req.handler.onConnect?.(req.abort)
      } catch (err) {
        fail(req, err as Error)
      }
      if (req.state !== ACTIVE) return
    }
    const body = req.body
    if (body === null) {
      const h = req.head
      const framing = h.contentLength === 0 && h.expectsPayload ? 'content-length: 0\r\n\r\n' : '\r\n'
      req.written = true
      const text = h.text + framing
      if (!this.direct || !queueText(this.sock, text)) this.sock.write(text, 'latin1')
      this.arm(HEAD_TIMER, req.headersTimeout)
      return
    }
    // The head goes out with the first chunk (or at the end of an empty body), as undici does.
    req.writing = true
    if (body.destroyed || body.readableEnded) {
      // Ended or destroyed before this request had a socket (nobody else should read it).
      if (body.readableEnded && !body.errored) {
        req.bodyEnded = true
        this.endBody(req)
      } else {
        fail(req, (body.errored as Error | null) ?? new H1Error(ABORTED, 'Request aborted'))
      }
      return
    }
    body.on('data', req.onBodyData)
    body.on('end', req.onBodyEnd)
    body.on('close', req.onBodyClose)
    body.resume()
  }

  writeBody(req: Request, chunk: Buffer): void {
    const len = chunk.length
    if (len === 0) return
    const h = req.head
    if (h.contentLength >= 0 && req.bodyBytes + len > h.contentLength) {
      fail(
        req,
        new H1Error(REQ_CONTENT_LENGTH_MISMATCH, 'Request body length does not match content-length header'),
      )
      return
    }
    const sock = this.sock
    sock.cork()
    if (!req.written) {
      req.written = true
      const framing =
        h.contentLength >= 0
          ? `content-length: ${h.contentLength}\r\n\r\n`
          : 'transfer-encoding: chunked\r\n\r\n'
      sock.write(h.text + framing, 'latin1')
    }
    let ok: boolean
    if (h.contentLength >= 0) {
      ok = sock.write(chunk)
    } else {
      sock.write(`${len.toString(16)}\r\n`, 'latin1')
      sock.write(chunk)
      ok = sock.write('\r\n', 'latin1')
    }
    sock.uncork()
    req.bodyBytes += len
    if (!ok && req.body !== null) {
      req.body.pause()
      sock.once('drain', req.onDrain)
    }
  }

  endBody(req: Request): void {
    if (!req.writing) return
    req.detachBody(false)
    const h = req.head
    if (h.contentLength >= 0 && req.bodyBytes !== h.contentLength) {
      fail(
        req,
        new H1Error(REQ_CONTENT_LENGTH_MISMATCH, 'Request body length does not match content-length header'),
      )
      return
    }
    if (!req.written) {
      req.written = true
      this.sock.write(h.text + (h.expectsPayload ? 'content-length: 0\r\n\r\n' : '\r\n'), 'latin1')
    } else if (h.contentLength < 0) {
      this.sock.write('0\r\n\r\n', 'latin1')
    }
    if (this.status === 0) this.arm(HEAD_TIMER, req.headersTimeout)
  }

  /** Arms the head or body deadline; 0 ms disarms. The timer object is reused when it can be. */
  arm(kind: number, ms: number): void {
    if (ms <= 0) {
      this.timerKind = NO_TIMER
      return
    }
    this.timerKind = kind
    if (this.timer !== null && this.timerMs === ms) {
      this.timer.refresh()
      return
    }
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = setTimeout(onConnTimer, ms, this)
    this.timer.unref()
    this.timerMs = ms
  }

  onRead(n: number, buf: Uint8Array): void {
    if (this.dead) return
    if (this.req === null) {
      // Bytes with no request outstanding (RFC 9112 section 9.3.2 lets a server close an idle
      // connection; it may not answer what was never asked): this connection is done.
      this.destroy()
      return
    }
    this.gotBytes = true
    const data = buf.length === n ? (buf as Buffer) : (buf as Buffer).subarray(0, n)
    let ok = true
    if (this.bodyLeft > 0) this.bodyBytes(data)
    else {
      // A read that starts a head and holds all of it: the head alone is parsed first, so that
      // a Content-Length body after it can go past the parser (onHeadersComplete decides).
      const end = this.inHead || this.status !== 0 ? -1 : headEnd(data)
      const quick =
        end === -1 || end >= this.pool.maxHeaderSize || this.messageDone || this.poisoned
          ? undefined
          : quickHead(data, end)
      if (end === -1) ok = this.parse(data)
      else if (quick !== undefined) ok = this.quick(quick, data, end)
      else {
        ok = this.parseHead(end === data.length ? data : data.subarray(0, end))
        if (ok && end < data.length && !this.dead && !this.poisoned) {
          if (this.bodyLeft > 0) this.bodyBytes(data.subarray(end))
          else ok = this.parse(data.subarray(end))
        }
      }
    }
    if (ok && !this.dead) {
      // The head deadline becomes the body's, re-armed once per read that brought part of the
      // response (a gap between chunks is a gap between reads); a read that ends it needs none.
      const req = this.req
      if (req !== null && this.status !== 0 && !this.messageDone) this.arm(BODY_TIMER, req.bodyTimeout)
    }
    this.afterParse()
  }

  /**
   * Parses `head`, a whole head at the start of a read, alone (see onRead). llhttp calls into
   * JavaScript at a message's begin and end as well as at its head, and each call costs more
   * than the little they do (~1 µs of the ~45 a proxied request cost on the reference machine,
   * perf): the begin's work is done here instead, and onHeadersComplete drops the end's when the
   * body goes past the parser. Both are back before any other bytes are parsed (binding.ts
   * checks at start that llhttp resets its own state without them).
   */
  private parseHead(head: Buffer): boolean {
    beginMessage(this)
    const p = this.parser
    p[this.kBegin] = undefined
    this.headOnly = true
    try {
      return this.parse(head)
    } finally {
      this.headOnly = false
      p[this.kBegin] = onMessageBegin
      p[this.kComplete] = onMessageComplete
    }
  }

  /**
   * A head quickHead read (the whole head at the start of `data`, which llhttp never sees): as
   * parseHead and what follows it in onRead, without the parser. False on an error, handled here.
   */
  private quick(q: QuickHead, data: Buffer, end: number): boolean {
    this.executing = true
    this.headOnly = true
    let r: number
    try {
      r = headComplete(this, q.fields, q.status, q.reason, false, q.keepAlive)
      // A response without a body (HEAD, 204, 304, length 0) ends with its head.
      if (r !== -1 && this.bodyLeft === 0) messageEnd(this)
    } finally {
      this.headOnly = false
      this.executing = false
    }
    if (r === -1) {
      // As parse() after llhttp stopped on the callback's -1.
      const req = this.req
      const e =
        this.error ??
        new H1Error(
          'HPE_CB_HEADERS_COMPLETE',
          'Response does not match the HTTP/1.1 protocol (User callback error)',
        )
      if (req === null || req.state !== ACTIVE) this.destroy()
      else fail(req, e)
      return false
    }
    if (end < data.length && !this.dead && !this.poisoned) {
      if (this.bodyLeft > 0) this.bodyBytes(data.subarray(end))
      // Bytes after a whole response nobody asked for: the connection cannot be trusted.
      else this.poisoned = true
    }
    return true
  }

  /** Gives `data` to the parser; false when it (or a callback) found an error, handled here. */
  private parse(data: Buffer): boolean {
    this.executing = true
    const r = this.parser.execute(data)
    this.executing = false
    // An error set by a callback: the binding reports none for an upgrade (101) response.
    if (typeof r !== 'number' || this.error !== null) {
      this.onParseError(typeof r === 'number' ? undefined : r)
      return false
    }
    return true
  }

  /** Bytes of a Content-Length body that goes past the parser; what follows it is refused. */
  private bodyBytes(data: Buffer): void {
    const req = this.req
    if (req === null || req.state !== ACTIVE) {
      this.destroy()
      return
    }
    const take = Math.min(data.length, this.bodyLeft)
    const chunk = take === data.length ? data : data.subarray(0, take)
    this.bodyLeft -= take
    this.bytesRead += take
    if (req.paused) {
      if (req.held === null) req.held = []
      req.held.push(this.shared ? Buffer.from(chunk) : chunk)
    } else {
      deliver(req, chunk, this.shared)
    }
    if (this.dead) return
    // Bytes after the body that nobody asked for: the connection cannot be trusted.
    if (take < data.length) this.poisoned = true
    if (this.bodyLeft > 0 || req.state !== ACTIVE) return
    this.messageDone = true
    if (req.paused) req.completeHeld = true
    else this.complete(req)
  }

  /** After execute() or finish() returned: act on what the callbacks could not do inside. */
  afterParse(): void {
    if (this.dead) {
      this.freeParser()
      return
    }
    if (this.poisoned) {
      this.destroy()
      return
    }
    if (this.releasePending) {
      this.releasePending = false
      // One turn of the event loop before reuse, as undici does (GHSA-35p6-xmwp-9g52): bytes,
      // a FIN or a reset already on their way arrive before the next request is written.
      this.pool.releaseSoon(this)
    }
  }

  private onParseError(err: ParseError | undefined): void {
    const req = this.req
    const e = this.error ?? (err === undefined ? null : parseError(err))
    if (req === null || req.state !== ACTIVE || e === null) {
      this.destroy()
      return
    }
    fail(req, e)
  }

  /** The response ended and the handler is not paused: onComplete, then reuse or close. */
  complete(req: Request): void {
    req.state = DONE
    this.pool.requestDone(req, false)
    this.timerKind = NO_TIMER
    const stillWriting = req.writing
    req.detachBody(true)
    if (stillWriting) {
      // The answer came before the whole body went up (a 413, say): stop sending it; the
      // connection cannot be reused with half a body on it (undici does the same).
      req.body?.destroy()
    }
    this.req = null
    req.conn = null
    const reuse =
      !stillWriting && this.responseKeepAlive && !req.head.close && this.idleMs > 0 && !this.pool.closing
    if (reuse) {
      this.reused = true
      this.releasePending = true
    }
    try {
      req.handler.onComplete?.(EMPTY)
    } catch (err) {
      // undici calls onError when onComplete throws; the request is over either way.
      try {
        req.handler.onError?.(err as Error)
      } catch {}
    }
    if (!reuse) this.destroy()
  }

  private onError = (err: Error & { code?: string }): void => {
    if (this.dead) return
    if (this.connecting) {
      this.connectFailed(err)
      return
    }
    const req = this.req
    if (err.code === 'ECONNRESET' && req !== null && this.endsByClose()) {
      // A body delimited by the connection's end, ended by a reset (undici does the same).
      this.finishByClose(req)
      return
    }
    this.lost(err)
  }

  private onEnd = (): void => {
    if (this.dead) return
    const req = this.req
    if (req !== null && this.endsByClose()) {
      this.finishByClose(req)
      return
    }
    this.lost(socketError('other side closed'))
  }

  private onClose = (): void => {
    if (this.dead) return
    if (this.connecting) this.connectFailed(socketError('closed'))
    else this.lost(socketError('closed'))
  }

  /** The connect failed (refused, timed out, TLS): the request it was opened for hears why. */
  private connectFailed(err: Error): void {
    const req = this.waiting
    this.waiting = null
    this.destroy()
    if (req !== null) fail(req, err)
  }

  /** The current response is delimited by the connection's end (or asked for its close). */
  private endsByClose(): boolean {
    return this.status >= 200 && !this.responseKeepAlive && !this.messageDone && this.req !== null
  }

  private finishByClose(req: Request): void {
    this.executing = true
    const r = this.parser.finish()
    this.executing = false
    if (this.bodyLeft > 0 && req.state === ACTIVE) {
      // A Content-Length body past the parser, cut short by the close.
      fail(
        req,
        new H1Error(RES_CONTENT_LENGTH_MISMATCH, 'Response body length does not match content-length header'),
      )
    } else if (r instanceof Error && req.state === ACTIVE) {
      const mismatch = this.contentLength >= 0 && this.bytesRead !== this.contentLength
      fail(
        req,
        mismatch
          ? new H1Error(
              RES_CONTENT_LENGTH_MISMATCH,
              'Response body length does not match content-length header',
            )
          : parseError(r),
      )
    } else if (req.state === ACTIVE && !this.messageDone) {
      fail(req, socketError('other side closed'))
    }
    // Nothing more can come on this connection.
    this.releasePending = false
    if (!this.dead && this.req === null && !req.paused) this.destroy()
    else this.afterParse()
  }

  /** The connection failed: retry a request that met a stale keep-alive socket, else fail it. */
  private lost(err: Error): void {
    const req = this.req
    this.destroy()
    // A complete response waiting for a paused handler stays deliverable.
    if (req === null || req.state !== ACTIVE || this.messageDone) return
    if (
      this.reused &&
      !this.gotBytes &&
      !req.bodyStarted &&
      !req.retried &&
      req.head.idempotent &&
      !this.pool.closing
    ) {
      req.retried = true
      req.detachBody(false)
      req.body?.pause()
      req.written = false
      req.conn = null
      req.state = QUEUED
      this.pool.retry(req)
      return
    }
    fail(req, err)
  }

  destroy(): void {
    if (this.dead) return
    this.dead = true
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.pool.forget(this)
    this.sock.destroy()
    if (!this.executing) this.freeParser()
  }

  private parserFreed = false

  private freeParser(): void {
    if (this.parserFreed) return
    this.parserFreed = true
    this.parser.close()
  }

  /** Parks this connection on the idle stack with its idle timer running. */
  park(): void {
    this.idle = true
    this.sock.unref()
    const ms = this.idleMs
    if (this.idleTimer !== null && this.idleTimerMs === ms) {
      this.idleTimer.refresh()
    } else {
      if (this.idleTimer !== null) clearTimeout(this.idleTimer)
      this.idleTimer = setTimeout(onIdleTimer, ms, this)
      this.idleTimer.unref()
      this.idleTimerMs = ms
    }
  }
}

export class H1Pool {
  readonly origin: H1Origin
  readonly connectHost: string
  readonly idleTimeoutMs: number
  readonly connectTimeoutMs: number
  readonly maxHeaderSize: number
  readonly #connections: number
  readonly #hostHeader: string
  readonly #binding: ParserBinding
  /** Idle connections, the most recently used last (LIFO). */
  readonly #idle: Conn[] = []
  readonly #queue: Request[] = []
  readonly #conns = new Set<Conn>()
  /**
   * Requests dispatched and not yet done. A count, not a Set of them: a Set that every request
   * enters and leaves keeps its superseded hash tables (V8 chains them for live iterators), and
   * those, once promoted, hold every request they ever listed alive through young-generation
   * collections. Measured on the 2-core box, wrk -c50 GET /small through the proxy: 3.2 MB
   * survived each scavenge with the Set, 0.23 MB without, and 8.7k -> 11.3k requests/s.
   * destroy() finds the requests where they are: the queue, and each connection.
   */
  #active = 0
  tlsSession: Buffer | undefined
  #closing = false
  #destroyed = false
  #onDrained: (() => void)[] = []

  constructor(origin: H1Origin, opts: H1PoolOptions) {
    const binding = parserBinding()
    if (binding === undefined) throw new Error('the llhttp binding is not usable here (see h1Problem())')
    this.#binding = binding
    this.origin = origin
    const bare = origin.host.startsWith('[') ? origin.host.slice(1, -1) : origin.host
    this.connectHost = bare
    this.#hostHeader = `${net.isIPv6(bare) ? `[${bare}]` : bare}:${origin.port}`
    this.#connections = Math.max(1, opts.connections)
    this.idleTimeoutMs = opts.idleTimeoutMs
    this.connectTimeoutMs = opts.connectTimeoutMs
    this.maxHeaderSize = opts.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE
  }

  get closing(): boolean {
    return this.#closing || this.#destroyed
  }

  get closed(): boolean {
    return this.#closing
  }

  get destroyed(): boolean {
    return this.#destroyed
  }

  get stats(): H1PoolStats {
    let connected = 0
    for (const c of this.#conns) if (!c.connecting) connected++
    return {
      connected,
      free: this.#idle.length,
      pending: this.#queue.length,
      running: this.#active,
      size: this.#queue.length + this.#active,
    }
  }

  /**
   * Sends one request. Returns false when it was refused at once (handler.onError has then
   * been called); otherwise the handler hears onConnect, onHeaders, onData... and exactly one
   * of onComplete or onError.
   */
  dispatch(opts: DispatchOptions, handler: H1Handler): boolean {
    let req: Request
    try {
      if (this.#destroyed) throw new H1Error(DESTROYED, 'The client is destroyed')
      if (this.#closing) throw new H1Error(CLOSED, 'The client is closed')
      const head = requestHead(opts, this.#hostHeader)
      const body = opts.body ?? null
      if (body !== null && (typeof body.on !== 'function' || typeof body.pause !== 'function')) {
        throw invalidArg('body must be null or a Readable stream')
      }
      if (body === null && head.contentLength > 0) {
        throw new H1Error(
          REQ_CONTENT_LENGTH_MISMATCH,
          'Request body length does not match content-length header',
        )
      }
      req = new Request(this, handler, head, body, opts.method === 'HEAD', opts)
    } catch (err) {
      handler.onError?.(err as Error)
      return false
    }
    this.#active++
    // Like undici: a body that errors while the request waits for a socket ends the request.
    req.body?.on('error', req.onBodyError)
    this.#schedule(req, false)
    return true
  }

  #schedule(req: Request, fresh: boolean): void {
    if (!fresh) {
      const idle = this.#idle
      while (idle.length > 0) {
        const c = idle.pop()!
        if (c.dead) continue
        c.assign(req)
        return
      }
    }
    if (this.#conns.size < this.#connections || fresh) {
      this.#open(req)
      return
    }
    this.#queue.push(req)
  }

  #open(req: Request): void {
    let c: Conn
    try {
      c = new Conn(this, this.#binding, req)
    } catch (err) {
      // tls.connect throws at once on unusable key material: the request fails, later, as a
      // connect failure does (undici reports it the same way), never from inside dispatch().
      queueMicrotask(() => fail(req, err as Error))
      return
    }
    this.#conns.add(c)
  }

  /** A stale keep-alive socket failed before any answer: send once more on a new connection. */
  retry(req: Request): void {
    this.#schedule(req, true)
  }

  /** Connections waiting for the turn of the event loop before their reuse (releaseSoon). */
  #releasing: Conn[] = []

  /**
   * Releases `c` after the current turn of the event loop (setImmediate: the I/O events already
   * polled, a FIN among them, are handled first). Every connection that becomes free in one
   * turn shares one setImmediate: under load many answers complete per turn.
   */
  releaseSoon(c: Conn): void {
    if (this.#releasing.push(c) === 1) setImmediate(this.#releaseDue)
  }

  readonly #releaseDue = (): void => {
    const due = this.#releasing
    this.#releasing = []
    for (const c of due) if (!c.dead && c.req === null && !c.poisoned) this.release(c)
  }

  /** A connection is free: the oldest waiting request gets it, else it goes on the idle stack. */
  release(c: Conn): void {
    if (c.dead) return
    c.sock.resume()
    const next = this.#nextQueued()
    if (next !== undefined) {
      c.assign(next)
      return
    }
    if (this.#closing || this.#destroyed) {
      c.destroy()
      return
    }
    c.park()
    this.#idle.push(c)
  }

  #nextQueued(): Request | undefined {
    const q = this.#queue
    while (q.length > 0) {
      const r = q.shift()!
      if (r.state === QUEUED) return r
    }
    return undefined
  }

  /** Bookkeeping when a request ends, by completion or failure. */
  requestDone(req: Request, wasQueued: boolean): void {
    this.#active--
    if (wasQueued) {
      const i = this.#queue.indexOf(req)
      if (i !== -1) this.#queue.splice(i, 1)
    }
    if (this.#active === 0 && this.#onDrained.length > 0) {
      const cbs = this.#onDrained
      this.#onDrained = []
      for (const cb of cbs) queueMicrotask(cb)
    }
  }

  /** A connection died: forget it, and open another for waiting requests. */
  forget(c: Conn): void {
    if (c.idle) {
      c.idle = false
      const i = this.#idle.lastIndexOf(c)
      if (i !== -1) this.#idle.splice(i, 1)
    }
    if (!this.#conns.delete(c)) return
    if (this.#queue.length > 0 && !this.#destroyed && this.#conns.size < this.#connections) {
      queueMicrotask(() => this.#openForQueue())
    }
  }

  #openForQueue(): void {
    if (this.#destroyed || this.#conns.size >= this.#connections) return
    const next = this.#nextQueued()
    if (next !== undefined) this.#open(next)
  }

  /** Refuses new requests, lets queued and running ones finish, then closes every socket. */
  async close(): Promise<void> {
    if (this.#destroyed) return
    this.#closing = true
    if (this.#active > 0) await new Promise<void>((r) => this.#onDrained.push(r))
    // Closed is destroyed from now on, as undici's DispatcherBase has it.
    this.#destroyed = true
    await this.#closeAll()
  }

  /** Fails queued and running requests (UND_ERR_DESTROYED, or `err`) and closes every socket. */
  async destroy(err?: Error): Promise<void> {
    if (this.#destroyed) return this.#closeAll()
    this.#destroyed = true
    const e = err ?? new H1Error(DESTROYED, 'The client is destroyed')
    const live: Request[] = [...this.#queue]
    for (const c of this.#conns) {
      if (c.req !== null) live.push(c.req)
      if (c.waiting !== null) live.push(c.waiting)
    }
    for (const req of live) fail(req, e)
    this.#queue.length = 0
    await this.#closeAll()
  }

  #closeAll(): Promise<void> {
    for (const c of [...this.#conns]) c.destroy()
    this.#idle.length = 0
    // Sockets emit 'close' on a later tick; let them.
    return new Promise<void>((resolve) => setImmediate(resolve))
  }
}
