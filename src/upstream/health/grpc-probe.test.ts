import assert from 'node:assert/strict'
import { test } from 'node:test'
import { healthCheckRequest, healthCheckStatus } from './grpc-probe'

test('HealthCheckRequest: field 1 as a string, in a gRPC frame', () => {
  assert.deepEqual([...healthCheckRequest('')], [0, 0, 0, 0, 0])
  assert.deepEqual([...healthCheckRequest('ab')], [0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62])
  const long = healthCheckRequest('x'.repeat(200))
  // A length over 127 takes two varint bytes.
  assert.deepEqual([...long.subarray(0, 8)], [0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01])
})

test('HealthCheckResponse: field 1 as an enum, unknown fields skipped, defaults to UNKNOWN', () => {
  assert.equal(healthCheckStatus(Buffer.from([0x08, 0x01])), 1)
  assert.equal(healthCheckStatus(Buffer.from([0x08, 0x02])), 2)
  assert.equal(healthCheckStatus(Buffer.alloc(0)), 0)
  // field 2 (a string) then field 1
  assert.equal(healthCheckStatus(Buffer.from([0x12, 0x01, 0x41, 0x08, 0x01])), 1)
})

test('HealthCheckResponse: malformed bytes are no answer', () => {
  assert.equal(healthCheckStatus(Buffer.from([0x08])), undefined)
  assert.equal(healthCheckStatus(Buffer.from([0x12, 0x05, 0x41])), undefined)
  assert.equal(healthCheckStatus(Buffer.from([0x0b])), undefined)
  assert.equal(healthCheckStatus(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), undefined)
})
