// tlsConnectOptions is what the pool, WebSocket handshakes and health probes connect with.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type PeerTls, tlsConnectOptions } from './peer'

const cases: Array<{ desc: string; tls: PeerTls; want: object | undefined }> = [
  { desc: 'no TLS: nothing', tls: { enabled: false, servername: 'x' }, want: undefined },
  {
    desc: 'TLS without sni: the host is the server name, verification on',
    tls: { enabled: true, servername: undefined },
    want: { servername: 'api.internal', rejectUnauthorized: true },
  },
  {
    desc: 'sni, a CA, a client certificate, verification off',
    tls: { enabled: true, servername: 'svc.example', ca: 'CA', cert: 'C', key: 'K', skipVerify: true },
    want: { servername: 'svc.example', rejectUnauthorized: false, ca: 'CA', cert: 'C', key: 'K' },
  },
]

for (const c of cases) {
  test(`tlsConnectOptions: ${c.desc}`, () => {
    assert.deepEqual(tlsConnectOptions(c.tls, 'api.internal'), c.want)
  })
}
