// The keys of HTTP/2 upstreams and gRPC: what they need and what they build.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compilePlan } from '../proxy/runtime'
import { parseConfigText } from './load'

const BASE = `mode: api_gateway
server:
  bind_address: "127.0.0.1:8484"
upstreams:
  svc:
    servers: ["127.0.0.1:3001"]
api_gateway:
  routes:
    r: { path_pattern: "^/", upstream: svc }
`

function problems(yaml: string): string[] {
  const r = compilePlan(parseConfigText('cfg.yaml', yaml, {}), {})
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`)
}

const withUpstream = (keys: string) =>
  BASE.replace('    servers: ["127.0.0.1:3001"]', `    servers: ["127.0.0.1:3001"]\n${keys}`)

test('h2 and auto need tls: true; h2c refuses it', () => {
  assert.match(
    problems(withUpstream('    protocol: h2'))[0]!,
    /upstreams\.svc\.protocol: h2 is negotiated over TLS and needs tls: true/,
  )
  assert.match(problems(withUpstream('    protocol: auto'))[0]!, /needs tls: true/)
  assert.match(
    problems(withUpstream('    protocol: h2c\n    tls: true'))[0]!,
    /h2c is clear-text HTTP\/2; with tls: true use h2/,
  )
  assert.match(problems(withUpstream('    protocol: h3'))[0]!, /must be one of http1, h2c, h2, auto/)
  assert.deepEqual(problems(withUpstream('    protocol: h2\n    tls: true')), [])
})

test('http2 settings and gRPC health checks need an HTTP/2 protocol', () => {
  assert.match(
    problems(withUpstream('    http2: { max_sessions: 2 }'))[0]!,
    /upstreams\.svc\.http2: only applies with protocol/,
  )
  assert.match(
    problems(withUpstream('    health_check: { grpc: true }'))[0]!,
    /health_check\.grpc: needs protocol: h2c or h2/,
  )
  assert.match(
    problems(withUpstream('    protocol: h2c\n    health_check: { grpc: true, path: /h }'))[0]!,
    /health_check\.path: cannot be used with grpc: true/,
  )
  assert.match(
    problems(withUpstream('    health_check: { service: x }'))[0]!,
    /health_check\.service: only applies with grpc: true/,
  )
})

test('server.h2c: not with tls', () => {
  const yaml = BASE.replace(
    '  bind_address: "127.0.0.1:8484"',
    '  bind_address: "127.0.0.1:8484"\n  h2c: true\n  tls: { cert_path: a.pem, key_path: b.pem }',
  )
  assert.ok(problems(yaml).some((p) => /server\.h2c: is clear-text HTTP\/2/.test(p)))
})

test('the snapshot carries protocol, sessions, gRPC health and h2c', () => {
  const yaml = withUpstream(
    '    protocol: h2c\n    http2: { max_sessions: 2, ping_interval_secs: 5 }\n    health_check: { grpc: true, service: a.B }',
  ).replace('  bind_address: "127.0.0.1:8484"', '  bind_address: "127.0.0.1:8484"\n  h2c: true')
  const r = compilePlan(parseConfigText('cfg.yaml', yaml, {}), {})
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems))
  const s = r.plan.snapshot
  assert.equal(s.h2c, true)
  const u = s.upstreams.get('svc')!
  assert.equal(u.protocol, 'h2c')
  assert.deepEqual(u.http2, { maxSessions: 2, pingIntervalMs: 5000 })
  assert.equal(u.healthCheck?.grpcService, 'a.B')
})

test('grpc_web needs every group its route sends to to speak HTTP/2', () => {
  const yaml = (protocol: string) => `mode: api_gateway
server:
  bind_address: "127.0.0.1:8484"
upstreams:
  svc:
    servers: ["127.0.0.1:3001"]
${protocol}
  other:
    servers: ["127.0.0.1:3002"]
    protocol: h2c
api_gateway:
  middlewares:
    grpc_web: {}
  routes:
    r: { path_pattern: "^/", upstreams: [{name: other, weight: 1}, {name: svc, weight: 1}], middlewares: [grpc_web] }
`
  assert.deepEqual(problems(yaml('')), [
    'api_gateway.routes.r.upstreams[1].name: grpc_web needs an HTTP/2 upstream: group "svc" has protocol http1; set upstreams.svc.protocol to h2c or h2',
  ])
  assert.match(problems(yaml('    protocol: auto\n    tls: true'))[0]!, /group "svc" has protocol auto/)
  assert.deepEqual(problems(yaml('    protocol: h2c')), [])
})
