// Attacks on rewrite, redirect and headers. A rewrite's captures are pieces of the attacker's
// path: assembled by a careless replacement they can spell `..`, `//` or `%2F`, and an upstream
// that resolves them serves what the route never meant to. A redirect that echoes request
// input can become an open redirect (`//evil`, `/\evil`, the Host header) or a header
// injection (CR/LF in the Location). The proxy must refuse or neutralize each, whatever bytes
// arrive: raw sockets send what a well-behaved client would not.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type Gateway, gateway } from '../helpers/gateway'
import { rawHeaderOf, rawRequest } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'
import { Rng } from './fuzz/prng'

describe('request middlewares under attack', () => {
  let up: Upstream
  let gw: Gateway
  let port: number

  before(async () => {
    up = await startUpstream('api')
    gw = await gateway(`
mode: api_gateway
server: {bind_address: "127.0.0.1:0"}
upstreams:
  api: {servers: ["${up.address}"]}
middlewares:
  joined: {type: rewrite, regex: "^/f/([^/-]*)-([^/]*)$", replacement: "/s/$1$2"}
  loose: {type: rewrite, regex: "^/l(.*)", replacement: "/in/$1"}
  go: {type: redirect, regex: "^/go(.*)", replacement: "/$1"}
  away: {type: redirect, host: example.com, regex: "^/away(.*)", replacement: "/$1"}
  echo: {type: headers, response: {set: {X-Host: "\${host}"}}}
api_gateway:
  routes:
    f: {path_pattern: "^/f", upstream: api, middlewares: [joined]}
    l: {path_pattern: "^/l", upstream: api, middlewares: [loose]}
    go: {path_pattern: "^/go", upstream: api, middlewares: [go]}
    away: {path_pattern: "^/away", upstream: api, middlewares: [away]}
    echo: {path_pattern: "^/echo", upstream: api, middlewares: [echo]}
`)
    port = Number(new URL(gw.url).port)
  })

  after(async () => {
    await gw?.close()
    await up.close()
  })

  const get = (target: string, headers = 'host: a.example\r\n') =>
    rawRequest(port, `GET ${target} HTTP/1.1\r\n${headers}connection: close\r\n\r\n`)

  test('rewrite: no random path makes the upstream see a dot segment, // or an escaped slash', async () => {
    // Pieces a path can be made of, including spellings of dots and slashes.
    const pieces = ['.', '..', '%2e', '%2E', '/', '-', 'a', '%2F', '%5C', '\\', ';', '%25', '%2', 'F', '~']
    const rng = new Rng(20_250_615)
    let forwarded = 0
    for (let i = 0; i < 300; i++) {
      let tail = ''
      const n = rng.int(1, 6)
      for (let k = 0; k < n; k++) tail += pieces[rng.int(0, pieces.length - 1)]
      const before = up.seen.length
      const prefix = i % 2 === 0 ? '/f/' : '/l'
      const r = await get(prefix + tail)
      if (up.seen.length === before) {
        assert.ok(r.status === 400 || r.status === 404, `${prefix}${tail}: ${r.status}`)
        continue
      }
      forwarded++
      const url = up.seen.at(-1)!.url
      const path = url.split('?')[0]!
      const segments = path.split('/').map((s) => s.replace(/%2e/gi, '.').split(';')[0])
      assert.ok(
        !segments.includes('.') && !segments.includes('..'),
        `${prefix}${tail} reached upstream as ${url}`,
      )
      assert.ok(!path.includes('//'), `${prefix}${tail} reached upstream as ${url}`)
      assert.ok(!/%2f|%5c|\\/i.test(path), `${prefix}${tail} reached upstream as ${url}`)
    }
    assert.ok(forwarded > 30, `some paths went through (${forwarded})`)
  })

  const redirects: Array<{ desc: string; target: string; host?: string; location: RegExp }> = [
    {
      desc: 'a protocol-relative result is merged to one slash',
      target: '/go//evil.example',
      location: /^\/evil\.example$/,
    },
    {
      desc: 'a capture that starts with a slash',
      target: '/go/evil.example/x',
      location: /^\/evil\.example\/x$/,
    },
    {
      desc: 'characters browsers treat specially in the query are percent-encoded',
      target: '/go/x?q="<>{}|^`',
      location: /^\/x\?q=%22%3C%3E%7B%7D%7C%5E%60$/,
    },
    {
      desc: 'the Host header does not choose the host',
      target: '/away/x',
      host: 'evil.example',
      location: /^http:\/\/example\.com\/x$/,
    },
    {
      desc: 'an absolute-form target does not choose the host',
      target: 'http://evil.example/away/x',
      location: /^http:\/\/example\.com\/x$/,
    },
  ]
  for (const c of redirects) {
    test(`redirect: ${c.desc}`, async () => {
      const r = await get(c.target, `host: ${c.host ?? 'a.example'}\r\n`)
      assert.equal(r.status, 302, r.text)
      const location = rawHeaderOf(r.text, 'location')
      assert.ok(location !== undefined)
      assert.match(location, c.location)
      assert.doesNotMatch(location, /[\r\n]/)
    })
  }

  test('redirect: raw bytes outside ASCII in the target are refused before any middleware', async () => {
    const r = await get('/go/x?q=\xff\x80')
    assert.equal(r.status, 400)
  })

  test('redirect: a backslash is never sent in a path Location (browsers read /\\ as //)', async () => {
    const r = await get('/go\\evil.example')
    // Refused by path normalization (escaped_slashes: reject) before the redirect runs.
    assert.equal(r.status, 400)
    assert.equal(rawHeaderOf(r.text, 'location'), undefined)
  })

  test('redirect: encoded CR/LF in the path stay encoded', async () => {
    const r = await get('/go/a%0d%0aSet-Cookie:%20x=1')
    assert.equal(r.status, 302)
    assert.equal(rawHeaderOf(r.text, 'set-cookie'), undefined)
    assert.equal(rawHeaderOf(r.text, 'location'), '/a%0D%0ASet-Cookie:%20x=1')
  })

  test('headers: a reflected ${host} cannot inject a header (CR/LF never reach the value)', async () => {
    const r = await get('/echo', 'host: a.example\r\n x-injected: 1\r\n')
    // An obsolete line folding is refused by the parser; nothing is reflected.
    assert.ok(r.status === 400 || rawHeaderOf(r.text, 'x-injected') === undefined, r.text)
    const ok = await get('/echo', 'host: a.example\r\n')
    assert.equal(rawHeaderOf(ok.text, 'x-host'), 'a.example')
  })
})
