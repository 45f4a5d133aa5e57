// The own HTTP/1.1 server side for plain listeners: node:net sockets parsed by Node's llhttp
// binding (the parser node:http itself uses, strict mode), with H1Request/H1Response in place of
// IncomingMessage/ServerResponse. node:http spends about 12 µs of CPU per request on its own
// objects and bookkeeping around the parser (bench/probe floor-http vs floor-net: 27 vs 15 µs on
// the 2-core benchmark VM); this does the part of that work the proxy needs.
//
// What node:http did and this keeps: strict parsing (a malformed head, Content-Length with
// Transfer-Encoding, an invalid header: 400; a head over max_header_size: 431), Host required
// for HTTP/1.1, `Expect: 100-continue` answered before the request goes on (other expectations:
// 417), HTTP/1.0 keep-alive, upgrades (and CONNECT) handed over with the bytes after the head,
// 60 s to send a head and 300 s for a whole request (408), 65 s of keep-alive idleness, and
// pipelining. Pipelined requests are taken one at a time: llhttp is paused after the next head
// (headers-complete returns HPE_PAUSED) until the response before it is written, so a client
// cannot make the proxy hold more than one parsed request ahead per connection, whatever it sends.
//
// Timeouts are one deadline per connection, checked by one sweep a second (not a timer per
// request or socket): a head or request deadline answers 408, an idle deadline closes.
//
// Reading: as node:http does, the parser consumes the socket's handle (parser.consume): libuv's
// reads go to llhttp in C++, with no Buffer, 'data' event or stream bookkeeping per read in JS;
// the parser calls back after each read (kOnExecute). Pausing is then readStop on the handle.
// Sockets that already have bytes buffered (h2c's first read, put back) are read with 'data'
// events, as is everything on a Node.js without consume().

import net, { type Socket } from 'node:net'
import { canWriteDirectly } from '../../net/direct-write'
import { handleOf, type StreamHandle } from '../../net/handle'
import {
  type LlhttpParser,
  type ParseError,
  type ParserBinding,
  parserBinding,
} from '../../upstream/h1/binding'
import { type BodySource, H1Request } from './request'
import { H1Response, type ResponseSink } from './response'

export interface H1ServerOptions {
  /** Largest request head, in bytes (431 above). */
  maxHeaderSize: number
  /** From a request's first byte to the end of its head (408 after). */
  headersTimeoutMs: number
  /** From a request's first byte to the end of its body (408 after, unless answered already). */
  requestTimeoutMs: number
  /** Idle time between requests before the connection is closed (advertised in Keep-Alive). */
  keepAliveTimeoutMs: number
  /** After our FIN, how long the client may leave its side open, idle (default 10 s). */
  endedLingerMs?: number
  /** Let the parser read sockets in C++ (parser.consume) where it can (default true). */
  consume?: boolean
  /** Write short answers straight to a TCP socket's handle where it can (default true). */
  directWrite?: boolean
}

export interface ClientError {
  code: string
  message: string
}

export interface H1Handlers {
  request(req: H1Request, res: H1Response): void
  /** An Upgrade request: the socket and the bytes after the head are the handler's. */
  upgrade(req: H1Request, socket: Socket, head: Buffer): void
  /** A CONNECT request, the socket the handler's. */
  connect(req: H1Request, socket: Socket): void
  /** A request the server refuses itself: the handler answers on the socket and ends it. */
  clientError(err: ClientError, socket: Socket): void
  /** A fault in a handler (the connection is closed; the process goes on). */
  internalError(err: unknown): void
}

/** llhttp: headers-complete returned this, so the parser stops after the head (a pipelined one). */
const HPE_PAUSED = 21
/** llhttp: headers-complete returned this: an upgrade, no body is parsed. */
const UPGRADE = 2
/** node:http's limit on header fields (maxHeadersCount, 2000); more is refused (431). */
const MAX_FIELDS = 2000 * 2
/** node:http's extra second beyond the advertised keep-alive timeout (fewer races with clients). */
const KEEP_ALIVE_SLACK_MS = 1000
const SWEEP_MS = 1000
/** How long an ended connection may stay idle, half-open, before it is destroyed. */
const ENDED_LINGER_MS = 10_000
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i
const CONTINUE_LINE = 'HTTP/1.1 100 Continue\r\n\r\n'

enum Deadline {
  None = 0,
  Head = 1,
  Request = 2,
  Idle = 3,
}

/** A parser with the connection it works for. */
type Parser = LlhttpParser & { conn: Connection }

class Connection implements ResponseSink, BodySource {
  readonly socket: Socket
  readonly parser: Parser
  readonly server: H1Server
  readonly keepAliveSecs: number
  readonly directWrite: boolean
  /** Header fields and target of a head that came in pieces (llhttp's slow path). */
  fields: string[] = []
  url = ''
  /** Fields llhttp reports now belong to a head (else: a chunked body's trailer section). */
  inHead = true
  /** More header fields than allowed: refused with 431. */
  tooMany = false
  /** The request whose body is being read. */
  reading: H1Request | null = null
  /** The response being written. */
  active: H1Response | null = null
  /** The next request (pipelined, or an upgrade) and the bytes after its head, waiting for `active`. */
  pending: H1Request | null = null
  rest: Buffer | null = null
  /** The body reader asked to wait. */
  bodyPaused = false
  /** A parse error or timeout is waiting for `active` to finish before it is answered. */
  failure: ClientError | null = null
  executing = false
  /** The client's FIN came while an ended answer was still to be written: the connection ends after it. */
  peerEnded = false
  /** The parser reads the socket's handle itself (consume); 'data' events carry nothing. */
  consumed = false
  dead = false
  /** No request in progress: the next bytes start one (and its head deadline). */
  idle = true
  deadline: number
  kind: Deadline = Deadline.Head
  reqStart: number

  constructor(server: H1Server, socket: Socket, parser: Parser) {
    this.server = server
    this.socket = socket
    this.parser = parser
    parser.conn = this
    this.keepAliveSecs = Math.floor(server.options.keepAliveTimeoutMs / 1000)
    this.directWrite = server.options.directWrite !== false && canWriteDirectly(socket)
    const now = Date.now()
    this.reqStart = now
    // A new connection has the head timeout to send its first request.
    this.deadline = now + server.options.headersTimeoutMs
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onClose)
    socket.on('drain', this.onDrain)
    socket.on('error', noop)
  }

  onData = (chunk: Buffer): void => {
    if (this.failure !== null || this.dead) return
    this.execute(chunk)
  }

  /**
   * Bytes came while idle and did not make a whole head: a request has begun, and its head
   * deadline starts. Said here, after the read, rather than by llhttp's message-begin callback:
   * that was one more C++-to-JS call per request (~0.4 µs of the ~30 of a cache hit).
   */
  headBegun(): void {
    this.idle = false
    const now = Date.now()
    this.reqStart = now
    this.kind = Deadline.Head
    this.deadline = now + this.server.options.headersTimeoutMs
  }

  execute(chunk: Buffer): void {
    let r: number | ParseError
    this.executing = true
    try {
      r = this.parser.execute(chunk)
    } catch (err) {
      // A handler threw inside a parser callback: this connection ends, nothing else.
      this.crashed(err)
      return
    }
    this.afterExecute(r, chunk)
  }

  /** A fault inside a parser callback: this connection ends, nothing else. */
  crashed(err: unknown): void {
    this.executing = false
    this.server.handlers.internalError(err)
    this.socket.destroy()
  }

  /** What execute() returned (or, consuming, what the parser parsed of one read). */
  afterExecute(r: number | ParseError, chunk: Buffer | undefined): void {
    this.executing = false
    if (this.dead) return
    if (typeof r !== 'number') {
      if (r.code === 'HPE_PAUSED') {
        // A pipelined head while a response is being written: the rest waits for it.
        const data = chunk ?? this.parser.getCurrentBuffer()
        this.rest = data.subarray(r.bytesParsed ?? data.length)
        this.pauseReading()
        return
      }
      this.fail(this.tooMany ? { code: 'HPE_HEADER_OVERFLOW', message: 'too many header fields' } : r)
      return
    }
    if (this.idle && r > 0) this.headBegun()
    if (this.pending?.upgrade && this.rest === null) {
      // llhttp stopped after an upgrade's head: the bytes after it belong to the new protocol.
      this.rest = (chunk ?? this.parser.getCurrentBuffer()).subarray(r)
      this.pauseReading()
      if (this.active === null) this.next()
    }
  }

  /** Reads `socket` with the parser in C++ from now on (the caller checked it can). */
  consume(handle: StreamHandle): void {
    handle._consumed = true
    this.consumed = true
    this.parser.consume(handle)
  }

  /** No more reads until resumeReading(). */
  pauseReading(): void {
    this.socket.pause()
    // A consumed handle feeds the parser whatever the stream's state: it is stopped itself.
    const h = this.consumed ? handleOf(this.socket) : null
    if (h?.reading) {
      h.reading = false
      h.readStop()
    }
  }

  resumeReading(): void {
    const h = this.consumed ? handleOf(this.socket) : null
    if (h && !h.reading && !this.socket.destroyed) {
      h.reading = true
      h.readStart()
    }
    this.socket.resume()
  }

  onHeadersComplete(
    major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    // Consuming, a head's end may come in a later read than its begin: a handler answering
    // synchronously must not make next() parse inside this parse.
    this.executing = true
    if (headers === undefined) {
      headers = this.fields
      this.fields = []
    }
    if (url === undefined) {
      url = this.url
      this.url = ''
    }
    this.inHead = false
    if (this.idle) {
      // The whole head came in one read: it began now.
      this.idle = false
      this.reqStart = Date.now()
    }
    if (headers.length > MAX_FIELDS) {
      this.tooMany = true
      return -1
    }
    const name = this.server.methods[method] ?? ''
    const req = new H1Request(this, this.socket, name, url, headers, major, minor, upgrade, keepAlive)
    if (upgrade) {
      this.hearEnd(true)
      this.pending = req
      return UPGRADE
    }
    this.reading = req
    this.kind = Deadline.Request
    this.deadline = this.reqStart + this.server.options.requestTimeoutMs
    if (this.active !== null) {
      this.hearEnd(true)
      this.pending = req
      return HPE_PAUSED
    }
    // A request without Content-Length or Transfer-Encoding has no body (RFC 9112 section 6.3):
    // llhttp ends it as soon as this returns, and the end is handled here instead of in a call
    // back from C++ (~0.4 µs a request, perf). llhttp still frames the request itself.
    const bodiless = !hasFraming(headers)
    this.hearEnd(!bodiless)
    this.dispatch(req)
    if (bodiless) this.onMessageComplete()
    return 0
  }

  /** Whether llhttp calls onMessageComplete at the end of the message being parsed. */
  #hearsEnd = true

  hearEnd(on: boolean): void {
    if (on === this.#hearsEnd) return
    this.#hearsEnd = on
    this.parser[this.server.kOnMessageComplete] = on ? onMessageComplete : undefined
  }

  onBody(chunk: Buffer): void {
    this.executing = true
    const req = this.reading
    if (req === null || req.dumped) return
    if (!req.push(chunk) && !this.bodyPaused) {
      this.bodyPaused = true
      this.pauseReading()
    }
  }

  onMessageComplete(): void {
    this.executing = true
    this.inHead = true
    const req = this.reading
    if (req === null) return
    this.reading = null
    req.complete = true
    if (!req.dumped) req.bodyEnded()
    this.reqStart = Date.now()
    this.kind = Deadline.None
    this.deadline = 0
    if (this.active === null && this.pending === null) this.betweenRequests()
  }

  /** Answers `req`, or refuses it here (no Host, an expectation other than 100-continue). */
  dispatch(req: H1Request): void {
    const res = new H1Response(this, req)
    this.active = res
    if (req.method === 'PRI') {
      // The HTTP/2 preface on an HTTP/1.1 listener: nothing to answer (as node:http).
      this.socket.destroy()
      return
    }
    if (req.httpVersionMinor === 1) {
      let host = false
      let expect: string | undefined
      const raw = req.rawHeaders
      for (let i = 0; i < raw.length; i += 2) {
        const n = raw[i]!
        if (n.length === 4) {
          if (n.toLowerCase() === 'host') host = true
        } else if (n.length === 6 && n.toLowerCase() === 'expect') expect = raw[i + 1]
      }
      // RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400.
      if (!host) {
        this.active = null
        this.fail({ code: 'HPE_MISSING_HOST', message: 'HTTP/1.1 request without Host' })
        return
      }
      if (expect !== undefined) {
        if (!CONTINUE.test(expect)) {
          res.writeHead(417, ['content-length', '0'])
          res.end()
          return
        }
        this.socket.write(CONTINUE_LINE, 'latin1')
      }
    }
    try {
      this.server.handlers.request(req, res)
    } catch (err) {
      this.server.handlers.internalError(err)
      res.destroy()
    }
  }

  /** BodySource: the body's reader wants more. */
  resumeBody(): void {
    if (!this.bodyPaused) return
    this.bodyPaused = false
    if (this.pending === null && !this.dead) this.resumeReading()
  }

  /** ResponseSink: `res` is over (written, or destroyed). */
  responseDone(res: H1Response, close: boolean): void {
    if (res !== this.active) return
    this.active = null
    if (this.dead) return
    if (close || this.server.draining || this.peerEnded) {
      this.finishConnection()
      return
    }
    const req = res.req
    if (!req.complete) {
      // Answered before its body was read (a refusal, a cached answer): the rest is read and
      // dropped so the connection can take the next request.
      req.dumped = true
      if (this.bodyPaused) {
        this.bodyPaused = false
        this.resumeReading()
      }
      return
    }
    if (this.executing) queueMicrotask(() => this.next())
    else this.next()
  }

  /** The response in progress is done and the request read: what waited goes on. */
  next(): void {
    if (this.dead || this.active !== null) return
    if (this.failure !== null) {
      const f = this.failure
      this.failure = null
      this.refuse(f)
      return
    }
    const req = this.pending
    if (req === null) {
      this.betweenRequests()
      return
    }
    const rest = this.rest
    if (req.upgrade) {
      if (rest === null) return // its head is still being parsed (execute() will call back)
      this.handOver(req, rest)
      return
    }
    this.pending = null
    this.rest = null
    this.dispatch(req)
    if (this.dead) return
    this.parser.resume()
    if (!this.bodyPaused) this.resumeReading()
    // Even with no bytes left: llhttp finishes the paused message (its completion) on this call.
    this.execute(rest ?? EMPTY)
  }

  /** Between requests: the keep-alive deadline runs until the next bytes. */
  betweenRequests(): void {
    if (this.server.draining) {
      this.finishConnection()
      return
    }
    this.idle = true
    this.kind = Deadline.Idle
    this.deadline = Date.now() + this.server.options.keepAliveTimeoutMs + KEEP_ALIVE_SLACK_MS
  }

  handOver(req: H1Request, head: Buffer): void {
    this.detach()
    this.pending = null
    this.rest = null
    // Paused while waiting; the handler's own 'data' listener starts the flow (as after node:http).
    ;(this.socket as { readableFlowing: boolean | null }).readableFlowing = null
    const h = this.server.handlers
    try {
      if (req.method === 'CONNECT') h.connect(req, this.socket)
      else h.upgrade(req, this.socket, head)
    } catch (err) {
      h.internalError(err)
      this.socket.destroy()
    }
  }

  /** The socket stops being an HTTP/1.1 connection of this server (upgraded, or closed). */
  detach(): void {
    if (this.dead) return
    this.dead = true
    const s = this.socket
    s.removeListener('data', this.onData)
    s.removeListener('end', this.onEnd)
    s.removeListener('close', this.onClose)
    s.removeListener('drain', this.onDrain)
    const p = this.parser
    if (this.consumed) {
      // Reads go back to the socket (its new owner's listeners, or the refusal's linger timer).
      this.consumed = false
      p.unconsume()
      // The stream asked for reads once, long ago, and still waits for that read's data (the
      // parser took it): it will not ask again, so reads restart here. What comes is buffered
      // by the paused stream (up to its high-water mark) until the new owner reads.
      const h = handleOf(s)
      if (h && !h.reading && !s.destroyed) {
        h.reading = true
        h.readStart()
      }
    }
    // The 'error' listener stays: a client resetting the connection while a refusal is written
    // (or before an upgrade handler has added its own) must not become an uncaught error.
    this.server.forget(this)
    // Never inside its own execute(): llhttp's state must outlive the call.
    setImmediate(() => p.close())
  }

  /**
   * A malformed request: answered (400, 431) once the response in progress, if any, is written
   * (the requests before the bad bytes were valid and get their answers).
   */
  fail(err: ClientError): void {
    if (this.dead) return
    this.pauseReading()
    if (this.active !== null) this.failure = err
    else this.refuse(err)
  }

  refuse(err: ClientError): void {
    this.#drop()
    this.#linger()
    this.server.handlers.clientError(err, this.socket)
  }

  /**
   * After our FIN, a client that never closes its side would keep the socket forever (the
   * server allows half-open connections): idle this long, it is destroyed.
   */
  #linger(): void {
    this.socket.setTimeout(this.server.options.endedLingerMs ?? ENDED_LINGER_MS, () => this.socket.destroy())
  }

  /** Ends the connection once what was written has gone (a response said `close`). */
  finishConnection(): void {
    this.#drop()
    if (this.socket.destroyed) return
    this.#linger()
    this.socket.end()
  }

  /**
   * The client's FIN. As node:http (httpAllowHalfOpen off): it ends the connection, and an
   * answer in progress is abandoned (its 'close' lets the Exchange cancel the upstream request:
   * a FIN is how most clients give up). A head cut short by it is answered 400.
   */
  onEnd = (): void => {
    const r = this.parser.finish()
    if (this.active !== null) {
      // An answer whose bytes wait for the end of this turn (direct-write.ts) still goes out;
      // one in progress is abandoned.
      if (this.active.writeQueued) this.peerEnded = true
      else this.socket.destroy()
    } else if (r instanceof Error) this.fail(r as ParseError)
    else this.finishConnection()
  }

  onClose = (): void => {
    const res = this.active
    this.active = null
    this.#drop()
    res?.socketClosed()
  }

  /** Stops serving: the requests not read to their end are aborted. */
  #drop(): void {
    const r = this.reading
    const pending = this.pending
    this.detach()
    this.reading = null
    this.pending = null
    this.rest = null
    r?.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
    if (pending !== r) pending?.destroy()
  }

  onDrain = (): void => {
    const res = this.active
    if (res?.needDrain) {
      res.needDrain = false
      res.emit('drain')
    }
  }

  /** The sweep found this connection's deadline passed. */
  expire(): void {
    if (this.kind === Deadline.Idle || this.kind === Deadline.None) {
      this.socket.destroy()
      return
    }
    this.deadline = 0
    const active = this.active
    if (active?.headersSent) {
      // An answer is already on its way: nothing can be said any more.
      this.socket.destroy()
      return
    }
    // Not answered yet (and the request never came whole): the 408 takes the answer's place.
    this.active = null
    active?.socketClosed()
    this.refuse({ code: 'ERR_HTTP_REQUEST_TIMEOUT', message: 'request timed out' })
  }
}

const EMPTY = Buffer.alloc(0)
const noop = (): void => undefined

/** Whether the fields name a Content-Length or Transfer-Encoding (the request has a body). */
function hasFraming(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i += 2) {
    const n = fields[i]!
    if (n.length === 14) {
      if (n.toLowerCase() === 'content-length') return true
    } else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') return true
  }
  return false
}

// Parser callbacks: `this` is the parser; each hands over to its connection. A consuming parser
// calls them from C++ outside any JS call, where a throw would be an uncaught exception: the
// ones that run handlers catch (execute() catches too, for the 'data' path).
function onExecute(this: Parser, r: number | ParseError): void {
  try {
    this.conn.afterExecute(r, undefined)
  } catch (err) {
    this.conn.crashed(err)
  }
}

function onHeaders(this: Parser, fields: string[], url: string): void {
  const c = this.conn
  if (!c.inHead) return // a chunked body's trailer section: not forwarded
  if (c.fields.length <= MAX_FIELDS) for (const f of fields) c.fields.push(f)
  c.url += url
}

function onHeadersComplete(
  this: Parser,
  major: number,
  minor: number,
  headers: string[] | undefined,
  method: number,
  url: string | undefined,
  _status: number,
  _reason: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  try {
    return this.conn.onHeadersComplete(major, minor, headers, method, url, upgrade, keepAlive)
  } catch (err) {
    this.conn.crashed(err)
    return -1
  }
}

function onBody(this: Parser, chunk: Buffer): void {
  try {
    this.conn.onBody(chunk)
  } catch (err) {
    this.conn.crashed(err)
  }
}

function onMessageComplete(this: Parser): void {
  try {
    this.conn.onMessageComplete()
  } catch (err) {
    this.conn.crashed(err)
  }
}

export class H1Server {
  readonly server: net.Server
  readonly options: H1ServerOptions
  readonly handlers: H1Handlers
  readonly methods: readonly string[]
  /** The parser's message-complete callback slot (Connection.hearEnd). */
  readonly kOnMessageComplete: number
  readonly #binding: ParserBinding
  readonly #conns = new Set<Connection>()
  #sweep: NodeJS.Timeout | undefined
  /** Set by closeIdle: a connection closes after its response instead of waiting idle. */
  draining = false

  constructor(binding: ParserBinding, options: H1ServerOptions, handlers: H1Handlers) {
    this.#binding = binding
    this.options = options
    this.handlers = handlers
    this.methods = binding.methods
    this.kOnMessageComplete = binding.kOnMessageComplete
    // allowHalfOpen: a refusal can still be written after the client's FIN (onEnd).
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.accept(s))
    this.server.once('close', () => this.#stopSweep())
  }

  /** Serves `socket` (one of this server's, or handed over by another listener: TLS, h2c). */
  accept(socket: Socket): void {
    const b = this.#binding
    const p = new b.Parser() as Parser
    p.initialize(b.REQUEST, {}, this.options.maxHeaderSize, 0)
    p[b.kOnHeaders] = onHeaders
    p[b.kOnHeadersComplete] = onHeadersComplete
    p[b.kOnBody] = onBody
    p[b.kOnMessageComplete] = onMessageComplete
    const c = new Connection(this, socket, p)
    this.#conns.add(c)
    const h = handleOf(socket)
    // The 'data' listener (added above) stays: it keeps the stream flowing, so EOF, which the
    // parser passes back to the socket, still ends in 'end'.
    if (b.kOnExecute !== undefined && this.options.consume !== false && h?.isStreamBase && !h._consumed) {
      if (socket.readableLength === 0) {
        p[b.kOnExecute] = onExecute
        c.consume(h)
      }
    }
    this.#sweep ??= setInterval(this.#check, SWEEP_MS).unref()
  }

  forget(c: Connection): void {
    this.#conns.delete(c)
    if (this.#conns.size === 0) this.#stopSweep()
  }

  #stopSweep(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  #check = (): void => {
    const now = Date.now()
    for (const c of this.#conns) if (c.deadline !== 0 && now >= c.deadline) c.expire()
  }

  /** Closes connections with no request in progress; the others close after their response. */
  closeIdle(): void {
    this.draining = true
    for (const c of this.#conns) if (c.idle && c.pending === null) c.socket.destroy()
  }

  closeAll(): void {
    for (const c of this.#conns) c.socket.destroy()
  }

  get connections(): number {
    return this.#conns.size
  }
}

/** The own server, or undefined when Node's llhttp binding is not usable here (see binding.ts). */
export function createH1Server(options: H1ServerOptions, handlers: H1Handlers): H1Server | undefined {
  const b = parserBinding()
  return b === undefined ? undefined : new H1Server(b, options, handlers)
}
