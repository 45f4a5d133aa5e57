import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AccessLog } from './access-log'
import { toLogfmt } from './logger'

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
