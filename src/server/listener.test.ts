// Session ticket key rotation on a real TLS server: a ticket resumes until the key is replaced,
// and not after (the client then does one full handshake).

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import tls from 'node:tls'
import { makeCert } from '../../test/helpers/certs'
import { until } from '../../test/helpers/until'
import { TLS12_SUITES } from '../config/tls'
import { rotateTicketKeys, secureContextOptions } from './listener'

function connect(port: number, o: tls.ConnectionOptions): Promise<{ reused: boolean; session: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...o })
    let session: Buffer | undefined
    s.on('session', (b: Buffer) => {
      session = b
    })
    s.on('error', reject)
    s.resume()
    // The server writes and ends; TLS 1.3 tickets go out with its first write.
    s.on('end', () => resolve({ reused: s.isSessionReused(), session: session! }))
  })
}

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${version}: tickets resume until the ticket key rotates`, async () => {
    const cert = await makeCert(mkdtempSync(path.join(tmpdir(), 'locci-tickets-')), 'localhost')
    const t = {
      certificates: [],
      policy: 'intermediate' as const,
      minVersion: 'TLSv1.2' as const,
      ciphers: TLS12_SUITES.join(':'),
      http2: false,
      redirectHost: undefined,
    }
    const server = tls.createServer({ cert: cert.cert, key: cert.key, ...secureContextOptions(t) }, (s) =>
      s.end('x'),
    )
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as AddressInfo).port
    const stop = rotateTicketKeys(server, 2000)
    const rotation = async () => {
      const key = server.getTicketKeys()
      await until(() => !server.getTicketKeys().equals(key) || undefined, 'a ticket key rotation', 10_000)
    }
    try {
      const o = { maxVersion: version, minVersion: version }
      // Start just after a rotation, so the next is 2 s away.
      await rotation()
      const first = await connect(port, o)
      const again = await connect(port, { ...o, session: first.session })
      assert.equal(again.reused, true, 'resumed while the key is the same')
      await rotation()
      const after = await connect(port, { ...o, session: first.session })
      assert.equal(after.reused, false, 'a ticket from before the rotation does not resume')
    } finally {
      stop()
      server.close()
    }
  })
}
