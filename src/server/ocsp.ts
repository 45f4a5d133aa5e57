// OCSP stapling for the TLS listener: for each certificate that names an OCSP responder (its
// Authority Information Access extension), a response is fetched in the background, checked
// (signature by the issuer or a responder it delegated to, our certificate, status good, still
// fresh), cached, refreshed halfway through its validity, and handed to clients that ask for it
// (status_request) through the server's 'OCSPRequest' event. A certificate without a responder, or
// whose issuer is not in its file, staples nothing. A failing responder never delays or breaks a
// handshake: the last good response is served until it expires, then nothing.
//
// Only the part of ASN.1 DER OCSP needs is written here (RFC 6960): build an OCSPRequest for one
// certificate, read a BasicOCSPResponse. Signatures are checked with node:crypto.

import { createHash, verify as cryptoVerify, type KeyObject, X509Certificate } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import type { CertificateMaterial } from '../config/tls'
import type { Logger } from '../observe/logger'

// ---- DER ------------------------------------------------------------------------------------

interface Tlv {
  readonly tag: number
  /** Content octets. */
  readonly value: Buffer
  /** The whole element, tag and length included (what signatures and hashes cover). */
  readonly raw: Buffer
}

/** Reads one DER element at `offset`; throws on anything malformed or out of bounds. */
function readTlv(buf: Buffer, offset = 0): Tlv & { end: number } {
  if (offset + 2 > buf.length) throw new Error('truncated DER')
  const tag = buf[offset]!
  if ((tag & 0x1f) === 0x1f) throw new Error('multi-byte DER tags are not used by OCSP')
  let len = buf[offset + 1]!
  let head = 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4) throw new Error('unsupported DER length')
    if (offset + 2 + n > buf.length) throw new Error('truncated DER')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!
    head += n
  }
  const end = offset + head + len
  if (end > buf.length) throw new Error('truncated DER')
  return { tag, value: buf.subarray(offset + head, end), raw: buf.subarray(offset, end), end }
}

/** The elements inside a constructed element's content. */
function children(value: Buffer): Tlv[] {
  const out: Tlv[] = []
  let offset = 0
  while (offset < value.length) {
    const t = readTlv(value, offset)
    out.push(t)
    offset = t.end
  }
  return out
}

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new Error(`malformed OCSP data: ${what}`)
  return t
}

function encode(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content)
  const n = body.length
  let len: Buffer
  if (n < 0x80) len = Buffer.from([n])
  else if (n < 0x100) len = Buffer.from([0x81, n])
  else if (n < 0x10000) len = Buffer.from([0x82, n >> 8, n & 0xff])
  else throw new Error('DER element too long')
  return Buffer.concat([Buffer.from([tag]), len, body])
}

function decodeOid(value: Buffer): string {
  const parts: number[] = [Math.floor(value[0]! / 40), value[0]! % 40]
  let n = 0
  for (let i = 1; i < value.length; i++) {
    n = n * 128 + (value[i]! & 0x7f)
    if (!(value[i]! & 0x80)) {
      parts.push(n)
      n = 0
    }
  }
  return parts.join('.')
}

/** GeneralizedTime (`YYYYMMDDHHMMSS[.fff]Z`), as OCSP writes it. */
function decodeTime(t: Tlv): number {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(t.value.toString('latin1'))
  if (t.tag !== 0x18 || !m) throw new Error('malformed OCSP time')
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)
}

const SEQ = 0x30
const OID_SHA1 = '1.3.14.3.2.26'
const OID_BASIC = '1.3.6.1.5.5.7.48.1.1'
const OID_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9'
/** Signature algorithms a response may use: the digest node:crypto verifies with. */
const SIG_DIGEST: Record<string, string | null> = {
  '1.2.840.113549.1.1.5': 'sha1', // sha1WithRSAEncryption (still common for OCSP)
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null, // Ed25519
}

// ---- request --------------------------------------------------------------------------------

/** What identifies our certificate to the responder (CertID, SHA-1 as RFC 6960 clients send). */
export interface CertId {
  readonly issuerNameHash: Buffer
  readonly issuerKeyHash: Buffer
  /** Content octets of the certificate's serialNumber INTEGER. */
  readonly serial: Buffer
}

/** tbsCertificate's fields: [version] serial sigAlg issuer validity subject spki ... */
function tbsFields(certDer: Buffer): Tlv[] {
  const cert = expect(readTlv(certDer), SEQ, 'certificate')
  const tbs = expect(children(cert.value)[0], SEQ, 'tbsCertificate')
  const f = children(tbs.value)
  return f[0]?.tag === 0xa0 ? f.slice(1) : f
}

export function certId(cert: X509Certificate, issuer: X509Certificate): CertId {
  const leaf = tbsFields(cert.raw)
  const iss = tbsFields(issuer.raw)
  const subject = expect(iss[4], SEQ, 'issuer subject')
  const spki = children(expect(iss[5], SEQ, 'issuer public key').value)
  const key = expect(spki[1], 0x03, 'issuer public key bits')
  return {
    issuerNameHash: createHash('sha1').update(subject.raw).digest(),
    // The BIT STRING's content without its unused-bits octet.
    issuerKeyHash: createHash('sha1').update(key.value.subarray(1)).digest(),
    serial: expect(leaf[0], 0x02, 'serial number').value,
  }
}

/** An OCSPRequest for one certificate, without a nonce (responders and CDNs cache by request). */
export function buildRequest(id: CertId): Buffer {
  const sha1 = Buffer.from('300906052b0e03021a0500', 'hex')
  const certIdDer = encode(
    SEQ,
    sha1,
    encode(0x04, id.issuerNameHash),
    encode(0x04, id.issuerKeyHash),
    encode(0x02, id.serial),
  )
  return encode(SEQ, encode(SEQ, encode(SEQ, encode(SEQ, certIdDer))))
}

// ---- response -------------------------------------------------------------------------------

export interface CheckedResponse {
  readonly thisUpdate: number
  /** undefined when the responder gives none (newer information is always available). */
  readonly nextUpdate: number | undefined
}

/** Clock difference tolerated between us and the responder. */
const SKEW_MS = 5 * 60_000

/**
 * Checks a DER OCSPResponse for our certificate. Throws with the reason when it must not be
 * stapled: not successful, not signed by the issuer or a responder the issuer delegated to
 * (id-kp-OCSPSigning), about another certificate, not `good`, from the future, or expired.
 */
export function checkResponse(
  der: Buffer,
  id: CertId,
  issuer: X509Certificate,
  now = Date.now(),
): CheckedResponse {
  const top = children(expect(readTlv(der), SEQ, 'OCSPResponse').value)
  const status = expect(top[0], 0x0a, 'responseStatus').value[0]
  const names = [
    'successful',
    'malformedRequest',
    'internalError',
    'tryLater',
    '4',
    'sigRequired',
    'unauthorized',
  ]
  if (status !== 0) throw new Error(`responder answered ${names[status ?? 4] ?? String(status)}`)
  const bytes = children(
    expect(children(expect(top[1], 0xa0, 'responseBytes').value)[0], SEQ, 'responseBytes').value,
  )
  if (decodeOid(expect(bytes[0], 0x06, 'responseType').value) !== OID_BASIC)
    throw new Error('not a basic OCSP response')
  const basic = children(
    expect(readTlv(expect(bytes[1], 0x04, 'response').value), SEQ, 'BasicOCSPResponse').value,
  )
  const tbs = expect(basic[0], SEQ, 'tbsResponseData')
  const sigAlg = decodeOid(
    expect(children(expect(basic[1], SEQ, 'signatureAlgorithm').value)[0], 0x06, 'algorithm').value,
  )
  const sigBits = expect(basic[2], 0x03, 'signature').value
  if (!(sigAlg in SIG_DIGEST)) throw new Error(`unsupported signature algorithm ${sigAlg}`)
  const signature = sigBits.subarray(1)

  // Signed by the issuer itself, or by a certificate it issued for OCSP signing.
  const signers: KeyObject[] = [issuer.publicKey]
  if (basic[3]?.tag === 0xa0) {
    for (const c of children(expect(children(basic[3].value)[0], SEQ, 'certs').value)) {
      const x = new X509Certificate(c.raw)
      if (x.checkIssued(issuer) && x.verify(issuer.publicKey) && x.keyUsage?.includes(OID_OCSP_SIGNING)) {
        if (now < Date.parse(x.validFrom) || now > Date.parse(x.validTo)) continue
        signers.push(x.publicKey)
      }
    }
  }
  const digest = SIG_DIGEST[sigAlg] ?? null
  if (!signers.some((k) => cryptoVerify(digest, tbs.raw, k, signature)))
    throw new Error('signature not made by the issuer or a responder it authorised')

  let f = children(tbs.value)
  if (f[0]?.tag === 0xa0) f = f.slice(1) // version
  const responses = children(expect(f[2], SEQ, 'responses').value)
  for (const r of responses) {
    const parts = children(expect(r, SEQ, 'SingleResponse').value)
    const cid = children(expect(parts[0], SEQ, 'CertID').value)
    if (
      decodeOid(expect(children(expect(cid[0], SEQ, 'hashAlgorithm').value)[0], 0x06, 'hash').value) !==
      OID_SHA1
    )
      continue
    const same =
      expect(cid[1], 0x04, 'issuerNameHash').value.equals(id.issuerNameHash) &&
      expect(cid[2], 0x04, 'issuerKeyHash').value.equals(id.issuerKeyHash) &&
      expect(cid[3], 0x02, 'serialNumber').value.equals(id.serial)
    if (!same) continue
    const certStatus = parts[1]
    if (certStatus?.tag === 0xa1) throw new Error('the certificate is REVOKED')
    if (certStatus?.tag !== 0x80)
      throw new Error('the responder does not know the certificate (status unknown)')
    const thisUpdate = decodeTime(parts[2]!)
    const next = parts[3]?.tag === 0xa0 ? decodeTime(readTlv(parts[3].value)) : undefined
    if (thisUpdate > now + SKEW_MS) throw new Error('response is from the future (check the clock)')
    if (next !== undefined && next <= now) throw new Error('response has expired (nextUpdate passed)')
    return { thisUpdate, nextUpdate: next }
  }
  throw new Error('response is not about this certificate')
}

// ---- schedule -------------------------------------------------------------------------------

/** A response without nextUpdate is stapled this long after it was fetched. */
const NO_NEXT_UPDATE_MS = 60 * 60_000
const MIN_REFRESH_MS = 60_000
const MAX_REFRESH_MS = 12 * 60 * 60_000
const MAX_RETRY_MS = 30 * 60_000

/** Until when a checked response may be stapled. */
export function expiryOf(r: CheckedResponse, fetchedAt: number): number {
  return r.nextUpdate ?? fetchedAt + NO_NEXT_UPDATE_MS
}

/** Next fetch after a good one: halfway to expiry, between 1 minute and 12 hours from now. */
export function refreshDelay(r: CheckedResponse, now: number): number {
  const expiry = expiryOf(r, now)
  const half = (Math.max(now, r.thisUpdate) + expiry) / 2 - now
  return Math.min(MAX_REFRESH_MS, Math.max(MIN_REFRESH_MS, Math.round(half)))
}

/** Next attempt after `failures` failures in a row: 1, 2, 4 ... minutes, at most 30. */
export function retryDelay(failures: number): number {
  return Math.min(MAX_RETRY_MS, MIN_REFRESH_MS * 2 ** Math.max(0, failures - 1))
}

// ---- fetching -------------------------------------------------------------------------------

const FETCH_TIMEOUT_MS = 10_000
const MAX_RESPONSE_BYTES = 64 * 1024

export type OcspFetch = (url: string, body: Buffer) => Promise<Buffer>

/** POSTs the request (RFC 6960 appendix A.1); bounded in time and size. */
export const postOcsp: OcspFetch = (url, body) =>
  new Promise((resolve, reject) => {
    const u = new URL(url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new Error(`unsupported OCSP responder URL ${url}`))
      return
    }
    const req = (u.protocol === 'https:' ? https : http).request(u, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request', 'content-length': body.length },
      timeout: FETCH_TIMEOUT_MS,
    })
    req.on('socket', (s) => s.unref())
    req.on('timeout', () => req.destroy(new Error(`no answer within ${FETCH_TIMEOUT_MS / 1000} s`)))
    req.on('error', reject)
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        reject(new Error(`responder answered HTTP ${res.statusCode}`))
        return
      }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > MAX_RESPONSE_BYTES)
          req.destroy(new Error(`response larger than ${MAX_RESPONSE_BYTES} bytes`))
        else chunks.push(c)
      })
      res.on('end', () => resolve(Buffer.concat(chunks)))
      res.on('error', reject)
    })
    req.end(body)
  })

// ---- the stapler ----------------------------------------------------------------------------

interface Entry {
  readonly certPath: string
  readonly url: string
  readonly id: CertId
  readonly issuer: X509Certificate
  readonly request: Buffer
  response: Buffer | undefined
  expires: number
  failures: number
  timer: NodeJS.Timeout | undefined
  closed: boolean
}

/** The responder URL of a certificate (AIA `OCSP - URI:`), if it names one. */
export function responderUrl(cert: X509Certificate): string | undefined {
  const m = /(?:^|\n)OCSP - URI:([^\n]+)/.exec(cert.infoAccess ?? '')
  return m?.[1]?.trim()
}

function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

export class OcspStapler {
  /** By SHA-256 of the leaf certificate's DER (what 'OCSPRequest' hands us). */
  #entries = new Map<string, Entry>()
  readonly #log: Logger
  readonly #fetch: OcspFetch

  constructor(log: Logger, fetch: OcspFetch = postOcsp) {
    this.#log = log
    this.#fetch = fetch
  }

  /** Follows the listener's certificates: new ones start fetching, removed ones stop. */
  update(certs: readonly CertificateMaterial[]): void {
    const keep = new Set<string>()
    for (const c of certs) {
      const blocks = pemBlocks(c.cert)
      if (blocks.length === 0) continue
      const leaf = new X509Certificate(blocks[0]!)
      const key = fingerprint(leaf.raw)
      keep.add(key)
      if (this.#entries.has(key)) continue
      const url = responderUrl(leaf)
      if (url === undefined) continue
      const issuer = blocks
        .slice(1)
        .map((b) => new X509Certificate(b))
        .find((x) => leaf.checkIssued(x) && leaf.verify(x.publicKey))
      if (!issuer) {
        this.#log.warn(
          { cert: c.certPath, ocsp_responder: url },
          'OCSP stapling off for this certificate: its issuer is not in the file (use the full chain)',
        )
        continue
      }
      const id = certId(leaf, issuer)
      const entry: Entry = {
        certPath: c.certPath,
        url,
        id,
        issuer,
        request: buildRequest(id),
        response: undefined,
        expires: 0,
        failures: 0,
        timer: undefined,
        closed: false,
      }
      this.#entries.set(key, entry)
      void this.#refresh(entry)
    }
    for (const [key, e] of this.#entries) {
      if (keep.has(key)) continue
      this.#stop(e)
      this.#entries.delete(key)
    }
  }

  /** The response to staple for this certificate (DER), or undefined: none, or expired. */
  staple(certDer: Buffer, now = Date.now()): Buffer | undefined {
    const e = this.#entries.get(fingerprint(certDer))
    return e?.response && now < e.expires ? e.response : undefined
  }

  close(): void {
    for (const e of this.#entries.values()) this.#stop(e)
    this.#entries.clear()
  }

  #stop(e: Entry): void {
    e.closed = true
    clearTimeout(e.timer)
  }

  async #refresh(e: Entry): Promise<void> {
    let delay: number
    try {
      const der = await this.#fetch(e.url, e.request)
      const now = Date.now()
      const checked = checkResponse(der, e.id, e.issuer, now)
      e.response = der
      e.expires = expiryOf(checked, now)
      e.failures = 0
      delay = refreshDelay(checked, now)
      this.#log.debug(
        { cert: e.certPath, ocsp_responder: e.url, next_update: new Date(e.expires).toISOString() },
        'OCSP response fetched',
      )
    } catch (err) {
      e.failures++
      delay = retryDelay(e.failures)
      this.#log.warn(
        {
          cert: e.certPath,
          ocsp_responder: e.url,
          err: (err as Error).message,
          stapling: e.response && Date.now() < e.expires ? 'previous response' : 'none',
          retry_in_secs: Math.round(delay / 1000),
        },
        'OCSP response not refreshed',
      )
    }
    if (e.closed) return
    e.timer = setTimeout(() => void this.#refresh(e), delay)
    e.timer.unref()
  }
}

function fingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex')
}
