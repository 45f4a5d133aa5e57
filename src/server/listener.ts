// The downstream listener on server.bind_address: plain HTTP/1.1, or with server.tls HTTPS with
// HTTP/2 and HTTP/1.1 offered by ALPN, certificates chosen by SNI. Malformed requests are
// answered here (400, 431 for oversized headers) and the listener keeps serving. Also the
// optional plain listener that redirects to HTTPS.

import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type net from 'node:net'
import type { Socket } from 'node:net'
import tls from 'node:tls'
import type { Snapshot } from '../config/snapshot'
import { type CertificateMaterial, nameMatches } from '../config/tls'
import type { Logger } from '../observe/logger'

export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void
export type UpgradeHandler = (req: http.IncomingMessage, socket: Socket, head: Buffer) => void

/** A listener and the operations shutdown and reload need, whatever kind of server it is. */
export interface ListenerHandle {
  readonly server: net.Server
  /** Closes connections with no request in flight (HTTP/2: sends GOAWAY). */
  closeIdle(): void
  /** Closes every connection now. */
  closeAll(): void
  /** Applies a new snapshot's certificates (no restart for a renewal) and connection limit. */
  update(snapshot: Snapshot): void
}

const OPTIONS: http.ServerOptions = {
  keepAliveTimeout: 65_000,
  // Node's defaults, stated: 16 KiB of headers, 60 s to receive them.
  maxHeaderSize: 16 * 1024,
  headersTimeout: 60_000,
  requestTimeout: 300_000,
}

/** Certificates by name for SNI; the first is the default for clients that send no name. */
class CertificateStore {
  #entries: Array<{ names: readonly string[]; context: tls.SecureContext }> = []

  update(certs: readonly CertificateMaterial[], minVersion: tls.SecureVersion): void {
    this.#entries = certs.map((c) => ({
      names: c.names,
      context: tls.createSecureContext({ cert: c.cert, key: c.key, minVersion }),
    }))
  }

  pick = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    const host = servername.toLowerCase()
    const exact = this.#entries.find((e) => e.names.includes(host))
    const wild = exact ?? this.#entries.find((e) => e.names.some((n) => nameMatches(n, host)))
    cb(null, (wild ?? this.#entries[0])?.context)
  }
}

export function createListener(
  snapshot: Snapshot,
  handler: RequestHandler,
  onUpgrade: UpgradeHandler,
  log: Logger,
  onBadRequest: () => void = () => undefined,
): ListenerHandle {
  const t = snapshot.tls
  if (!t) {
    const server = http.createServer(OPTIONS, handler)
    wire(server, onUpgrade, log, onBadRequest)
    server.maxConnections = snapshot.limits.maxConnections
    return {
      server,
      closeIdle: () => server.closeIdleConnections(),
      closeAll: () => server.closeAllConnections(),
      update: (s) => {
        server.maxConnections = s.limits.maxConnections
      },
    }
  }
  const store = new CertificateStore()
  store.update(t.certificates, t.minVersion)
  const first = t.certificates[0]!
  const secure = { cert: first.cert, key: first.key, minVersion: t.minVersion, SNICallback: store.pick }
  const update = (s: Snapshot) => {
    server.maxConnections = s.limits.maxConnections
    if (!s.tls) return
    store.update(s.tls.certificates, s.tls.minVersion)
    const d = s.tls.certificates[0]!
    ;(server as tls.Server).setSecureContext({ cert: d.cert, key: d.key, minVersion: s.tls.minVersion })
  }
  let server: net.Server
  if (t.http2) {
    const h2 = http2.createSecureServer(
      { ...secure, allowHTTP1: true },
      handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    )
    const sessions = new Set<http2.ServerHttp2Session>()
    const sockets = new Set<Socket>()
    h2.on('session', (s: http2.ServerHttp2Session) => {
      sessions.add(s)
      s.once('close', () => sessions.delete(s))
    })
    h2.on('secureConnection', (s: Socket) => {
      sockets.add(s)
      s.once('close', () => sockets.delete(s))
    })
    wire(h2 as unknown as http.Server, onUpgrade, log, onBadRequest)
    server = h2
    server.maxConnections = snapshot.limits.maxConnections
    return {
      server,
      // GOAWAY: clients finish their streams and open no new ones. HTTP/1.1 connections on this
      // server close after their response (Connection: close while draining).
      closeIdle: () => {
        for (const s of sessions) s.close()
      },
      closeAll: () => {
        for (const s of sessions) s.destroy()
        for (const s of sockets) s.destroy()
      },
      update,
    }
  }
  const h1 = https.createServer({ ...OPTIONS, ...secure }, handler)
  wire(h1, onUpgrade, log, onBadRequest)
  server = h1
  server.maxConnections = snapshot.limits.maxConnections
  return {
    server,
    closeIdle: () => h1.closeIdleConnections(),
    closeAll: () => h1.closeAllConnections(),
    update,
  }
}

function wire(server: http.Server, onUpgrade: UpgradeHandler, log: Logger, onBadRequest: () => void): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code !== 'ECONNRESET' && socket.writable) onBadRequest()
    onClientError(err, socket, log)
  })
  server.on('upgrade', onUpgrade)
  // CONNECT (forward-proxy tunnelling) is not something a reverse proxy offers.
  server.on('connect', (_req, socket: Socket) => {
    writeRaw(socket, 405, 'CONNECT is not supported by this reverse proxy')
  })
}

/**
 * server.redirect_http_bind: every request gets a 308 to the same URL over HTTPS. The Location's
 * host is the client's Host only when a certificate of the listener names it; otherwise
 * `server.tls.redirect_host`; otherwise 400. A redirect built from any Host would send users to
 * whatever site an attacker names (cache poisoning, phishing through a trusted domain).
 */
export function createRedirectListener(
  httpsPort: () => number,
  tls: () => Snapshot['tls'],
  log: Logger,
): http.Server {
  const server = http.createServer(OPTIONS, (req, res) => {
    try {
      const t = tls()
      const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '')
      const named = t?.certificates.some((c) => c.names.some((n) => n === host || nameMatches(n, host)))
      let authority: string
      if (named && host !== '') {
        const port = httpsPort()
        authority = `${host}${port === 443 ? '' : `:${port}`}`
      } else if (t?.redirectHost !== undefined) {
        authority = t.redirectHost
      } else {
        const body = '400 unknown host; use https:// and a known name\n'
        res.writeHead(400, {
          'content-type': 'text/plain',
          'content-length': body.length,
          connection: 'close',
        })
        res.end(body)
        return
      }
      const path = req.url?.startsWith('/') ? req.url : '/'
      // 308 keeps the method and body (RFC 9110 section 15.4.9), unlike 301.
      res.writeHead(308, {
        location: `https://${authority}${path}`,
        'content-type': 'text/plain',
        'content-length': 0,
      })
      res.end()
    } catch (err) {
      log.error({ err: (err as Error).message }, 'redirect listener failed')
      res.destroy()
    }
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => onClientError(err, socket, log))
  return server
}

function onClientError(err: NodeJS.ErrnoException, socket: Socket, log: Logger): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  log.info(
    { status, error_type: 'bad_request', reason: err.code ?? err.message, client: socket.remoteAddress },
    'bad request',
  )
  writeRaw(socket, status, status === 431 ? 'request header fields too large' : 'malformed request')
}

export function writeRaw(
  socket: Socket,
  status: number,
  message: string,
  headers: readonly string[] = [],
): void {
  const body = message === '' ? '' : `${status} ${message}\n`
  let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n`
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`
  if (body !== '') head += 'content-type: text/plain; charset=utf-8\r\n'
  socket.end(`${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}

/** Binds and resolves once listening; rejects with a readable reason (address in use, ...). */
export function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening)
      const why =
        err.code === 'EADDRINUSE'
          ? 'address already in use'
          : err.code === 'EACCES'
            ? 'permission denied'
            : err.code === 'EADDRNOTAVAIL'
              ? 'address not available on this machine'
              : err.message
      reject(new Error(`cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port}: ${why}`))
    }
    const onListening = () => {
      server.off('error', onError)
      resolve()
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen(port, host)
  })
}
