// AccessLog.request is the one builder of a request's access record (pipeline, Exchange and
// WebSocket upgrades all end there): the status rule and the error_type label are applied here.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AccessLog, type RequestFacts } from './access-log'
import type { ErrorKind } from './errors'

const facts: RequestFacts = {
  method: 'GET',
  path: '/p',
  route: 'r',
  requestId: 'id-1',
  client: '10.0.0.1',
  start: performance.now(),
}

const cases: Array<{
  desc: string
  sent: number
  kind: ErrorKind | undefined
  status: number
  error_type: string | undefined
}> = [
  { desc: 'a relayed answer', sent: 200, kind: undefined, status: 200, error_type: undefined },
  {
    desc: 'an upstream timeout answered',
    sent: 504,
    kind: 'upstream_timeout',
    status: 504,
    error_type: 'upstream_timeout',
  },
  {
    desc: 'a client gone mid-response',
    sent: 200,
    kind: 'client_aborted',
    status: 499,
    error_type: 'client_aborted',
  },
  {
    desc: 'a stalled body (its label predates the kind)',
    sent: 0,
    kind: 'body_timeout',
    status: 408,
    error_type: 'request_timeout',
  },
]

for (const c of cases) {
  test(`access record: ${c.desc}`, () => {
    const lines: string[] = []
    const logger = { isLevelEnabled: () => true } as never
    const log = new AccessLog({ logger, format: 'json', flush() {}, writeLine: (l) => lines.push(l) })
    log.request(facts, 'u', '127.0.0.1:1', c.sent, c.kind)
    const j = JSON.parse(lines[0]!)
    assert.equal(j.status, c.status)
    assert.equal(j.error_type, c.error_type)
    assert.deepEqual(
      [j.method, j.path, j.route, j.upstream, j.server, j.request_id, j.client],
      ['GET', '/p', 'r', 'u', '127.0.0.1:1', 'id-1', '10.0.0.1'],
    )
    assert.ok(j.duration_ms >= 0)
  })
}
