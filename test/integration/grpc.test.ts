// gRPC through the gateway with the real stack (@grpc/grpc-js on both sides): the client speaks
// h2c to the proxy (server.h2c), the proxy speaks h2c or h2 over TLS to the server. Every kind
// of call, metadata and trailers, status codes, deadlines, cancellation both ways, a 1 MiB
// message, and the proxy's own failures answered as gRPC statuses.

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { makeCert, type TestCert } from '../helpers/certs'
import {
  ECHO_ROUTE,
  type EchoClient,
  type EchoReply,
  echoClient,
  type GrpcServer,
  grpc,
  rawUnary,
  readyClient,
  startGrpcServer,
  unary,
} from '../helpers/grpc'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'

const dir = mkdtempSync(path.join(tmpdir(), 'locci-grpc-'))
let cert: TestCert
before(async () => {
  cert = await makeCert(dir, 'grpc.test', ['grpc.test', 'localhost'])
})

function collect<T>(
  s: NodeJS.ReadableStream & { on(e: 'status', f: (st: grpc.StatusObject) => void): unknown },
) {
  return new Promise<{ items: T[]; error?: grpc.ServiceError; status?: grpc.StatusObject }>((resolve) => {
    const items: T[] = []
    let error: grpc.ServiceError | undefined
    s.on('data', (d: T) => items.push(d))
    s.on('error', (e: grpc.ServiceError) => {
      error = e
    })
    s.on('status', (st) => setImmediate(() => resolve({ items, error, status: st })))
  })
}

for (const kind of ['h2c', 'h2'] as const) {
  describe(`gRPC through the proxy to an ${kind} upstream`, () => {
    let up: GrpcServer
    let proxy: RunningProxy
    let client: EchoClient
    let cancelling: http2.Http2Server
    before(async () => {
      up = await startGrpcServer(kind === 'h2' ? { tls: cert } : {})
      // A server that starts answering and then cancels the call (RST_STREAM CANCEL).
      cancelling = http2.createServer()
      cancelling.on('stream', (stream) => {
        // waitForTrailers: close() would otherwise end the stream cleanly before its reset.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
        stream.write(Buffer.from([0, 0, 0, 0, 0]))
        setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 50)
      })
      await new Promise<void>((r) => cancelling.listen(0, '127.0.0.1', r))
      const tlsKeys =
        kind === 'h2' ? `\n    tls: true\n    ca_path: ${cert.certPath}\n    sni: localhost` : ''
      proxy = await startProxy(`mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
  h2c: true
upstreams:
  echo:
    servers: ["${up.address}"]
    protocol: ${kind}${tlsKeys}
  dead:
    servers: ["127.0.0.1:1"]
    protocol: h2c
    retries: 0
  cancelling:
    servers: ["127.0.0.1:${(cancelling.address() as AddressInfo).port}"]
    protocol: h2c
api_gateway:
  routes:
    ${ECHO_ROUTE}
    dead: { path_pattern: "^/dead\\\\.Svc/", upstream: dead }
    cancelling: { path_pattern: "^/cancel\\\\.Svc/", upstream: cancelling }
`)
      client = await readyClient(proxy.port)
    })
    after(async () => {
      client?.close()
      await proxy?.stop()
      await up?.close()
      cancelling?.close()
    })

    test('unary: reply, metadata both ways, trailers', async () => {
      const md = new grpc.Metadata()
      md.set('x-echo', 'hello')
      const r = await unary(client, { text: 'hi' }, { md })
      assert.equal(r.reply.text, 'echo:hi')
      assert.equal(r.headers.get('x-echo')[0], 'hello')
      assert.equal(r.trailers.get('x-trailer')[0], 'done')
    })

    test('a status code, its message and trailers come through', async () => {
      await assert.rejects(
        unary(client, { text: 'x', fail_code: grpc.status.FAILED_PRECONDITION }),
        (e: grpc.ServiceError) => {
          assert.equal(e.code, grpc.status.FAILED_PRECONDITION)
          assert.equal(e.details, 'failed on purpose: x')
          assert.equal(e.metadata.get('x-why')[0], 'asked')
          return true
        },
      )
    })

    test('server streaming', async () => {
      const r = await collect<EchoReply>(client.ServerStream({ text: 's', repeat: 5 }))
      assert.equal(r.error, undefined)
      assert.deepEqual(
        r.items.map((i) => i.text),
        ['s#0', 's#1', 's#2', 's#3', 's#4'],
      )
    })

    test('client streaming', async () => {
      const reply = await new Promise<EchoReply>((resolve, reject) => {
        const call = client.ClientStream(new grpc.Metadata(), {}, (err, res) =>
          err ? reject(err) : resolve(res!),
        )
        for (const t of ['a', 'b', 'c']) call.write({ text: t, blob: Buffer.alloc(10) })
        call.end()
      })
      assert.equal(reply.text, 'a,b,c|30')
    })

    test('bidirectional streaming: each answer before the next request', async () => {
      const call = client.Bidi()
      const got: string[] = []
      for (const t of ['1', '2', '3']) {
        call.write({ text: t })
        // Answers flow while the request stream is still open.
        const d = await new Promise<EchoReply>((r) => call.once('data', r))
        got.push(d.text)
      }
      call.end()
      await new Promise((r) => call.on('status', r))
      assert.deepEqual(got, ['echo:1', 'echo:2', 'echo:3'])
    })

    test('a 1 MiB message each way', async () => {
      const blob = Buffer.alloc(1 << 20, 7)
      const r = await unary(client, { text: 'big', blob })
      assert.equal(r.reply.blob.length, 1 << 20)
      assert.ok(r.reply.blob.equals(blob))
    })

    test('grpc-timeout is the deadline: DEADLINE_EXCEEDED, the server call cancelled', async () => {
      const before = up.cancelled
      const calls = up.calls.Unary ?? 0
      await assert.rejects(
        unary(client, { text: 'slow', delay_ms: 5000 }, { deadlineMs: 1000 }),
        (e: grpc.ServiceError) => {
          assert.equal(e.code, grpc.status.DEADLINE_EXCEEDED)
          return true
        },
      )
      assert.equal(up.calls.Unary, calls + 1, 'the call reached the server')
      await until(() => up.cancelled > before, 'the server hearing the cancellation')
    })

    test('a client cancelling a stream cancels the server call', async () => {
      const before = up.cancelled
      const call = client.ServerStream({ text: 'c', repeat: 1000, delay_ms: 20 })
      call.on('error', () => undefined)
      await new Promise((r) => call.once('data', r))
      call.cancel()
      await until(() => up.cancelled > before, 'the server hearing the cancellation')
    })

    test('a server cancelling a call reaches the client as CANCELLED', async () => {
      const r = await rawUnary(client, '/cancel.Svc/Call')
      assert.equal(r.code, grpc.status.CANCELLED, r.details)
    })

    test('no route: UNIMPLEMENTED from the proxy', async () => {
      const r = await rawUnary(client, '/nothing.Here/Method')
      assert.equal(r.code, grpc.status.UNIMPLEMENTED)
      assert.equal(r.details, 'no route for this path')
    })

    test('every server down: UNAVAILABLE from the proxy', async () => {
      const r = await rawUnary(client, '/dead.Svc/Method')
      assert.equal(r.code, grpc.status.UNAVAILABLE)
    })

    test('HTTP/1.1 still works on the h2c listener', async () => {
      const res = await fetch(`http://127.0.0.1:${proxy.port}/nothing`)
      assert.equal(res.status, 404)
    })

    test('many calls share a few sessions and all succeed', async () => {
      const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => unary(client, { text: String(i) })))
      assert.equal(rs.length, 200)
      assert.ok(rs.every((r, i) => r.reply.text === `echo:${i}`))
    })
  })
}

describe('gRPC health checks (grpc.health.v1)', () => {
  let a: GrpcServer
  let b: GrpcServer
  let proxy: RunningProxy
  let client: EchoClient
  before(async () => {
    a = await startGrpcServer({ name: 'a' })
    b = await startGrpcServer({ name: 'b' })
    for (const s of [a, b]) s.health.set('locci.test.Echo', 'SERVING')
    proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  h2c: true
upstreams:
  echo:
    servers: ["${a.address}", "${b.address}"]
    protocol: h2c
    health_check: { grpc: true, service: locci.test.Echo, interval_secs: 0.1, timeout_secs: 1 }
load_balancer: { upstream: echo }
`)
    client = echoClient(`127.0.0.1:${proxy.port}`)
  })
  after(async () => {
    client?.close()
    await proxy?.stop()
    await a?.close()
    await b?.close()
  })

  test('a server answering NOT_SERVING leaves the rotation and comes back when SERVING', async () => {
    const servers = async () => {
      const rs = await Promise.all(Array.from({ length: 6 }, () => unary(client, { text: '' })))
      return new Set(rs.map((r) => r.reply.text.split(':')[0]))
    }
    await until(async () => (await servers()).size === 2, 'both servers in rotation')
    b.health.set('locci.test.Echo', 'NOT_SERVING')
    const line = await proxy.waitForLog(
      (l) => l.msg === 'upstream server unhealthy; out of rotation',
      'b unhealthy',
    )
    assert.equal(line.reason, 'NOT_SERVING')
    assert.deepEqual([...(await servers())], ['a'])
    b.health.set('locci.test.Echo', 'SERVING')
    await until(async () => (await servers()).size === 2, 'b back in rotation')
    assert.ok((b.calls.Health ?? 0) > 0)
  })
})

describe('gRPC over TLS to the proxy (ALPN h2)', () => {
  let up: GrpcServer
  let proxy: RunningProxy
  let client: EchoClient
  before(async () => {
    up = await startGrpcServer()
    proxy = await startProxy(`mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
  tls: { cert_path: ${cert.certPath}, key_path: ${cert.keyPath} }
upstreams:
  echo: { servers: ["${up.address}"], protocol: h2c }
api_gateway:
  routes:
    ${ECHO_ROUTE}
`)
    client = echoClient(`127.0.0.1:${proxy.port}`, cert.cert, 'localhost')
  })
  after(async () => {
    client?.close()
    await proxy?.stop()
    await up?.close()
  })

  test('a unary call, a stream and a proxy error', async () => {
    assert.equal((await unary(client, { text: 'tls' })).reply.text, 'echo:tls')
    const r = await collect<EchoReply>(client.ServerStream({ text: 's', repeat: 3 }))
    assert.equal(r.items.length, 3)
    assert.equal((await rawUnary(client, '/nothing.Here/M')).code, grpc.status.UNIMPLEMENTED)
  })
})
