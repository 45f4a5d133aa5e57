// The downstream listener on server.bind_address: plain HTTP/1.1, or with server.tls HTTPS with
// HTTP/2 and HTTP/1.1 offered by ALPN, certificates chosen by SNI. Malformed requests are
// answered here (400, 431 for oversized headers, 408 for a slow head) and the listener keeps
// serving. Also the
// optional plain listener that redirects to HTTPS.

import { constants as cryptoConstants, randomBytes } from 'node:crypto'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type { Socket } from 'node:net'
import net from 'node:net'
import { Duplex } from 'node:stream'
import tls from 'node:tls'
import type { Snapshot } from '../config/snapshot'
import { ECDH_CURVES, nameMatches, TLS13_SUITES } from '../config/tls'
import type { AccessLog } from '../observe/access-log'
import { ERRORS, errorKind, logFailure, replyBody } from '../observe/errors'
import type { Logger } from '../observe/logger'
import { clientIp } from '../proxy/headers'
import { writeRaw } from '../proxy/raw-response'
import { ROUTABLE_METHODS } from '../routing/resolve'
import { createH1Server, type H1Handlers, type H1Server } from './h1/server'
import { OcspStapler } from './ocsp'

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
  /** A plain HTTP/1.1 listener's server side (the start-up line says which). */
  readonly http1Server?: 'own' | 'node'
}

const OPTIONS: http.ServerOptions = {
  keepAliveTimeout: 65_000,
  // Node's defaults, stated: 16 KiB of headers, 60 s to receive them.
  maxHeaderSize: 16 * 1024,
  headersTimeout: 60_000,
  requestTimeout: 300_000,
}

/** Client-cancelled streams a session may have at once, at least (rapid reset, see below). */
const RESET_BURST_MIN = 100
/** ...and then per second, sustained. */
const RESET_RATE_PER_SEC = 32
/** Session ticket keys are replaced this often (see rotateTicketKeys). */
const TICKET_KEY_ROTATION_MS = 60 * 60_000

/**
 * The TLS policy every secure context of the listener is made with (the default one, each SNI
 * one, and again on reload): TLS 1.2 with ECDHE + AEAD suites only (or TLS 1.3 only with policy
 * modern), the server's suite order (ChaCha20 first for clients that prefer it: those without
 * AES hardware), X25519/P-256/P-384 key exchange, and no renegotiation (a client-initiated
 * renegotiation costs the server a full handshake, a known DoS lever).
 */
export function secureContextOptions(t: NonNullable<Snapshot['tls']>): tls.SecureContextOptions {
  const { SSL_OP_CIPHER_SERVER_PREFERENCE, SSL_OP_PRIORITIZE_CHACHA, SSL_OP_NO_RENEGOTIATION } =
    cryptoConstants
  return {
    minVersion: t.minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: `${TLS13_SUITES}:${t.ciphers}`,
    ecdhCurve: ECDH_CURVES,
    honorCipherOrder: true,
    secureOptions: SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_RENEGOTIATION,
  }
}

type Pem = { readonly cert: string; readonly key: string }

/** Certificates obtained at run time (server/acme.ts), served beside the static ones. */
export interface IssuedCertificates {
  certificate(host: string): { readonly cert: string; readonly key: string } | undefined
  /** The RFC 8737 certificate while the CA validates `host` by TLS-ALPN-01 (maybe looked up elsewhere). */
  alpnChallenge(host: string): Pem | undefined | Promise<Pem | undefined>
  /** An unknown name: its on-demand order when one is allowed, else undefined. */
  onDemand(host: string): Promise<{ readonly cert: string; readonly key: string } | undefined> | undefined
}

/** ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737). */
export const ACME_TLS_ALPN = 'acme-tls/1'
/** How long a handshake for an on-demand name waits for its certificate before the default one. */
const ON_DEMAND_WAIT_MS = 60_000

/**
 * Certificates by name for SNI; the first static one is the default for clients that send no
 * name. Order: a static certificate naming the host exactly, an issued one, a static wildcard,
 * an on-demand order, the default.
 */
class CertificateStore {
  #entries: Array<{ names: readonly string[]; context: tls.SecureContext }> = []
  #policy: tls.SecureContextOptions = {}
  /** Contexts of issued certificates, by their (immutable, replaced on renewal) object. */
  #issuedContexts = new WeakMap<object, tls.SecureContext>()

  constructor(readonly issued: () => IssuedCertificates | undefined) {}

  update(t: NonNullable<Snapshot['tls']>): void {
    const policy = secureContextOptions(t)
    this.#policy = policy
    this.#issuedContexts = new WeakMap()
    this.#entries = t.certificates.map((c) => ({
      names: c.names,
      context: tls.createSecureContext({ cert: c.cert, key: c.key, ...policy }),
    }))
  }

  #context(c: { readonly cert: string; readonly key: string }): tls.SecureContext {
    let ctx = this.#issuedContexts.get(c)
    if (!ctx) {
      ctx = tls.createSecureContext({ cert: c.cert, key: c.key, ...this.#policy })
      this.#issuedContexts.set(c, ctx)
    }
    return ctx
  }

  /** The SNICallback; Node calls it with the TLS socket as `this`. */
  pick(socket: tls.TLSSocket, servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) {
    const host = servername.toLowerCase()
    const issued = this.issued()
    // ALPN is chosen before the certificate (OpenSSL runs the ALPN callback first), so a
    // validation connection is told apart here. Normal clients never offer acme-tls/1.
    const handle = (socket as unknown as { _handle?: { getALPNNegotiatedProtocol?(): unknown } })._handle
    if (issued && handle?.getALPNNegotiatedProtocol?.() === ACME_TLS_ALPN) {
      const answer = (c: Pem | undefined) => {
        if (!c) return cb(new Error(`no TLS-ALPN-01 challenge pending for ${host}`))
        cb(null, tls.createSecureContext({ cert: c.cert, key: c.key, ...this.#policy }))
      }
      const c = issued.alpnChallenge(host)
      if (c instanceof Promise) c.then(answer, () => answer(undefined))
      else answer(c)
      return
    }
    const exact = this.#entries.find((e) => e.names.includes(host))
    if (exact) return cb(null, exact.context)
    const got = issued?.certificate(host)
    if (got) return cb(null, this.#context(got))
    const wild = this.#entries.find((e) => e.names.some((n) => nameMatches(n, host)))
    if (wild) return cb(null, wild.context)
    const fallback = this.#entries[0]?.context
    const pending = issued?.onDemand(host)
    if (!pending) return cb(null, fallback)
    let done = false
    const finish = (c: { cert: string; key: string } | undefined) => {
      if (done) return
      done = true
      clearTimeout(timer)
      cb(null, c ? this.#context(c) : fallback)
    }
    const timer = setTimeout(() => finish(undefined), ON_DEMAND_WAIT_MS)
    timer.unref()
    pending.then(finish, () => finish(undefined))
  }
}

/**
 * Session tickets stay on (they spare a returning client a full handshake; with tickets off,
 * Node resumes nothing, as it keeps no server-side session cache), but their key is replaced
 * every hour instead of living as long as the process. Node takes one key only
 * (server.setTicketKeys), so tickets issued under the previous key stop resuming: the client
 * does one full handshake. Tickets live 300 s (Node's sessionTimeout), so that touches only the
 * last minutes before each rotation. What it buys: a key read from memory decrypts (TLS 1.2) or
 * resumes (TLS 1.3) at most the last hour's sessions, not every one since start. A reload
 * (setSecureContext) also draws a new key.
 */
export function rotateTicketKeys(server: tls.Server, everyMs = TICKET_KEY_ROTATION_MS): () => void {
  const timer = setInterval(() => server.setTicketKeys(randomBytes(48)), everyMs)
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * HTTP/2 rapid reset (CVE-2023-44487): a client opens streams and cancels them at once, so the
 * server starts a request for each while the client's concurrent-stream count stays near zero.
 * nghttp2 (inside Node since 20.8.1) counts incoming RST_STREAM frames (1000, then 33/s) and sends
 * GOAWAY(INTERNAL_ERROR), but Node 20 then leaves the connection open and has already handed
 * about 1,400 streams to the proxy. This budget acts first: a session whose client cancels more
 * than max(100, 2 x max_concurrent_streams) streams at once, or more than 32 per second
 * sustained, gets GOAWAY(ENHANCE_YOUR_CALM) and is closed. A browser cancelling requests when
 * the user navigates away stays far below.
 */
/** How long a connection refused for rapid reset stays open after its GOAWAY (see guardResets). */
const GOAWAY_LINGER_MS = 500

function guardResets(session: http2.ServerHttp2Session, maxConcurrentStreams: number, log: Logger): void {
  const burst = Math.max(RESET_BURST_MIN, 2 * maxConcurrentStreams)
  let tokens = burst
  let last = performance.now()
  let refused = false
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    // 'aborted': the client reset the stream before our response ended.
    stream.once('aborted', () => {
      const now = performance.now()
      tokens = Math.min(burst, tokens + ((now - last) / 1000) * RESET_RATE_PER_SEC)
      last = now
      tokens -= 1
      if (tokens >= 0 || session.destroyed || refused) return
      refused = true
      logFailure(
        log,
        'http2_rapid_reset',
        { client: session.socket?.remoteAddress },
        'HTTP/2 client cancels streams faster than allowed; connection closed (ENHANCE_YOUR_CALM)',
      )
      // GOAWAY first (no new stream is accepted after it), the socket closed a moment later:
      // closed at once while the client is still sending, the kernel answers with a TCP reset
      // and the client may never read why. With an error: destroy(undefined, code) would send
      // NO_ERROR (undefined takes the default).
      const code = http2.constants.NGHTTP2_ENHANCE_YOUR_CALM
      session.goaway(code)
      setTimeout(() => session.destroy(new Error('HTTP/2 rapid reset'), code), GOAWAY_LINGER_MS).unref()
    })
  })
}

function http2Settings(s: Snapshot): http2.Settings {
  return {
    maxConcurrentStreams: s.limits.http2.maxConcurrentStreams,
    maxHeaderListSize: s.limits.http2.maxHeaderListBytes,
  }
}

export function createListener(
  snapshot: Snapshot,
  handler: RequestHandler,
  onUpgrade: UpgradeHandler,
  log: Logger,
  countError: (type: string) => void = () => undefined,
  issued: () => IssuedCertificates | undefined = () => undefined,
): ListenerHandle {
  const t = snapshot.tls
  if (!t && snapshot.h2c) return createH2cListener(snapshot, handler, onUpgrade, log, countError)
  if (!t) {
    const own = ownServer(handler, onUpgrade, log, countError)
    if (own !== undefined) {
      limitConnections(own.server, snapshot.limits.maxConnections, log, countError)
      return {
        server: own.server,
        closeIdle: () => own.closeIdle(),
        closeAll: () => own.closeAll(),
        update: (s) => {
          own.server.maxConnections = s.limits.maxConnections
        },
        http1Server: 'own',
      }
    }
    const server = http.createServer(OPTIONS, handler)
    wire(server, onUpgrade, log, countError)
    limitConnections(server, snapshot.limits.maxConnections, log, countError)
    return {
      server,
      http1Server: 'node',
      closeIdle: () => server.closeIdleConnections(),
      closeAll: () => server.closeAllConnections(),
      update: (s) => {
        server.maxConnections = s.limits.maxConnections
      },
    }
  }
  const store = new CertificateStore(issued)
  store.update(t)
  const stapler = new OcspStapler(log)
  stapler.update(t.certificates)
  // With ACME only there is no static certificate: a client that sends no name is refused.
  const first = t.certificates[0]
  const alpnChallenge = t.acme?.challenge === 'tls-alpn-01'
  const secure = {
    cert: first?.cert,
    key: first?.key,
    ...secureContextOptions(t),
    SNICallback(this: tls.TLSSocket, name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) {
      store.pick(this, name, cb)
    },
  }
  let limits = snapshot.limits
  const update = (s: Snapshot) => {
    server.maxConnections = s.limits.maxConnections
    limits = s.limits
    if (!s.tls) return
    store.update(s.tls)
    stapler.update(s.tls.certificates)
    const d = s.tls.certificates[0]
    ;(server as tls.Server).setSecureContext({ cert: d?.cert, key: d?.key, ...secureContextOptions(s.tls) })
    h2server?.updateSettings(http2Settings(s))
  }
  let server: net.Server
  let h2server: http2.Http2SecureServer | undefined
  const ocsp = (certificate: Buffer, _issuer: Buffer, cb: (err: Error | null, resp: Buffer) => void) =>
    (cb as (err: null, resp: Buffer | null) => void)(null, stapler.staple(certificate) ?? null)
  if (t.http2) {
    const h2 = http2.createSecureServer(
      {
        ...secure,
        allowHTTP1: true,
        settings: http2Settings(snapshot),
        // Node's defaults, stated: a session is destroyed after this many malformed frames, or
        // after this many streams refused for exceeding max_concurrent_streams.
        maxSessionInvalidFrames: 1000,
        maxSessionRejectedStreams: 100,
      },
      handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    )
    const sessions = new Set<http2.ServerHttp2Session>()
    const sockets = new Set<Socket>()
    h2.on('session', (s: http2.ServerHttp2Session) => {
      sessions.add(s)
      s.once('close', () => sessions.delete(s))
      guardResets(s, limits.http2.maxConcurrentStreams, log)
    })
    h2.on('secureConnection', (s: Socket) => {
      sockets.add(s)
      s.once('close', () => sockets.delete(s))
    })
    h2.on('OCSPRequest', ocsp)
    // http2 sets its own ALPN list (h2, http/1.1); the validation protocol is added after it.
    if (alpnChallenge) offerAcmeAlpn(h2 as unknown as tls.Server, ['h2', 'http/1.1'])
    const stopTickets = rotateTicketKeys(h2 as unknown as tls.Server)
    wire(h2 as unknown as http.Server, onUpgrade, log, countError, handler)
    server = h2
    h2server = h2
    limitConnections(server, snapshot.limits.maxConnections, log, countError)
    return {
      server,
      // GOAWAY: clients finish their streams and open no new ones. HTTP/1.1 connections on this
      // server close after their response (Connection: close while draining).
      closeIdle: () => {
        for (const s of sessions) s.close()
      },
      closeAll: () => {
        stopTickets()
        stapler.close()
        for (const s of sessions) s.destroy()
        for (const s of sockets) s.destroy()
      },
      update,
    }
  }
  // HTTP/1.1 only over TLS: the own server side on the TLS sockets, unless LOCCI_HTTP1_SERVER=node.
  const own = ownServer(handler, onUpgrade, log, countError)
  let h1: tls.Server
  if (own !== undefined) {
    h1 = tls.createServer({ ...secure, ALPNProtocols: ['http/1.1'], noDelay: true }, (s) => own.accept(s))
  } else {
    const nodeH1 = https.createServer({ ...OPTIONS, ...secure }, handler)
    wire(nodeH1, onUpgrade, log, countError)
    h1 = nodeH1
  }
  h1.on('OCSPRequest', ocsp)
  if (alpnChallenge) offerAcmeAlpn(h1, ['http/1.1'])
  const stopTickets = rotateTicketKeys(h1)
  server = h1
  limitConnections(server, snapshot.limits.maxConnections, log, countError)
  return {
    server,
    closeIdle: () => (own ? own.closeIdle() : (h1 as https.Server).closeIdleConnections()),
    closeAll: () => {
      stopTickets()
      stapler.close()
      if (own) own.closeAll()
      else (h1 as https.Server).closeAllConnections()
    },
    update,
    http1Server: own ? 'own' : 'node',
  }
}

/** Which HTTP/1.1 server side plain listeners use (LOCCI_HTTP1_SERVER): the own one unless `node`. */
export const HTTP1_SERVERS = ['own', 'node'] as const

/** LOCCI_HTTP1_SERVER's value checked: a usage problem for the command line, or undefined. */
export function http1ServerProblem(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || (HTTP1_SERVERS as readonly string[]).includes(value))
    return undefined
  return `LOCCI_HTTP1_SERVER: unknown server side "${value}"; use ${HTTP1_SERVERS.join(' or ')}`
}

/**
 * The own HTTP/1.1 server side (h1/server.ts) for a plain listener, with node:http's limits and
 * timeouts (OPTIONS); undefined when LOCCI_HTTP1_SERVER=node or Node's llhttp binding is not
 * usable here (then node:http serves, as it did before).
 */
function ownServer(
  handler: RequestHandler,
  onUpgrade: UpgradeHandler,
  log: Logger,
  countError: (type: string) => void,
): H1Server | undefined {
  if (process.env.LOCCI_HTTP1_SERVER === 'node') return undefined
  return createH1Server(
    {
      maxHeaderSize: OPTIONS.maxHeaderSize!,
      headersTimeoutMs: OPTIONS.headersTimeout!,
      requestTimeoutMs: OPTIONS.requestTimeout!,
      keepAliveTimeoutMs: OPTIONS.keepAliveTimeout!,
    },
    {
      request: handler as unknown as H1Handlers['request'],
      upgrade: onUpgrade as unknown as H1Handlers['upgrade'],
      connect: (_req, socket) => refuseConnect(socket),
      clientError: (err, socket) => onClientError(err, socket, log, countError),
      internalError: (err) =>
        log.error({ err: (err as Error)?.stack ?? String(err) }, 'internal error in the HTTP/1.1 server'),
    },
  )
}

/** How long a new clear-text connection may take to send its first bytes (Node's headersTimeout). */
const FIRST_BYTES_MS = OPTIONS.headersTimeout!

/**
 * server.h2c: clear-text HTTP/2 with prior knowledge (RFC 9113 section 3.3: gRPC without TLS)
 * beside HTTP/1.1 on one port. The first bytes decide: the HTTP/2 preface starts "PRI", which no
 * HTTP/1.1 request does (RFC 9113 reserves that method for it). HTTP/1.1 connections go to Node's
 * HTTP/1.1 server with those bytes put back (it reads them again); Node's HTTP/2 session reads
 * the socket's handle directly and never sees put-back bytes, so an HTTP/2 connection is handed
 * over as a stream that replays them (Node wraps it in its JS stream socket, a copy per chunk:
 * the price of sharing the port, paid by h2c connections only).
 */
function createH2cListener(
  snapshot: Snapshot,
  handler: RequestHandler,
  onUpgrade: UpgradeHandler,
  log: Logger,
  countError: (type: string) => void,
): ListenerHandle {
  const own = ownServer(handler, onUpgrade, log, countError)
  const h1 = own === undefined ? http.createServer(OPTIONS, handler) : undefined
  if (h1 !== undefined) wire(h1, onUpgrade, log, countError)
  const h2 = http2.createServer(
    { settings: http2Settings(snapshot), maxSessionInvalidFrames: 1000, maxSessionRejectedStreams: 100 },
    handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  )
  let limits = snapshot.limits
  const sessions = new Set<http2.ServerHttp2Session>()
  const sockets = new Set<Socket>()
  let arriving: Socket | undefined
  h2.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s)
    s.once('close', () => sessions.delete(s))
    // The JS stream socket has no address of its own; the pipeline reads the client's from it.
    // `_peername` is where net.Socket caches getpeername(), which a JS stream cannot answer.
    const from = arriving
    if (from !== undefined && s.socket !== undefined) {
      ;(s.socket as unknown as { _peername: object })._peername = {
        address: from.remoteAddress,
        port: from.remotePort,
        family: from.remoteFamily,
      }
    }
    guardResets(s, limits.http2.maxConcurrentStreams, log)
  })
  // Streams the HTTP/2 server refuses before a handler (a malformed HEADERS frame...).
  h2.on('sessionError', () => undefined)
  // No Nagle: HTTP/2 writes small frames (a gRPC answer is a few), and Nagle holding them for
  // the peer's delayed ACK made a unary call wait ~40 ms (Node's HTTP servers set it too).
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.setTimeout(FIRST_BYTES_MS, () => socket.destroy())
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0)
      socket.pause()
      socket.removeAllListeners('error')
      if (first.length >= 3 && first[0] === 0x50 && first[1] === 0x52 && first[2] === 0x49) {
        arriving = socket
        h2.emit('connection', replaying(socket, first))
        arriving = undefined
      } else {
        socket.unshift(first)
        if (own !== undefined) own.accept(socket)
        else h1!.emit('connection', socket)
        socket.resume()
      }
    })
  })
  limitConnections(server, snapshot.limits.maxConnections, log, countError)
  return {
    server,
    closeIdle: () => {
      if (own !== undefined) own.closeIdle()
      else h1!.closeIdleConnections()
      for (const s of sessions) s.close()
    },
    closeAll: () => {
      if (own !== undefined) own.closeAll()
      else h1!.closeAllConnections()
      for (const s of sessions) s.destroy()
      for (const s of sockets) s.destroy()
    },
    update: (s) => {
      server.maxConnections = s.limits.maxConnections
      limits = s.limits
      h2.updateSettings(http2Settings(s))
    },
    http1Server: own !== undefined ? 'own' : 'node',
  }
}

/** `socket` as a stream that gives `first` again before the rest, with backpressure. */
function replaying(socket: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read: () => {
      socket.resume()
    },
    write: (chunk: Buffer, _enc, cb) => {
      socket.write(chunk, cb)
    },
    final: (cb) => {
      socket.end(cb)
    },
    destroy: (err, cb) => {
      socket.destroy()
      cb(err)
    },
  })
  d.push(first)
  socket.on('data', (chunk: Buffer) => {
    if (!d.push(chunk)) socket.pause()
  })
  socket.once('end', () => d.push(null))
  socket.on('error', (err) => d.destroy(err))
  socket.once('close', () => d.destroy())
  return d
}

/**
 * Offers ALPN acme-tls/1 beside `protocols` (TLS-ALPN-01), and closes a validation connection
 * once its handshake is done: it carries no HTTP (RFC 8737 section 3).
 */
function offerAcmeAlpn(server: tls.Server, protocols: string[]): void {
  const wire = [...protocols, ACME_TLS_ALPN].map((p) =>
    Buffer.concat([Buffer.from([p.length]), Buffer.from(p)]),
  )
  ;(server as unknown as { ALPNProtocols: Buffer }).ALPNProtocols = Buffer.concat(wire)
  server.prependListener('secureConnection', (socket: tls.TLSSocket) => {
    if (socket.alpnProtocol === ACME_TLS_ALPN) socket.destroy()
  })
}

function wire(
  server: http.Server,
  onUpgrade: UpgradeHandler,
  log: Logger,
  countError: (type: string) => void,
  h2Handler?: RequestHandler,
): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) =>
    onClientError(err, socket, log, countError),
  )
  server.on('upgrade', onUpgrade)
  // CONNECT (forward-proxy tunnelling) is not something a reverse proxy offers. Over HTTP/2 the
  // event carries a response object, not a socket: the pipeline answers it (405).
  server.on('connect', (req: http.IncomingMessage, socket: Socket) => {
    if (h2Handler && req.httpVersionMajor === 2) {
      h2Handler(req, socket as unknown as http.ServerResponse)
      return
    }
    refuseConnect(socket)
  })
}

/** CONNECT (forward-proxy tunnelling) is not something a reverse proxy offers: 405. */
function refuseConnect(socket: Socket): void {
  // Node hands the socket over without its error listener: a client that resets it (before or
  // while the 405 is written) would otherwise be an uncaught exception.
  socket.on('error', () => socket.destroy())
  writeRaw(socket, 405, replyBody('method_not_allowed'), ['allow', ROUTABLE_METHODS])
}

/**
 * server.redirect_http_bind: every request gets a 308 to the same URL over HTTPS. The Location's
 * host is the client's Host only when a certificate of the listener names it; otherwise
 * `server.tls.redirect_host`; otherwise 400. A redirect built from any Host would send users to
 * whatever site an attacker names (cache poisoning, phishing through a trusted domain).
 * With ACME, `/.well-known/acme-challenge/TOKEN` answers the HTTP-01 challenge instead (404 for
 * a token not being validated now, or not a token at all).
 */
export function createRedirectListener(
  httpsPort: () => number,
  tls: () => Snapshot['tls'],
  log: Logger,
  access: AccessLog,
  acme: () => HttpChallenges | undefined = () => undefined,
): http.Server {
  const server = http.createServer(OPTIONS, (req, res) => {
    const start = performance.now()
    // Logged like any request (no route, no upstream, no request ID: nothing goes upstream).
    res.once('finish', () => {
      const url = req.url ?? ''
      const q = url.indexOf('?')
      const facts = {
        method: req.method ?? '',
        path: (q < 0 ? url : url.slice(0, q)).slice(0, 2048),
        route: undefined,
        requestId: '-',
        client: clientIp(req.socket.remoteAddress),
        start,
        req,
        host: req.headers.host,
      }
      const bytes = Number(res.getHeader('content-length') ?? 0)
      access.request(facts, undefined, undefined, res.statusCode, undefined, {
        bytesReceived: 0,
        bytesSent: req.method === 'HEAD' ? 0 : bytes,
        upstreamMs: -1,
        attempts: 0,
      })
    })
    try {
      const t = tls()
      const challenges = acme()
      if (challenges && req.url?.startsWith(ACME_CHALLENGE_PATH)) {
        answerChallenge(challenges, req.url.slice(ACME_CHALLENGE_PATH.length), res)
        return
      }
      const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '')
      const named =
        t?.certificates.some((c) => c.names.some((n) => n === host || nameMatches(n, host))) ||
        challenges?.covers(host)
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

/** What the redirect listener asks the ACME manager. */
export interface HttpChallenges {
  /** The key authorization for a token being validated now (RFC 8555 section 8.3); maybe looked up elsewhere. */
  httpChallenge(token: string): string | undefined | Promise<string | undefined>
  /** Is `host` one of the names ACME serves (a redirect target like a certificate name)? */
  covers(host: string): boolean
}

const ACME_CHALLENGE_PATH = '/.well-known/acme-challenge/'
/** A token is base64url (RFC 8555 section 8.3); anything else (a query, a dot segment) is not one. */
const ACME_TOKEN = /^[A-Za-z0-9_-]{1,256}$/

function answerChallenge(challenges: HttpChallenges, token: string, res: http.ServerResponse): void {
  const answer = ACME_TOKEN.test(token) ? challenges.httpChallenge(token) : undefined
  if (answer instanceof Promise) {
    answer.then(
      (a) => writeChallenge(res, a),
      () => writeChallenge(res, undefined),
    )
  } else writeChallenge(res, answer)
}

function writeChallenge(res: http.ServerResponse, answer: string | undefined): void {
  if (res.destroyed) return
  const body = answer ?? '404 no such challenge\n'
  res.writeHead(answer ? 200 : 404, {
    'content-type': answer ? 'application/octet-stream' : 'text/plain',
    'content-length': Buffer.byteLength(body),
  })
  res.end(body)
}

/** What Node's parser refused (a malformed or oversized head, a slow one): answered and counted. */
function onClientError(
  err: { code?: string; message: string },
  socket: Socket,
  log: Logger,
  countError?: (type: string) => void,
): void {
  const kind = errorKind(err.code, 'client')
  if (kind === 'client_aborted' || !socket.writable) {
    socket.destroy()
    return
  }
  const { status, label } = ERRORS[kind]
  countError?.(label)
  logFailure(
    log,
    kind,
    { status, reason: err.code ?? err.message, client: socket.remoteAddress },
    'bad request',
  )
  writeRaw(socket, status, replyBody(kind))
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

/**
 * server.max_connections: Node closes a connection that arrives when this many are open, before
 * any handler sees it. Each refusal is counted (`connection_limit`) and logged at most every 10 s.
 */
export function limitConnections(
  server: net.Server,
  max: number,
  log: Logger,
  countError: (type: string) => void,
): void {
  server.maxConnections = max
  let dropped = 0
  let lastLog = 0
  server.on('drop', () => {
    dropped++
    countError(ERRORS.connection_limit.label)
    const now = Date.now()
    if (now - lastLog < 10_000) return
    lastLog = now
    logFailure(
      log,
      'connection_limit',
      { max_connections: server.maxConnections, dropped },
      'connection refused: max_connections reached',
    )
  })
}
