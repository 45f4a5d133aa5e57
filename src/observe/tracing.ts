// OpenTelemetry tracing, off by default. This file never loads the SDK: `Tracing.configure` does,
// through a lazy require of ./otel, and only when `tracing.enabled` is true. With tracing off a
// request reads one field (`Tracing.active`, undefined) and nothing else happens.
//
// Where settings come from: what the config file writes wins; what it leaves out comes from the
// standard OTEL_* variables, then from the OTel defaults. Turning tracing on is the config's
// alone (`tracing.enabled: true`); OTEL_SDK_DISABLED=true turns it off whatever the file says.
// Settings apply on reload: a changed tracing section builds a new exporter and the old one is
// flushed and shut down in the background.

import type { Logger } from './logger'
import type { OtelTracer } from './otel'

/** `tracing` as written in the config (compile.ts); undefined when `enabled` is false. */
export interface TracingSpec {
  readonly endpoint: string | undefined
  readonly protocol: TracingProtocol | undefined
  readonly samplingRatio: number | undefined
}

export type TracingProtocol = 'http/protobuf' | 'http/json'
export const TRACING_PROTOCOLS: readonly TracingProtocol[] = ['http/protobuf', 'http/json']

/** The settings in force, after the environment and the defaults filled the gaps. */
export interface TracingSettings {
  readonly endpoint: string
  readonly protocol: TracingProtocol
  /** Share of new traces (no sampled parent) recorded. */
  readonly ratio: number
  /** A client's sampling decision (its traceparent's flag) is followed. */
  readonly parentBased: boolean
  readonly serviceName: string
  readonly serviceVersion: string
}

const DEFAULT_ENDPOINT = 'http://localhost:4318/v1/traces'

/** Most time a shutdown waits for the last spans to be exported. */
export const FLUSH_DEADLINE_MS = 2000

/** `spec` completed from OTEL_* variables (`env`) and the defaults; undefined: tracing is off. */
export function tracingSettings(
  spec: TracingSpec | undefined,
  env: NodeJS.ProcessEnv,
  version: string,
  warn: (msg: string) => void,
): TracingSettings | undefined {
  if (spec === undefined || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim()
  const endpoint =
    spec.endpoint ??
    (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() ||
      (base ? `${base.replace(/\/+$/, '')}/v1/traces` : DEFAULT_ENDPOINT))
  let protocol = spec.protocol
  if (protocol === undefined) {
    const p = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim()
    if (p !== undefined && p !== '' && !(TRACING_PROTOCOLS as readonly string[]).includes(p)) {
      warn(
        `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=${p} is not supported (http/protobuf or http/json); using http/protobuf`,
      )
    }
    protocol = (TRACING_PROTOCOLS as readonly string[]).includes(p ?? '')
      ? (p as TracingProtocol)
      : 'http/protobuf'
  }
  const sampler = spec.samplingRatio === undefined ? envSampler(env, warn) : undefined
  return {
    endpoint,
    protocol,
    ratio: spec.samplingRatio ?? sampler?.ratio ?? 1,
    parentBased: sampler?.parentBased ?? true,
    serviceName: env.OTEL_SERVICE_NAME?.trim() || 'locci-proxy',
    serviceVersion: version,
  }
}

/** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, as the OTel specification reads them. */
function envSampler(
  env: NodeJS.ProcessEnv,
  warn: (msg: string) => void,
): { ratio: number; parentBased: boolean } | undefined {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase()
  if (!name) return undefined
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG)
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1
  switch (name) {
    case 'always_on':
      return { ratio: 1, parentBased: false }
    case 'always_off':
      return { ratio: 0, parentBased: false }
    case 'traceidratio':
      return { ratio, parentBased: false }
    case 'parentbased_always_on':
      return { ratio: 1, parentBased: true }
    case 'parentbased_always_off':
      return { ratio: 0, parentBased: true }
    case 'parentbased_traceidratio':
      return { ratio, parentBased: true }
    default:
      warn(`OTEL_TRACES_SAMPLER=${name} is not supported; using parentbased_always_on`)
      return undefined
  }
}

/** The process's tracer: none (tracing off), or one per configuration, replaced on reload. */
export class Tracing {
  /** Read by every request: undefined when tracing is off. */
  active: OtelTracer | undefined
  #key = ''
  readonly #log: Logger
  readonly #env: NodeJS.ProcessEnv
  readonly #version: string

  constructor(log: Logger, env: NodeJS.ProcessEnv, version: string) {
    this.#log = log
    this.#env = env
    this.#version = version
  }

  /** Applies `tracing` (at start and on every reload). */
  configure(spec: TracingSpec | undefined): void {
    const settings = tracingSettings(spec, this.#env, this.#version, (msg) =>
      this.#log.warn({ setting: 'tracing' }, msg),
    )
    const key = settings === undefined ? '' : JSON.stringify(settings)
    if (key === this.#key) return
    this.#key = key
    const old = this.active
    if (settings !== undefined) {
      const { OtelTracer } = require('./otel') as typeof import('./otel')
      this.active = new OtelTracer(settings, this.#log)
      this.#log.info(
        { endpoint: settings.endpoint, protocol: settings.protocol, sampling_ratio: settings.ratio },
        'tracing on',
      )
    } else {
      this.active = undefined
    }
    // Spans already started on the old tracer still end and are exported by it.
    if (old !== undefined) void old.shutdown(FLUSH_DEADLINE_MS)
  }

  /** Exports what is buffered, waiting at most FLUSH_DEADLINE_MS. */
  async shutdown(): Promise<void> {
    const t = this.active
    this.active = undefined
    if (t !== undefined) await t.shutdown(FLUSH_DEADLINE_MS)
  }
}
