// The config file as written (RawConfig): structure, types, defaults and per-field checks.
// Cross-references (a route naming an upstream, a middleware name) are checked in compile.ts,
// which turns a RawConfig into the runtime Snapshot. Unknown keys are rejected, so a typo is
// reported instead of silently ignored.

import { z } from 'zod'
import { ACCESS_FIELDS } from '../observe/access-log'
import { TRACING_PROTOCOLS } from '../observe/tracing'
import { cidrProblem, parseHostPort } from './address'
import { resolverProblem, serverEntryProblem } from './discovery'
import { parseCipherList } from './tls'

const address = (listen: boolean) =>
  z.string().superRefine((text, ctx) => {
    const parsed = parseHostPort(text, { listen })
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed })
  })
const listenAddress = address(true)
/** host:port, or a name to resolve: `dns:NAME:PORT`, `srv:_service._proto.NAME` (config/discovery.ts). */
const serverAddress = z.string().superRefine((text, ctx) => {
  const problem = serverEntryProblem(text)
  if (problem) ctx.addIssue({ code: 'custom', message: problem })
})
/** A DNS server as IP:port (for dns: and srv: servers). */
const resolver = z.string().superRefine((text, ctx) => {
  const problem = resolverProblem(text)
  if (problem) ctx.addIssue({ code: 'custom', message: problem })
})

const secs = z.number().positive()
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export const STRATEGIES = [
  'round_robin',
  'weighted',
  'least_connections',
  'random',
  'consistent_hash',
] as const
export const RETRY_ON = ['connect_failure', 'timeout', 'reset', '5xx'] as const

const certPair = z.strictObject({
  cert_path: z.string().min(1),
  key_path: z.string().min(1),
})

/** TLS 1.2 suites by name, checked against the allowed ECDHE + AEAD ones (config/tls.ts). */
const cipherList = z.string().superRefine((text, ctx) => {
  const r = parseCipherList(text)
  if ('problem' in r) ctx.addIssue({ code: 'custom', message: r.problem })
})

/** A DNS name a certificate can be ordered for: labels of letters, digits and hyphens. */
const acmeDomain = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i, {
    message:
      'must be a DNS name (letters, digits, hyphens, dots; no wildcard: HTTP-01 and TLS-ALPN-01 cannot prove one)',
  })

/** server.tls.acme: certificates ordered from an ACME CA (server/acme.ts). */
const acmeSettings = z.strictObject({
  /** Contact address given to the CA (expiry warnings, policy changes). */
  email: z.string().regex(/^[^@\s]+@[^@\s]+$/, { message: 'must be an email address' }),
  /** letsencrypt, letsencrypt-staging, or the https:// URL of any ACME directory. */
  directory_url: z
    .string()
    .refine((v) => v === 'letsencrypt' || v === 'letsencrypt-staging' || /^https:\/\/[^\s]+$/.test(v), {
      message: 'must be letsencrypt, letsencrypt-staging or an https:// directory URL',
    })
    .default('letsencrypt'),
  /** Names ordered at start (one certificate each) and kept renewed. */
  domains: z.array(acmeDomain).min(1).optional(),
  /** Order a certificate for an unknown SNI name during its first handshake (allowed_domains only). */
  on_demand: z.boolean().default(false),
  /** Globs (`*.example.com`, `shop.example.com`) an on-demand name must match. */
  allowed_domains: z
    .array(
      z.string().regex(/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}$/i, {
        message: 'must be a DNS name, optionally starting with *. (one label)',
      }),
    )
    .min(1)
    .optional(),
  /** How the CA checks we control a name: HTTP-01 on redirect_http_bind, or TLS-ALPN-01 on the TLS listener. */
  challenge: z.enum(['http-01', 'tls-alpn-01']).default('http-01'),
  /** Account key, certificates and keys (directory 0700, files 0600), relative to the config file. */
  storage_dir: z.string().min(1),
  /** file (storage_dir) or redis (shared by several instances). */
  store: z.enum(['file', 'redis']).default('file'),
  redis_url: z.string().min(1).optional(),
  /** External Account Binding, for CAs that require one (ZeroSSL, Google, some private CAs). */
  eab: z.strictObject({ kid: z.string().min(1), hmac_key: z.string().min(1) }).optional(),
})

/** TLS on the listener: one pair (the guide's form) and/or several chosen by SNI. */
const tlsListener = z
  .strictObject({
    cert_path: z.string().min(1).optional(),
    key_path: z.string().min(1).optional(),
    certificates: z.array(certPair).min(1).optional(),
    /** Certificates obtained and renewed from an ACME CA, served beside the static ones. */
    acme: acmeSettings.optional(),
    /** intermediate: TLS 1.2 and 1.3, ECDHE + AEAD suites only; modern: TLS 1.3 only. */
    policy: z.enum(['intermediate', 'modern']).default('intermediate'),
    /** Lowest version accepted; the policy's when not written (TLSv1.2, or TLSv1.3 for modern). */
    min_version: z.enum(['TLSv1.2', 'TLSv1.3']).optional(),
    /** TLS 1.2 suites in order of preference, among the policy's (default: all of them). */
    ciphers: cipherList.optional(),
    /** Offer HTTP/2 by ALPN (HTTP/1.1 stays available). */
    http2: z.boolean().default(true),
    /** Host the HTTP to HTTPS redirect uses when the client's Host is none of the certificate names. */
    redirect_host: z
      .string()
      .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, { message: 'must be a host name, optionally with :port' })
      .optional(),
  })
  .superRefine((t, ctx) => {
    if (t.policy === 'modern' && t.min_version === 'TLSv1.2') {
      ctx.addIssue({
        code: 'custom',
        path: ['min_version'],
        message: 'TLSv1.2 contradicts policy: modern (TLS 1.3 only); use policy: intermediate for TLS 1.2',
      })
    }
    if (t.ciphers !== undefined && (t.policy === 'modern' || t.min_version === 'TLSv1.3')) {
      ctx.addIssue({
        code: 'custom',
        path: ['ciphers'],
        message:
          'has no effect when only TLS 1.3 is accepted (its suites are fixed; ciphers lists TLS 1.2 suites)',
      })
    }
  })

/** HTTP/2 limits, advertised in the SETTINGS frame of every HTTP/2 connection. */
const http2Limits = z.strictObject({
  /** Streams (requests) a client may have open at once on one connection. */
  max_concurrent_streams: z.number().int().min(1).max(10_000).default(128),
  /** Largest request header list (HPACK-decoded, 32 bytes counted per field); larger are reset. */
  max_header_list_bytes: z
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(64 * 1024),
})

const connectionPool = z.strictObject({
  /** Most connections kept open (and reused) per upstream server; requests beyond wait for one. */
  max_idle: z.number().int().positive().default(128),
  idle_timeout_secs: secs.default(60),
  connect_timeout_secs: secs.default(10),
})

/** An IPv4 or IPv6 address, or a CIDR block (`10.0.0.0/8`, `fd00::/8`). */
const cidr = z.string().superRefine((text, ctx) => {
  const problem = cidrProblem(text)
  if (problem) ctx.addIssue({ code: 'custom', message: problem })
})

const server = z.strictObject({
  bind_address: listenAddress.default('0.0.0.0:8484'),
  /** Worker processes sharing the listener; `auto` = one per available CPU. */
  workers: z
    .union([z.number().int().min(1).max(256), z.literal('auto')], {
      error: 'must be a whole number from 1 to 256, or auto',
    })
    .default(1),
  tls: tlsListener.optional(),
  /** Clear-text HTTP/2 with prior knowledge beside HTTP/1.1 on a listener without tls (gRPC). */
  h2c: z.boolean().default(false),
  /** Limits of HTTP/2 connections (with tls and tls.http2, or h2c). */
  http2: http2Limits.prefault({}),
  /** A plain-HTTP listener that redirects every request to the HTTPS one (needs tls). */
  redirect_http_bind: listenAddress.optional(),
  /** Probes and scraping without a key: /healthz, /readyz, /metrics, read-only (off by default). */
  ops_bind_address: listenAddress.optional(),
  /** Close a proxied WebSocket after this long without a frame either way. */
  websocket_idle_timeout_secs: secs.default(300),
  upstream_timeout_secs: secs.default(60),
  shutdown_timeout_secs: z.number().min(0).default(10),
  connection_pool: connectionPool.prefault({}),
  /** Peers whose X-Forwarded-* / Forwarded headers are believed (load balancers in front). */
  trusted_proxies: z.array(cidr).default([]),
  /** Most client connections open at once; more are closed as they arrive. */
  max_connections: z.number().int().min(1).default(10_000),
  /** Largest request body accepted (413 beyond); a route may set its own. */
  max_body_bytes: z
    .number()
    .int()
    .min(0)
    .default(100 * 1024 * 1024),
  /** A request body that sends nothing for this long is cut off (408). */
  body_timeout_secs: secs.default(30),
  /** TCP pass-through: close a connection after this long without a byte either way. */
  tcp_idle_timeout_secs: secs.default(300),
  /** `%2F`, `%5C` or `\\` in a path: `reject` (400, default) or `keep` (passed on as they are). */
  escaped_slashes: z.enum(['reject', 'keep']).default('reject'),
  /** Forward TRACE requests (refused with 405 by default: they echo credentials back). */
  allow_trace: z.boolean().default(false),
  /** DNS server for dns: and srv: upstream servers (IP:port); default: the system's. */
  resolver: resolver.optional(),
  /** dns: and srv: names are re-resolved at their record TTL, at least this long apart... */
  dns_min_ttl_secs: secs.default(1),
  /** ...and at most this long apart (also the interval for SRV answers, whose TTL Node does not give). */
  dns_max_ttl_secs: secs.default(30),
})

const accessLog = z
  .strictObject({
    format: z.enum(['json', 'text', 'common', 'combined']).default('json'),
    /** `stdout`, or a file (relative to the config file), appended to and reopened on SIGUSR1. */
    output: z.string().min(1).default('stdout'),
    fields: z.array(z.enum(ACCESS_FIELDS)).min(1).optional(),
    /** Query strings often carry tokens: logged only when asked for. */
    include_query: z.boolean().default(false),
  })
  .superRefine((a, ctx) => {
    if (a.fields === undefined) return
    if (a.format === 'common' || a.format === 'combined') {
      ctx.addIssue({
        code: 'custom',
        path: ['fields'],
        message: `applies to the json and text formats; ${a.format} has a fixed layout`,
      })
    } else if (a.fields.includes('query') && !a.include_query) {
      ctx.addIssue({
        code: 'custom',
        path: ['fields'],
        message: 'lists query, which needs include_query: true',
      })
    }
    const seen = new Set<string>()
    for (const f of a.fields) {
      if (seen.has(f)) ctx.addIssue({ code: 'custom', path: ['fields'], message: `lists ${f} twice` })
      seen.add(f)
    }
  })

const logging = z.strictObject({
  level: z.enum(LOG_LEVELS).default('info'),
  format: z.enum(['json', 'text']).default('json'),
  /** nginx-style access log; without it, one line per request goes through the process log. */
  access_log: accessLog.optional(),
})

const healthCheck = z.strictObject({
  interval_secs: secs.default(10),
  timeout_secs: secs.default(2),
  path: z.string().regex(/^\//, { message: 'must start with "/"' }).optional(),
  /** grpc.health.v1.Health/Check over the group's HTTP/2 instead of a GET or a TCP connect. */
  grpc: z.boolean().default(false),
  /** The service name asked about with grpc: true ("" = the server as a whole). */
  service: z.string().optional(),
  /** Consecutive successes that bring an unhealthy server back. */
  healthy_threshold: z.number().int().min(1).default(1),
  /** Consecutive failures that take a healthy server out of the rotation. */
  unhealthy_threshold: z.number().int().min(1).default(1),
})

const server_ = z.union([
  serverAddress,
  z.strictObject({
    address: serverAddress,
    weight: z.number().int().min(1).max(1000).default(1),
  }),
])

/** `client_ip`, `path`, `header:<name>` or `cookie:<name>`. */
const hashKey = z.string().superRefine((k, ctx) => {
  if (k === 'client_ip' || k === 'path') return
  const m = /^(header|cookie):(.+)$/.exec(k)
  if (m && (m[1] === 'cookie' || TOKEN.test(m[2]!))) return
  ctx.addIssue({
    code: 'custom',
    message: `must be client_ip, path, header:<name> or cookie:<name> (got "${k}")`,
  })
})

const retryOn = z.array(z.enum(RETRY_ON, { error: () => `must be one of ${RETRY_ON.join(', ')}` }))

const retryBudget = z.strictObject({
  /** Retries allowed as a share of the group's requests over the last 10 s. */
  percent: z.number().min(0).max(100).default(20),
  /** Retries always allowed per second, so failover works at low traffic. */
  min_per_sec: z.number().min(0).default(10),
})

const passiveHealth = z.strictObject({
  enabled: z.boolean().default(true),
  /** Consecutive connect failures or 5xx answers that eject a server. */
  consecutive_failures: z.number().int().min(1).default(5),
  /** First ejection length; each repeat offence adds this much again, up to max_ejection_secs. */
  base_ejection_secs: secs.default(10),
  max_ejection_secs: secs.default(300),
  /** Most servers of the group ejected at once, as a share (rounded down; at least one stays). */
  max_ejection_percent: z.number().min(0).max(100).default(50),
})

/**
 * Without any of consecutive_failures, error_ratio and latency_p99_ms, the breaker trips on
 * 5 consecutive failures or an error ratio of 0.5 (compile.ts CIRCUIT_BREAKER_DEFAULTS).
 */
const circuitBreaker = z.strictObject({
  /** Failed attempts in a row (5xx, timeout, connection error) that open it. */
  consecutive_failures: z.number().int().min(1).optional(),
  /** Share of failed attempts over the window that opens it. */
  error_ratio: z.number().gt(0).max(1).optional(),
  /** p99 of the time to the answer over the window above which it opens. */
  latency_p99_ms: z.number().int().min(1).optional(),
  /** Attempts the window must hold before error_ratio or latency_p99_ms may open it. */
  min_requests: z.number().int().min(1).default(20),
  window_secs: z.number().int().min(1).max(600).default(10),
  /** How long it stays open before letting probes through. */
  open_secs: secs.default(30),
  /** Probes let through when half-open; that many successes close it. */
  half_open_requests: z.number().int().min(1).max(1000).default(3),
  /** The upstream group that takes the requests while it is open (instead of 503). */
  fallback: z.string().min(1).optional(),
})

/** How the proxy speaks HTTP to a group's servers (upstream/client.ts). */
export const UPSTREAM_PROTOCOLS = ['http1', 'h2c', 'h2', 'auto'] as const

/** HTTP/2 sessions to each server of a group with protocol h2c, h2 or auto. */
const upstreamHttp2 = z.strictObject({
  /** Sessions opened to one server at most; streams beyond their concurrency wait in a queue. */
  max_sessions: z.number().int().min(1).max(64).default(4),
  /** A PING on every session this often; one unanswered by the next is a dead session. */
  ping_interval_secs: secs.default(30),
})

/** A cookie the proxy sets (sticky sessions): its name and attributes. */
const cookieFields = {
  /** Cookie name; the value is an opaque token the proxy makes (upstream/sticky.ts). */
  cookie: z.string().regex(TOKEN, { message: 'must be a cookie name (letters, digits, !#$%&*+.^_`|~-)' }),
  /** Max-Age of the cookie; without it, a session cookie (gone when the browser closes). */
  ttl_secs: z.number().int().min(1).optional(),
  secure: z.boolean().default(false),
  http_only: z.boolean().default(true),
  same_site: z.enum(['strict', 'lax', 'none']).default('lax'),
}

/** SameSite=None is ignored by browsers without Secure. */
function checkSameSite(c: { same_site?: string; secure?: boolean }, ctx: z.RefinementCtx): void {
  if (c.same_site === 'none' && c.secure !== true) {
    ctx.addIssue({
      code: 'custom',
      path: ['same_site'],
      message: 'none needs secure: true (browsers drop it otherwise)',
    })
  }
}

/** `sticky` on an upstream group: the server a client got is named in a cookie and kept. */
const groupSticky = z.strictObject(cookieFields).superRefine(checkSameSite)

/** One entry of a weighted split (`upstreams` on a route or the load balancer). */
const splitEntry = z.strictObject({
  name: z.string().min(1),
  /** Share of the requests, relative to the other entries; 0 sends none. */
  weight: z.number().int().min(0).max(1_000_000),
})

const split = z
  .array(splitEntry)
  .min(1, { message: 'needs at least one upstream group' })
  .superRefine((entries, ctx) => {
    if (entries.length > 0 && entries.every((e) => e.weight === 0))
      ctx.addIssue({ code: 'custom', message: 'needs at least one weight above 0' })
    const seen = new Set<string>()
    entries.forEach((e, i) => {
      if (seen.has(e.name))
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `names "${e.name}" twice` })
      seen.add(e.name)
    })
  })

/**
 * `sticky` beside `upstreams`: what keeps a client on the group it first got. Exactly one of
 * cookie (set by the proxy), header (a value the client sends) or client_ip.
 */
const splitSticky = z
  .strictObject({
    cookie: cookieFields.cookie.optional(),
    /** A request header whose value is hashed to a group (a user or session id the client sends). */
    header: z.string().regex(TOKEN, { message: 'must be a header name' }).optional(),
    /** Hash the client address to a group. */
    client_ip: z.literal(true, { error: 'must be true (or leave it out)' }).optional(),
    // The cookie's attributes; defaults as on a group's sticky (filled in by compile.ts).
    ttl_secs: cookieFields.ttl_secs,
    secure: z.boolean().optional(),
    http_only: z.boolean().optional(),
    same_site: z.enum(['strict', 'lax', 'none']).optional(),
  })
  .superRefine((s, ctx) => {
    const given = (['cookie', 'header', 'client_ip'] as const).filter((k) => s[k] !== undefined)
    if (given.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `needs exactly one of cookie, header or client_ip (got ${given.length ? given.join(', ') : 'none'})`,
      })
      return
    }
    if (s.cookie === undefined) {
      for (const k of ['ttl_secs', 'secure', 'http_only', 'same_site'] as const) {
        if (s[k] !== undefined)
          ctx.addIssue({ code: 'custom', path: [k], message: 'only applies with cookie' })
      }
    }
    checkSameSite(s, ctx)
  })

const upstream = z.strictObject({
  servers: z.array(server_).min(1, { message: 'needs at least one server' }),
  strategy: z
    .string()
    .default('round_robin')
    .superRefine((s, ctx) => {
      if (!(STRATEGIES as readonly string[]).includes(s)) {
        ctx.addIssue({
          code: 'custom',
          message: `unknown strategy "${s}"; available: ${STRATEGIES.join(', ')}`,
        })
      }
    }),
  hash_key: hashKey.default('client_ip'),
  protocol: z
    .enum(UPSTREAM_PROTOCOLS, { error: () => `must be one of ${UPSTREAM_PROTOCOLS.join(', ')}` })
    .default('http1'),
  http2: upstreamHttp2.prefault({}),
  tls: z.boolean().default(false),
  sni: z.string().optional(),
  /** PEM bundle of CAs to verify the servers with, instead of the system store. */
  ca_path: z.string().min(1).optional(),
  /** Accept any server certificate. Never in production; logged at start. */
  tls_skip_verify: z.boolean().default(false),
  /** Client certificate and key for servers that require mTLS. */
  client_cert_path: z.string().min(1).optional(),
  client_key_path: z.string().min(1).optional(),
  health_check: healthCheck.optional(),
  passive_health: passiveHealth.prefault({}),
  /** Extra attempts on another server after a failure `retry_on` allows. */
  retries: z.number().int().min(0).max(10).default(1),
  retry_on: retryOn.default(['connect_failure']),
  retry_budget: retryBudget.prefault({}),
  circuit_breaker: circuitBreaker.optional(),
  /** DNS server for this group's dns: and srv: servers (IP:port); default: server.resolver. */
  resolver: resolver.optional(),
  /** Keep a client on the server it first got, by a cookie the proxy sets. */
  sticky: groupSticky.optional(),
})

/** Its syntax is checked by routing/route-table.ts (checkRoutePatterns), which compiles it. */
const pathPattern = z.string().superRefine((p, ctx) => {
  if (p === '') ctx.addIssue({ code: 'custom', message: 'must not be empty' })
})

/** Browser origins (`https://app.example`) or `*`. */
const websocketOrigins = z.union([
  z.literal('*'),
  z
    .array(
      z.string().regex(/^[a-z][a-z0-9+.-]*:\/\/[^/]+$/i, {
        message: 'must be an origin such as https://app.example',
      }),
    )
    .min(1),
])

/**
 * A copy of each matching request sent to another group, fire-and-forget (proxy/mirror.ts): its
 * answer is counted and discarded, never waited for.
 */
const mirror = z.strictObject({
  upstream: z.string().min(1),
  /** Share of requests copied, 0-100 (sampled at random per request). */
  percent: z.number().min(0).max(100).default(100),
  /** Larger request bodies are not mirrored (counted as dropped: body_too_large). */
  max_body_bytes: z.number().int().min(0).default(65536),
  /** Copies outstanding at once; more are dropped (max_in_flight). */
  max_in_flight: z.number().int().min(1).max(100000).default(64),
})

const route = z.strictObject({
  path_pattern: pathPattern,
  methods: z
    .array(
      z
        .string()
        .regex(TOKEN, { message: 'is not an HTTP method name' })
        .transform((m) => m.toUpperCase()),
    )
    .optional(),
  /** One upstream group; or `upstreams`, a weighted split between groups (exactly one of the two). */
  upstream: z.string().min(1).optional(),
  upstreams: split.optional(),
  /** With upstreams: keep a client on the group it first got. */
  sticky: splitSticky.optional(),
  strip_prefix: z.boolean().default(false),
  timeout_secs: secs.optional(),
  middlewares: z.array(z.string().min(1)).default([]),
  /** Override the upstream group's retries / retry_on for this route. */
  retries: z.number().int().min(0).max(10).optional(),
  retry_on: retryOn.optional(),
  /** Largest request body for this route (overrides server.max_body_bytes). */
  max_body_bytes: z.number().int().min(0).optional(),
  /** Origins allowed to open a WebSocket on this route (default: its cors allowed_origins). */
  websocket_origins: websocketOrigins.optional(),
  mirror: mirror.optional(),
})

/** Middleware declarations by name; each is validated by its type's schema (middleware/validate.ts). */
const middlewares = z.record(z.string(), z.record(z.string(), z.unknown()))

const apiGateway = z.strictObject({
  routes: z.record(z.string(), route),
  middlewares: middlewares.default({}),
})

const loadBalancer = z.strictObject({
  upstream: z.string().min(1).optional(),
  upstreams: split.optional(),
  sticky: splitSticky.optional(),
  /** http: HTTP-aware proxying (default). tcp: raw TCP pass-through (TLS untouched). */
  protocol: z.enum(['http', 'tcp']).default('http'),
  /** Middlewares applied to every request in load_balancer mode (none by default). */
  middlewares: z.array(z.string().min(1)).default([]),
  /** Origins allowed to open a WebSocket (default: the cors middleware's allowed_origins). */
  websocket_origins: websocketOrigins.optional(),
  mirror: mirror.optional(),
})

const controlApi = z.strictObject({
  enabled: z.boolean().default(false),
  bind_address: listenAddress.default('127.0.0.1:8485'),
  api_key: z.string().optional(),
  /** Write runtime changes (routes, servers) back to the config file, atomically. */
  persist: z.boolean().default(false),
  /** Allow a non-loopback bind_address without api_key (logged as a warning on every start). */
  insecure: z.boolean().default(false),
})

/** OpenTelemetry (observe/tracing.ts): what is not written comes from OTEL_* variables. */
const tracing = z.strictObject({
  enabled: z.boolean().default(false),
  /** The full OTLP/HTTP traces URL (`.../v1/traces`). */
  otlp_endpoint: z
    .string()
    .superRefine((u, ctx) => {
      let url: URL | undefined
      try {
        url = new URL(u)
      } catch {
        // Reported below.
      }
      if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
        ctx.addIssue({
          code: 'custom',
          message: 'must be an http:// or https:// URL such as http://collector:4318/v1/traces',
        })
      }
    })
    .optional(),
  protocol: z
    .enum(TRACING_PROTOCOLS as [string, ...string[]], {
      error: () => `must be one of ${TRACING_PROTOCOLS.join(', ')}`,
    })
    .optional(),
  /** Share of new traces recorded; a client's sampled traceparent is followed (parent-based). */
  sampling_ratio: z.number().min(0).max(1).optional(),
})

/** Headers the proxy itself reads or writes: a debug header may not take their name. */
const RESERVED_DEBUG_NAMES = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'upgrade',
  'traceparent',
  'tracestate',
  'x-request-id',
  'x-locci-trace',
])

/** A request with `name: <secret>` gets an X-Locci-Trace response header (proxy/trace.ts). */
const debugHeader = z.strictObject({
  name: z
    .string()
    .regex(TOKEN, { message: 'is not a header name' })
    .refine((n) => !RESERVED_DEBUG_NAMES.has(n.toLowerCase()), {
      message: 'names a header the proxy itself uses; choose another (X-Locci-Debug, say)',
    }),
  /** Compared in constant time; `${VAR}` keeps it out of the file. */
  secret: z.string().min(16, { message: 'must be at least 16 characters' }),
})

/**
 * The runtime layer (control-API changes) shared by every instance through Redis
 * (server/config-store.ts); the file stays the base layer.
 */
const configStore = z.strictObject({
  type: z.literal('redis', { error: 'must be "redis" (the only store so far)' }),
  url: z.string().regex(/^rediss?:\/\/./i, { message: 'must be a redis:// or rediss:// URL' }),
  /** Prepended to every key and channel, so several fleets can share one Redis. */
  key_prefix: z.string().max(200).default('locci:'),
})

export const configSchema = z.strictObject({
  mode: z.enum(['load_balancer', 'api_gateway'], {
    error: (iss) =>
      iss.input === undefined
        ? 'is required: load_balancer or api_gateway'
        : `unknown mode "${String(iss.input)}"; use load_balancer or api_gateway`,
  }),
  server: server.prefault({}),
  logging: logging.prefault({}),
  upstreams: z.record(z.string(), upstream),
  load_balancer: loadBalancer.optional(),
  api_gateway: apiGateway.optional(),
  /** Middleware declarations usable from both modes (api_gateway.middlewares works too). */
  middlewares: middlewares.default({}),
  control_api: controlApi.prefault({}),
  config_store: configStore.optional(),
  /** Reload when the config file changes (debounced; like SIGHUP). */
  watch: z.boolean().default(false),
  tracing: tracing.prefault({}),
  debug_header: debugHeader.optional(),
})

export type RawConfig = z.output<typeof configSchema>
export type RawSplitSticky = z.output<typeof splitSticky>
export type RawGroupSticky = z.output<typeof groupSticky>
export type RawRoute = z.output<typeof route>
export type RawMirror = z.output<typeof mirror>
