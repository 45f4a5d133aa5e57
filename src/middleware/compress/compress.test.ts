import assert from 'node:assert/strict'
import type { Transform } from 'node:stream'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import { parseConfigText } from '../../config/load'
import { compilePlan } from '../../proxy/runtime'
import type { RequestContext } from '../types'
import { type CompressConfig, compress as compressSchema, type Encoding, HAS_ZSTD } from './config'
import { compress, compressor, contentTypes } from './index'

const BASE = `mode: api_gateway
server: { bind_address: "127.0.0.1:8484" }
upstreams: { app: { servers: ["127.0.0.1:3001"] } }
api_gateway:
  routes:
    app: { path_pattern: "^/", upstream: app, middlewares: [squeeze] }
middlewares:
  squeeze:
    type: compress
`

function problemsOf(settings: string) {
  const r = compilePlan(parseConfigText('cfg.yaml', `${BASE}${settings}`, {}))
  return r.ok ? [] : r.problems.map((p) => ({ path: p.path, line: p.line, message: p.message }))
}

describe('compress settings', () => {
  const bad: Array<{ desc: string; settings: string; path: string; line: number; message: RegExp }> = [
    {
      desc: 'a coding listed twice',
      settings: '    encodings: [gzip, br, gzip]\n',
      path: 'middlewares.squeeze.encodings',
      line: 10,
      message: /lists gzip twice/,
    },
    {
      desc: 'a coding we do not have',
      settings: '    encodings: [deflate]\n',
      path: 'middlewares.squeeze.encodings[0]',
      line: 10,
      message: /zstd|br|gzip/,
    },
    {
      desc: 'a level for a coding not listed (it would be ignored)',
      settings: '    encodings: [gzip]\n    levels: { br: 5 }\n',
      path: 'middlewares.squeeze.levels',
      line: 11,
      message: /sets br, which encodings does not list/,
    },
    {
      desc: 'a gzip level out of range',
      settings: '    levels: { gzip: 10 }\n',
      path: 'middlewares.squeeze.levels.gzip',
      line: 10,
      message: /9/,
    },
    {
      desc: 'a brotli level out of range',
      settings: '    levels: { br: 12 }\n',
      path: 'middlewares.squeeze.levels.br',
      line: 10,
      message: /11/,
    },
    {
      desc: 'a content type that is not a media range',
      settings: '    content_types: ["text/*", "json"]\n',
      path: 'middlewares.squeeze.content_types',
      line: 10,
      message: /"json" is not a media type/,
    },
    {
      desc: '*/* is not accepted (it would compress images and archives)',
      settings: '    content_types: ["*/*"]\n',
      path: 'middlewares.squeeze.content_types',
      line: 10,
      message: /"\*\/\*" is not a media type/,
    },
    {
      desc: 'a negative min_bytes',
      settings: '    min_bytes: -1\n',
      path: 'middlewares.squeeze.min_bytes',
      line: 10,
      message: /0/,
    },
    {
      desc: 'an unknown key',
      settings: '    level: 5\n',
      path: 'middlewares.squeeze.level',
      line: 10,
      message: /unknown key "level"/,
    },
  ]
  if (!HAS_ZSTD) {
    bad.push({
      desc: 'zstd on a Node without it is refused, not skipped',
      settings: '    encodings: [zstd, gzip]\n',
      path: 'middlewares.squeeze.encodings',
      line: 10,
      message: /zstd needs Node 22\.15 or later \(this is Node v/,
    })
  }
  for (const c of bad) {
    test(c.desc, () => {
      const problems = problemsOf(c.settings)
      const p = problems.find((x) => x.path === c.path)
      assert.ok(p, `no problem at ${c.path}: ${JSON.stringify(problems)}`)
      assert.equal(p.line, c.line)
      assert.match(p.message, c.message)
    })
  }

  test('every setting written out compiles', () => {
    const enc = HAS_ZSTD ? '[zstd, br, gzip]' : '[br, gzip]'
    const levels = HAS_ZSTD ? '{ gzip: 9, br: 11, zstd: 19 }' : '{ gzip: 1, br: 0 }'
    const settings = `    encodings: ${enc}\n    min_bytes: 0\n    content_types: ["text/*", "application/*+json", "Application/JSON"]\n    levels: ${levels}\n`
    assert.deepEqual(problemsOf(settings), [])
  })

  test('the defaults: the codings this Node has, 1024 bytes, textual types', () => {
    const cfg = compressSchema.parse({})
    assert.deepEqual(cfg.encodings, HAS_ZSTD ? ['zstd', 'br', 'gzip'] : ['br', 'gzip'])
    assert.equal(cfg.min_bytes, 1024)
    assert.ok(cfg.content_types.includes('text/*') && cfg.content_types.includes('application/wasm'))
  })
})

describe('content type matching', () => {
  const m = contentTypes(['text/*', 'application/json', 'application/*+json', 'image/svg+xml'])
  const cases: Array<[string, boolean]> = [
    ['text/html', true],
    ['text/html; charset=utf-8', true],
    ['TEXT/CSS', true],
    [' application/json ; charset=utf-8', true],
    ['application/problem+json', true],
    ['application/vnd.api+json; ext=bulk', true],
    ['image/svg+xml', true],
    ['image/png', false],
    ['application/octet-stream', false],
    ['application/jsonx', false],
    ['application/json+zip', false],
    ['application', false],
    ['', false],
    ['/json', false],
  ]
  for (const [value, want] of cases) {
    test(`${JSON.stringify(value)}: ${want ? 'compressed' : 'left alone'}`, () => {
      assert.equal(m(value), want)
    })
  }
})

const cfg = (over: Partial<CompressConfig> = {}): CompressConfig => ({
  ...compressSchema.parse({ encodings: ['br', 'gzip'] }),
  ...over,
})

function ctx(method: string, raw: string[]): RequestContext {
  return {
    method,
    path: '/',
    clientIp: '127.0.0.1',
    host: undefined,
    route: undefined,
    upstream: 'u',
    rawHeaders: raw,
    requestId: 'r',
    upstreamHeaders: [],
    upstreamPath: '/',
    responseHeaders: [],
    dropResponseHeaders: undefined,
    responseTransform: undefined,
  }
}

const JSON_HEAD = ['Content-Type', 'application/json', 'Content-Length', '5000']

/** Runs the middleware on a request, then its response side on a head; the head as edited. */
function respond(
  request: { method?: string; headers: string[] },
  status: number,
  head: string[],
  c = cfg(),
): { transform: Transform | undefined; headers: string[] } {
  const x = ctx(request.method ?? 'GET', request.headers)
  assert.equal(compress(c)(x), undefined, 'the middleware never answers')
  const headers = [...head]
  const transform = x.responseTransform?.(status, headers)
  transform?.destroy()
  return { transform, headers }
}

const get = (headers: readonly string[], name: string) => {
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2)
    if (headers[i]!.toLowerCase() === name) out.push(headers[i + 1]!)
  return out.length === 0 ? undefined : out.join(' | ')
}

describe('which responses are compressed', () => {
  const AE = ['Accept-Encoding', 'gzip, br']
  const cases: Array<{
    desc: string
    method?: string
    request?: string[]
    status?: number
    head: string[]
    coding: Encoding | undefined
    vary: string | undefined
  }> = [
    { desc: 'a JSON 200 the client accepts br for', head: JSON_HEAD, coding: 'br', vary: 'Accept-Encoding' },
    {
      desc: 'an error page is compressed too',
      status: 404,
      head: JSON_HEAD,
      coding: 'br',
      vary: 'Accept-Encoding',
    },
    {
      desc: 'no Accept-Encoding: as it is, but Vary says it could differ',
      request: [],
      head: JSON_HEAD,
      coding: undefined,
      vary: 'Accept-Encoding',
    },
    {
      desc: 'Accept-Encoding: identity only',
      request: ['accept-encoding', 'identity'],
      head: JSON_HEAD,
      coding: undefined,
      vary: 'Accept-Encoding',
    },
    {
      desc: 'two Accept-Encoding lines are one list',
      request: ['Accept-Encoding', 'br;q=0', 'accept-encoding', 'gzip'],
      head: JSON_HEAD,
      coding: 'gzip',
      vary: 'Accept-Encoding',
    },
    { desc: 'HEAD: never', method: 'HEAD', head: JSON_HEAD, coding: undefined, vary: 'Accept-Encoding' },
    {
      desc: 'a Range request: never',
      request: [...AE, 'Range', 'bytes=0-10'],
      head: JSON_HEAD,
      coding: undefined,
      vary: 'Accept-Encoding',
    },
    {
      desc: 'the client sent Cache-Control: no-transform',
      request: [...AE, 'Cache-Control', 'max-age=0, No-Transform'],
      head: JSON_HEAD,
      coding: undefined,
      vary: 'Accept-Encoding',
    },
    { desc: '206', status: 206, head: JSON_HEAD, coding: undefined, vary: undefined },
    {
      desc: '204',
      status: 204,
      head: ['content-type', 'application/json'],
      coding: undefined,
      vary: undefined,
    },
    { desc: '304', status: 304, head: JSON_HEAD, coding: undefined, vary: undefined },
    {
      desc: 'already encoded by the upstream',
      head: [...JSON_HEAD, 'Content-Encoding', 'gzip'],
      coding: undefined,
      vary: undefined,
    },
    {
      desc: 'Cache-Control: no-transform from the upstream',
      head: [...JSON_HEAD, 'Cache-Control', 'public, no-transform'],
      coding: undefined,
      vary: undefined,
    },
    {
      desc: 'a Content-Range',
      head: [...JSON_HEAD, 'Content-Range', 'bytes 0-4999/9000'],
      coding: undefined,
      vary: undefined,
    },
    {
      desc: 'a digest of the bytes',
      head: [...JSON_HEAD, 'Content-Digest', 'sha-256=:abc=:'],
      coding: undefined,
      vary: undefined,
    },
    {
      desc: 'a type not listed',
      head: ['Content-Type', 'image/png', 'Content-Length', '5000'],
      coding: undefined,
      vary: undefined,
    },
    { desc: 'no Content-Type', head: ['Content-Length', '5000'], coding: undefined, vary: undefined },
    {
      desc: 'smaller than min_bytes',
      head: ['Content-Type', 'text/plain', 'Content-Length', '1023'],
      coding: undefined,
      vary: undefined,
    },
    {
      desc: 'exactly min_bytes',
      head: ['Content-Type', 'text/plain', 'Content-Length', '1024'],
      coding: 'br',
      vary: 'Accept-Encoding',
    },
    {
      desc: 'Content-Length 0',
      head: ['Content-Type', 'text/plain', 'Content-Length', '0'],
      coding: undefined,
      vary: undefined,
    },
    {
      desc: 'unknown length (a stream): compressed, never held back to be measured',
      head: ['Content-Type', 'text/event-stream'],
      coding: 'br',
      vary: 'Accept-Encoding',
    },
    {
      desc: 'an existing Vary is extended',
      head: [...JSON_HEAD, 'Vary', 'Origin'],
      coding: 'br',
      vary: 'Origin, Accept-Encoding',
    },
    {
      desc: 'an existing Vary naming Accept-Encoding is left alone',
      head: [...JSON_HEAD, 'Vary', 'accept-encoding, Origin'],
      coding: 'br',
      vary: 'accept-encoding, Origin',
    },
    {
      desc: 'Vary: * is left alone',
      head: [...JSON_HEAD, 'Vary', '*'],
      coding: 'br',
      vary: '*',
    },
    {
      desc: 'a second Vary line naming it is seen',
      head: [...JSON_HEAD, 'vary', 'Origin', 'vary', 'Accept-Encoding'],
      coding: 'br',
      vary: 'Origin | Accept-Encoding',
    },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const { transform, headers } = respond(
        { method: c.method, headers: c.request ?? AE },
        c.status ?? 200,
        c.head,
      )
      // Compressed: the coding; otherwise whatever the upstream said (gzip for one case).
      assert.equal(get(headers, 'content-encoding'), c.coding ?? get(c.head, 'content-encoding'))
      assert.equal(transform !== undefined, c.coding !== undefined)
      assert.equal(get(headers, 'vary'), c.vary)
    })
  }

  test('a compressed response loses Content-Length and Accept-Ranges; its ETag is weakened', () => {
    const { headers } = respond({ headers: AE }, 200, [
      'ETag',
      '"v1"',
      'Content-Type',
      'text/html',
      'Accept-Ranges',
      'bytes',
      'Content-Length',
      '5000',
      'X-Other',
      'kept',
    ])
    assert.deepEqual(headers, [
      'ETag',
      'W/"v1"',
      'Content-Type',
      'text/html',
      'X-Other',
      'kept',
      'vary',
      'Accept-Encoding',
      'content-encoding',
      'br',
    ])
  })

  test('a weak ETag stays as it is; an uncompressed response keeps its head', () => {
    assert.equal(
      get(respond({ headers: AE }, 200, [...JSON_HEAD, 'etag', 'W/"v1"']).headers, 'etag'),
      'W/"v1"',
    )
    const kept = respond({ headers: [] }, 200, [
      ...JSON_HEAD,
      'ETag',
      '"v1"',
      'Accept-Ranges',
      'bytes',
    ]).headers
    assert.deepEqual(kept, [
      ...JSON_HEAD,
      'ETag',
      '"v1"',
      'Accept-Ranges',
      'bytes',
      'vary',
      'Accept-Encoding',
    ])
  })

  test('an Upgrade request gets no transformer at all', () => {
    const x = ctx('GET', ['Accept-Encoding', 'gzip', 'Upgrade', 'h2c'])
    compress(cfg())(x)
    assert.equal(x.responseTransform, undefined)
  })

  test('min_bytes: 0 compresses any non-empty body', () => {
    const { transform } = respond(
      { headers: AE },
      200,
      ['content-type', 'text/plain', 'content-length', '1'],
      cfg({ min_bytes: 0 }),
    )
    assert.ok(transform)
  })
})

/** Compresses `chunks` written one by one through compressor(); the decoded output. */
async function roundTrip(coding: Encoding, length: number, chunks: Buffer[]): Promise<Buffer> {
  const t = compressor(coding, coding === 'gzip' ? 6 : coding === 'br' ? 4 : 3, length)
  const out: Buffer[] = []
  t.on('data', (c: Buffer) => out.push(c))
  const done = new Promise((r) => t.once('end', r))
  for (const c of chunks) t.write(c)
  t.end()
  await done
  return decode(coding, Buffer.concat(out))
}

function decode(coding: Encoding, all: Buffer): Buffer {
  if (coding === 'gzip') return zlib.gunzipSync(all)
  if (coding === 'br') return zlib.brotliDecompressSync(all)
  const z = zlib as unknown as { zstdDecompressSync(b: Buffer): Buffer }
  return z.zstdDecompressSync(all)
}

describe('compressors', () => {
  const body = Buffer.from(JSON.stringify(Array.from({ length: 300 }, (_, i) => ({ id: i, name: `n${i}` }))))
  const codings: Encoding[] = HAS_ZSTD ? ['gzip', 'br', 'zstd'] : ['gzip', 'br']
  for (const coding of codings) {
    test(`${coding}: a known length and a stream both decode to the body`, async () => {
      assert.deepEqual(await roundTrip(coding, body.length, [body]), body)
      const parts = [body.subarray(0, 1000), body.subarray(1000, 5000), body.subarray(5000)]
      assert.deepEqual(await roundTrip(coding, -1, parts), body)
    })
  }

  for (const coding of codings) {
    test(`${coding}: with a known length, a small first piece gives no output yet (not even a header)`, async () => {
      // The exchange holds the response head until the first output (proxy/forward.ts).
      const t = compressor(coding, 4, body.length)
      const out: Buffer[] = []
      t.on('data', (c: Buffer) => out.push(c))
      const done = new Promise((r) => t.once('end', r))
      await new Promise((r) => t.write(body.subarray(0, 200), r))
      assert.equal(out.length, 0)
      t.end(body.subarray(200))
      await done
      assert.deepEqual(await decode(coding, Buffer.concat(out)), body)
    })
  }

  for (const coding of codings) {
    test(`${coding}: a stream's piece is decodable before the stream ends (flushed)`, async () => {
      const t = compressor(coding, 4, -1)
      const got = new Promise<Buffer>((r) => t.once('data', r))
      t.write(Buffer.from('data: first event\n\n'))
      const first = await got
      const partial =
        coding === 'gzip'
          ? zlib.gunzipSync(first, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
          : coding === 'br'
            ? zlib.brotliDecompressSync(first, { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH })
            : first
      if (coding !== 'zstd') assert.equal(partial.toString(), 'data: first event\n\n')
      t.destroy()
    })
  }
})
