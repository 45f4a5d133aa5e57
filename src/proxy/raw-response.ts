// A response written as raw HTTP/1.1 on a socket Node has handed over (an Upgrade request):
// enough of ServerResponse for the pipeline's own replies and for an Exchange that streams an
// upstream's answer with backpressure. The body is delimited by closing the connection
// (RFC 9112 section 6.3), so no chunked framing is needed; the connection always ends after it.

import { EventEmitter } from 'node:events'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'

/** What Node refuses in a header value or reason phrase (lib/_http_common.js). */
const INVALID = /[^\t\x20-\x7e\x80-\xff]/
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// Framing is by close: the upstream's own framing and connection headers do not apply.
const DROP = new Set(['connection', 'transfer-encoding', 'keep-alive'])

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
    const phrase = reason || this.statusMessage || STATUS_CODES[status] || 'Unknown'
    if (INVALID.test(phrase)) throw new Error('invalid reason phrase')
    let head = `HTTP/1.1 ${status} ${phrase}\r\n`
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!
      const value = headers[i + 1]!
      if (!TOKEN.test(name) || INVALID.test(value)) throw new Error(`invalid header ${name}`)
      if (!DROP.has(name.toLowerCase())) head += `${name}: ${value}\r\n`
    }
    this.#socket.write(`${head}connection: close\r\n\r\n`, 'latin1')
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
