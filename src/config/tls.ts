// TLS material, read and checked when a config is compiled (start, validate, reload), so a
// missing, unreadable or mismatched certificate/key pair is a config problem naming the file,
// and a renewed certificate is picked up by the next reload.

import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { fileErrorReason, type KeyPath } from './problems'

export interface CertificateMaterial {
  readonly cert: string
  readonly key: string
  /** DNS names the certificate covers (SAN, else CN), lower case; `*.example.com` kept as is. */
  readonly names: readonly string[]
  readonly certPath: string
}

export interface UpstreamTlsMaterial {
  readonly ca: string | undefined
  readonly cert: string | undefined
  readonly key: string | undefined
  /** Changes when any of the files' contents change (a new pool is built then). */
  readonly fingerprint: string
}

type Report = (path: KeyPath, message: string) => void

function readPem(file: string, path: KeyPath, what: string, report: Report): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    report(path, `${fileErrorReason(err)}: ${file} (${what})`)
    return undefined
  }
}

/** A certificate and its key, checked to belong together. */
export function loadCertificatePair(
  certFile: string,
  keyFile: string,
  certPath: KeyPath,
  keyPath: KeyPath,
  report: Report,
): CertificateMaterial | undefined {
  const cert = readPem(certFile, certPath, 'certificate', report)
  const key = readPem(keyFile, keyPath, 'private key', report)
  if (cert === undefined || key === undefined) return undefined
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch (err) {
    report(certPath, `not a PEM certificate: ${certFile} (${(err as Error).message})`)
    return undefined
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) {
      report(keyPath, `the key in ${keyFile} does not belong to the certificate in ${certFile}`)
      return undefined
    }
  } catch (err) {
    report(keyPath, `not a PEM private key: ${keyFile} (${(err as Error).message})`)
    return undefined
  }
  const san = x509.subjectAltName
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase())
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)?.[1]?.toLowerCase()
  const names = san && san.length > 0 ? san : cn ? [cn] : []
  return { cert, key, names, certPath: certFile }
}

export function loadUpstreamTls(
  files: { ca?: string; cert?: string; key?: string },
  base: KeyPath,
  report: Report,
): UpstreamTlsMaterial | undefined {
  const ca = files.ca === undefined ? undefined : readPem(files.ca, [...base, 'ca_path'], 'CA bundle', report)
  let cert: string | undefined
  let key: string | undefined
  if (files.cert !== undefined || files.key !== undefined) {
    if (files.cert === undefined || files.key === undefined) {
      report(base, 'client_cert_path and client_key_path go together')
      return undefined
    }
    const pair = loadCertificatePair(
      files.cert,
      files.key,
      [...base, 'client_cert_path'],
      [...base, 'client_key_path'],
      report,
    )
    if (!pair) return undefined
    cert = pair.cert
    key = pair.key
  }
  if (files.ca !== undefined && ca === undefined) return undefined
  if (ca !== undefined) {
    try {
      new X509Certificate(ca)
    } catch {
      report([...base, 'ca_path'], `not a PEM certificate bundle: ${files.ca}`)
      return undefined
    }
  }
  const fingerprint = createHash('sha256')
    .update(ca ?? '')
    .update('\0')
    .update(cert ?? '')
    .update('\0')
    .update(key ?? '')
    .digest('hex')
    .slice(0, 16)
  return { ca, cert, key, fingerprint }
}

/** Does a certificate name (possibly `*.example.com`) cover `host`? One label per wildcard. */
export function nameMatches(name: string, host: string): boolean {
  if (name === host) return true
  if (!name.startsWith('*.')) return false
  const dot = host.indexOf('.')
  return dot > 0 && host.slice(dot + 1) === name.slice(2)
}

/**
 * The TLS 1.2 suites a listener may offer: ECDHE key exchange (forward secrecy) with AEAD
 * encryption (AES-GCM, ChaCha20-Poly1305), in Mozilla's "intermediate" order. Static-RSA key
 * exchange (no forward secrecy) and CBC suites (LUCKY13-style padding oracles) are left out, and
 * so are DHE suites (slow, and weak groups are common).
 */
export const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const

/** TLS 1.3 suites (all AEAD, all with ephemeral key exchange), Mozilla's order. */
export const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256'

/** Key exchange groups, in order of preference. */
export const ECDH_CURVES = 'X25519:prime256v1:secp384r1'

export type TlsPolicy = 'intermediate' | 'modern'

/** The lowest TLS version a policy allows: intermediate TLS 1.2, modern TLS 1.3. */
export function policyMinVersion(policy: TlsPolicy): 'TLSv1.2' | 'TLSv1.3' {
  return policy === 'modern' ? 'TLSv1.3' : 'TLSv1.2'
}

/**
 * Checks `server.tls.ciphers`: suite names separated by `:`, each one of TLS12_SUITES (any case,
 * any order: the order is the server's preference). OpenSSL aliases and operators (`HIGH`,
 * `!aNULL`, `ECDHE+AESGCM`) are refused: what they expand to depends on the OpenSSL build, and a
 * reviewer cannot tell from the file which suites are offered. Returns the normalised list, or
 * the problem.
 */
export function parseCipherList(text: string): { ciphers: string } | { problem: string } {
  const names = text
    .split(':')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  if (names.length === 0) return { problem: `must name at least one suite among ${TLS12_SUITES.join(', ')}` }
  const allowed = new Set<string>(TLS12_SUITES)
  const out: string[] = []
  for (const raw of names) {
    const name = raw.toUpperCase()
    if (allowed.has(name)) {
      if (!out.includes(name)) out.push(name)
      continue
    }
    if (name.startsWith('TLS_')) {
      return {
        problem: `"${raw}" is a TLS 1.3 suite; those are not configurable (all are AEAD with ephemeral keys). List TLS 1.2 suites only`,
      }
    }
    const known = tls.getCiphers().includes(raw.toLowerCase())
    return {
      problem: known
        ? `"${raw}" is refused: only ECDHE key exchange with AEAD encryption is allowed (${TLS12_SUITES.join(', ')})`
        : `"${raw}" is not a cipher suite name (aliases such as HIGH or operators such as ! and + are not accepted); choose among ${TLS12_SUITES.join(', ')}`,
    }
  }
  const ciphers = out.join(':')
  try {
    tls.createSecureContext({ ciphers })
  } catch (err) {
    return { problem: `is not usable with this OpenSSL: ${(err as Error).message}` }
  }
  return { ciphers }
}
