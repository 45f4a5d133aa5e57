// A request as the own HTTP/1.1 server side (connection.ts) hands it to the pipeline: the parts
// of node:http's IncomingMessage the pipeline, the Exchange and the access log read (method, url,
// rawHeaders, httpVersion*, socket, headers), and a Readable of the body with backpressure on
// the connection. A request without a body is still a Readable (the pipeline only pipes one with
// a body), so one class serves both.

import type { Socket } from 'node:net'
import { Readable } from 'node:stream'

/** What a request tells its connection about the body's flow. */
export interface BodySource {
  /** The body reader wants more: reading the socket may go on. */
  resumeBody(): void
}

const NO_TRAILERS: Readonly<Record<string, string>> = Object.freeze({})
const NO_RAW_TRAILERS: readonly string[] = Object.freeze([])

export class H1Request extends Readable {
  readonly method: string
  readonly url: string
  readonly rawHeaders: string[]
  readonly httpVersionMajor: number
  readonly httpVersionMinor: number
  readonly socket: Socket
  /** The whole request (head and body) has been read. */
  complete = false
  aborted = false
  /** An Upgrade (or CONNECT) request: its socket is handed over after the head. */
  readonly upgrade: boolean
  /** llhttp's keep-alive verdict: the HTTP version and the Connection header. */
  readonly keepAlive: boolean
  /** Once the response is over, the rest of the body is read and dropped. */
  dumped = false
  /** Always empty: a chunked body's trailer section is read and dropped (shared, frozen). */
  readonly trailers: Readonly<Record<string, string>> = NO_TRAILERS
  readonly rawTrailers: readonly string[] = NO_RAW_TRAILERS
  readonly #source: BodySource
  #headers: Record<string, string | string[]> | undefined

  constructor(
    source: BodySource,
    socket: Socket,
    method: string,
    url: string,
    rawHeaders: string[],
    major: number,
    minor: number,
    upgrade: boolean,
    keepAlive: boolean,
  ) {
    super()
    this.#source = source
    this.socket = socket
    this.method = method
    this.url = url
    this.rawHeaders = rawHeaders
    this.httpVersionMajor = major
    this.httpVersionMinor = minor
    this.upgrade = upgrade
    this.keepAlive = keepAlive
  }

  get httpVersion(): string {
    return this.httpVersionMajor === 1 && this.httpVersionMinor === 1
      ? '1.1'
      : `${this.httpVersionMajor}.${this.httpVersionMinor}`
  }

  /**
   * The fields by lower-case name, made on first use like node:http's: repeated fields joined
   * with ", " (set-cookie kept as a list), and for those that may appear once only the first.
   */
  get headers(): Record<string, string | string[]> {
    if (this.#headers !== undefined) return this.#headers
    const h: Record<string, string | string[]> = Object.create(null)
    const raw = this.rawHeaders
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase()
      const value = raw[i + 1]!
      const prev = h[name]
      if (prev === undefined) h[name] = name === 'set-cookie' ? [value] : value
      else if (Array.isArray(prev)) prev.push(value)
      else if (!SINGLE.has(name)) h[name] = `${prev}, ${value}`
    }
    this.#headers = h
    return h
  }

  /**
   * The body is over. A request nobody has begun to read and with nothing buffered (one without
   * a body, nearly always) is ended on its first read instead: pushing the end now would
   * schedule a 'readable' on the next tick for a stream no one reads (the tick queue's run was
   * ~0.5 µs of every request). Whoever pipes or reads it later still gets its 'end'.
   */
  bodyEnded(): void {
    if (this.readableFlowing === null && this.readableLength === 0) this.#endOnRead = true
    else this.push(null)
  }

  #endOnRead = false

  override _read(): void {
    if (this.#endOnRead) {
      this.#endOnRead = false
      this.push(null)
      return
    }
    this.#source.resumeBody()
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!this.complete) {
      this.aborted = true
      this.emit('aborted')
    }
    // As node:http does: the error is emitted only to a listener that asked for it (a request
    // nobody reads must not become an uncaught 'error' when its client goes away).
    cb(this.listenerCount('error') > 0 ? err : null)
  }
}

/** Fields node:http keeps the first of (lib/_http_incoming.js matchKnownFields). */
const SINGLE = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
])
