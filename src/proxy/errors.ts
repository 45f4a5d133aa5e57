// Writes the proxy's own error replies. What each failure is (status, body, label, level) is
// the catalogue's, observe/errors.ts; this is only how a reply goes on the wire, through a
// ServerResponse or a RawResponse (raw-response.ts) alike.

import type { ServerResponse } from 'node:http'
import { ERRORS, type ReplyKind, replyBody } from '../observe/errors'
import { grpcRequestType, replyGrpcError } from './grpc'

/**
 * Writes the short plain-text reply for `kind` and returns its body's length in bytes. The
 * caller makes sure headers were not sent. A gRPC call (its content-type) is answered the gRPC
 * way instead, with no body (proxy/grpc.ts).
 */
export function replyError(
  res: ServerResponse,
  kind: ReplyKind,
  requestId: string,
  closeConnection: boolean,
  extra?: readonly string[],
): number {
  const grpc = grpcRequestType(res)
  if (grpc !== undefined) {
    replyGrpcError(res, grpc, kind, requestId, extra)
    return 0
  }
  const body = replyBody(kind)
  const length = Buffer.byteLength(body)
  const headers = [
    'content-type',
    'text/plain; charset=utf-8',
    'content-length',
    String(length),
    'x-request-id',
    requestId,
  ]
  // The body is the proxy's text: a middleware's Content-Type (headers response.set) is for
  // the upstream's answers and would make a second one here.
  if (extra) {
    for (let i = 0; i < extra.length; i += 2) {
      if (extra[i]!.length !== 12 || extra[i]!.toLowerCase() !== 'content-type')
        headers.push(extra[i]!, extra[i + 1]!)
    }
  }
  if (closeConnection) headers.push('connection', 'close')
  res.writeHead(ERRORS[kind].status, headers)
  res.end(body)
  return length
}
