import assert from 'node:assert/strict'
import { test } from 'node:test'
import { tracingSettings } from './tracing'

const on = { endpoint: undefined, protocol: undefined, samplingRatio: undefined }
const none = () => undefined

test('off unless the config enables it; OTEL_SDK_DISABLED wins', () => {
  assert.equal(tracingSettings(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' }, '1', none), undefined)
  assert.equal(tracingSettings(on, { OTEL_SDK_DISABLED: 'true' }, '1', none), undefined)
})

test('defaults, then OTEL_* fill what the config leaves out', () => {
  assert.deepEqual(tracingSettings(on, {}, '1.2', none), {
    endpoint: 'http://localhost:4318/v1/traces',
    protocol: 'http/protobuf',
    ratio: 1,
    parentBased: true,
    serviceName: 'locci-proxy',
    serviceVersion: '1.2',
  })
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'edge',
    OTEL_TRACES_SAMPLER: 'traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.25',
  }
  const s = tracingSettings(on, env, '1', none)!
  assert.equal(s.endpoint, 'http://collector:4318/v1/traces')
  assert.equal(s.protocol, 'http/json')
  assert.equal(s.serviceName, 'edge')
  assert.equal(s.ratio, 0.25)
  assert.equal(s.parentBased, false)
  const t = tracingSettings(
    on,
    { ...env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/traces' },
    '1',
    none,
  )!
  assert.equal(t.endpoint, 'http://t:1/traces', 'the traces endpoint is used as written')
})

test('what the config writes wins over OTEL_*', () => {
  const env = {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://env:4318/v1/traces',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_TRACES_SAMPLER: 'always_off',
  }
  const s = tracingSettings(
    { endpoint: 'http://cfg:4318/v1/traces', protocol: 'http/protobuf', samplingRatio: 0.5 },
    env,
    '1',
    none,
  )!
  assert.equal(s.endpoint, 'http://cfg:4318/v1/traces')
  assert.equal(s.protocol, 'http/protobuf')
  assert.equal(s.ratio, 0.5)
  assert.equal(s.parentBased, true)
})

test('unsupported OTEL_* values are warned about and replaced by the defaults', () => {
  const warnings: string[] = []
  const s = tracingSettings(
    on,
    {
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
      OTEL_TRACES_SAMPLER: 'jaeger_remote',
      OTEL_TRACES_SAMPLER_ARG: 'x',
    },
    '1',
    (m) => warnings.push(m),
  )!
  assert.equal(s.protocol, 'http/protobuf')
  assert.equal(s.ratio, 1)
  assert.equal(warnings.length, 2)
  const bad = tracingSettings(
    on,
    { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '7' },
    '1',
    none,
  )!
  assert.equal(bad.ratio, 1, 'an argument outside 0..1 is the default')
})
