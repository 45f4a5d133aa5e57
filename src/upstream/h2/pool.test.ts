import assert from 'node:assert/strict'
import { test } from 'node:test'
import { flatHeaders, h2RequestHeaders } from './pool'

test('request head for HTTP/2: Host as :authority, connection fields dropped, cookies joined', () => {
  const h = h2RequestHeaders(
    {
      path: '/p?q=1',
      method: 'POST',
      headers: [
        'Host',
        'api.example:8080',
        'Connection',
        'keep-alive',
        'Keep-Alive',
        'timeout=5',
        'Transfer-Encoding',
        'chunked',
        'Upgrade',
        'h2c',
        'TE',
        'gzip',
        'Cookie',
        'a=1',
        'cookie',
        'b=2',
        'X-Multi',
        '1',
        'x-multi',
        '2',
        'content-type',
        'application/json',
      ],
      body: null,
      headersTimeout: 0,
      bodyTimeout: 0,
    },
    'https',
  )
  assert.deepEqual(h, {
    ':method': 'POST',
    ':path': '/p?q=1',
    ':scheme': 'https',
    ':authority': 'api.example:8080',
    cookie: 'a=1; b=2',
    'x-multi': ['1', '2'],
    'content-type': 'application/json',
  })
})

test('gRPC requests get TE: trailers', () => {
  const h = h2RequestHeaders(
    {
      path: '/p.S/M',
      method: 'POST',
      headers: ['host', 'x', 'content-type', 'application/grpc+proto'],
      body: null,
      headersTimeout: 0,
      bodyTimeout: 0,
    },
    'http',
  )
  assert.equal(h.te, 'trailers')
})

test('response fields flattened, pseudo-headers left out', () => {
  assert.deepEqual(flatHeaders({ ':status': '200', 'set-cookie': ['a', 'b'], 'grpc-status': '0' }), [
    'set-cookie',
    'a',
    'set-cookie',
    'b',
    'grpc-status',
    '0',
  ])
})
