import assert from 'node:assert/strict'
import { test } from 'node:test'
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
