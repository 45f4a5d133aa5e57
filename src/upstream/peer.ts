// A peer is one server of an upstream group: its connection pool and its live state (health,
// requests in flight). Peers outlive snapshots: a reload keeps the Peer of a server that stays.

import type { ConnectionOptions } from 'node:tls'
import type { PeerSpec, PoolSpec } from '../config/snapshot'
import {
  createUpstreamPool,
  defaultUpstreamClient,
  HTTP1,
  type PeerProtocol,
  type UpstreamClientKind,
  type UpstreamPool,
} from './client'

export interface PeerTls {
  readonly enabled: boolean
  readonly servername: string | undefined
  readonly ca?: string | undefined
  readonly cert?: string | undefined
  readonly key?: string | undefined
  readonly skipVerify?: boolean
  /** Changes when the CA or client certificate files change. */
  readonly fingerprint?: string
}

export class Peer {
  readonly address: string
  readonly host: string
  readonly port: number
  readonly group: string
  readonly pool: UpstreamPool
  readonly tls: PeerTls
  /** Key that decides whether a reload can keep this peer (same address, TLS and pool settings). */
  readonly key: string
  readonly weight: number
  /** SRV priority rank: tried only when no peer of a lower rank is available (PeerSpec.rank). */
  readonly rank: number
  /** Active health: false after the health checker's verdict, until it recovers. */
  healthy = true
  /** Requests (or TCP connections) in flight to this peer. */
  inFlight = 0
  /** Passive health: ejected until this time (ms since epoch); 0 when not ejected. */
  ejectedUntil = 0
  /** Consecutive connect failures / 5xx answers since the last success. */
  consecutiveFailures = 0
  /** How many times this peer has been ejected recently (the cool-down grows with it). */
  ejections = 0
  /** Smooth weighted round robin's running weight (see selectors/weighted.ts). */
  currentWeight = 0

  constructor(
    group: string,
    spec: PeerSpec,
    tls: PeerTls,
    pool: PoolSpec,
    client: UpstreamClientKind = defaultUpstreamClient(),
    http: PeerProtocol = HTTP1,
  ) {
    this.group = group
    this.address = spec.address
    this.host = spec.host
    this.port = spec.port
    this.key = peerKey(group, spec, tls, pool, http)
    this.weight = spec.weight
    this.rank = spec.rank ?? 0
    this.tls = tls
    this.pool = createUpstreamPool(client, spec, tls, pool, http)
  }

  /** In rotation: healthy by the active checks and not ejected by passive health. */
  available(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now
  }

  /** Closes the pool once in-flight requests are done. */
  async close(): Promise<void> {
    await this.pool.close().catch(() => undefined)
  }

  destroy(): void {
    this.pool.destroy().catch(() => undefined)
  }
}

/**
 * The TLS options of a connection to a server at `host`: SNI (`sni`, else the host), the CA and
 * client certificate, verification. The one place they are built, for undici's pool
 * (connect), WebSocket handshakes (https.request) and health probes. Undefined without TLS.
 */
export function tlsConnectOptions(tls: PeerTls, host: string): ConnectionOptions | undefined {
  if (!tls.enabled) return undefined
  const o: ConnectionOptions = { servername: tls.servername ?? host, rejectUnauthorized: !tls.skipVerify }
  if (tls.ca !== undefined) o.ca = tls.ca
  if (tls.cert !== undefined) {
    o.cert = tls.cert
    o.key = tls.key
  }
  return o
}

export function peerKey(
  group: string,
  spec: PeerSpec,
  tls: PeerTls,
  pool: PoolSpec,
  http: PeerProtocol = HTTP1,
): string {
  return [
    http.protocol,
    http.http2.maxSessions,
    http.http2.pingIntervalMs,
    group,
    spec.address,
    spec.weight,
    spec.rank ?? 0,
    tls.enabled,
    tls.servername ?? '',
    tls.skipVerify ?? false,
    tls.fingerprint ?? '',
    pool.maxConnections,
    pool.idleTimeoutMs,
    pool.connectTimeoutMs,
  ].join('|')
}
