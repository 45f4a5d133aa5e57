import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AccessLog } from './access-log'
import { LineBuffer, toLogfmt } from './logger'

test('toLogfmt: time, level, msg first; values quoted only when needed', () => {
  const line = toLogfmt(
    JSON.stringify({
      level: 'info',
      time: 't1',
      pid: 1,
      msg: 'request',
      path: '/a b',
      status: 200,
      route: 'r=1',
      n: null,
    }),
  )
  assert.equal(line, 'time=t1 level=info msg=request pid=1 path="/a b" status=200 route="r=1" n=null\n')
})

test('access lines: JSON parses to the fields pino would write; text matches logfmt', () => {
  const lines: string[] = []
  const base = { flush() {}, writeLine: (l: string) => lines.push(l) }
  const logger = { isLevelEnabled: (l: string) => l === 'info' } as never
  const rec = {
    method: 'GET',
    path: '/a "quoted" path',
    route: 'r',
    upstream: 'u',
    server: '127.0.0.1:1',
    status: 200,
    duration_ms: 1.5,
    request_id: 'id-1',
  }
  new AccessLog({ ...base, logger, format: 'json' }).write(rec)
  const j = JSON.parse(lines[0]!)
  assert.deepEqual(
    { ...j, time: undefined, pid: undefined },
    { level: 'info', time: undefined, pid: undefined, ...rec, msg: 'request' },
  )
  new AccessLog({ ...base, logger, format: 'text' }).write({ ...rec, route: undefined, error_type: 'x' })
  assert.match(
    lines[1]!,
    /^time=\S+ level=info msg=request pid=\d+ method=GET path="\/a \\"quoted\\" path" upstream=u server=127.0.0.1:1 status=200 duration_ms=1.5 request_id=id-1 error_type=x\n$/,
  )
  const quiet = { isLevelEnabled: () => false } as never
  new AccessLog({ ...base, logger: quiet, format: 'json' }).write(rec)
  assert.equal(lines.length, 2, 'nothing is written when info is off')
})

test('LineBuffer: every byte of every line arrives once, in order, whatever the lines hold', () => {
  const chunks: Buffer[] = []
  const lb = new LineBuffer({ write: (c: Buffer) => chunks.push(Buffer.from(c)) })
  const lines: string[] = []
  // Multi-byte characters (2, 3 and 4 bytes of UTF-8, a lone surrogate), lines that fill the
  // 64 KiB buffer to its edge, and one longer than the whole buffer.
  for (let i = 0; i < 3000; i++) lines.push(`{"n":${i},"path":"/é/€/😀/${'x'.repeat(i % 97)}"}\n`)
  lines.push(`${'ü'.repeat(40_000)}\n`, 'lone \ud800 surrogate\n', 'last\n')
  for (const l of lines) lb.push(l)
  lb.flush()
  assert.ok(chunks.length > 3, 'the buffer filled and was handed over more than once')
  assert.ok(
    chunks.every((c) => c.length <= 64 * 1024 || c.toString().startsWith('ü')),
    'only the oversize line goes out alone',
  )
  assert.equal(Buffer.concat(chunks).toString(), lines.join('').replace('\ud800', '\ufffd'))
})

test('LineBuffer: a quiet server’s few lines are copied out and the buffer kept; flush is idempotent', () => {
  const chunks: Buffer[] = []
  const lb = new LineBuffer({ write: (c: Buffer) => chunks.push(c) })
  lb.push('one\n')
  lb.flush()
  lb.flush()
  lb.push('two\n')
  lb.flush()
  // Read after both: had the first chunk been a view of the kept buffer, 'two' would be in it.
  assert.deepEqual(
    chunks.map((c) => c.toString()),
    ['one\n', 'two\n'],
  )
})
