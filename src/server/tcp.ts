// load_balancer.protocol: tcp. Raw TCP pass-through: each client connection is joined to a
// connection to one server of the group (same strategies, health checks and passive health as
// HTTP), trying the next candidate when a connect fails. Bytes pass untouched both ways, TLS
// included; half-closes are passed on. One log line per connection when it ends.
// Bounded: a connection with no byte either way for `server.tcp_idle_timeout_secs` is closed on
// both sides (error_type idle_timeout), and at most `server.max_connections` client connections
// are open at once in this process; more are closed as they arrive.

import net from 'node:net'
import { ERRORS, type ErrorKind, errorKind, logFailure, TIMED_OUT } from '../observe/errors'
import { InFlight } from '../observe/in-flight'
import type { Logger } from '../observe/logger'
import { clientIp } from '../proxy/headers'
import type { RuntimeStore } from '../proxy/runtime'
import { admittingGroup } from '../upstream/circuit-breaker'
import type { UpstreamGroup } from '../upstream/group'
import type { Peer } from '../upstream/peer'
import { mayRetry, retryCondition } from '../upstream/retry'
import { limitConnections } from './listener'

export class TcpProxy {
  readonly server: net.Server
  readonly #store: RuntimeStore
  readonly #log: Logger
  readonly #sockets = new Set<net.Socket>()
  readonly #inFlight = new InFlight()

  readonly #countError: (type: string) => void

  constructor(store: RuntimeStore, log: Logger, countError: (type: string) => void = () => undefined) {
    this.#store = store
    this.#log = log
    this.#countError = countError
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => this.#accept(c))
    limitConnections(this.server, store.current().snapshot.limits.maxConnections, log, countError)
  }

  get inFlight(): number {
    return this.#inFlight.count
  }

  idle(): Promise<void> {
    return this.#inFlight.idle()
  }

  /** Ends every connection still open (after the shutdown grace period). */
  destroyAll(): void {
    for (const s of this.#sockets) s.destroy()
  }

  #accept(client: net.Socket): void {
    const start = performance.now()
    const { snapshot, groups } = this.#store.current()
    // Only load_balancer mode with protocol: tcp makes a TcpProxy (instance.ts).
    const named = groups.get((snapshot.mode as { upstream: string }).upstream)!
    // Its circuit breaker may refuse the connection or send it to the fallback group.
    const admitted = admittingGroup(named, groups)
    const group = admitted ?? named
    const ip = clientIp(client.remoteAddress)
    // A reload's max_connections applies from the next connection on.
    this.server.maxConnections = snapshot.limits.maxConnections
    this.#inFlight.enter()
    this.#sockets.add(client)
    client.pause()
    const now = Date.now()
    let candidates: Peer[] = []
    if (admitted) {
      group.budget.request(now)
      candidates = group.candidates({ clientIp: ip, path: '', rawHeaders: [] }, now)
    }
    const conn = new TcpConnection(
      client,
      ip,
      group,
      candidates,
      snapshot.pool.connectTimeoutMs,
      snapshot.limits.tcpIdleTimeoutMs,
      this.#log,
      admitted ? 'no_healthy_peer' : 'circuit_open',
      (info) => {
        this.#sockets.delete(client)
        if (info.error_type) this.#countError(info.error_type)
        this.#log.info(
          { ...info, duration_ms: Math.round((performance.now() - start) * 1000) / 1000 },
          'connection',
        )
        this.#inFlight.leave()
      },
    )
    conn.start()
  }
}

interface ConnectionRecord {
  client: string
  upstream: string
  server: string | undefined
  bytes_in: number
  bytes_out: number
  error_type?: string
}

class TcpConnection {
  #index = 0
  #peer: Peer | undefined
  #upstream: net.Socket | undefined
  #done = false
  #kind: ErrorKind | undefined

  constructor(
    readonly client: net.Socket,
    readonly ip: string,
    readonly group: UpstreamGroup,
    readonly candidates: Peer[],
    readonly connectTimeoutMs: number,
    idleTimeoutMs: number,
    readonly log: Logger,
    /** What an empty candidate list means: no server available, or the breaker refused. */
    readonly refusal: 'no_healthy_peer' | 'circuit_open',
    readonly onClose: (r: ConnectionRecord) => void,
  ) {
    // The record is written when the client side is fully closed. A clean end on either side
    // travels through pipe() (end() after the last byte); only errors tear both down at once.
    client.on('error', () => this.#upstream?.destroy())
    client.on('close', () => this.#close())
    // Every byte either way passes through the client socket (read from it, or written to it),
    // so its inactivity timer is the connection's; it runs from accept, so a client that never
    // sends anything while the upstream connect is under way is covered too.
    client.setTimeout(idleTimeoutMs, () => {
      this.#kind ??= 'idle_timeout'
      client.destroy()
    })
  }

  start(): void {
    if (this.candidates.length === 0) {
      this.#kind = this.refusal
      logFailure(this.log, this.refusal, { upstream: this.group.name, client: this.ip }, 'upstream error')
      this.client.destroy()
      return
    }
    this.#connect()
  }

  #connect(): void {
    const peer = this.candidates[this.#index]!
    this.#peer = peer
    peer.inFlight++
    const up = net.connect({ host: peer.host, port: peer.port, allowHalfOpen: true, noDelay: true })
    this.#upstream = up
    const timer = setTimeout(
      () => up.destroy(Object.assign(new Error('connect timeout'), { code: TIMED_OUT })),
      this.connectTimeoutMs,
    )
    let connected = false
    up.once('connect', () => {
      connected = true
      clearTimeout(timer)
      this.group.reportSuccess(peer)
      if (this.#done) {
        up.destroy()
        return
      }
      up.on('error', (err: NodeJS.ErrnoException) => {
        this.#kind ??= errorKind(err.code, 'exchange')
        this.client.destroy()
      })
      this.client.pipe(up)
      up.pipe(this.client)
      this.client.resume()
    })
    up.once('error', (err: NodeJS.ErrnoException) => {
      if (connected) return // after connect: handled by the listener added on connect
      clearTimeout(timer)
      if (this.#done) return // the client left while we were connecting; #close did the rest
      this.#connectFailed(peer, err)
    })
  }

  #connectFailed(peer: Peer, err: NodeJS.ErrnoException): void {
    peer.inFlight--
    const kind = errorKind(err.code, 'connect')
    this.group.reportFailure(peer, kind)
    const condition = retryCondition(kind)
    const retry =
      !this.#done &&
      condition !== undefined &&
      mayRetry({
        policy: this.group.retry,
        condition,
        attempt: this.#index,
        candidates: this.candidates.length,
        method: undefined,
        hasBody: false,
        responseStarted: false,
        budget: this.group.budget,
      })
    logFailure(
      this.log,
      kind,
      {
        upstream: this.group.name,
        server: peer.address,
        client: this.ip,
        err: err.code ?? err.message,
        retry,
      },
      'upstream error',
    )
    if (retry) {
      this.#index++
      this.#connect()
      return
    }
    this.#peer = undefined
    this.#kind = kind
    this.client.destroy()
  }

  #close(): void {
    if (this.#done) return
    this.#done = true
    this.#upstream?.destroy()
    if (this.#peer) this.#peer.inFlight--
    this.onClose({
      client: this.ip,
      upstream: this.group.name,
      server: this.#peer?.address,
      bytes_in: this.client.bytesRead,
      bytes_out: this.client.bytesWritten,
      ...(this.#kind ? { error_type: ERRORS[this.#kind].label } : {}),
    })
  }
}
