// Writes the proxy's own error replies. What each failure is (status, body, label, level) is
// the catalogue's, observe/errors.ts; this is only how a reply goes on the wire, through a
// ServerResponse or a RawResponse (raw-response.ts) alike.

import type { ServerResponse } from 'node:http'
import { ERRORS, type ReplyKind, replyBody } from '../observe/errors'

/** Writes the short plain-text reply for `kind`. The caller makes sure headers were not sent. */
export function replyError(
  res: ServerResponse,
  kind: ReplyKind,
  requestId: string,
  closeConnection: boolean,
  extra?: readonly string[],
): void {
  const body = replyBody(kind)
  const headers = [
    'content-type',
    'text/plain; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    'x-request-id',
    requestId,
  ]
  if (extra) headers.push(...extra)
  if (closeConnection) headers.push('connection', 'close')
  res.writeHead(ERRORS[kind].status, headers)
  res.end(body)
}
