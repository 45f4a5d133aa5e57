// gRPC-Web from a real browser: headless Chromium loads a page from one origin that calls the
// Echo service through the proxy (another origin, so CORS is in play) with fetch() and
// gRPC-Web framing made by hand, in both encodings (binary and -text). The grpc_web middleware
// turns the calls into gRPC to an h2c server and the trailers into the body's last frame.

import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { type GrpcServer, startGrpcServer } from '../helpers/grpc'
import { type RunningProxy, startProxy } from '../helpers/proxy'

// The page's code: EchoRequest { text = 1, fail_code = 5 } encoded and EchoReply { text = 1 }
// decoded by hand (short strings: one-byte lengths), frames split, trailers parsed.
const PAGE = `<!doctype html><html><body><script>
function frame(text, failCode) {
  const t = new TextEncoder().encode(text)
  const msg = [0x0a, t.length, ...t]
  if (failCode) msg.push(0x28, failCode)
  const f = new Uint8Array(5 + msg.length)
  new DataView(f.buffer).setUint32(1, msg.length)
  f.set(msg, 5)
  return f
}
function b64(bytes) { let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s) }
function unb64(s) { const bin = atob(s); return Uint8Array.from(bin, (c) => c.charCodeAt(0)) }
function parse(bytes) {
  const out = { messages: [], trailers: {} }
  let i = 0
  while (i + 5 <= bytes.length) {
    const flag = bytes[i]
    const len = new DataView(bytes.buffer, bytes.byteOffset + i + 1, 4).getUint32(0)
    const body = bytes.subarray(i + 5, i + 5 + len)
    if (flag & 0x80) {
      for (const line of new TextDecoder().decode(body).split('\\r\\n')) {
        const c = line.indexOf(':')
        if (c > 0) out.trailers[line.slice(0, c)] = line.slice(c + 1).trim()
      }
    } else {
      out.messages.push(new TextDecoder().decode(body.subarray(2, 2 + body[1])))
    }
    i += 5 + len
  }
  return out
}
window.call = async (url, mode, text, failCode) => {
  const f = frame(text, failCode)
  const type = mode === 'text' ? 'application/grpc-web-text' : 'application/grpc-web+proto'
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': type, 'x-grpc-web': '1', accept: type },
    body: mode === 'text' ? b64(f) : f,
  })
  const bytes = mode === 'text' ? unb64(await res.text()) : new Uint8Array(await res.arrayBuffer())
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    grpcStatus: res.headers.get('grpc-status'),
    grpcMessage: res.headers.get('grpc-message'),
    ...parse(bytes),
  }
}
</script></body></html>`

describe('gRPC-Web from headless Chromium', () => {
  let up: GrpcServer
  let proxy: RunningProxy
  let site: http.Server
  let browser: Browser
  let page: Page
  let api: string
  before(async () => {
    up = await startGrpcServer()
    site = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(PAGE)
    })
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r))
    const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`
    proxy = await startProxy(`mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
upstreams:
  echo: { servers: ["${up.address}"], protocol: h2c }
  dead: { servers: ["127.0.0.1:1"], protocol: h2c, retries: 0 }
middlewares:
  cors:
    allowed_origins: ["${origin}"]
    allowed_methods: [POST]
    allowed_headers: [content-type, x-grpc-web, x-user-agent, grpc-timeout]
    expose_headers: [grpc-status, grpc-message]
  grpc_web: {}
api_gateway:
  routes:
    echo:
      path_pattern: "^/locci\\\\.test\\\\.Echo/"
      upstream: echo
      middlewares: [cors, grpc_web]
    dead:
      path_pattern: "^/dead/"
      upstream: dead
      middlewares: [cors, grpc_web]
`)
    api = `http://127.0.0.1:${proxy.port}`
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] })
    page = await browser.newPage()
    await page.goto(origin)
  })
  after(async () => {
    await browser?.close()
    await proxy?.stop()
    await up?.close()
    site?.close()
  })

  type Result = {
    status: number
    contentType: string
    grpcStatus: string | null
    grpcMessage: string | null
    messages: string[]
    trailers: Record<string, string>
  }
  const call = (path: string, mode: 'text' | 'binary', text: string, failCode = 0): Promise<Result> =>
    page.evaluate(
      ([u, m, t, f]) =>
        (globalThis as unknown as { call: (...a: unknown[]) => Promise<Result> }).call(u, m, t, f),
      [`${api}${path}`, mode, text, failCode] as const,
    )

  for (const mode of ['text', 'binary'] as const) {
    test(`a unary call in grpc-web ${mode}: the reply and the trailers in the body`, async () => {
      const r = await call('/locci.test.Echo/Unary', mode, 'browser')
      assert.equal(r.status, 200)
      assert.equal(
        r.contentType,
        mode === 'text' ? 'application/grpc-web-text' : 'application/grpc-web+proto',
      )
      assert.deepEqual(r.messages, ['echo:browser'])
      assert.equal(r.trailers['grpc-status'], '0')
      assert.equal(r.trailers['x-trailer'], 'done')
    })
  }

  test("a server's error status reaches the page", async () => {
    const r = await call('/locci.test.Echo/Unary', 'text', 'bad', 9)
    assert.equal(r.status, 200)
    // Trailers-Only from the server: the status is in the (exposed) headers.
    const status = r.grpcStatus ?? r.trailers['grpc-status']
    assert.equal(status, '9')
  })

  test("the proxy's own refusal is a gRPC status the page can read (CORS exposes it)", async () => {
    const r = await call('/dead/Svc', 'text', 'x')
    assert.equal(r.status, 200)
    assert.equal(r.messages.length, 0)
    assert.equal(r.grpcStatus, '14')
    assert.equal(r.grpcMessage, 'could not connect to an upstream server')
  })
})
