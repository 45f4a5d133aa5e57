// The runtime view of one config: validated, compiled (patterns, addresses, milliseconds) and
// frozen. A request reads the current snapshot once, at entry, and keeps it to the end.

import type { AccessLogSpec } from '../observe/access-log'
import type { TracingSpec } from '../observe/tracing'
import type { HostPort } from './address'
import type { DiscoveryEntry } from './discovery'
import type { RawConfig } from './schema'
import type { WeylSequence } from './sequence'
import type { CertificateMaterial, TlsPolicy, UpstreamTlsMaterial } from './tls'

export type Mode = 'load_balancer' | 'api_gateway'

/** What the proxy does with a request: one of the two modes, with what that mode needs. */
export type ModeSpec =
  | {
      readonly kind: 'load_balancer'
      /** The group every request goes to; with a split, its first group. */
      readonly upstream: string
      /** `upstreams`: a weighted split between groups; undefined with `upstream`. */
      readonly split: SplitSpec | undefined
      /** HTTP proxying, or raw TCP pass-through. */
      readonly protocol: 'http' | 'tcp'
      /** Middlewares applied to every request. */
      readonly middlewares: readonly string[]
      /** `websocket_origins` as written; undefined: derived from the cors middlewares. */
      readonly websocketOrigins: OriginPolicy
      readonly mirror: MirrorSpec | undefined
    }
  | {
      readonly kind: 'api_gateway'
      /** In the order they are tried: longest pattern first, ties in file order. */
      readonly routes: readonly RouteSpec[]
    }

/** One `api_gateway.routes` entry, validated (its pattern is compiled by routing/route-table.ts). */
export interface RouteSpec {
  readonly name: string
  readonly pattern: string
  /** Upper-case method names; null means every method. */
  readonly methods: ReadonlySet<string> | null
  /** The route's group; with a split, its first group (what explain and the API list first). */
  readonly upstream: string
  /** `upstreams`: a weighted split between groups; undefined with `upstream`. */
  readonly split: SplitSpec | undefined
  readonly stripPrefix: boolean
  /** Upstream timeout for this route; undefined falls back to server.upstream_timeout_secs. */
  readonly timeoutMs: number | undefined
  readonly middlewares: readonly string[]
  /** Overrides of the upstream group's retry policy (either part may be absent). */
  readonly retries: number | undefined
  readonly retryOn: ReadonlySet<RetryCondition> | undefined
  /** Largest request body for this route; undefined falls back to server.max_body_bytes. */
  readonly maxBodyBytes: number | undefined
  /** `websocket_origins` as written; undefined: derived from the route's cors middlewares. */
  readonly websocketOrigins: OriginPolicy
  readonly mirror: MirrorSpec | undefined
}

/** `mirror` of a route or the load balancer: copies of its requests to another group. */
export interface MirrorSpec {
  readonly upstream: string
  /** 0-100. */
  readonly percent: number
  readonly maxBodyBytes: number
  readonly maxInFlight: number
}

/** A cookie the proxy sets: its name and the attributes after the value (`; Path=/; ...`). */
export interface CookieSpec {
  readonly name: string
  readonly attributes: string
}

/** What keeps a client on the group of a split it first got. */
export type SplitSticky =
  | {
      readonly kind: 'cookie'
      readonly cookie: CookieSpec
      /** Each group's token (config/sticky.ts) to its index. */
      readonly byToken: ReadonlyMap<string, number>
      /** Each group's Set-Cookie value, by index. */
      readonly setCookie: readonly string[]
    }
  /** `name` in lower case; its value is hashed to a point of the split. */
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'client_ip' }

/**
 * `upstreams` on a route or the load balancer: groups with weights, and the running sums
 * (precomputed so a pick is one random number and a short scan, upstream/split.ts).
 */
export interface SplitSpec {
  readonly groups: readonly string[]
  readonly weights: readonly number[]
  /** cumulative[i] = weights[0] + ... + weights[i]. */
  readonly cumulative: readonly number[]
  readonly total: number
  readonly sticky: SplitSticky | undefined
  /** Where a pick lands when no sticky key decides (config/sequence.ts). */
  readonly sequence: WeylSequence
}

/**
 * A middleware declaration as the config holds it: its name, its type and its settings. The
 * settings are checked by the middleware's own schema (middleware/validate.ts) during compile.
 */
export interface MiddlewareDeclaration {
  readonly type: string
  readonly settings: Readonly<Record<string, unknown>>
}

export interface PeerSpec {
  /** `host:port` as written (normalised for IPv6); the peer's identity in logs, metrics and the API. */
  readonly address: string
  readonly host: string
  readonly port: number
  readonly weight: number
  /**
   * SRV priority as a rank (0: the lowest priority value of its answer); a peer of rank n is
   * chosen only when no peer of a lower rank is available. Absent (0) for every other server.
   */
  readonly rank?: number
}

export type Strategy = 'round_robin' | 'weighted' | 'least_connections' | 'random' | 'consistent_hash'

export type HashKey =
  | { readonly kind: 'client_ip' }
  | { readonly kind: 'path' }
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string }

export type RetryCondition = 'connect_failure' | 'timeout' | 'reset' | '5xx'

export interface RetryPolicy {
  /** Extra attempts after the first. */
  readonly retries: number
  readonly on: ReadonlySet<RetryCondition>
}

export interface PassiveHealthSpec {
  readonly consecutiveFailures: number
  readonly baseEjectionMs: number
  readonly maxEjectionMs: number
  /** Most peers ejected at once, as a share of the group (rounded down). */
  readonly maxEjectionPercent: number
}

/** `circuit_breaker` of an upstream group (upstream/circuit-breaker.ts). */
export interface CircuitBreakerSpec {
  /** Trip conditions; at least one is set (compile.ts fills in the defaults when none is). */
  readonly consecutiveFailures: number | undefined
  readonly errorRatio: number | undefined
  readonly latencyP99Ms: number | undefined
  /** Outcomes the window must hold before error_ratio or latency_p99_ms may trip. */
  readonly minRequests: number
  readonly windowSecs: number
  readonly openMs: number
  readonly halfOpenRequests: number
  /** The group that takes the requests while open; undefined: answer 503 circuit_open. */
  readonly fallback: string | undefined
}

export interface HealthCheckSpec {
  readonly intervalMs: number
  readonly timeoutMs: number
  /** HTTP GET path; undefined means a TCP connect probe (or gRPC, with grpcService). */
  readonly path: string | undefined
  /** grpc.health.v1.Health/Check of this service ('' = the whole server); undefined: not gRPC. */
  readonly grpcService: string | undefined
  readonly healthyThreshold: number
  readonly unhealthyThreshold: number
}

/** One `dns:` or `srv:` server entry of a group. */
export interface DiscoveredServer {
  /** As written (`dns:api.internal:8080`): its identity in logs, metrics and the API. */
  readonly entry: string
  readonly target: DiscoveryEntry
  /** Weight of every address a `dns:` entry resolves to (SRV records carry their own). */
  readonly weight: number
}

/** How a group's `dns:` and `srv:` servers are resolved (upstream/discovery.ts). */
export interface DiscoverySpec {
  readonly servers: readonly DiscoveredServer[]
  /** The group's `resolver`, else `server.resolver`; undefined: the system's. */
  readonly resolver: HostPort | undefined
  readonly minTtlMs: number
  readonly maxTtlMs: number
}

export interface UpstreamSpec {
  readonly name: string
  /** The servers written as host:port; `discovery` adds the ones found by DNS. */
  readonly peers: readonly PeerSpec[]
  /** Undefined when the group has no `dns:` or `srv:` server. */
  readonly discovery: DiscoverySpec | undefined
  readonly strategy: Strategy
  readonly hashKey: HashKey
  /** HTTP/1.1, or HTTP/2 (clear text, TLS, or chosen by ALPN); decides the peers' pools. */
  readonly protocol: UpstreamProtocol
  readonly http2: Http2PoolSpec
  readonly tls: boolean
  /** TLS server name and the Host sent upstream; undefined keeps the client's Host. */
  readonly sni: string | undefined
  /** With `tls: true`: CA bundle, client certificate, whether to skip verification. */
  readonly tlsOptions: (UpstreamTlsMaterial & { readonly skipVerify: boolean }) | undefined
  readonly healthCheck: HealthCheckSpec | undefined
  /** Outlier ejection; undefined when disabled. */
  readonly passiveHealth: PassiveHealthSpec | undefined
  readonly retry: RetryPolicy
  readonly retryBudget: { readonly percent: number; readonly minPerSec: number }
  /** Undefined: no breaker. */
  readonly circuitBreaker: CircuitBreakerSpec | undefined
  /** `sticky`: the server a client got is named in this cookie (upstream/sticky.ts). */
  readonly sticky: CookieSpec | undefined
}

export type UpstreamProtocol = 'http1' | 'h2c' | 'h2' | 'auto'

/** HTTP/2 sessions per server (upstream/h2/pool.ts). */
export interface Http2PoolSpec {
  readonly maxSessions: number
  readonly pingIntervalMs: number
}

export interface PoolSpec {
  readonly maxConnections: number
  readonly idleTimeoutMs: number
  readonly connectTimeoutMs: number
}

export interface AcmeSpec {
  readonly email: string
  /** The directory URL (presets resolved). */
  readonly directoryUrl: string
  /** Ordered at start, kept renewed. */
  readonly domains: readonly string[]
  /** Globs an on-demand name must match; undefined when on_demand is off. */
  readonly onDemand: readonly string[] | undefined
  readonly challenge: 'http-01' | 'tls-alpn-01'
  /** Absolute. */
  readonly storageDir: string
  readonly eab: { readonly kid: string; readonly hmacKey: string } | undefined
  /** store: redis: account key, certificates, challenge answers and order locks shared there. */
  readonly redisUrl: string | undefined
}

export interface Snapshot {
  readonly file: string
  /** The config as validated (defaults filled in); what `/api/v1/config` shows, redacted. */
  readonly raw: RawConfig
  readonly mode: ModeSpec
  readonly bind: HostPort
  readonly workers: number
  readonly tls:
    | {
        /** The first is the default; others are chosen by SNI. */
        readonly certificates: readonly CertificateMaterial[]
        /** intermediate (TLS 1.2 and 1.3) or modern (TLS 1.3 only); see config/tls.ts. */
        readonly policy: TlsPolicy
        readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
        /** TLS 1.2 suites offered, in the server's order (OpenSSL names joined by `:`). */
        readonly ciphers: string
        readonly http2: boolean
        /** Host (and port) for HTTPS redirects when the client's Host names no certificate. */
        readonly redirectHost: string | undefined
        /** server.tls.acme: certificates ordered and renewed by server/acme.ts. */
        readonly acme?: AcmeSpec | undefined
      }
    | undefined
  /** A plain listener that redirects to HTTPS. */
  readonly redirectHttp: HostPort | undefined
  /** The ops listener (/healthz, /readyz, /metrics without a key); undefined when off. */
  readonly ops: HostPort | undefined
  readonly websocketIdleMs: number
  readonly upstreamTimeoutMs: number
  readonly shutdownTimeoutMs: number
  readonly pool: PoolSpec
  /** Clear-text HTTP/2 with prior knowledge beside HTTP/1.1 (server.h2c; never with tls). */
  readonly h2c: boolean
  /** The security limits and policies of the listener (server.*). */
  readonly limits: Limits
  readonly logging: {
    readonly level: RawConfig['logging']['level']
    readonly format: 'json' | 'text'
    /** logging.access_log; undefined: access lines go through the process log (info). */
    readonly access: AccessLogSpec | undefined
  }
  readonly upstreams: ReadonlyMap<string, UpstreamSpec>
  /** Upstream groups the active mode can send traffic to (health checks run for these). */
  readonly activeUpstreams: readonly string[]
  /** Every middleware declaration, by name (both sections; paths resolved by the middleware). */
  readonly middlewares: ReadonlyMap<string, MiddlewareDeclaration>
  readonly controlApi: {
    readonly enabled: boolean
    readonly bind: HostPort
    readonly apiKey: string | undefined
    readonly insecure: boolean
  }
  /** Reload when the config file changes (server/watch.ts). */
  readonly watch: boolean
  /** OpenTelemetry export; undefined when tracing.enabled is false. */
  readonly tracing: TracingSpec | undefined
  /** debug_header: requests carrying it with the secret get X-Locci-Trace (proxy/trace.ts). */
  readonly debugHeader:
    | {
        /** Lower case. */
        readonly name: string
        /** SHA-256 of the secret, hex: compared with the candidate's in constant time. */
        readonly digest: string
      }
    | undefined
  /** config_store: where the shared runtime layer lives (server/config-store.ts); read at start. */
  readonly configStore:
    | { readonly type: 'redis'; readonly url: string; readonly keyPrefix: string }
    | undefined
}

/**
 * Which browser origins may open a WebSocket: undefined allows any (no policy configured), `*`
 * too; otherwise a request with an Origin outside the set is refused (403). A request without
 * Origin is not from a browser and is let through: cross-site WebSocket hijacking needs one.
 */
export type OriginPolicy = ReadonlySet<string> | '*' | undefined

export interface Limits {
  /** Whether a peer's X-Forwarded-* headers are believed; undefined when none is trusted. */
  readonly trustedProxy: ((ip: string) => boolean) | undefined
  readonly maxConnections: number
  readonly maxBodyBytes: number
  readonly bodyTimeoutMs: number
  readonly tcpIdleTimeoutMs: number
  /** `%2F`, `%5C`, `\\` in a path: refused with 400, or kept as they are. */
  readonly escapedSlashes: 'reject' | 'keep'
  readonly allowTrace: boolean
  /** HTTP/2 connections (server.http2): advertised in SETTINGS and enforced. */
  readonly http2: {
    readonly maxConcurrentStreams: number
    /** Largest request header list, counted as HTTP/2 does (name + value + 32 per field). */
    readonly maxHeaderListBytes: number
  }
}

export function deepFreeze<T>(value: T): T {
  // RegExps stay unfrozen: RegExp.prototype.exec writes lastIndex even without the g flag.
  if (value && typeof value === 'object' && !Object.isFrozen(value) && !(value instanceof RegExp)) {
    Object.freeze(value)
    if (value instanceof Map) for (const v of value.values()) deepFreeze(v)
    else for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
