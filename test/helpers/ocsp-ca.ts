// A small CA made with the openssl command line in a temp dir: a root, a leaf certificate whose
// Authority Information Access names an OCSP responder, and an HTTP responder on 127.0.0.1 that
// answers each request with `openssl ocsp` in one-shot mode (-reqin/-respout) from an index
// file, so a test can revoke the certificate or make the responder fail.

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

export function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version']).status === 0
}

export interface OcspCa {
  dir: string
  caPath: string
  /** Leaf + CA (the full chain, as a certificate file for the proxy should be). */
  chainPath: string
  /** Leaf only. */
  leafPath: string
  keyPath: string
  /** Leaf without an OCSP responder, chained. */
  plainChainPath: string
  plainKeyPath: string
  responderUrl: string
  /** Requests the responder received. */
  requests: () => number
  /** good (default), revoked, or fail (HTTP 500). */
  setMode(mode: 'good' | 'revoked' | 'fail'): void
  /** Validity the responder gives its answers (openssl -nmin). */
  setValidityMinutes(n: number): void
  close(): Promise<void>
}

function openssl(dir: string, args: string[]): string {
  return execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

export async function makeOcspCa(): Promise<OcspCa> {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-ocsp-'))
  let mode: 'good' | 'revoked' | 'fail' = 'good'
  let nmin = 60
  let count = 0
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      count++
      if (mode === 'fail') {
        res.writeHead(500).end()
        return
      }
      const reqFile = path.join(dir, `req-${count}.der`)
      const respFile = path.join(dir, `resp-${count}.der`)
      writeFileSync(reqFile, Buffer.concat(chunks))
      const index = mode === 'revoked' ? 'index-revoked.txt' : 'index.txt'
      spawnSync(
        'openssl',
        [
          'ocsp',
          '-index',
          index,
          '-CA',
          'ca.pem',
          '-rsigner',
          'ca.pem',
          '-rkey',
          'ca.key',
          '-reqin',
          reqFile,
          '-respout',
          respFile,
          '-nmin',
          String(nmin),
        ],
        { cwd: dir },
      )
      res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(readFileSync(respFile))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const responderUrl = `http://127.0.0.1:${port}/ocsp`

  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '5',
    '-subj',
    '/CN=Locci Test OCSP CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ])
  const leaf = (name: string, ext: string) => {
    writeFileSync(path.join(dir, `${name}.ext`), ext)
    openssl(dir, [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      '/CN=localhost',
    ])
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '3',
      '-extfile',
      `${name}.ext`,
    ])
    const chain = path.join(dir, `${name}-chain.pem`)
    writeFileSync(
      chain,
      readFileSync(path.join(dir, `${name}.pem`), 'utf8') + readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    )
    return chain
  }
  const chainPath = leaf(
    'leaf',
    `subjectAltName=DNS:localhost,IP:127.0.0.1\nauthorityInfoAccess=OCSP;URI:${responderUrl}\nbasicConstraints=CA:FALSE\n`,
  )
  const plainChainPath = leaf(
    'plain',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n',
  )
  const serial = openssl(dir, ['x509', '-in', 'leaf.pem', '-noout', '-serial']).trim().split('=')[1]!
  writeFileSync(path.join(dir, 'index.txt'), `V\t300101000000Z\t\t${serial}\tunknown\t/CN=localhost\n`)
  writeFileSync(
    path.join(dir, 'index-revoked.txt'),
    `R\t300101000000Z\t200101000000Z,keyCompromise\t${serial}\tunknown\t/CN=localhost\n`,
  )
  return {
    dir,
    caPath: path.join(dir, 'ca.pem'),
    chainPath,
    leafPath: path.join(dir, 'leaf.pem'),
    keyPath: path.join(dir, 'leaf.key'),
    plainChainPath,
    plainKeyPath: path.join(dir, 'plain.key'),
    responderUrl,
    requests: () => count,
    setMode: (m) => {
      mode = m
    },
    setValidityMinutes: (n) => {
      nmin = n
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
