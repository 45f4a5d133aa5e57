// grpc_web: lets browsers call gRPC services, as Envoy's grpc_web filter does. A request of
// content-type application/grpc-web(+proto) goes upstream as application/grpc(+proto) with its
// body as it is (the message framing is the same); application/grpc-web-text(+proto) has its
// body base64-decoded on the way. The answer goes back with the client's content-type, its
// messages as they come, and the gRPC trailers (grpc-status, grpc-message, metadata) as a last
// frame in the body (flag 0x80, then `name: value\r\n` lines), since browsers cannot read HTTP
// trailers; -text answers are base64-encoded as one stream. Other requests pass untouched.
// CORS is the cors middleware's (browsers must be allowed to read grpc-status and grpc-message:
// its expose_headers). The group must speak HTTP/2 to its servers (protocol h2c or h2).

import { Transform, type TransformCallback } from 'node:stream'
import { type Middleware, type RequestContext, rawHeader } from '../types'

const WEB = 'application/grpc-web'
const TEXT = 'application/grpc-web-text'

/** Fields of the HTTP/2 trailer section that are no gRPC metadata. */
const NOT_METADATA = new Set(['content-length', 'transfer-encoding', 'connection'])

export function grpcWeb(): Middleware {
  return (ctx: RequestContext) => {
    const ct = rawHeader(ctx.rawHeaders, 'content-type')
    if (ct === undefined || ct.length < WEB.length) return undefined
    const lower = ct.toLowerCase()
    if (!lower.startsWith(WEB)) return undefined
    const text = lower.startsWith(TEXT)
    const rest = lower.slice(text ? TEXT.length : WEB.length)
    // +proto, +json...: the message format is the service's, passed on as it is.
    if (rest !== '' && !rest.startsWith('+') && !rest.startsWith(';')) return undefined
    const suffix = rest.startsWith('+') ? rest.split(';')[0]! : ''
    setHeader(ctx.upstreamHeaders, 'content-type', `application/grpc${suffix}`)
    // A decoded body has another length; HTTP/2 frames it anyway.
    removeHeader(ctx.upstreamHeaders, 'content-length')
    if (text) ctx.requestTransform = () => new Base64Decode()
    ctx.responseTransform = (_status, headers) => {
      setHeader(headers, 'content-type', ct)
      removeHeader(headers, 'content-length')
      return new WebResponse(text)
    }
    return undefined
  }
}

function setHeader(flat: string[], lower: string, value: string): void {
  removeHeader(flat, lower)
  flat.push(lower, value)
}

function removeHeader(flat: string[], lower: string): void {
  for (let i = flat.length - 2; i >= 0; i -= 2) {
    if (flat[i]!.toLowerCase() === lower) flat.splice(i, 2)
  }
}

/**
 * The trailers as gRPC-Web's last frame: 0x80, a 4-byte length, `name: value\r\n` lines
 * (names in lower case, PROTOCOL-WEB.md).
 */
export function trailerFrame(trailers: readonly string[]): Buffer {
  let lines = ''
  for (let i = 0; i + 1 < trailers.length; i += 2) {
    const name = trailers[i]!.toLowerCase()
    if (NOT_METADATA.has(name)) continue
    lines += `${name}: ${trailers[i + 1]}\r\n`
  }
  const body = Buffer.from(lines, 'latin1')
  const frame = Buffer.alloc(5 + body.length)
  frame[0] = 0x80
  frame.writeUInt32BE(body.length, 1)
  body.copy(frame, 5)
  return frame
}

/**
 * The response body: messages as they come, then the trailer frame once the exchange hands
 * over the trailers (setTrailers, before end); base64 as one stream for -text (3-byte groups,
 * the remainder carried to the next chunk).
 */
export class WebResponse extends Transform {
  readonly #text: boolean
  #carry: Buffer = Buffer.alloc(0)
  #trailers: readonly string[] | undefined

  constructor(text: boolean) {
    super()
    this.#text = text
  }

  /** Called by the exchange (proxy/forward.ts) with the upstream's trailers. */
  setTrailers(trailers: readonly string[]): void {
    this.#trailers = trailers
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    cb(null, this.#text ? this.#encode(chunk, false) : chunk)
  }

  override _flush(cb: TransformCallback): void {
    const t = this.#trailers
    const last = t !== undefined && t.length > 0 ? trailerFrame(t) : Buffer.alloc(0)
    const out = this.#text ? this.#encode(last, true) : last
    cb(null, out.length > 0 ? out : undefined)
  }

  #encode(chunk: Buffer, end: boolean): Buffer {
    const all = this.#carry.length > 0 ? Buffer.concat([this.#carry, chunk]) : chunk
    const whole = end ? all.length : all.length - (all.length % 3)
    this.#carry = all.subarray(whole)
    return Buffer.from(all.subarray(0, whole).toString('base64'), 'latin1')
  }
}

/** grpc-web-text request bodies: base64 (possibly several padded pieces) to bytes. */
export class Base64Decode extends Transform {
  #carry = ''

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const s = this.#carry + chunk.toString('latin1').replace(/\s+/g, '')
    if (!/^[A-Za-z0-9+/=]*$/.test(s)) {
      cb(new Error('grpc-web-text body is not base64'))
      return
    }
    const whole = s.length - (s.length % 4)
    this.#carry = s.slice(whole)
    const body = s.slice(0, whole)
    // A padded group ends one piece and another may follow (a client base64-encodes each
    // message on its own): decoded group by group then, since Buffer stops at the first '='.
    if (!body.includes('=')) {
      cb(null, Buffer.from(body, 'base64'))
      return
    }
    const parts: Buffer[] = []
    for (let i = 0; i < body.length; i += 4) parts.push(Buffer.from(body.slice(i, i + 4), 'base64'))
    cb(null, Buffer.concat(parts))
  }

  override _flush(cb: TransformCallback): void {
    if (this.#carry !== '') cb(new Error('grpc-web-text body ends inside a base64 group'))
    else cb()
  }
}
