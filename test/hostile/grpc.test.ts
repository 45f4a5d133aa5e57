// Hostile gRPC and HTTP/2 traffic on the h2c listener and from h2 upstreams: garbage frames,
// a message over the body limit, calls reset halfway, an upstream that resets or vanishes
// mid-stream. None of it may end the process; the proxy keeps answering gRPC calls after each.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { makeCert } from '../helpers/certs'
import {
  ECHO_ROUTE,
  type EchoClient,
  type GrpcServer,
  grpc,
  rawUnary,
  readyClient,
  startGrpcServer,
  unary,
} from '../helpers/grpc'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'

const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

describe('hostile gRPC / HTTP/2 traffic', () => {
  let up: GrpcServer
  let vanishing: http2.Http2Server
  let tlsUp: http2.Http2SecureServer
  let proxy: RunningProxy
  let client: EchoClient
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'locci-grpc-hostile-'))
    const cert = await makeCert(dir, 'up.test', ['localhost'])
    up = await startGrpcServer()
    // An upstream that sends half a message then drops the whole connection.
    vanishing = http2.createServer()
    vanishing.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      stream.write(Buffer.from([0, 0, 0, 0, 100, 1, 2]))
      setTimeout(() => stream.session?.destroy(), 20)
    })
    await new Promise<void>((r) => vanishing.listen(0, '127.0.0.1', r))
    // A plain h2 (TLS) server for h2load: 200 and a short body.
    tlsUp = http2.createSecureServer({ cert: cert.cert, key: cert.key }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
    })
    await new Promise<void>((r) => tlsUp.listen(0, '127.0.0.1', r))
    proxy = await startProxy(`mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
  h2c: true
  max_body_bytes: 65536
upstreams:
  echo: { servers: ["${up.address}"], protocol: h2c }
  vanishing: { servers: ["127.0.0.1:${(vanishing.address() as AddressInfo).port}"], protocol: h2c }
  web:
    servers: ["127.0.0.1:${(tlsUp.address() as AddressInfo).port}"]
    protocol: h2
    tls: true
    ca_path: ${cert.certPath}
    sni: localhost
api_gateway:
  routes:
    ${ECHO_ROUTE}
    vanishing: { path_pattern: "^/vanish\\\\.Svc/", upstream: vanishing }
    web: { path_pattern: "^/web", upstream: web }
`)
    client = await readyClient(proxy.port)
  })
  after(async () => {
    client?.close()
    await proxy?.stop()
    await up?.close()
    vanishing?.close()
    tlsUp?.close()
  })

  const stillServes = async () => {
    const r = await unary(client, { text: 'alive' })
    assert.equal(r.reply.text, 'echo:alive')
    assert.equal(proxy.child.exitCode, null)
  }

  test('garbage after the preface: the connection is closed, the process serves on', async () => {
    for (const junk of [
      Buffer.from('\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff', 'latin1'),
      // A HEADERS frame with an undecodable HPACK block on stream 1.
      Buffer.from([0, 0, 4, 1, 5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
      // DATA on stream 0.
      Buffer.from([0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
    ]) {
      const s = net.connect(proxy.port, '127.0.0.1')
      s.on('error', () => undefined)
      await new Promise((r) => s.once('connect', r))
      s.write(PREFACE)
      s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])) // empty SETTINGS
      s.write(junk)
      await until(() => s.destroyed || s.readableEnded, 'the connection closed', 5000).catch(() =>
        s.destroy(),
      )
      s.destroy()
    }
    // Only a preface prefix, then nothing.
    const half = net.connect(proxy.port, '127.0.0.1')
    half.on('error', () => undefined)
    half.write('PRI * HTTP')
    half.destroy()
    await stillServes()
  })

  test('a message over the body limit is RESOURCE_EXHAUSTED', async () => {
    await assert.rejects(
      unary(client, { text: 'big', blob: Buffer.alloc(200_000) }),
      (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED)
        return true
      },
    )
    await stillServes()
  })

  test('calls reset by the client mid-stream, many at once', async () => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
    session.on('error', () => undefined)
    for (let i = 0; i < 50; i++) {
      const s = session.request({
        ':method': 'POST',
        ':path': '/locci.test.Echo/Bidi',
        'content-type': 'application/grpc',
        te: 'trailers',
      })
      s.on('error', () => undefined)
      s.write(Buffer.from([0, 0, 0, 0, 3, 0x0a, 1, 0x41]))
      // Half a frame, then a reset.
      s.write(Buffer.from([0, 0, 0, 0, 9, 1]))
      setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), i % 5)
    }
    await until(() => up.cancelled >= 1, 'the server hearing cancellations')
    session.destroy()
    await stillServes()
  })

  test('an upstream that vanishes mid-response: the call fails, the process serves on', async () => {
    const r = await rawUnary(client, '/vanish.Svc/Call')
    assert.notEqual(r.code, grpc.status.OK)
    await stillServes()
  })

  test('h2load through the proxy to an h2 upstream: no errors', async () => {
    const { stdout } = await promisify(execFile)('h2load', [
      '-n',
      '2000',
      '-c',
      '10',
      '-m',
      '10',
      `http://127.0.0.1:${proxy.port}/web`,
    ])
    const m =
      /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
        stdout,
      )
    assert.ok(m, stdout)
    assert.deepEqual(m.slice(1), ['2000', '2000', '2000', '0', '0'], stdout)
    assert.match(stdout, /status codes: 2000 2xx/)
    await stillServes()
  })
})
