// Shared by the ACME integration tests (Pebble): what certificate the proxy serves, whether it
// chains to Pebble's root, the proxy config around a server.tls.acme block, and waits on the log.

import { X509Certificate } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { type RunningPebble, startPebble } from './pebble'
import type { RunningProxy } from './proxy'
import { closedPort, type Upstream } from './upstream'

export const KEY = 'acme-test-key'

/** The certificate chain the proxy presents for `servername` (leaf first), as PEM strings. */
export function served(port: number, servername: string): Promise<X509Certificate[]> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false }, () => {
      const out: X509Certificate[] = []
      let c = s.getPeerX509Certificate()
      while (c && !out.some((o) => o.fingerprint256 === c!.fingerprint256)) {
        out.push(c)
        c = c.issuerCertificate
      }
      s.end()
      resolve(out)
    })
    s.once('error', reject)
  })
}

/** Verifies `chain` up to `rootPem`: each certificate signed by the next, the last by the root. */
export function chainsTo(chain: X509Certificate[], rootPem: string): boolean {
  const root = new X509Certificate(rootPem)
  for (let i = 0; i < chain.length - 1; i++) if (!chain[i]!.verify(chain[i + 1]!.publicKey)) return false
  const last = chain[chain.length - 1]!
  return last.fingerprint256 === root.fingerprint256 || last.verify(root.publicKey)
}

export function get(port: number, p: string, host = 'x.test'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, headers: { host } }, (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d
        })
        res.on('end', () => resolve({ status: res.statusCode!, body }))
      })
      .on('error', reject)
  })
}

export async function control(proxy: RunningProxy, p: string): Promise<string> {
  const res = await fetch(`${proxy.controlUrl}${p}`, { headers: { authorization: `Bearer ${KEY}` } })
  return res.text()
}

export interface Setup {
  tlsPort: number
  httpPort: number
  pebble: RunningPebble
  storage: string
}

export async function setup(validitySecs?: number): Promise<Setup> {
  const tlsPort = await closedPort()
  const httpPort = await closedPort()
  const pebble = await startPebble({ httpPort, tlsPort, ...(validitySecs ? { validitySecs } : {}) })
  const storage = path.join(mkdtempSync(path.join(tmpdir(), 'locci-acme-')), 'acme')
  return { tlsPort, httpPort, pebble, storage }
}

export function config(s: Setup, up: Upstream, acme: string, server = ''): string {
  return `mode: api_gateway
server:${server ? `\n  ${server}` : ''}
  bind_address: "127.0.0.1:${s.tlsPort}"
  redirect_http_bind: "127.0.0.1:${s.httpPort}"
  shutdown_timeout_secs: 1
  tls:
    acme:
      email: ops@example.test
      directory_url: ${s.pebble.directoryUrl}
      storage_dir: ${s.storage}
${acme
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
control_api:
  enabled: true
  bind_address: "127.0.0.1:0"
  api_key: ${KEY}
upstreams: { web: { servers: ["${up.address}"] } }
api_gateway:
  routes:
    all: { path_pattern: "^/", upstream: web }
`
}

export const obtained = (proxy: RunningProxy, name: string, n = 1) =>
  proxy.waitForLog(
    () => proxy.logs.filter((l) => l.msg === 'certificate obtained' && l.name === name).length >= n,
    `certificate ${n} for ${name}`,
    60_000,
  )
