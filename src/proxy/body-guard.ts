// The request body on its way upstream, with two limits: its size (server.max_body_bytes or the
// route's) and how long it may send nothing (server.body_timeout_secs). Either one failing
// errors the stream with a client-fault code, which the exchange answers 413 or 408 without
// charging the upstream. Only requests that carry a body pay for this stream.

import { Transform, type TransformCallback } from 'node:stream'
import { BODY_TIMEOUT, BODY_TOO_LARGE } from '../observe/errors'

/** Sees a copy of every body chunk that passes the guard (a mirror), then how the body ended. */
export interface BodyTee {
  data(chunk: Buffer): void
  /** The whole body passed. */
  end(): void
  /** The body will not arrive whole (refused, client gone, the exchange over); no-op after end. */
  abort(): void
}

export class BodyGuard extends Transform {
  readonly #limit: number
  readonly #tee: BodyTee | undefined
  readonly #timer: NodeJS.Timeout
  #bytes = 0

  /** Bytes of the body read so far. */
  get bytes(): number {
    return this.#bytes
  }

  constructor(limit: number, idleMs: number, tee?: BodyTee) {
    super()
    this.#limit = limit
    this.#tee = tee
    this.#timer = setTimeout(this.#onIdle, idleMs)
    this.#timer.unref()
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#bytes += chunk.length
    if (this.#bytes > this.#limit) {
      cb(codeError(BODY_TOO_LARGE, `the request body is larger than ${this.#limit} bytes`))
      return
    }
    this.#timer.refresh()
    // Chunks reach the tee as the upstream reads them: the copy never sets the pace.
    this.#tee?.data(chunk)
    cb(null, chunk)
  }

  override _flush(cb: TransformCallback): void {
    clearTimeout(this.#timer)
    this.#tee?.end()
    cb()
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.#timer)
    this.#tee?.abort()
    cb(err)
  }

  #onIdle = (): void => {
    // Data waiting in this stream means the upstream side is slow to read, not the client.
    if (this.readableLength > 0 || this.writableLength > 0) {
      this.#timer.refresh()
      return
    }
    this.destroy(codeError(BODY_TIMEOUT, 'the request body stalled'))
  }
}

function codeError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code })
}
