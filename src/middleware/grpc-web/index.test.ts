import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import type { RequestContext } from '../types'
import { Base64Decode, grpcWeb, trailerFrame, WebResponse } from './index'

async function run(t: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = []
  t.on('data', (c: Buffer) => out.push(c))
  const done = new Promise((resolve, reject) => {
    t.on('end', resolve)
    t.on('error', reject)
  })
  Readable.from(chunks).pipe(t)
  await done
  return Buffer.concat(out)
}

function ctx(contentType: string): RequestContext {
  return {
    method: 'POST',
    path: '/p.S/M',
    clientIp: '127.0.0.1',
    host: undefined,
    route: 'r',
    upstream: 'u',
    rawHeaders: ['content-type', contentType, 'content-length', '10'],
    requestId: 'id',
    upstreamHeaders: ['content-type', contentType, 'content-length', '10'],
    upstreamPath: '/p.S/M',
    responseHeaders: [],
    dropResponseHeaders: undefined,
  }
}

test('the trailer frame: 0x80, length, lower-case lines', () => {
  const f = trailerFrame(['Grpc-Status', '0', 'grpc-message', 'ok', 'content-length', '3'])
  assert.equal(f[0], 0x80)
  assert.equal(f.readUInt32BE(1), f.length - 5)
  assert.equal(f.subarray(5).toString(), 'grpc-status: 0\r\ngrpc-message: ok\r\n')
})

test('binary answers: messages as they are, then the trailers', async () => {
  const t = new WebResponse(false)
  t.setTrailers(['grpc-status', '0'])
  const out = await run(t, [Buffer.from([0, 0, 0, 0, 1, 9])])
  assert.deepEqual([...out.subarray(0, 6)], [0, 0, 0, 0, 1, 9])
  assert.equal(out.subarray(11).toString(), 'grpc-status: 0\r\n')
})

test('text answers: one base64 stream whatever the chunking', async () => {
  const t = new WebResponse(true)
  t.setTrailers(['grpc-status', '0'])
  const msg = Buffer.from([0, 0, 0, 0, 4, 1, 2, 3, 4])
  const out = await run(t, [msg.subarray(0, 1), msg.subarray(1, 5), msg.subarray(5)])
  const expected = Buffer.concat([msg, trailerFrame(['grpc-status', '0'])]).toString('base64')
  assert.equal(out.toString(), expected)
})

test('text requests: base64 decoded across chunks and padded pieces', async () => {
  const a = Buffer.from([0, 0, 0, 0, 1, 7]).toString('base64')
  const b = Buffer.from([0, 0, 0, 0, 2, 8, 9]).toString('base64')
  const s = a + b
  const out = await run(new Base64Decode(), [Buffer.from(s.slice(0, 3)), Buffer.from(s.slice(3))])
  assert.deepEqual([...out], [0, 0, 0, 0, 1, 7, 0, 0, 0, 0, 2, 8, 9])
})

test('text requests: what is not base64 is refused', async () => {
  await assert.rejects(run(new Base64Decode(), [Buffer.from('AA*A')]))
  await assert.rejects(run(new Base64Decode(), [Buffer.from('AAA')]))
})

test('the middleware: grpc-web becomes grpc upstream; other types pass untouched', () => {
  const mw = grpcWeb()
  const c = ctx('application/grpc-web+proto')
  assert.equal(mw(c), undefined)
  assert.deepEqual(c.upstreamHeaders, ['content-type', 'application/grpc+proto'])
  assert.equal(c.requestTransform, undefined)
  const headers = ['content-type', 'application/grpc+proto']
  assert.ok(c.responseTransform?.(200, headers) instanceof WebResponse)
  assert.deepEqual(headers, ['content-type', 'application/grpc-web+proto'])

  const text = ctx('application/grpc-web-text')
  mw(text)
  assert.deepEqual(text.upstreamHeaders, ['content-type', 'application/grpc'])
  assert.ok(text.requestTransform?.() instanceof Base64Decode)

  for (const other of ['application/grpc', 'application/json', 'application/grpc-webby']) {
    const o = ctx(other)
    mw(o)
    assert.equal(o.responseTransform, undefined, other)
    assert.equal(o.upstreamHeaders[1], other)
  }
})
