// The downstream listener on server.bind_address: plain HTTP, or HTTPS when server.tls is set.
// Malformed requests are answered here (400, 431 for oversized headers) without reaching the
// pipeline, and the listener keeps serving.

import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type { Socket } from 'node:net'
import type { Snapshot } from '../config/snapshot'
import type { Logger } from '../observe/logger'

export type Listener = http.Server | https.Server

export function createListener(snapshot: Snapshot, handler: http.RequestListener, log: Logger): Listener {
  const options: http.ServerOptions = {
    keepAliveTimeout: 65_000,
    // Node's defaults, stated: 16 KiB of headers, 60 s to receive them.
    maxHeaderSize: 16 * 1024,
    headersTimeout: 60_000,
    requestTimeout: 300_000,
  }
  let server: Listener
  if (snapshot.tls) {
    server = https.createServer(
      {
        ...options,
        cert: readFileSync(snapshot.tls.certPath),
        key: readFileSync(snapshot.tls.keyPath),
        minVersion: 'TLSv1.2',
      },
      handler,
    )
  } else {
    server = http.createServer(options, handler)
  }
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => onClientError(err, socket, log))
  // CONNECT (forward-proxy tunnelling) is not something a reverse proxy offers.
  server.on('connect', (_req, socket: Socket) => {
    writeRaw(socket, 405, 'CONNECT is not supported by this reverse proxy')
  })
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

function writeRaw(socket: Socket, status: number, message: string): void {
  const body = `${status} ${message}\n`
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
      'content-type: text/plain; charset=utf-8\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      'connection: close\r\n\r\n' +
      body,
  )
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
