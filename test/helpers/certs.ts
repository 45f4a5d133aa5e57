// Certificates made at test time (selfsigned, a dev dependency): each is self-signed with
// CA:TRUE, so a test can use it as its own trust anchor (`ca`/`ca_path`).

import { writeFileSync } from 'node:fs'
import path from 'node:path'
import selfsigned from 'selfsigned'

export interface TestCert {
  cert: string
  key: string
  certPath: string
  keyPath: string
}

export async function makeCert(dir: string, name: string, dnsNames: string[] = [name]): Promise<TestCert> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: name }], {
    notAfterDate: new Date(Date.now() + 30 * 86_400_000),
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...dnsNames.map((value) => ({ type: 2 as const, value })),
          { type: 7 as const, ip: '127.0.0.1' },
        ],
      },
    ],
  })
  const certPath = path.join(dir, `${name}.pem`)
  const keyPath = path.join(dir, `${name}-key.pem`)
  writeFileSync(certPath, pems.cert)
  writeFileSync(keyPath, pems.private)
  return { cert: pems.cert, key: pems.private, certPath, keyPath }
}
