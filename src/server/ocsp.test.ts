// OCSP stapling parts against real openssl: the request we build is the one `openssl ocsp`
// builds, responses made by openssl's responder are accepted or refused for the right reasons,
// the schedule, and the stapler's behaviour with a responder that answers, fails or is absent.

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { hasOpenssl, makeOcspCa, type OcspCa } from '../../test/helpers/ocsp-ca'
import { until } from '../../test/helpers/until'
import type { CertificateMaterial } from '../config/tls'
import { createLogger } from '../observe/logger'
import {
  buildRequest,
  type CertId,
  certId,
  checkResponse,
  OcspStapler,
  postOcsp,
  refreshDelay,
  responderUrl,
  retryDelay,
} from './ocsp'

const log = createLogger({ level: 'silent', format: 'json' }).logger
const skip = hasOpenssl() ? false : 'openssl is not installed'

describe('OCSP stapling parts', { skip }, () => {
  let ca: OcspCa
  let leaf: X509Certificate
  let issuer: X509Certificate
  let id: CertId
  const material = (certPath: string, keyPath: string): CertificateMaterial => ({
    cert: readFileSync(certPath, 'utf8'),
    key: readFileSync(keyPath, 'utf8'),
    names: ['localhost'],
    certPath,
  })
  before(async () => {
    ca = await makeOcspCa()
    leaf = new X509Certificate(readFileSync(ca.leafPath))
    issuer = new X509Certificate(readFileSync(ca.caPath))
    id = certId(leaf, issuer)
  })
  after(() => ca.close())

  test('the responder URL is read from Authority Information Access', () => {
    assert.equal(responderUrl(leaf), ca.responderUrl)
    assert.equal(responderUrl(issuer), undefined)
  })

  test('the request is byte for byte what openssl builds (no nonce)', () => {
    const out = path.join(ca.dir, 'openssl-req.der')
    execFileSync('openssl', ['ocsp', '-issuer', ca.caPath, '-cert', ca.leafPath, '-no_nonce', '-reqout', out])
    assert.deepEqual(buildRequest(id), readFileSync(out))
  })

  test('responses are accepted only when they should be stapled', async () => {
    ca.setMode('good')
    ca.setValidityMinutes(60)
    const good = await postOcsp(ca.responderUrl, buildRequest(id))
    ca.setMode('revoked')
    const revoked = await postOcsp(ca.responderUrl, buildRequest(id))
    ca.setMode('good')
    const plainLeaf = new X509Certificate(readFileSync(ca.plainChainPath))
    const otherId = certId(plainLeaf, issuer)
    const tampered = Buffer.from(good)
    // The serial number inside tbsResponseData (covered by the signature).
    const at = tampered.indexOf(id.serial)
    assert.ok(at > 0)
    tampered[at] = tampered[at]! ^ 0x01
    const now = Date.now()
    const cases: Array<{ desc: string; der: Buffer; id?: CertId; now?: number; error?: RegExp }> = [
      { desc: 'a good response signed by the issuer', der: good },
      { desc: 'a revoked certificate', der: revoked, error: /REVOKED/ },
      { desc: 'a response about another certificate', der: good, id: otherId, error: /not about this/ },
      { desc: 'a response past its nextUpdate', der: good, now: now + 2 * 3600_000, error: /expired/ },
      { desc: 'a response from the future', der: good, now: now - 3600_000, error: /future/ },
      { desc: 'a modified response', der: tampered, error: /signature/ },
      { desc: 'tryLater', der: Buffer.from('30030a0103', 'hex'), error: /tryLater/ },
      { desc: 'truncated DER', der: good.subarray(0, 40), error: /truncated|malformed/ },
      { desc: 'not DER at all', der: Buffer.from('<html>oops</html>'), error: /./ },
    ]
    for (const c of cases) {
      const run = () => checkResponse(c.der, c.id ?? id, issuer, c.now ?? now)
      if (c.error) assert.throws(run, c.error, c.desc)
      else {
        const r = run()
        assert.ok(r.nextUpdate !== undefined && r.nextUpdate > now, c.desc)
      }
    }
  })

  test('a response signed by another key is refused', async () => {
    // The plain leaf's key is not the issuer's: a response "signed by the issuer" must verify.
    const other = new X509Certificate(readFileSync(ca.plainChainPath))
    const good = await postOcsp(ca.responderUrl, buildRequest(id))
    assert.throws(() => checkResponse(good, id, other), /signature/)
  })

  test('refresh and retry schedule', () => {
    const now = 1_000_000_000_000
    const h = 3600_000
    const cases = [
      { desc: 'halfway to nextUpdate', r: { thisUpdate: now, nextUpdate: now + 4 * h }, want: 2 * h },
      { desc: 'at most 12 h', r: { thisUpdate: now, nextUpdate: now + 7 * 24 * h }, want: 12 * h },
      { desc: 'at least 1 min', r: { thisUpdate: now - h, nextUpdate: now + 10_000 }, want: 60_000 },
      {
        desc: 'no nextUpdate: kept 1 h, refreshed after 30 min',
        r: { thisUpdate: now, nextUpdate: undefined },
        want: h / 2,
      },
    ]
    for (const c of cases) assert.equal(refreshDelay(c.r, now), c.want, c.desc)
    assert.deepEqual([1, 2, 3, 6, 10].map(retryDelay), [60_000, 120_000, 240_000, 1_800_000, 1_800_000])
  })

  test('the stapler fetches in the background, staples, and survives a failing responder', async () => {
    ca.setMode('good')
    ca.setValidityMinutes(60)
    const stapler = new OcspStapler(log)
    try {
      const before = ca.requests()
      stapler.update([material(ca.chainPath, ca.keyPath), material(ca.plainChainPath, ca.plainKeyPath)])
      await until(() => stapler.staple(leaf.raw), 'a stapled response', 15_000)
      assert.equal(ca.requests(), before + 1, 'one request: the certificate without a responder asks none')
      assert.equal(stapler.staple(new X509Certificate(readFileSync(ca.plainChainPath)).raw), undefined)
      assert.equal(stapler.staple(leaf.raw, Date.now() + 2 * 3600_000), undefined, 'not past its nextUpdate')
      stapler.update([material(ca.plainChainPath, ca.plainKeyPath)])
      assert.equal(stapler.staple(leaf.raw), undefined, 'a removed certificate staples nothing')
    } finally {
      stapler.close()
    }
  })

  test('a certificate whose file lacks the issuer, or a dead responder, staples nothing and throws nothing', async () => {
    let calls = 0
    const dead = new OcspStapler(log, async () => {
      calls++
      throw new Error('connect ECONNREFUSED')
    })
    try {
      dead.update([material(ca.leafPath, ca.keyPath)])
      assert.equal(calls, 0, 'no issuer in the file: no request')
      dead.update([material(ca.chainPath, ca.keyPath)])
      await until(() => calls === 1 || undefined, 'the failed attempt')
      assert.equal(dead.staple(leaf.raw), undefined)
    } finally {
      dead.close()
    }
  })

  test('a reload with the same certificate keeps its response and asks the responder nothing', async () => {
    const good = await postOcsp(ca.responderUrl, buildRequest(id))
    let answer: () => Promise<Buffer> = async () => good
    let calls = 0
    const stapler = new OcspStapler(log, () => {
      calls++
      return answer()
    })
    try {
      stapler.update([material(ca.chainPath, ca.keyPath)])
      await until(() => stapler.staple(leaf.raw), 'the first response')
      answer = async () => {
        throw new Error('responder down')
      }
      // A new certificate list with the same certificate keeps the entry and its response.
      stapler.update([material(ca.chainPath, ca.keyPath)])
      assert.equal(calls, 1)
      assert.deepEqual(stapler.staple(leaf.raw), good)
    } finally {
      stapler.close()
    }
  })
})
