// The one raw HTTP/1.1 writer: heads framed by close drop connection-specific headers and say
// `connection: close`, a 101 keeps them, and nothing Node would refuse to write goes out.

import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { test } from 'node:test'
import { rawHead, writeRaw } from './raw-response'

const heads: Array<{
  desc: string
  status: number
  reason: string | undefined
  headers: string[]
  close: boolean
  head: string
}> = [
  {
    desc: 'a reply framed by close: the standard reason, connection: close last',
    status: 404,
    reason: undefined,
    headers: ['x-request-id', 'r1'],
    close: true,
    head: 'HTTP/1.1 404 Not Found\r\nx-request-id: r1\r\nconnection: close\r\n\r\n',
  },
  {
    desc: "a relayed answer framed by close: the upstream's own framing headers dropped",
    status: 200,
    reason: 'Fine',
    headers: [
      'Transfer-Encoding',
      'chunked',
      'Connection',
      'keep-alive',
      'Keep-Alive',
      'timeout=5',
      'a',
      'b',
    ],
    close: true,
    head: 'HTTP/1.1 200 Fine\r\na: b\r\nconnection: close\r\n\r\n',
  },
  {
    desc: 'a 101: Connection and Upgrade kept, the socket stays open',
    status: 101,
    reason: '',
    headers: ['Connection', 'Upgrade', 'Upgrade', 'websocket'],
    close: false,
    head: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  },
]

for (const c of heads) {
  test(`rawHead: ${c.desc}`, () => {
    assert.equal(rawHead(c.status, c.reason, c.headers, c.close), c.head)
  })
}

const refused: Array<{ desc: string; reason: string | undefined; headers: string[] }> = [
  {
    desc: 'a header value with CR LF (header injection)',
    reason: undefined,
    headers: ['a', 'b\r\nset-cookie: x'],
  },
  { desc: 'a header name that is not a token', reason: undefined, headers: ['a b', 'c'] },
  { desc: 'a reason phrase with LF', reason: 'OK\nset-cookie: x', headers: [] },
]

for (const c of refused) {
  test(`rawHead refuses ${c.desc}`, () => {
    assert.throws(() => rawHead(200, c.reason, c.headers, true), /invalid/)
    assert.throws(() => rawHead(101, c.reason, c.headers, false), /invalid/)
  })
}

test('writeRaw: a whole text reply with its length, and the socket ended', () => {
  let out = ''
  let ended = false
  const socket = {
    write: (chunk: string) => {
      out += chunk
      return true
    },
    end: (chunk: string) => {
      out += chunk
      ended = true
    },
  } as unknown as Socket
  writeRaw(socket, 405, '405 method not allowed\n', ['allow', 'GET'])
  assert.equal(
    out,
    'HTTP/1.1 405 Method Not Allowed\r\nallow: GET\r\ncontent-length: 23\r\n' +
      'content-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\n405 method not allowed\n',
  )
  assert.ok(ended)
})
