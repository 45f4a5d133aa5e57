// Which HTTP/1.1 client a peer's pool is: the built-in one (h1/pool.ts, on Node's llhttp
// binding) when its start-up self-test passed, else undici's Pool. LOCCI_UPSTREAM_CLIENT=h1|undici
// forces one; forcing h1 where the binding cannot be used is refused at start, never silently
// replaced. Both pools take the same dispatch options and the same (undici legacy) handler, so
// proxy/forward.ts's Exchange is one handler for either. Only peers' pools use this: WebSocket
// upgrades, health probes, forward_auth and JWKS keep their own clients.

import type { Readable } from 'node:stream'
import type { Http2PoolSpec, PeerSpec, PoolSpec, UpstreamProtocol } from '../config/snapshot'
import { h1Available, h1Problem } from './h1/binding'
import { type H1Handler, H1Pool } from './h1/pool'
import { H2Pool } from './h2/pool'
import { type PeerTls, tlsConnectOptions } from './peer'

export const UPSTREAM_CLIENTS = ['h1', 'undici'] as const
export type UpstreamClientKind = (typeof UPSTREAM_CLIENTS)[number]

/** The dispatch options Exchange sends: the subset both pools take alike. */
export interface UpstreamRequest {
  path: string
  method: string
  /** Flat [name, value, ...] */
  headers: string[]
  /** Fields of `headers` known valid where still equal (the built-in client's; undici checks all). */
  checkedHeaders?: readonly string[]
  body: Readable | null
  /** 0: none. */
  headersTimeout: number
  /** Longest silence between response body chunks; 0: none. */
  bodyTimeout: number
}

/**
 * The handler Exchange is: undici's legacy dispatch handler. onComplete's trailers are left out
 * (H1Pool drops them; undici's types and runtime disagree on their type).
 */
export type UpstreamHandler = Omit<H1Handler, 'onComplete'> & { onComplete?(): void }

/** What Peer and Exchange use of a pool; undici's Pool and H1Pool both fit. */
export interface UpstreamPool {
  /** Never throws for a refused request: the handler's onError hears it and this returns false. */
  dispatch(opts: UpstreamRequest, handler: UpstreamHandler): boolean
  /** Refuses new requests, lets running ones finish, then closes the sockets. */
  close(): Promise<void>
  /** Fails running and queued requests and closes the sockets. */
  destroy(): Promise<void>
  readonly closed: boolean
}

export interface UpstreamClient {
  kind: UpstreamClientKind
  /** Why the default (h1) could not be used and undici was taken instead; logged at start. */
  fallback?: string
}

/** LOCCI_UPSTREAM_CLIENT's value checked: a usage problem for the command line, or undefined. */
export function upstreamClientProblem(value: string | undefined): string | undefined {
  if (value === undefined || (UPSTREAM_CLIENTS as readonly string[]).includes(value)) return undefined
  return `LOCCI_UPSTREAM_CLIENT: unknown client "${value}"; use ${UPSTREAM_CLIENTS.join(' or ')}`
}

/**
 * The client for `asked` (LOCCI_UPSTREAM_CLIENT, checked by upstreamClientProblem; undefined:
 * the default). The default is the built-in client: 2-core box, proxy pinned to one core, wrk
 * -c50, load_balancer, 2026-11-30, three interleaved rounds: 77-83 µs CPU per 2-byte request
 * against 82-86 on undici, 85-96 µs per 16 KiB against 86-106, 117 MiB peak RSS against 147
 * (p99 on 2-byte bodies 10-14 ms against 8-9 ms). undici is the fallback where Node's parser
 * binding is missing or changed shape (with the reason, for the start-up log). Asking for h1
 * where it cannot run is refused.
 */
export function selectUpstreamClient(asked: UpstreamClientKind | undefined): UpstreamClient {
  if (asked === 'undici') return { kind: 'undici' }
  if (h1Available()) return { kind: 'h1' }
  if (asked === undefined) {
    return {
      kind: 'undici',
      fallback: `the built-in HTTP/1.1 client cannot run on this Node.js ${process.version}: ${h1Problem() ?? 'unknown'}`,
    }
  }
  throw new Error(
    `LOCCI_UPSTREAM_CLIENT=h1, but the built-in HTTP/1.1 client cannot run on this Node.js ${process.version}: ${h1Problem() ?? 'unknown'}; use LOCCI_UPSTREAM_CLIENT=undici or leave it unset`,
  )
}

/** The default when no choice was passed down (tests, tools): h1 when it can run. */
export function defaultUpstreamClient(): UpstreamClientKind {
  return h1Available() ? 'h1' : 'undici'
}

/** The protocol a group speaks to its servers (decided at config load, never per request). */
export interface PeerProtocol {
  readonly protocol: UpstreamProtocol
  readonly http2: Http2PoolSpec
}

export const HTTP1: PeerProtocol = { protocol: 'http1', http2: { maxSessions: 1, pingIntervalMs: 30_000 } }

/**
 * A pool of connections to one server: HTTP/2 sessions (h2/pool.ts) for h2c, h2 and auto, else
 * keep-alive HTTP/1.1 connections of the chosen client kind.
 */
export function createUpstreamPool(
  kind: UpstreamClientKind,
  spec: PeerSpec,
  tls: PeerTls,
  pool: PoolSpec,
  http: PeerProtocol = HTTP1,
): UpstreamPool {
  if (http.protocol !== 'http1') {
    return new H2Pool({
      host: spec.host,
      port: spec.port,
      tls: http.protocol === 'h2c' ? undefined : (tlsConnectOptions(tls, spec.host) ?? {}),
      auto: http.protocol === 'auto',
      maxSessions: http.http2.maxSessions,
      pingIntervalMs: http.http2.pingIntervalMs,
      idleTimeoutMs: pool.idleTimeoutMs,
      connectTimeoutMs: pool.connectTimeoutMs,
      http1: () => createHttp1Pool(kind, spec, tls, pool),
    })
  }
  return createHttp1Pool(kind, spec, tls, pool)
}

function createHttp1Pool(
  kind: UpstreamClientKind,
  spec: PeerSpec,
  tls: PeerTls,
  pool: PoolSpec,
): UpstreamPool {
  if (kind === 'h1') {
    return new H1Pool(
      {
        host: spec.host,
        port: spec.port,
        tls: tls.enabled
          ? {
              servername: tls.servername ?? spec.host,
              ca: tls.ca,
              cert: tls.cert,
              key: tls.cert === undefined ? undefined : tls.key,
              rejectUnauthorized: !tls.skipVerify,
            }
          : undefined,
      },
      {
        connections: pool.maxConnections,
        idleTimeoutMs: pool.idleTimeoutMs,
        connectTimeoutMs: pool.connectTimeoutMs,
      },
    )
  }
  // Loaded on first use: undici costs ~20 MiB of RSS (its wasm parser) that a proxy on the
  // built-in client does not need.
  const { Pool } = require('undici') as typeof import('undici')
  return new Pool(`${tls.enabled ? 'https' : 'http'}://${spec.address}`, {
    connections: pool.maxConnections,
    pipelining: 1,
    keepAliveTimeout: pool.idleTimeoutMs,
    keepAliveMaxTimeout: pool.idleTimeoutMs,
    connect: { timeout: pool.connectTimeoutMs, ...tlsConnectOptions(tls, spec.host) },
    // Timeouts are set per request (route > server > default); these are the pool's ceilings.
    headersTimeout: 0,
    bodyTimeout: 0,
  })
}
