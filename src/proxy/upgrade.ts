// WebSocket (and other HTTP/1.1 Upgrade) proxying. After routing and middlewares, the handshake
// goes to a server of the group on a fresh connection; a 101 answer is relayed and the two
// sockets are joined by a tunnel (tunnel.ts: bytes both ways with backpressure, half-closes and
// resets passed on, an idle timeout). A non-101 answer is streamed back (backpressure through pipe,
// never buffered whole) and the connection ends with it. Connect failures move on to the next
// candidate like any request. Only `Upgrade: websocket` comes here (pipeline.ts).

import http from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import type { RetryPolicy } from '../config/snapshot'
import type { AccessLog, RequestFacts } from '../observe/access-log'
import { ERRORS, type ErrorKind, errorKind, logFailure, type ReplyKind, TIMED_OUT } from '../observe/errors'
import type { Logger } from '../observe/logger'
import type { UpstreamGroup } from '../upstream/group'
import { type Peer, tlsConnectOptions } from '../upstream/peer'
import { mayRetry, retryCondition } from '../upstream/retry'
import { replyError } from './errors'
import { rawHead } from './raw-response'
import type { RequestTrace } from './trace'
import { tunnel } from './tunnel'

export interface UpgradeOptions extends RequestFacts {
  socket: Socket
  /** The writer of raw replies on `socket` (a RawResponse): error replies, a refused handshake. */
  res: http.ServerResponse
  head: Buffer
  upstreamPath: string
  /** Upstream request headers (hop-by-hop already removed). */
  headers: string[]
  /** The client's Upgrade header value (e.g. `websocket`). */
  upgrade: string
  upstream: string
  group: UpstreamGroup
  /** The route's retry policy (its retries / retry_on over the group's). */
  retry: RetryPolicy
  candidates: Peer[]
  responseHeaders: readonly string[] | undefined
  connectTimeoutMs: number
  idleTimeoutMs: number
  log: Logger
  access: AccessLog
  onDone: () => void
  /** Set when the request is traced: a CLIENT span (and traceparent) per handshake attempt. */
  trace?: RequestTrace | undefined
}

export function forwardUpgrade(o: UpgradeOptions): void {
  let index = 0
  let finished = false
  let status = 0
  let peer: Peer | undefined
  // What the access line reports beside the status (observe/access-log.ts Outcome).
  const out = { bytesReceived: 0, bytesSent: 0, upstreamMs: -1, attempts: 0 }
  let attemptStart = 0
  const finish = (kind: ErrorKind | undefined) => {
    if (finished) return
    finished = true
    if (peer) peer.inFlight--
    out.attempts = peer === undefined ? 0 : index + 1
    o.access.request(o, o.upstream, peer?.address, status, kind, out)
    o.onDone()
  }
  /** The upstream's answer head arrived: the attempt's time to first byte. */
  const answered = () => {
    out.upstreamMs = Math.round((performance.now() - attemptStart) * 1000) / 1000
  }
  /** Answers `kind`, unless an answer (a 101 or the server's refusal) is already on its way. */
  const fail = (kind: ReplyKind) => {
    if (finished) return
    if (status === 0 && !o.socket.destroyed) {
      try {
        const extra =
          o.trace === undefined
            ? o.responseHeaders
            : o.trace.responseHeaders(o.responseHeaders, ERRORS[kind].label)
        replyError(o.res, kind, o.requestId, true, extra)
      } catch {
        o.socket.destroy()
      }
    }
    finish(kind)
  }

  // http.request validates what it sends and throws (a header value it refuses): that ends
  // this request with a 502, never the process.
  const attempt = () => {
    try {
      tryPeer()
    } catch (err) {
      o.log.warn(
        { request_id: o.requestId, upstream: o.upstream, err: (err as Error).message },
        'upgrade request could not be sent upstream',
      )
      fail('internal')
    }
  }

  const tryPeer = () => {
    peer = o.candidates[index]!
    peer.inFlight++
    attemptStart = performance.now()
    const headers = [...o.headers, 'connection', 'Upgrade', 'upgrade', o.upgrade]
    o.trace?.attemptStart(peer, o.method, o.upstream, headers)
    const options: https.RequestOptions = {
      host: peer.host,
      port: peer.port,
      method: o.method,
      path: o.upstreamPath,
      headers: headers as unknown as http.OutgoingHttpHeaders,
      agent: false,
      timeout: o.connectTimeoutMs,
    }
    const secure = peer.tls.enabled
    if (secure) Object.assign(options, tlsConnectOptions(peer.tls, peer.host))
    const req = (secure ? https : http).request(options)
    let connected = false
    req.once('socket', (s: Socket) => s.once(secure ? 'secureConnect' : 'connect', () => (connected = true)))
    // Before the connection is up a connect timeout, after it an upstream timeout (errorKind).
    req.once('timeout', () =>
      req.destroy(Object.assign(new Error('upstream timed out'), { code: TIMED_OUT })),
    )
    req.once('upgrade', (res: http.IncomingMessage, up: Socket, upHead: Buffer) => {
      req.setTimeout(0)
      status = 101
      o.trace?.attemptEnd(101, undefined)
      answered()
      o.group.reportSuccess(peer!)
      if (o.socket.destroyed) {
        up.destroy()
        finish('client_aborted')
        return
      }
      let head: string
      try {
        head = rawHead(101, res.statusMessage, [...res.rawHeaders, 'x-request-id', o.requestId], false)
      } catch {
        up.destroy()
        o.socket.destroy()
        finish('upstream_error')
        return
      }
      tunnel({
        client: o.socket,
        upstream: up,
        toClient: [Buffer.concat([Buffer.from(head, 'latin1'), upHead])],
        toUpstream: [o.head],
        idleMs: o.idleTimeoutMs,
        onClose: (bytes) => {
          // The 101 head is not body (Apache's %b); the frames both ways are.
          out.bytesReceived = bytes.fromClient
          out.bytesSent = bytes.fromUpstream - Buffer.byteLength(head, 'latin1')
          finish(undefined)
        },
      })
    })
    req.once('response', (res: http.IncomingMessage) => {
      // The server refused the upgrade: relay its answer as it streams, then end.
      req.setTimeout(0)
      status = res.statusCode ?? 502
      o.trace?.attemptEnd(status, undefined)
      answered()
      if (status >= 500) o.group.reportFailure(peer!, `status ${status}`)
      else o.group.reportSuccess(peer!)
      if (o.socket.destroyed || !o.socket.writable) {
        // The client is gone (or half-closed, so nothing can be written back): no 'close' to wait for.
        res.destroy()
        o.socket.destroy()
        finish('client_aborted')
        return
      }
      const headers: string[] = []
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const name = res.rawHeaders[i]!.toLowerCase()
        if (name === 'content-length' || name === 'x-request-id' || name === 'upgrade') continue
        headers.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!)
      }
      headers.push('x-request-id', o.requestId)
      try {
        o.res.writeHead(status, res.statusMessage, headers)
      } catch {
        res.destroy()
        o.socket.destroy()
        finish('upstream_error')
        return
      }
      res.on('data', (chunk: Buffer) => {
        out.bytesSent += chunk.length
      })
      res.once('error', () => o.socket.destroy())
      o.socket.once('close', () => {
        res.destroy()
        finish(res.complete ? undefined : 'client_aborted')
      })
      res.pipe(o.socket)
    })
    req.once('error', (err: Error & { code?: string }) => {
      const kind = errorKind(err.code, connected ? 'exchange' : 'connect')
      o.trace?.attemptEnd(0, ERRORS[kind].label)
      o.group.reportFailure(peer!, kind)
      // Only before the handshake reached the server: its answer is not something to repeat.
      const condition = retryCondition(kind)
      const retry =
        !connected &&
        !o.socket.destroyed &&
        condition !== undefined &&
        mayRetry({
          policy: o.retry,
          condition,
          attempt: index,
          candidates: o.candidates.length,
          method: o.method,
          hasBody: false,
          responseStarted: false,
          budget: o.group.budget,
        })
      logFailure(
        o.log,
        kind,
        {
          request_id: o.requestId,
          upstream: o.upstream,
          server: peer!.address,
          err: err.code ?? err.message,
          retry,
        },
        'upstream error',
      )
      if (retry) {
        peer!.inFlight--
        index++
        attempt()
        return
      }
      fail(kind)
    })
    req.end()
  }
  attempt()
}
