// A response no client reads: the one a background revalidation (the cache's
// stale-while-revalidate, pipeline.ts) streams into. Enough of ServerResponse for an Exchange:
// it takes the head and body at once (no backpressure: the body goes nowhere) and emits 'close'
// once, after end() or destroy(), so the request's ResponseTap learns how it ended.

import { EventEmitter } from 'node:events'

export class DetachedResponse extends EventEmitter {
  headersSent = false
  writableEnded = false
  writableFinished = false
  destroyed = false
  statusMessage = ''
  #closed = false

  writeHead(): this {
    this.headersSent = true
    return this
  }

  write(): boolean {
    return true
  }

  end(): void {
    if (this.writableEnded || this.destroyed) return
    this.headersSent = true
    this.writableEnded = true
    this.writableFinished = true
    this.#close()
  }

  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.#close()
  }

  getHeaderNames(): string[] {
    return []
  }

  removeHeader(): void {}

  /** After the current call stack, as a socket's 'close' would come. */
  #close(): void {
    if (this.#closed) return
    this.#closed = true
    setImmediate(() => this.emit('close'))
  }
}
