import assert from 'node:assert/strict'
import { test } from 'node:test'
import { REDACTED, redact } from './redact'

test('secrets are redacted by key, URL passwords wherever they appear', () => {
  const out = redact({
    control_api: { api_key: 'k', bind_address: '0.0.0.0:8485' },
    api_gateway: { middlewares: { authentication: { jwt_secret: 's', excluded_paths: ['/health'] } } },
    store: { redis_url: 'redis://user:hunter2@redis:6379/0' },
    other: ['https://a:b@host/x', 'plain'],
    client_key_path: '/etc/k.pem',
    empty_token: '',
  }) as Record<string, Record<string, unknown>>
  assert.equal(out.control_api!.api_key, REDACTED)
  assert.equal(out.control_api!.bind_address, '0.0.0.0:8485')
  assert.deepEqual(out.api_gateway!.middlewares, {
    authentication: { jwt_secret: REDACTED, excluded_paths: ['/health'] },
  })
  assert.equal(out.store!.redis_url, `redis://user:${REDACTED}@redis:6379/0`)
  assert.deepEqual(out.other, [`https://a:${REDACTED}@host/x`, 'plain'])
  assert.equal(out.client_key_path, '/etc/k.pem', 'a path to a key file is not itself a secret')
  assert.equal(out.empty_token, '')
})
