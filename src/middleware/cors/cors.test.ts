import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Reply, RequestContext } from '../types'
import type { CorsConfig } from './config'
import { cors } from './index'

const cfg = (over: Partial<CorsConfig> = {}): CorsConfig => ({
  allowed_origins: ['https://app.example'],
  allowed_methods: ['GET', 'POST'],
  allowed_headers: ['Content-Type', 'Authorization'],
  expose_headers: ['X-Total'],
  allow_credentials: true,
  max_age_secs: 600,
  ...over,
})
const ctx = (method: string, raw: string[]): RequestContext => ({
  method,
  path: '/',
  clientIp: '1.1.1.1',
  rawHeaders: raw,
  requestId: 'r',
  upstreamHeaders: [],
  responseHeaders: [],
  dropResponseHeaders: undefined,
  upstreamPath: '/',
})
const map = (flat: readonly string[]) =>
  Object.fromEntries(flat.flatMap((_, i) => (i % 2 ? [] : [[flat[i]!, flat[i + 1]!]])))

test('preflight from an allowed origin: 204 with the policy', () => {
  const r = cors(cfg())(
    ctx('OPTIONS', ['Origin', 'https://app.example', 'Access-Control-Request-Method', 'POST']),
  ) as Reply
  assert.equal(r.status, 204)
  assert.equal(r.kind, undefined)
  assert.deepEqual(map(r.headers), {
    vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    'access-control-allow-origin': 'https://app.example',
    'access-control-allow-methods': 'GET, POST',
    'access-control-allow-headers': 'Content-Type, Authorization',
    'access-control-allow-credentials': 'true',
    'access-control-max-age': '600',
  })
})

test('preflight from another origin: 204 without CORS headers', () => {
  const r = cors(cfg())(
    ctx('OPTIONS', ['Origin', 'https://evil.example', 'Access-Control-Request-Method', 'POST']),
  ) as Reply
  assert.equal(r.status, 204)
  assert.equal(map(r.headers)['access-control-allow-origin'], undefined)
})

test('simple request: headers added for an allowed origin, only Vary otherwise', () => {
  const good = ctx('GET', ['Origin', 'https://app.example'])
  assert.equal(cors(cfg())(good), undefined)
  const h = map(good.responseHeaders)
  assert.equal(h['access-control-allow-origin'], 'https://app.example')
  assert.equal(h['access-control-expose-headers'], 'X-Total')
  assert.equal(h.vary, 'Origin')
  assert.ok(good.dropResponseHeaders?.has('access-control-allow-origin'))
  const bad = ctx('GET', ['Origin', 'https://evil.example'])
  cors(cfg())(bad)
  assert.deepEqual(bad.responseHeaders, ['vary', 'Origin'])
})

test('"*" origins without credentials answer "*"; requested headers are echoed for "*" headers', () => {
  const c = cors(cfg({ allowed_origins: '*', allow_credentials: false, allowed_headers: ['*'] }))
  const r = c(
    ctx('OPTIONS', [
      'Origin',
      'https://x',
      'Access-Control-Request-Method',
      'PUT',
      'Access-Control-Request-Headers',
      'x-a',
    ]),
  ) as Reply
  assert.equal(map(r.headers)['access-control-allow-origin'], '*')
  assert.equal(map(r.headers)['access-control-allow-headers'], 'x-a')
})
