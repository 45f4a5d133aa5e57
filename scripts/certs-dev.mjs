#!/usr/bin/env node
// `npm run certs:dev`: a self-signed certificate for localhost (and 127.0.0.1, ::1) in certs/,
// for trying TLS locally (examples/tls/). Browsers and curl need -k or the cert as a CA.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import selfsigned from 'selfsigned'

const dir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'certs')
const certFile = path.join(dir, 'localhost.pem')
const keyFile = path.join(dir, 'localhost-key.pem')
if (existsSync(certFile) && !process.argv.includes('--force')) {
  console.log(`certs:dev: ${path.relative(process.cwd(), certFile)} exists (use --force to replace it)`)
  process.exit(0)
}
const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
  notAfterDate: new Date(Date.now() + 825 * 86_400_000),
  keySize: 2048,
  algorithm: 'sha256',
  extensions: [
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        { type: 2, value: 'localhost' },
        { type: 7, ip: '127.0.0.1' },
        { type: 7, ip: '::1' },
      ],
    },
  ],
})
mkdirSync(dir, { recursive: true })
writeFileSync(certFile, pems.cert)
writeFileSync(keyFile, pems.private, { mode: 0o600 })
console.log(
  `certs:dev: wrote ${path.relative(process.cwd(), certFile)} and ${path.relative(process.cwd(), keyFile)} (valid 825 days)`,
)
