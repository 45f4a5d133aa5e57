// An HTTP/2 client abusing one connection: the limits it is told in SETTINGS
// (server.http2.max_concurrent_streams, max_header_list_bytes) hold, oversized header lists are
// refused, and a rapid-reset flood (CVE-2023-44487: HEADERS then RST_STREAM, over and over) gets
// GOAWAY(ENHANCE_YOUR_CALM) and a closed connection while another client keeps being served.

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import http2 from 'node:http2'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import tls from 'node:tls'
import { makeCert, type TestCert } from '../helpers/certs'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

const dir = mkdtempSync(path.join(tmpdir(), 'locci-h2lim-'))
let cert: TestCert
let up: Upstream
before(async () => {
  cert = await makeCert(dir, 'localhost')
  up = await startUpstream('web')
})
after(() => up.close())

const yaml = (http2Limits = '') => `mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
${http2Limits}  tls: { cert_path: ${cert.certPath}, key_path: ${cert.keyPath} }
upstreams: { web: { servers: ["${up.address}"] } }
load_balancer: { upstream: web }
`

function connect(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://localhost:${port}`, { ca: cert.cert })
    s.once('remoteSettings', () => resolve(s))
    s.once('error', reject)
  })
}

function get(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':path': '/x', ...headers })
    let status = 0
    req.on('response', (h) => {
      status = Number(h[':status'])
    })
    req.on('error', reject)
    req.on('close', () => (status ? resolve(status) : reject(new Error(`reset with code ${req.rstCode}`))))
    req.resume()
    req.end()
  })
}

describe('HTTP/2 SETTINGS', () => {
  test('the defaults are advertised: 128 concurrent streams, 64 KiB of headers', async () => {
    const proxy = await startProxy(yaml())
    const s = await connect(proxy.port)
    try {
      assert.equal(s.remoteSettings.maxConcurrentStreams, 128)
      assert.equal(s.remoteSettings.maxHeaderListSize, 65536)
    } finally {
      s.close()
      await proxy.stop()
    }
  })

  test('configured limits are advertised and a larger header list is refused', async () => {
    const proxy = await startProxy(
      yaml('  http2: { max_concurrent_streams: 7, max_header_list_bytes: 4096 }\n'),
    )
    const s = await connect(proxy.port)
    try {
      assert.equal(s.remoteSettings.maxConcurrentStreams, 7)
      assert.equal(s.remoteSettings.maxHeaderListSize, 4096)
      assert.equal(await get(s, { 'x-small': 'a'.repeat(1000) }), 200)
      // node:http2 would refuse to send past the advertised size itself; pretend not to know.
      s.remoteSettings.maxHeaderListSize = 1 << 20
      await assert.rejects(get(s, { 'x-big': 'a'.repeat(8000) }), /ENHANCE_YOUR_CALM|reset with code 11/)
      assert.equal(await get(s), 200, 'the connection stays usable')
    } finally {
      s.close()
      await proxy.stop()
    }
  })
})

/** One HTTP/2 frame: 9-byte header, then the payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9)
  h.writeUIntBE(payload.length, 0, 3)
  h[3] = type
  h[4] = flags
  h.writeUInt32BE(stream, 5)
  return Buffer.concat([h, payload])
}

interface FloodResult {
  goawayCode: number | undefined
  closed: boolean
  sentPairs: number
}

/**
 * Opens a raw TLS connection (ALPN h2), then sends up to `pairs` HEADERS (GET /, HPACK static
 * entries) each followed at once by RST_STREAM(CANCEL). Resolves when the server closes the
 * connection, or after `waitMs` without that.
 */
function rapidReset(port: number, pairs: number, waitMs: number): Promise<FloodResult> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      port,
      host: '127.0.0.1',
      servername: 'localhost',
      ALPNProtocols: ['h2'],
      ca: cert.cert,
    })
    const result: FloodResult = { goawayCode: undefined, closed: false, sentPairs: 0 }
    let timer: NodeJS.Timeout | undefined
    sock.on('error', () => undefined)
    sock.on('close', () => {
      clearTimeout(timer)
      result.closed = true
      resolve(result)
    })
    sock.on('secureConnect', () => {
      if (sock.alpnProtocol !== 'h2') {
        reject(new Error(`ALPN gave ${sock.alpnProtocol}`))
        return
      }
      sock.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
      sock.write(frame(0x4, 0, 0, Buffer.alloc(0)))
      const authority = Buffer.from('localhost')
      // :method GET, :scheme https, :path /, :authority localhost (literal, indexed name 1).
      const block = Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x01, authority.length]), authority])
      const cancel = Buffer.alloc(4)
      cancel.writeUInt32BE(0x8)
      let i = 0
      const pump = () => {
        while (i < pairs && !sock.destroyed) {
          const id = 1 + 2 * i
          const chunk = Buffer.concat([frame(0x1, 0x4, id, block), frame(0x3, 0, id, cancel)])
          i++
          result.sentPairs = i
          if (!sock.write(chunk)) {
            sock.once('drain', pump)
            return
          }
        }
        timer = setTimeout(() => {
          resolve(result)
          sock.destroy()
        }, waitMs)
      }
      pump()
    })
    let rx = Buffer.alloc(0)
    sock.on('data', (d: Buffer) => {
      rx = Buffer.concat([rx, d])
      while (rx.length >= 9) {
        const len = rx.readUIntBE(0, 3)
        if (rx.length < 9 + len) break
        if (rx[3] === 0x7 && result.goawayCode === undefined) result.goawayCode = rx.readUInt32BE(9 + 4)
        rx = rx.subarray(9 + len)
      }
    })
  })
}

describe('HTTP/2 rapid reset (CVE-2023-44487)', () => {
  let proxy: RunningProxy
  before(async () => {
    proxy = await startProxy(yaml())
  })
  after(async () => {
    await proxy.stop()
  })

  test('a flood of cancelled streams gets GOAWAY(ENHANCE_YOUR_CALM) and a closed connection; others are served', async () => {
    const normal = await connect(proxy.port)
    try {
      const seenBefore = up.seen.length
      let served = 0
      let failed = 0
      let flooding = true
      const background = (async () => {
        while (flooding) {
          try {
            if ((await get(normal)) === 200) served++
          } catch {
            failed++
          }
        }
      })()
      const result = await rapidReset(proxy.port, 20_000, 10_000)
      flooding = false
      await background
      assert.equal(result.goawayCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 'GOAWAY code')
      assert.ok(result.closed, 'the server closed the flooding connection')
      assert.ok(result.sentPairs < 20_000 || result.closed, 'the flood was cut short')
      assert.ok(served > 0, 'the other client was served during the flood')
      assert.equal(failed, 0, 'no request of the other client failed')
      assert.equal(await get(normal), 200, 'and after it')
      // The budget is max(100, 2 x 128) cancelled streams, plus 32/s: the upstream saw at most
      // that many of the flood's requests (each cancelled one may or may not have reached it).
      const fromFlood = up.seen.length - seenBefore - served - 1
      assert.ok(fromFlood <= 256 + 32 * 15, `upstream saw ${fromFlood} flood requests`)
      await proxy.waitForLog((l) => l.error_type === 'http2_rapid_reset', 'the log line')
    } finally {
      normal.close()
    }
  })

  test('cancelling a few streams now and then is normal browsing and keeps the connection', async () => {
    const s = await connect(proxy.port)
    try {
      for (let i = 0; i < 50; i++) {
        const req = s.request({ ':path': '/slow' })
        req.on('error', () => undefined)
        req.close(http2.constants.NGHTTP2_CANCEL)
      }
      assert.equal(await get(s), 200)
      assert.equal(s.closed || s.destroyed, false)
    } finally {
      s.close()
    }
  })
})
