// tracing and debug_header in the config: accepted, compiled, and refused with located messages.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compilePlan } from '../proxy/runtime'
import { parseConfigText } from './load'
import { formatProblem } from './problems'

const BASE = `mode: load_balancer
server:
  bind_address: "127.0.0.1:8484"
upstreams:
  app:
    servers: ["127.0.0.1:3001"]
load_balancer:
  upstream: app
`

function load(extra: string, env: NodeJS.ProcessEnv = {}) {
  return compilePlan(parseConfigText('cfg.yaml', BASE + extra, env))
}

function problems(extra: string): string[] {
  const r = load(extra)
  return r.ok ? [] : r.problems.map(formatProblem)
}

test('tracing is off by default and compiles as written', () => {
  const off = load('')
  assert.ok(off.ok)
  assert.equal(off.plan.snapshot.tracing, undefined)
  assert.equal(off.plan.snapshot.debugHeader, undefined)
  const on = load(
    'tracing:\n  enabled: true\n  otlp_endpoint: http://c:4318/v1/traces\n  protocol: http/json\n  sampling_ratio: 0.1\n',
  )
  assert.ok(on.ok)
  assert.deepEqual(on.plan.snapshot.tracing, {
    endpoint: 'http://c:4318/v1/traces',
    protocol: 'http/json',
    samplingRatio: 0.1,
  })
  // Written but disabled: nothing runs.
  const disabled = load('tracing:\n  enabled: false\n  otlp_endpoint: http://c:4318/v1/traces\n')
  assert.ok(disabled.ok)
  assert.equal(disabled.plan.snapshot.tracing, undefined)
})

test('tracing refuses what it cannot use', () => {
  assert.match(
    problems('tracing:\n  enabled: true\n  otlp_endpoint: grpc://c:4317\n').join(),
    /otlp_endpoint.*http/,
  )
  assert.match(
    problems('tracing:\n  enabled: true\n  protocol: grpc\n').join(),
    /protocol.*http\/protobuf, http\/json/,
  )
  assert.match(problems('tracing:\n  sampling_ratio: 1.5\n').join(), /sampling_ratio/)
  assert.match(problems('tracing:\n  exporter: zipkin\n').join(), /exporter/)
})

test('debug_header: the secret from the environment, hashed; its header never goes upstream', () => {
  const r = load('debug_header:\n  name: X-Locci-Debug\n  secret: ${DBG}\n', {
    DBG: 'from-the-environment-1',
  })
  assert.ok(r.ok)
  const d = r.plan.snapshot.debugHeader!
  assert.equal(d.name, 'x-locci-debug')
  assert.equal(d.digest.length, 64)
  assert.ok(!JSON.stringify(d).includes('from-the-environment'))
  assert.ok(r.plan.protectedHeaders.has('x-locci-debug'))
})

test('debug_header refuses a short secret and a header the proxy uses', () => {
  assert.match(problems('debug_header:\n  name: X-Dbg\n  secret: short\n').join(), /secret.*at least 16/)
  assert.match(
    problems('debug_header:\n  name: Traceparent\n  secret: long-enough-secret-1\n').join(),
    /name.*the proxy itself uses/,
  )
  assert.match(
    problems('debug_header:\n  name: "a b"\n  secret: long-enough-secret-1\n').join(),
    /not a header name/,
  )
})
