// The one writer of raw HTTP/1.1 responses, for sockets no ServerResponse owns: those Node hands
// over for an Upgrade request (pipeline.ts, upgrade.ts) and those its parser gave up on
// (listener.ts). rawHead() formats every status line and header block, refusing what Node itself
// would refuse to write; writeRaw() sends a whole short reply; RawResponse is enough of
// ServerResponse for the pipeline's own replies and for an Exchange that streams an upstream's
// answer with backpressure. Bodies are delimited by closing the connection (RFC 9112 section
// 6.3), so no chunked framing is needed; the connection always ends after the response (but
// after a 101, where the socket becomes the tunnel).

import { EventEmitter } from 'node:events'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { INVALID_VALUE, TOKEN } from '../net/fields'

// Framing is by close: the upstream's own framing and connection headers do not apply.
const DROP = new Set(['connection', 'transfer-encoding', 'keep-alive'])

/**
 * The status line and header block (flat name/value array) of a response, with the blank line
 * that ends it. Throws on a reason phrase or header Node would refuse (a CR or LF in a value
 * would let a peer inject headers). `close`: framed by closing the connection, so the
 * connection-specific headers are dropped and `connection: close` is sent; a 101 passes false.
 */
export function rawHead(
  status: number,
  reason: string | undefined,
  headers: readonly string[],
  close: boolean,
): string {
  const phrase = reason || STATUS_CODES[status] || 'Unknown'
  if (INVALID_VALUE.test(phrase)) throw new Error('invalid reason phrase')
  let head = `HTTP/1.1 ${status} ${phrase}\r\n`
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!
    const value = headers[i + 1]!
    if (!TOKEN.test(name) || INVALID_VALUE.test(value)) throw new Error(`invalid header ${name}`)
    if (!close || !DROP.has(name.toLowerCase())) head += `${name}: ${value}\r\n`
  }
  return close ? `${head}connection: close\r\n\r\n` : `${head}\r\n`
}

/** Writes a whole short reply (`body` as text/plain, may be empty) on `socket` and ends it. */
export function writeRaw(
  socket: Socket,
  status: number,
  body: string,
  headers: readonly string[] = [],
): void {
  const all = [...headers, 'content-length', String(Buffer.byteLength(body))]
  if (body !== '') all.push('content-type', 'text/plain; charset=utf-8')
  socket.write(rawHead(status, undefined, all, true), 'latin1')
  socket.end(body)
}

export class RawResponse extends EventEmitter {
  readonly #socket: Socket
  headersSent = false
  writableEnded = false
  statusMessage = ''

  constructor(socket: Socket) {
    super()
    this.#socket = socket
    socket.once('close', () => this.emit('close'))
    socket.on('drain', () => this.emit('drain'))
  }

  get destroyed(): boolean {
    return this.#socket.destroyed
  }

  writeHead(status: number, reasonOrHeaders?: string | readonly string[], maybe?: readonly string[]): this {
    const reason = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : undefined
    const headers = (typeof reasonOrHeaders === 'string' ? maybe : reasonOrHeaders) ?? []
    this.#socket.write(rawHead(status, reason || this.statusMessage, headers, true), 'latin1')
    this.headersSent = true
    return this
  }

  write(chunk: Buffer | string): boolean {
    return this.#socket.write(chunk)
  }

  end(chunk?: Buffer | string): void {
    if (!this.headersSent) this.writeHead(200, [])
    this.writableEnded = true
    if (chunk !== undefined) this.#socket.end(chunk)
    else this.#socket.end()
  }

  destroy(): void {
    this.#socket.destroy()
  }

  getHeaderNames(): string[] {
    return []
  }

  removeHeader(): void {}
}
