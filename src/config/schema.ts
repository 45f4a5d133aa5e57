// The config file as written (RawConfig): structure, types, defaults and per-field checks.
// Cross-references (a route naming an upstream, a middleware name) are checked in compile.ts,
// which turns a RawConfig into the runtime Snapshot. Unknown keys are rejected, so a typo is
// reported instead of silently ignored.

import { z } from 'zod'
import { compilePattern } from '../routing/pattern'
import { parseHostPort } from './address'

const address = (listen: boolean) =>
  z.string().superRefine((text, ctx) => {
    const parsed = parseHostPort(text, { listen })
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed })
  })
const hostPort = address(false)
const listenAddress = address(true)

const secs = z.number().positive()
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export const STRATEGIES = ['round_robin'] as const

const tlsFiles = z.strictObject({
  cert_path: z.string().min(1),
  key_path: z.string().min(1),
})

const connectionPool = z.strictObject({
  /** Most connections kept open (and reused) per upstream server; requests beyond wait for one. */
  max_idle: z.number().int().positive().default(128),
  idle_timeout_secs: secs.default(60),
  connect_timeout_secs: secs.default(10),
})

const server = z.strictObject({
  bind_address: listenAddress.default('0.0.0.0:8484'),
  workers: z.number().int().min(1).max(256).default(1),
  tls: tlsFiles.optional(),
  upstream_timeout_secs: secs.default(60),
  shutdown_timeout_secs: z.number().min(0).default(10),
  connection_pool: connectionPool.prefault({}),
})

const logging = z.strictObject({
  level: z.enum(LOG_LEVELS).default('info'),
  format: z.enum(['json', 'text']).default('json'),
})

const healthCheck = z.strictObject({
  interval_secs: secs.default(10),
  timeout_secs: secs.default(2),
  path: z.string().regex(/^\//, { message: 'must start with "/"' }).optional(),
  /** Consecutive successes that bring an unhealthy server back. */
  healthy_threshold: z.number().int().min(1).default(1),
  /** Consecutive failures that take a healthy server out of the rotation. */
  unhealthy_threshold: z.number().int().min(1).default(1),
})

const upstream = z.strictObject({
  servers: z.array(hostPort).min(1, { message: 'needs at least one server' }),
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
  tls: z.boolean().default(false),
  sni: z.string().optional(),
  health_check: healthCheck.optional(),
})

const pathPattern = z.string().superRefine((p, ctx) => {
  if (p === '') ctx.addIssue({ code: 'custom', message: 'must not be empty' })
  const re = compilePattern(p)
  if (typeof re === 'string') ctx.addIssue({ code: 'custom', message: re })
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
  upstream: z.string().min(1),
  strip_prefix: z.boolean().default(false),
  timeout_secs: secs.optional(),
  middlewares: z.array(z.string().min(1)).default([]),
})

const rateLimiting = z.strictObject({
  requests_per_minute: z.number().positive(),
  burst_size: z.number().int().positive(),
  key_header: z.string().optional(),
})

const authentication = z.strictObject({
  jwt_secret: z.string().optional(),
  excluded_paths: z.array(z.string()).default([]),
})

const cors = z.strictObject({
  allowed_origins: z.array(z.string()).default(['*']),
  allowed_methods: z.array(z.string()).default(['GET', 'POST', 'PUT', 'DELETE']),
  allowed_headers: z.array(z.string()).default(['*']),
})

const middlewares = z.strictObject({
  rate_limiting: rateLimiting.optional(),
  authentication: authentication.optional(),
  cors: cors.optional(),
})

const apiGateway = z.strictObject({
  routes: z.record(z.string(), route),
  middlewares: middlewares.prefault({}),
})

const loadBalancer = z.strictObject({
  upstream: z.string().min(1),
})

const controlApi = z.strictObject({
  enabled: z.boolean().default(false),
  bind_address: listenAddress.default('127.0.0.1:8485'),
  api_key: z.string().optional(),
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
  control_api: controlApi.prefault({}),
})

export type RawConfig = z.output<typeof configSchema>
export type RawUpstream = RawConfig['upstreams'][string]
export type RawRoute = z.output<typeof route>
export type RawHealthCheck = z.output<typeof healthCheck>
