// Request mirroring (`mirror` on a route or the load balancer): a sampled copy of a request that
// goes upstream is sent to another group, fire-and-forget. The client's exchange never waits for
// the copy: a request body reaches the copy through the BodyGuard's tee as the main upstream
// reads it (so only the main path applies backpressure), is buffered up to `max_body_bytes`, and
// the copy is sent once the body is whole. The mirror's answer is read and discarded, counted by
// status class. At most `max_in_flight` copies are outstanding per declaration (buffering
// included), which bounds the memory a slow mirror can hold to max_in_flight x max_body_bytes.
//
// What the copy does not do, on purpose: it is never retried, and its outcome is not reported to
// the mirror group's passive health or circuit breaker (a broken mirror must not eject servers
// that may also serve real traffic, and it is not the client's business).

import { Readable } from 'node:stream'
import type { MirrorSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import type { UpstreamHandler } from '../upstream/client'
import type { UpstreamGroup } from '../upstream/group'
import type { Peer } from '../upstream/peer'
import type { BodyTee } from './body-guard'

/** Why a sampled request was not mirrored (the `reason` label of locci_mirror_dropped_total). */
export type MirrorDropReason = 'max_in_flight' | 'body_too_large' | 'incomplete_body' | 'no_healthy_peer'

export interface MirrorRequest {
  spec: MirrorSpec
  groups: ReadonlyMap<string, UpstreamGroup>
  method: string
  /** Normalized path and raw headers: what the mirror group's selector reads. */
  path: string
  rawHeaders: string[]
  clientIp: string
  upstreamPath: string
  /** The headers the main upstream gets (X-Forwarded-*, X-Request-Id, middlewares' edits). */
  headers: readonly string[]
  /** The client's Host (or an absolute-form target's authority); the mirror group's sni wins. */
  host: string | undefined
  requestId: string
  hasBody: boolean
  /** The declared Content-Length, or -1. */
  contentLength: number
  /** The route's (or server's) upstream timeout: the copy's head and body-silence deadline. */
  timeoutMs: number
}

const MIRROR_TIMEOUT = Object.assign(new Error('the mirror did not answer in time'), {
  code: 'UND_ERR_HEADERS_TIMEOUT',
})
const ABANDONED = new Error('mirrored copy abandoned')

/** The mirrors of one Pipeline: outstanding copies per declaration. */
export class Mirrors {
  readonly #log: Logger
  /** Keyed by the declaration (snapshot objects live as long as their Runtime). */
  readonly #inFlight = new WeakMap<MirrorSpec, { n: number }>()

  constructor(log: Logger) {
    this.#log = log
  }

  /**
   * Decides whether `m` is mirrored, and starts the copy. Returns the tee the main exchange's
   * body goes through when the copy waits for a body, else undefined.
   */
  start(m: MirrorRequest): BodyTee | undefined {
    const { spec } = m
    if (spec.percent < 100 && Math.random() * 100 >= spec.percent) return undefined
    const group = m.groups.get(spec.upstream)
    // compile() refuses an unknown group; a guard all the same.
    if (group === undefined) return undefined
    const metrics = group.metrics
    const drop = (reason: MirrorDropReason): undefined => {
      metrics?.mirrorDropped(group.name, reason)
      return undefined
    }
    if (m.hasBody && m.contentLength > spec.maxBodyBytes) return drop('body_too_large')
    let slot = this.#inFlight.get(spec)
    if (slot === undefined) {
      slot = { n: 0 }
      this.#inFlight.set(spec, slot)
    }
    if (slot.n >= spec.maxInFlight) return drop('max_in_flight')
    const peer = group.candidates(
      { clientIp: m.clientIp, path: m.path, rawHeaders: m.rawHeaders },
      Date.now(),
    )[0]
    if (peer === undefined) return drop('no_healthy_peer')
    slot.n++
    const s = slot
    const copy = new MirrorCopy(m, group, peer, this.#log, () => s.n--)
    if (!m.hasBody) {
      copy.send(null)
      return undefined
    }
    return copy
  }
}

/** One copy: first a tee collecting the body (when there is one), then an upstream handler. */
class MirrorCopy implements BodyTee, UpstreamHandler {
  readonly #m: MirrorRequest
  readonly #group: UpstreamGroup
  readonly #peer: Peer
  readonly #log: Logger
  readonly #release: () => void
  #chunks: Buffer[] = []
  #bytes = 0
  /** The body passed whole (the copy was sent) or was given up on: the tee ignores the rest. */
  #bodyOver = false
  #dispatched = false
  #done = false
  #status = 0
  #abort: ((err?: Error) => void) | undefined
  #timer: NodeJS.Timeout | undefined

  constructor(m: MirrorRequest, group: UpstreamGroup, peer: Peer, log: Logger, release: () => void) {
    this.#m = m
    this.#group = group
    this.#peer = peer
    this.#log = log
    this.#release = release
  }

  data(chunk: Buffer): void {
    if (this.#bodyOver) return
    this.#bytes += chunk.length
    // A chunked body over the limit: only found out on the way.
    if (this.#bytes > this.#m.spec.maxBodyBytes) return this.#drop('body_too_large')
    this.#chunks.push(chunk)
  }

  end(): void {
    if (this.#bodyOver) return
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#bytes)
    this.#chunks = []
    this.send(body)
  }

  abort(): void {
    if (!this.#bodyOver) this.#drop('incomplete_body')
  }

  #drop(reason: MirrorDropReason): void {
    this.#bodyOver = true
    this.#chunks = []
    this.#group.metrics?.mirrorDropped(this.#group.name, reason)
    this.#done = true
    this.#release()
  }

  /** Dispatches the copy, with `body` (whole) when the request has one. */
  send(body: Buffer | null): void {
    this.#bodyOver = true
    this.#dispatched = true
    const m = this.#m
    const headers = m.headers.slice()
    setHeader(headers, 'host', this.#group.hostOverride ?? m.host)
    // The copy's body is one buffer: framed by its length, whatever the client's framing was.
    setHeader(headers, 'content-length', body === null ? undefined : String(body.length))
    this.#peer.inFlight++
    this.#timer = setTimeout(this.#onTimeout, m.timeoutMs)
    this.#timer.unref()
    try {
      this.#peer.pool.dispatch(
        {
          path: m.upstreamPath,
          method: m.method,
          headers,
          body: body === null || body.length === 0 ? null : Readable.from([body]),
          headersTimeout: 0,
          bodyTimeout: m.timeoutMs,
        },
        this,
      )
    } catch (err) {
      this.#log.warn(
        { request_id: m.requestId, err: (err as Error).message },
        'mirrored copy could not be sent',
      )
      this.#finish()
    }
  }

  #onTimeout = (): void => {
    this.#timer = undefined
    if (this.#done) return
    // On a connection: abort (onError follows); still queued for one: over now, aborted at onConnect.
    if (this.#abort !== undefined) this.#abort(MIRROR_TIMEOUT)
    else this.#finish()
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort
    if (this.#done) abort(ABANDONED)
  }

  onHeaders(statusCode: number): boolean {
    if (statusCode < 200) return true
    this.#status = statusCode
    // From here the body's silence limit (bodyTimeout) applies, as for the main exchange.
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    return true
  }

  onHeaderStrings(statusCode: number): boolean {
    return this.onHeaders(statusCode)
  }

  /** The answer's body is discarded as it comes: a mirror is never paused, never waited for. */
  onData(): boolean {
    return !this.#done
  }

  /** The same for the built-in client's views of its read buffer: nothing is kept, no copy. */
  onDataView(): boolean {
    return !this.#done
  }

  onComplete(): void {
    this.#finish()
  }

  onError(err: Error & { code?: string }): void {
    if (!this.#done && this.#status === 0) {
      this.#log.debug(
        {
          request_id: this.#m.requestId,
          upstream: this.#group.name,
          server: this.#peer.address,
          err: err.code ?? err.message,
        },
        'mirrored copy failed',
      )
    }
    this.#finish()
  }

  /** Counted once: the answer's status class, or `error` when no answer head came. */
  #finish(): void {
    if (this.#done) return
    this.#done = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    if (this.#dispatched) this.#peer.inFlight--
    this.#group.metrics?.mirror(this.#group.name, this.#status)
    this.#release()
  }
}

/** Sets (or with `value` undefined removes) header `lowerName` in a flat header list. */
function setHeader(headers: string[], lowerName: string, value: string | undefined): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() !== lowerName) continue
    if (value === undefined) headers.splice(i, 2)
    else headers[i + 1] = value
    return
  }
  if (value !== undefined) headers.push(lowerName, value)
}
