import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { test } from 'node:test'
import { browserRefusal, knownHost } from './browser'

const keyless = { apiKey: undefined, bindHost: '127.0.0.1' }
const keyed = { apiKey: 'k', bindHost: '0.0.0.0' }

const cases: Array<{
  desc: string
  headers: IncomingHttpHeaders
  guard?: typeof keyless | typeof keyed
  refused: RegExp | undefined
}> = [
  { desc: 'curl: an address, no Origin', headers: { host: '127.0.0.1:8485' }, refused: undefined },
  { desc: 'no Host at all (HTTP/1.0)', headers: {}, refused: undefined },
  {
    desc: 'the address typed in a browser',
    headers: { host: '127.0.0.1:8485', 'sec-fetch-site': 'none' },
    refused: undefined,
  },
  {
    desc: 'a page of the API origin itself',
    headers: { host: 'localhost:8485', origin: 'http://localhost:8485', 'sec-fetch-site': 'same-origin' },
    refused: undefined,
  },
  {
    desc: 'the API origin behind a TLS front, with a key',
    headers: { host: 'control.example.com', origin: 'https://control.example.com' },
    guard: keyed,
    refused: undefined,
  },
  {
    desc: 'a no-cors POST from another site (CSRF)',
    headers: { host: '127.0.0.1:8485', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    refused: /Sec-Fetch-Site: cross-site/,
  },
  {
    desc: 'Sec-Fetch-Site: same-site (another port of the same host)',
    headers: { host: '127.0.0.1:8485', 'sec-fetch-site': 'same-site' },
    refused: /Sec-Fetch-Site: same-site/,
  },
  {
    desc: 'a foreign Origin without Sec-Fetch-Site (an older browser)',
    headers: { host: '127.0.0.1:8485', origin: 'http://evil.example' },
    refused: /Origin: http:\/\/evil\.example/,
  },
  {
    desc: 'Origin: null (a sandboxed frame or a file)',
    headers: { host: '127.0.0.1:8485', origin: 'null' },
    refused: /Origin: null/,
  },
  {
    desc: 'an Origin on the same host but another port',
    headers: { host: '127.0.0.1:8485', origin: 'http://127.0.0.1:3000' },
    refused: /Origin/,
  },
  {
    desc: 'a foreign Origin with a key too',
    headers: { host: '127.0.0.1:8485', origin: 'http://evil.example' },
    guard: keyed,
    refused: /Origin/,
  },
  {
    desc: 'DNS rebinding: a same-origin GET carrying the page domain as Host',
    headers: { host: 'rebind.evil.example:8485', 'sec-fetch-site': 'same-origin' },
    refused: /Host "rebind\.evil\.example:8485".*DNS rebinding/,
  },
  {
    desc: 'DNS rebinding with the Origin matching the Host',
    headers: { host: 'rebind.evil.example:8485', origin: 'http://rebind.evil.example:8485' },
    refused: /DNS rebinding/,
  },
  {
    desc: 'a DNS name as Host is fine with a key',
    headers: { host: 'control.example.com' },
    guard: keyed,
    refused: undefined,
  },
  {
    desc: 'two Sec-Fetch-Site values joined',
    headers: { host: '127.0.0.1:8485', 'sec-fetch-site': 'same-origin, cross-site' },
    refused: /Sec-Fetch-Site/,
  },
]
for (const c of cases) {
  test(`browserRefusal: ${c.desc}`, () => {
    const r = browserRefusal(c.headers, c.guard ?? keyless)
    if (c.refused === undefined) assert.equal(r, undefined)
    else assert.match(r ?? '(not refused)', c.refused)
  })
}

const hosts: Array<{ desc: string; host: string; bind?: string; ok: boolean }> = [
  { desc: 'IPv4 with a port', host: '127.0.0.1:8485', ok: true },
  { desc: 'IPv4 without a port', host: '10.1.2.3', ok: true },
  { desc: 'IPv6 in brackets', host: '[::1]:8485', ok: true },
  { desc: 'IPv6 in brackets without a port', host: '[::1]', ok: true },
  { desc: 'localhost', host: 'localhost:8485', ok: true },
  { desc: 'LOCALHOST with a final dot', host: 'LOCALHOST.:8485', ok: true },
  { desc: 'the configured bind host', host: 'admin.internal:8485', bind: 'admin.internal', ok: true },
  { desc: 'a DNS name', host: 'evil.example:8485', ok: false },
  { desc: 'a subdomain of localhost', host: 'a.localhost.evil.example', ok: false },
  { desc: 'a name in brackets', host: '[evil.example]:8485', ok: false },
  { desc: 'IPv6 without brackets', host: '::1', ok: false },
  { desc: 'junk after the brackets', host: '[::1]x', ok: false },
  { desc: 'an empty Host', host: '', ok: false },
  { desc: 'a bad port', host: '127.0.0.1:x', ok: false },
]
for (const h of hosts) {
  test(`knownHost: ${h.desc}`, () => {
    assert.equal(knownHost(h.host, h.bind ?? '127.0.0.1'), h.ok)
  })
}
