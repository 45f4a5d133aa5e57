import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ERROR_KINDS, grpcStatus, type ReplyKind } from '../observe/errors'
import { grpcMessage, grpcTimeoutMs, isGrpcContentType } from './grpc'

test('gRPC content types, any case and suffix; others are not', () => {
  for (const ct of [
    'application/grpc',
    'application/grpc+proto',
    'Application/GRPC-web-text',
    'application/grpc-web',
  ])
    assert.ok(isGrpcContentType(ct), ct)
  for (const ct of [undefined, '', 'application/json', 'application/gr', 'text/grpc'])
    assert.ok(!isGrpcContentType(ct))
})

test('grpc-timeout: each unit, rounded up to a millisecond; malformed ones ignored', () => {
  assert.equal(grpcTimeoutMs('2H'), 7_200_000)
  assert.equal(grpcTimeoutMs('3M'), 180_000)
  assert.equal(grpcTimeoutMs('5S'), 5000)
  assert.equal(grpcTimeoutMs('250m'), 250)
  assert.equal(grpcTimeoutMs('1500u'), 2)
  assert.equal(grpcTimeoutMs('1n'), 1)
  // Longer than a timer can wait (24.8 days): held to the longest wait, not fired at once.
  assert.equal(grpcTimeoutMs('99999999H'), 2_147_483_647)
  assert.equal(grpcTimeoutMs('720H'), 2_147_483_647)
  assert.equal(grpcTimeoutMs('0m'), 1)
  for (const bad of [undefined, '', '5', 'm', '123456789S', '-1S', '1.5S', '5s', '5 S']) {
    assert.equal(grpcTimeoutMs(bad), undefined, String(bad))
  }
})

test('grpc-message is percent-encoded outside printable ASCII', () => {
  assert.equal(grpcMessage('no route for this path'), 'no route for this path')
  assert.equal(grpcMessage('100% é'), '100%25 %C3%A9')
})

test("the proxy's failures as gRPC statuses", () => {
  const expect: Partial<Record<ReplyKind, number>> = {
    no_healthy_peer: 14,
    connect_failed: 14,
    circuit_open: 14,
    upstream_reset: 14,
    upstream_timeout: 4,
    connect_timeout: 4,
    unauthorized: 16,
    basic_auth_failed: 16,
    api_key_invalid: 16,
    ip_not_allowed: 7,
    rate_limited: 8,
    payload_too_large: 8,
    no_route: 12,
    method_not_allowed: 12,
    internal: 13,
    bad_request: 13,
    client_aborted: 1,
  }
  for (const [kind, code] of Object.entries(expect)) assert.equal(grpcStatus(kind as ReplyKind), code, kind)
  // Every kind has a code in gRPC's range.
  for (const kind of ERROR_KINDS) {
    if (kind === 'connection_limit' || kind === 'http2_rapid_reset' || kind === 'idle_timeout') continue
    const c = grpcStatus(kind as ReplyKind)
    assert.ok(c >= 1 && c <= 16, kind)
  }
})
