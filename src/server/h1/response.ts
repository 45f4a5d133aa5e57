// The response side of the own HTTP/1.1 server (connection.ts): what the pipeline and the
// Exchange use of node:http's ServerResponse (writeHead with a flat header list, write/end with
// 'drain', destroy, headersSent, writableEnded/Finished, 'finish' and 'close'), written straight
// to the socket. It frames the body as node:http does: the Content-Length given, else chunked for
// an HTTP/1.1 client, else (HTTP/1.0) delimited by closing the connection; no body for HEAD, 1xx,
// 204 and 304. It adds Date, and Connection (with Keep-Alive: timeout) as node:http does, and
// refuses what node:http refuses in a head (a header name that is not a token, a CR or LF in a
// value or reason: header injection), by throwing before anything is written.

import { EventEmitter } from 'node:events'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { queueAnswer, queueText } from '../../net/direct-write'
import { checkedAlready, INVALID_VALUE, TOKEN } from '../../net/fields'
import type { H1Request } from './request'

/** What a response needs of its connection. */
export interface ResponseSink {
  readonly socket: Socket
  /** The response's last bytes were written (or it was destroyed): the next request may go. */
  responseDone(res: H1Response, close: boolean): void
  /** Keep-Alive's advertised timeout in seconds (0: no Keep-Alive header). */
  readonly keepAliveSecs: number
  /** A short answer may go straight to the socket's handle (direct-write.ts). */
  readonly directWrite: boolean
}

const CLOSE_TOKEN = /(?:^|\W)close(?:$|\W)/i
const CHUNKED_LAST = /(?:^|,)\s*chunked\s*$/i
const CRLF = '\r\n'
const LAST_CHUNK = '0\r\n\r\n'
/** Bodies up to this size go out in the same buffer as the head (end()). */
const ONE_WRITE_MAX = 16 * 1024

let dateSecond = 0
let dateLine = ''

/** `date: ...\r\n` for now, made once per second. */
function dateHeader(): string {
  const now = Date.now()
  const s = Math.floor(now / 1000)
  if (s !== dateSecond) {
    dateSecond = s
    dateLine = `date: ${new Date(now).toUTCString()}\r\n`
  }
  return dateLine
}

export class H1Response extends EventEmitter {
  readonly req: H1Request
  readonly #sink: ResponseSink
  statusCode = 200
  statusMessage = ''
  headersSent = false
  writableEnded = false
  writableFinished = false
  #destroyed = false
  /** The head, written with the first body bytes (one write for a short answer). */
  #head: string | undefined
  #chunked = false
  #noBody = false
  /** The connection ends after this response. */
  #close = false
  /** write() returned false: 'drain' is owed. */
  needDrain = false
  /** The last bytes are queued to be written at the end of this turn (direct-write.ts). */
  writeQueued = false
  #trailers = ''
  /**
   * Fields the next writeHead need not check again (net/fields.ts checkedAlready): the proxy's
   * copy of an upstream's fields as the built-in client's parser passed them, made before a tap
   * or transformer could change the list. Read and cleared by writeHead.
   */
  checkedFields: readonly string[] | undefined = undefined

  constructor(sink: ResponseSink, req: H1Request) {
    super()
    this.#sink = sink
    this.req = req
  }

  get destroyed(): boolean {
    return this.#destroyed
  }

  writeHead(
    status: number,
    reasonOrHeaders?: string | readonly string[] | Record<string, unknown>,
    maybeHeaders?: readonly string[] | Record<string, unknown>,
  ): this {
    if (this.headersSent) throw new Error('Cannot write headers after they are sent to the client')
    if (!Number.isInteger(status) || status < 100 || status > 999)
      throw new RangeError(`invalid status ${status}`)
    let reason: string | undefined
    let headers: readonly string[] | Record<string, unknown> | undefined
    if (typeof reasonOrHeaders === 'string') {
      reason = reasonOrHeaders
      headers = maybeHeaders
    } else headers = reasonOrHeaders
    const phrase = reason || this.statusMessage || STATUS_CODES[status] || 'unknown'
    if (INVALID_VALUE.test(phrase)) throw new Error('invalid reason phrase')
    const flat: readonly string[] =
      headers === undefined
        ? []
        : Array.isArray(headers)
          ? headers
          : flatten(headers as Record<string, unknown>)
    const req = this.req
    const checked = this.checkedFields
    this.checkedFields = undefined
    let head = `HTTP/1.1 ${status} ${phrase}\r\n`
    let length = false
    let chunked = false
    let close = false
    let connection = false
    let date = false
    for (let i = 0; i < flat.length; i += 2) {
      const name = flat[i]!
      const value = String(flat[i + 1])
      if (!checkedAlready(checked, i, name, value) && (!TOKEN.test(name) || INVALID_VALUE.test(value)))
        throw new Error(`invalid header ${name}`)
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === 'date') date = true
          break
        case 10:
          if (name.toLowerCase() === 'connection') {
            connection = true
            if (CLOSE_TOKEN.test(value)) close = true
          }
          break
        case 14:
          if (name.toLowerCase() === 'content-length') length = true
          break
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') chunked = CHUNKED_LAST.test(value)
          break
      }
      head += `${name}: ${value}\r\n`
    }
    if (!date) head += dateHeader()
    const noBody = req.method === 'HEAD' || status === 204 || status === 304 || status < 200
    const http11 = req.httpVersionMinor === 1
    if (!noBody && !length && !chunked) {
      // No length: chunked for HTTP/1.1; an HTTP/1.0 client reads to the end of the connection.
      if (http11) {
        head += 'transfer-encoding: chunked\r\n'
        chunked = true
      } else close = true
    }
    if (!req.keepAlive) close = true
    if (!connection) {
      if (close) head += 'connection: close\r\n'
      else {
        const secs = this.#sink.keepAliveSecs
        head +=
          secs > 0
            ? `connection: keep-alive\r\nkeep-alive: timeout=${secs}\r\n`
            : 'connection: keep-alive\r\n'
      }
    }
    this.#head = `${head}\r\n`
    this.#chunked = chunked && !noBody
    this.#noBody = noBody
    this.#close = close
    this.statusCode = status
    this.headersSent = true
    return this
  }

  write(chunk: Buffer | string, encoding?: BufferEncoding | (() => void), cb?: () => void): boolean {
    if (typeof encoding === 'function') {
      cb = encoding
      encoding = undefined
    }
    if (this.writableEnded || this.#destroyed) return false
    if (!this.headersSent) this.writeHead(this.statusCode)
    const socket = this.#sink.socket
    if (this.#noBody || chunk.length === 0) {
      const head = this.#head
      if (head !== undefined) {
        this.#head = undefined
        return this.#track(socket.write(head, 'latin1', cb))
      }
      if (cb) process.nextTick(cb)
      return true
    }
    // One buffer alone goes straight out; a head or chunk framing with it, as one writev.
    if (this.#head === undefined && !this.#chunked)
      return this.#track(socket.write(chunk, encoding as BufferEncoding, cb))
    socket.cork()
    const ok = this.#writeChunk(socket, chunk, encoding, cb)
    socket.uncork()
    return this.#track(ok)
  }

  /** One body chunk (with the pending head before it), framed; the caller corks. */
  #writeChunk(
    socket: Socket,
    chunk: Buffer | string,
    encoding: BufferEncoding | undefined,
    cb: (() => void) | undefined,
  ): boolean {
    const head = this.#head
    this.#head = undefined
    if (!this.#chunked) {
      if (head !== undefined) socket.write(head, 'latin1')
      return socket.write(chunk, encoding as BufferEncoding, cb)
    }
    const size = typeof chunk === 'string' ? Buffer.byteLength(chunk, encoding) : chunk.length
    socket.write(
      head === undefined ? `${size.toString(16)}\r\n` : `${head}${size.toString(16)}\r\n`,
      'latin1',
    )
    socket.write(chunk, encoding as BufferEncoding)
    return socket.write(CRLF, 'latin1', cb)
  }

  /**
   * Whether end() with a body of `bytes` is done with it when it returns (copied into the one
   * buffer written with the head, or not written at all): the body may then be a view of
   * memory that is reused right after (the upstream client's read buffer).
   */
  endCopies(bytes: number): boolean {
    if (this.writableEnded || this.#destroyed || this.#noBody) return true
    return this.#head !== undefined && !this.#chunked && bytes <= ONE_WRITE_MAX
  }

  #track(ok: boolean): boolean {
    if (!ok) this.needDrain = true
    return ok
  }

  end(
    chunk?: Buffer | string | (() => void),
    encoding?: BufferEncoding | (() => void),
    cb?: () => void,
  ): this {
    if (typeof chunk === 'function') {
      cb = chunk
      chunk = undefined
    } else if (typeof encoding === 'function') {
      cb = encoding
      encoding = undefined
    }
    if (this.writableEnded || this.#destroyed) return this
    if (!this.headersSent) this.writeHead(this.statusCode)
    this.writableEnded = true
    if (cb) this.once('finish', cb)
    const socket = this.#sink.socket
    const data = chunk as Buffer | string | undefined
    const body = data !== undefined && !this.#noBody && data.length > 0
    // The write callback says the bytes went to the kernel: the response is finished then.
    if (body && !this.#chunked) {
      const head = this.#head
      this.#head = undefined
      if (head === undefined) socket.write(data, encoding as BufferEncoding, this.#onFinish)
      else if (data.length <= ONE_WRITE_MAX) {
        // Head and body in one buffer: one plain write (queued with the turn's others where the
        // socket allows, direct-write.ts), not the stream's writev of an array of chunks.
        const enc = encoding as BufferEncoding | undefined
        if (this.#sink.directWrite && queueAnswer(socket, head, data, enc, this.#onFinish))
          this.writeQueued = true
        else {
          const n = typeof data === 'string' ? Buffer.byteLength(data, enc) : data.length
          const out = Buffer.allocUnsafe(head.length + n)
          out.write(head, 0, 'latin1')
          if (typeof data === 'string') out.write(data, head.length, enc)
          else data.copy(out, head.length)
          socket.write(out, this.#onFinish)
        }
      } else {
        socket.cork()
        socket.write(head, 'latin1')
        socket.write(data, encoding as BufferEncoding, this.#onFinish)
        socket.uncork()
      }
      return this
    }
    if (!body) {
      // The head and the last chunk, or what is left of them: one string.
      let last = this.#head ?? ''
      this.#head = undefined
      if (this.#chunked) last += this.#trailers === '' ? LAST_CHUNK : `0\r\n${this.#trailers}\r\n`
      if (last !== '' && this.#sink.directWrite && queueText(socket, last, this.#onFinish))
        this.writeQueued = true
      else socket.write(last, 'latin1', this.#onFinish)
      return this
    }
    socket.cork()
    this.#writeChunk(socket, data, encoding as BufferEncoding | undefined, undefined)
    // A body here is chunked (the others went above).
    socket.write(this.#trailers === '' ? LAST_CHUNK : `0\r\n${this.#trailers}\r\n`, 'latin1', this.#onFinish)
    socket.uncork()
    return this
  }

  #onFinish = (err?: Error | null): void => {
    this.writeQueued = false
    if (this.#destroyed) return
    if (err) {
      this.destroy()
      return
    }
    this.writableFinished = true
    this.emit('finish')
    this.#done(this.#close)
  }

  addTrailers(trailers: Record<string, string | string[]>): void {
    let t = ''
    for (const name of Object.keys(trailers)) {
      const v = trailers[name]!
      for (const value of Array.isArray(v) ? v : [v]) {
        if (!TOKEN.test(name) || INVALID_VALUE.test(value)) throw new Error(`invalid trailer ${name}`)
        t += `${name}: ${value}\r\n`
      }
    }
    this.#trailers += t
  }

  /** The connection closed, or the response was abandoned: 'close' without 'finish'. */
  destroy(_err?: Error): this {
    if (this.#destroyed || this.writableFinished) return this
    this.#destroyed = true
    this.#sink.socket.destroy()
    this.#done(true)
    return this
  }

  /** The socket closed under this response. */
  socketClosed(): void {
    if (this.#destroyed || this.writableFinished) return
    this.#destroyed = true
    this.#done(true)
  }

  #done(close: boolean): void {
    this.emit('close')
    this.#sink.responseDone(this, close)
  }

  getHeaderNames(): string[] {
    return []
  }

  removeHeader(): void {}
}

function flatten(headers: Record<string, unknown>): string[] {
  const out: string[] = []
  for (const name of Object.keys(headers)) {
    const v = headers[name]
    if (v === undefined) continue
    if (Array.isArray(v)) for (const x of v) out.push(name, String(x))
    else out.push(name, String(v))
  }
  return out
}
