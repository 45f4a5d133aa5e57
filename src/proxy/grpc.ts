// gRPC over the proxy (gRPC over HTTP/2, PROTOCOL-HTTP2.md in grpc/grpc): what the pipeline and
// the exchange need to know of it. A call is told apart by its content-type (application/grpc,
// application/grpc+proto, application/grpc-web...); its own failures are answered the gRPC way,
// HTTP 200 with grpc-status and grpc-message in a Trailers-Only response, because a gRPC client
// reads no status code or body.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2'
import { ERRORS, grpcStatus, type ReplyKind } from '../observe/errors'

/** application/grpc, application/grpc+proto, application/grpc-web(-text)(+proto)... */
export function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && ct.length >= 16 && ct.slice(0, 16).toLowerCase() === 'application/grpc'
}

const UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }

/**
 * The grpc-timeout header in milliseconds (at least 1), or undefined when absent or malformed
 * ("1-8 digits then one of H M S m u n"; a malformed one is ignored, as grpc servers do).
 */
export function grpcTimeoutMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const m = /^(\d{1,8})([HMSmun])$/.exec(value)
  if (m === null) return undefined
  // Up to 99,999,999 hours is valid; a timer fires at once past 2^31-1 ms (about 24.8 days), so a
  // longer deadline is held to that instead of ending the call immediately.
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(Number(m[1]) * UNITS[m[2]!]!)))
}

/** setTimeout's longest delay; a larger one is taken as 1 ms (with a warning). */
const MAX_TIMER_MS = 2_147_483_647

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md): everything outside 0x20-0x7E and '%'. */
export function grpcMessage(text: string): string {
  return encodeURIComponent(text).replace(/%20/g, ' ')
}

/**
 * Answers a call with headers only and END_STREAM on them: over HTTP/2 the compatibility API
 * would send an empty DATA frame after the head, which gRPC clients read as a call that ended
 * without a status. Over HTTP/1.1 (gRPC-Web) the head and an empty body are the same thing.
 */
export function respondTrailersOnly(res: ServerResponse, flat: readonly string[]): void {
  const stream = (res as unknown as Partial<Http2ServerResponse>).stream
  if (stream === undefined || res.req?.httpVersionMajor !== 2) {
    res.writeHead(200, flat as string[])
    res.end()
    return
  }
  const h: OutgoingHttpHeaders = { ':status': 200 }
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase()
    if (name === 'connection' || name === 'content-length' || name === 'transfer-encoding') continue
    const prev = h[name]
    const v = flat[i + 1]!
    h[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v]
  }
  stream.respond(h, { endStream: true })
  // Lets the compatibility response finish ('finish', 'close') like any other.
  res.end()
}

/** The request of a response, when it is gRPC (Node's ServerResponse and HTTP/2's keep `req`). */
export function grpcRequestType(res: ServerResponse): string | undefined {
  const req = (res as { req?: IncomingMessage }).req
  const ct = req?.headers?.['content-type']
  return isGrpcContentType(ct) ? ct : undefined
}

/** The proxy's own failure `kind` as a gRPC status, Trailers-Only; `extra`: CORS and the like. */
export function replyGrpcError(
  res: ServerResponse,
  contentType: string,
  kind: ReplyKind,
  requestId: string,
  extra: readonly string[] | undefined,
): void {
  const headers = [
    'content-type',
    contentType,
    'grpc-status',
    String(grpcStatus(kind)),
    'grpc-message',
    grpcMessage(ERRORS[kind].body),
    'x-request-id',
    requestId,
  ]
  if (extra) {
    for (let i = 0; i < extra.length; i += 2) {
      if (extra[i]!.toLowerCase() !== 'content-type') headers.push(extra[i]!, extra[i + 1]!)
    }
  }
  respondTrailersOnly(res, headers)
}
