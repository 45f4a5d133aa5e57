// compress: gzip, br or zstd for the responses a client accepts them for, streamed through a
// zlib Transform with backpressure both ways (proxy/forward.ts). Two halves: this middleware
// reads the request (which coding the client takes, negotiate.ts; whether it may be given one)
// and registers a ResponseTransformer; that one runs when the upstream's head is in (again for
// a retried attempt's), decides whether this response is one to compress, edits its head and
// returns the compressor.
// Everything per declaration (type matcher, levels, the transformers) is built once, here.

import type { Transform } from 'node:stream'
import zlib from 'node:zlib'
import type { Middleware, RequestContext, ResponseTransformer } from '../types'
import { type CompressConfig, DEFAULT_LEVELS, type Encoding } from './config'
import { negotiate } from './negotiate'

const C = zlib.constants

export function compress(cfg: CompressConfig): Middleware {
  const levels: Record<Encoding, number> = { ...DEFAULT_LEVELS, ...cfg.levels }
  const types = contentTypes(cfg.content_types)
  const side = (coding: Encoding | undefined) => responseSide(coding, types, cfg.min_bytes, levels)
  // A response the client gets as it is still varies by Accept-Encoding when it could have been compressed.
  const asIs = side(undefined)
  const byCoding = new Map<Encoding | undefined, ResponseTransformer>(cfg.encodings.map((e) => [e, side(e)]))

  return (ctx: RequestContext) => {
    const raw = ctx.rawHeaders
    let accept: string | undefined
    // RFC 9110 section 9.3.2: HEAD has no body to compress.
    let identity = ctx.method === 'HEAD'
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!
      switch (name.length) {
        case 15:
          if (name.toLowerCase() === 'accept-encoding') {
            accept = accept === undefined ? raw[i + 1]! : `${accept},${raw[i + 1]!}`
          }
          break
        case 5:
          // A range is of the representation the upstream has: never of a compressed one.
          if (name.toLowerCase() === 'range') identity = true
          break
        case 7:
          // Not a body to compress: the connection becomes something else.
          if (name.toLowerCase() === 'upgrade') return undefined
          break
        case 13:
          // RFC 9111 section 5.2.1.6: the client asks intermediaries to leave the content alone.
          if (name.toLowerCase() === 'cache-control' && noTransform(raw[i + 1]!)) identity = true
          break
        default:
          break
      }
    }
    const coding = identity || accept === undefined ? undefined : negotiate(accept, cfg.encodings)
    ctx.responseTransform = byCoding.get(coding) ?? asIs
    return undefined
  }
}

/**
 * The response half for requests given `coding` (undefined: sent as it is). A response is
 * compressible when it has a body (not 1xx, 204, 206, 304, nor Content-Length 0), is not
 * encoded already, allows transformation (no `Cache-Control: no-transform`), is not a range
 * nor carries a digest of its bytes, is of a listed type, and is at least `minBytes` when its
 * length is known (as nginx's gzip_min_length: an unknown length is compressed, never held
 * back to be measured). A compressible response gets `Vary: Accept-Encoding` whatever the
 * coding; a compressed one loses Content-Length and Accept-Ranges, and its ETag is weakened
 * (RFC 9110 section 8.8.1: the bytes differ from the upstream's).
 */
function responseSide(
  coding: Encoding | undefined,
  types: (contentType: string) => boolean,
  minBytes: number,
  levels: Readonly<Record<Encoding, number>>,
): ResponseTransformer {
  return (status: number, headers: string[]): Transform | undefined => {
    if (status < 200 || status === 204 || status === 206 || status === 304) return undefined
    let type: string | undefined
    let length = -1
    let vary = -1
    let varies = false
    let etag = -1
    let dropped = 0
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!
      // Only names whose length is one we act on are lowercased.
      switch (name.length) {
        case 4: {
          const lower = name.toLowerCase()
          if (lower === 'vary') {
            if (coversEncoding(headers[i + 1]!)) varies = true
            else if (vary < 0) vary = i
          } else if (lower === 'etag') etag = i
          break
        }
        case 12:
          if (type === undefined && name.toLowerCase() === 'content-type') type = headers[i + 1]!
          break
        case 13: {
          const lower = name.toLowerCase()
          if (lower === 'cache-control' && noTransform(headers[i + 1]!)) return undefined
          if (lower === 'content-range') return undefined
          if (lower === 'accept-ranges') dropped++
          break
        }
        case 14: {
          const lower = name.toLowerCase()
          if (lower === 'content-length') {
            length = Number(headers[i + 1])
            dropped++
          } else if (lower === 'content-digest') return undefined
          break
        }
        case 16:
          if (name.toLowerCase() === 'content-encoding') return undefined
          break
        case 6:
          if (name.toLowerCase() === 'digest') return undefined
          break
        case 11: {
          const lower = name.toLowerCase()
          if (lower === 'repr-digest' || lower === 'content-md5') return undefined
          break
        }
        default:
          break
      }
    }
    if (type === undefined || length === 0 || (length > 0 && length < minBytes) || !types(type))
      return undefined
    if (!varies) {
      if (vary < 0) headers.push('vary', 'Accept-Encoding')
      else
        headers[vary + 1] =
          headers[vary + 1]!.trim() === '' ? 'Accept-Encoding' : `${headers[vary + 1]}, Accept-Encoding`
    }
    if (coding === undefined) return undefined
    if (etag >= 0 && !headers[etag + 1]!.startsWith('W/')) headers[etag + 1] = `W/${headers[etag + 1]}`
    if (dropped > 0) withoutLengthAndRanges(headers)
    headers.push('content-encoding', coding)
    return compressor(coding, levels[coding], Number.isFinite(length) ? length : -1)
  }
}

/** Removes Content-Length and Accept-Ranges from a flat header array, in place. */
function withoutLengthAndRanges(headers: string[]): void {
  let to = 0
  for (let from = 0; from < headers.length; from += 2) {
    const name = headers[from]!
    if (name.length === 14 || name.length === 13) {
      const lower = name.toLowerCase()
      if (lower === 'content-length' || lower === 'accept-ranges') continue
    }
    headers[to] = name
    headers[to + 1] = headers[from + 1]!
    to += 2
  }
  headers.length = to
}

/**
 * A compressor for one response. With the length unknown the body is a stream the upstream
 * sends as it goes (server-sent events, NDJSON): each piece is flushed through at once, so
 * compressing never holds back what the upstream already sent. With the length known, the
 * codec picks its own blocks (better ratio) and brotli/zstd size their window to the body.
 */
export function compressor(coding: Encoding, level: number, length: number): Transform {
  const streaming = length < 0
  switch (coding) {
    case 'gzip':
      return streaming ? zlib.createGzip({ level, flush: C.Z_SYNC_FLUSH }) : new BlockGzip({ level })
    case 'br': {
      // A 512 KiB window (nginx's brotli_window default) rather than brotli's 4 MiB: the ring
      // buffer grows to the window, and a slow client keeps it for the whole body (measured
      // with 50 clients that stopped reading: 1.1 MB each instead of 4.5 MB).
      const params: Record<number, number> = { [C.BROTLI_PARAM_QUALITY]: level, [C.BROTLI_PARAM_LGWIN]: 19 }
      if (!streaming) params[C.BROTLI_PARAM_SIZE_HINT] = Math.min(length, 2 ** 30)
      return zlib.createBrotliCompress({
        flush: streaming ? C.BROTLI_OPERATION_FLUSH : C.BROTLI_OPERATION_PROCESS,
        params,
      })
    }
    case 'zstd':
      return zstdCompressor(level, streaming)
  }
}

/** gzip's fixed header (RFC 1952 section 2.3): no file name, comment nor extra field from zlib. */
const GZIP_HEADER = 10

/**
 * gzip for a body of known length. zlib emits gzip's header on its own at the first write, long
 * before deflate has a block; it is held back here and goes out with the first block (or at the
 * end). So a compressor's first output carries some of the body, and the exchange, which holds
 * the response head until then (proxy/forward.ts), still answers an upstream failing before it
 * with 502/504 instead of cutting short a response that had only its header. zlib pushes slices
 * of a buffer it never reuses, so the held one stays intact.
 */
class BlockGzip extends zlib.Gzip {
  #header: Buffer | undefined
  #first = true

  override push(chunk: Buffer | null, encoding?: BufferEncoding): boolean {
    if (this.#first) {
      this.#first = false
      if (chunk !== null && chunk.length === GZIP_HEADER) {
        this.#header = chunk
        return true
      }
    }
    const header = this.#header
    if (header === undefined) return super.push(chunk, encoding)
    this.#header = undefined
    if (chunk === null) {
      super.push(header)
      return super.push(null)
    }
    return super.push(Buffer.concat([header, chunk]))
  }
}

interface ZstdZlib {
  createZstdCompress(o: { params: Record<number, number>; flush: number }): Transform
  constants: Record<string, number>
}

/** Only reached where config.ts found zlib.createZstdCompress (HAS_ZSTD). */
function zstdCompressor(level: number, streaming: boolean): Transform {
  const z = zlib as unknown as ZstdZlib
  const k = z.constants
  const params: Record<number, number> = { [k.ZSTD_c_compressionLevel!]: level }
  // The same 512 KiB window as brotli's (zstd's level 3 takes 2 MiB for a body of unknown size).
  if (k.ZSTD_c_windowLog !== undefined) params[k.ZSTD_c_windowLog] = 19
  return z.createZstdCompress({ params, flush: streaming ? k.ZSTD_e_flush! : k.ZSTD_e_continue! })
}

/** Whether a Cache-Control value has the no-transform directive. */
function noTransform(value: string): boolean {
  return value.length >= 12 && value.toLowerCase().includes('no-transform')
}

/** Whether a Vary value already covers Accept-Encoding (by naming it, or `*`). */
function coversEncoding(value: string): boolean {
  return value.trim() === '*' || (value.length >= 15 && value.toLowerCase().includes('accept-encoding'))
}

/**
 * A matcher of Content-Type values (parameters ignored, case-insensitive) against media
 * ranges written `type/subtype`, `type/*` or `type/*+suffix` (config.ts checks the form).
 */
export function contentTypes(ranges: readonly string[]): (contentType: string) => boolean {
  const set = new Set(ranges.map((r) => r.toLowerCase()))
  return (contentType: string): boolean => {
    const semi = contentType.indexOf(';')
    const media = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
    if (set.has(media)) return true
    const slash = media.indexOf('/')
    if (slash <= 0) return false
    const wild = `${media.slice(0, slash)}/*`
    if (set.has(wild)) return true
    const plus = media.lastIndexOf('+')
    return plus > slash && set.has(`${wild}${media.slice(plus)}`)
  }
}
