// compress on the wire: the real binary in front of a real node:http upstream, read by the real
// curl (`--compressed` decodes whatever it negotiated; with a forced Accept-Encoding the raw
// bytes are decoded here by Node's zlib). Both modes, named instances, and refused settings.

import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'
import { makeCert } from '../helpers/certs'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'

const HAS_CURL = spawnSync('curl', ['--version']).error === undefined
const JSON_BODY = JSON.stringify(
  Array.from({ length: 400 }, (_, i) => ({ id: i, name: `user ${i}`, email: `u${i}@example.com` })),
)
const CSV_BODY = Array.from({ length: 300 }, (_, i) => `${i},user ${i},u${i}@example.com`).join('\n')
/** About 3 MB: many times the stream buffers on the way, so the flow is driven by backpressure. */
const BIG_BODY = JSON.stringify(
  Array.from({ length: 40_000 }, (_, i) => ({ id: i, name: `user ${i}`, score: (i * 7919) % 1000 })),
)

/** curl, asynchronously (the upstream runs in this process); stdout as bytes. */
function curl(args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '--max-time', '20', ...args],
      { encoding: 'buffer', maxBuffer: 1 << 26 },
      (err, out) => (err ? reject(err) : resolve(out)),
    )
  })
}

/** `curl -D -` output split into a lower-cased header map and the body. */
function split(out: Buffer): { headers: Record<string, string>; body: Buffer } {
  const end = out.indexOf('\r\n\r\n')
  const headers: Record<string, string> = {}
  for (const line of out.subarray(0, end).toString('latin1').split('\r\n').slice(1)) {
    const c = line.indexOf(':')
    headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim()
  }
  return { headers, body: out.subarray(end + 4) }
}

describe('compress on the wire', { skip: !HAS_CURL && 'curl is not installed' }, () => {
  let upstream: http.Server
  let gw: RunningProxy
  let lb: RunningProxy
  let tls: RunningProxy

  before(async () => {
    upstream = http.createServer((req, res) => {
      const csv = req.url?.endsWith('.csv')
      const body = csv ? CSV_BODY : req.url === '/big' ? BIG_BODY : JSON_BODY
      res.writeHead(200, {
        'content-type': csv ? 'text/csv' : 'application/json',
        'content-length': Buffer.byteLength(body),
      })
      res.end(body)
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const address = `127.0.0.1:${(upstream.address() as AddressInfo).port}`
    gw = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${address}"] }
api_gateway:
  middlewares:
    compress: {}
    csv_only:
      type: compress
      encodings: [gzip]
      content_types: [text/csv]
      min_bytes: 10
      levels: { gzip: 9 }
  routes:
    plain: { path_pattern: "^/plain", upstream: app }
    csv: { path_pattern: "^/csv", upstream: app, middlewares: [csv_only] }
    api: { path_pattern: "^/", upstream: app, middlewares: [compress] }
`)
    lb = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${address}"] }
middlewares:
  compress: { encodings: [gzip] }
load_balancer: { upstream: app, middlewares: [compress] }
`)
    const cert = await makeCert(mkdtempSync(path.join(tmpdir(), 'locci-compress-')), 'localhost')
    tls = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  tls: { cert_path: ${cert.certPath}, key_path: ${cert.keyPath} }
upstreams:
  app: { servers: ["${address}"] }
middlewares:
  compress: {}
load_balancer: { upstream: app, middlewares: [compress] }
`)
  })

  after(async () => {
    await gw?.stop()
    await lb?.stop()
    await tls?.stop()
    upstream.closeAllConnections()
    await new Promise<void>((r) => upstream.close(() => r()))
  })

  test('curl --compressed gets the body, smaller on the wire', async () => {
    const out = await curl(['--compressed', '-D', '-', `${gw.url}/api/users`])
    const { headers, body } = split(out)
    // curl 7.88 offers `deflate, gzip, br, zstd`; on Node 20 the proxy offers br then gzip.
    assert.match(headers['content-encoding'] ?? '', /^(zstd|br)$/)
    assert.equal(body.toString(), JSON_BODY)
    const size = Number(
      (
        await curl(['--compressed', '-o', '/dev/null', '-w', '%{size_download}', `${gw.url}/api/users`])
      ).toString(),
    )
    assert.ok(size > 0 && size < JSON_BODY.length / 5, `${size} bytes on the wire for ${JSON_BODY.length}`)
  })

  test("curl with Accept-Encoding: br: the bytes decode with Node's zlib", async () => {
    const { headers, body } = split(
      await curl(['-H', 'Accept-Encoding: br', '-D', '-', `${gw.url}/api/users`]),
    )
    assert.equal(headers['content-encoding'], 'br')
    assert.equal(headers.vary, 'Accept-Encoding')
    assert.equal(zlib.brotliDecompressSync(body).toString(), JSON_BODY)
  })

  test('curl with Accept-Encoding: gzip;q=1, br;q=0.5 gets gzip', async () => {
    const { headers, body } = split(
      await curl(['-H', 'Accept-Encoding: gzip;q=1, br;q=0.5', '-D', '-', `${gw.url}/api/users`]),
    )
    assert.equal(headers['content-encoding'], 'gzip')
    assert.equal(zlib.gunzipSync(body).toString(), JSON_BODY)
  })

  test('curl without Accept-Encoding, and a route without compress: the body as it is', async () => {
    for (const [args, url] of [
      [[], `${gw.url}/api/users`],
      [['--compressed'], `${gw.url}/plain`],
    ] as const) {
      const { headers, body } = split(await curl([...args, '-D', '-', url]))
      assert.equal(headers['content-encoding'], undefined, url)
      assert.equal(headers['content-length'], String(JSON_BODY.length))
      assert.equal(body.toString(), JSON_BODY)
    }
  })

  test('a named instance with its own types, coding and level', async () => {
    const csv = split(await curl(['--compressed', '-D', '-', `${gw.url}/csv/data.csv`]))
    assert.equal(csv.headers['content-encoding'], 'gzip')
    assert.equal(csv.body.toString(), CSV_BODY)
    // JSON is not one of its types.
    const json = split(await curl(['--compressed', '-D', '-', `${gw.url}/csv/data.json`]))
    assert.equal(json.headers['content-encoding'], undefined)
  })

  test('HTTP/2 (curl --http2 over TLS): a 3 MB body streams through the compressor intact', async () => {
    const out = await curl(['--http2', '-k', '--compressed', '-D', '-', `${tls.url}/big`])
    const { headers, body } = split(out)
    assert.match(out.subarray(0, 12).toString(), /^HTTP\/2 200/)
    assert.match(headers['content-encoding'] ?? '', /^(zstd|br)$/)
    assert.equal(body.length, BIG_BODY.length)
    assert.ok(body.toString() === BIG_BODY, "the decoded body is the upstream's")
  })

  test('HTTP/1.0 (curl --http1.0): compressed, delimited by closing the connection', async () => {
    const { headers, body } = split(await curl(['--http1.0', '--compressed', '-D', '-', `${gw.url}/big`]))
    assert.match(headers['content-encoding'] ?? '', /^(zstd|br)$/)
    assert.equal(headers['transfer-encoding'], undefined)
    assert.equal(headers['content-length'], undefined)
    assert.ok(body.toString() === BIG_BODY, "the decoded body is the upstream's")
  })

  test('load_balancer mode', async () => {
    const { headers, body } = split(await curl(['--compressed', '-D', '-', `${lb.url}/anything`]))
    assert.equal(headers['content-encoding'], 'gzip')
    assert.equal(body.toString(), JSON_BODY)
  })
})

describe('compress settings the proxy refuses', () => {
  test('validate names the file, line and key of each problem', () => {
    const { file } = writeConfig(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams: { app: { servers: ["127.0.0.1:3001"] } }
middlewares:
  compress:
    encodings: [gzip, gzip]
    content_types: ["text/*", "html"]
    levels: { br: 3 }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: app, middlewares: [compress] }
`)
    const r = runCli(['validate', file])
    assert.equal(r.status, 1)
    for (const line of [
      `${file}:6: middlewares.compress.encodings: lists gzip twice`,
      `${file}:7: middlewares.compress.content_types: "html" is not a media type`,
      `${file}:8: middlewares.compress.levels: sets br, which encodings does not list`,
    ]) {
      assert.ok(r.stderr.includes(line), `${line}\n${r.stderr}`)
    }
  })
})
