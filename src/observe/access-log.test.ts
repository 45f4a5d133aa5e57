// AccessLog.request is the one builder of a request's access record (pipeline, Exchange and
// WebSocket upgrades all end there): the status rule and the error_type label are applied here.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ACCESS_FIELDS, AccessLog, type AccessLogSpec, numberText, type RequestFacts } from './access-log'
import type { ErrorKind } from './errors'

const facts: RequestFacts = {
  method: 'GET',
  path: '/p',
  route: 'r',
  requestId: 'id-1',
  client: '10.0.0.1',
  start: performance.now(),
  req: {
    url: '/p?token=secret',
    httpVersion: '1.1',
    rawHeaders: ['Host', 'example.com', 'User-Agent', 'curl/8'],
  },
  host: 'example.com',
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

function sink(spec: Partial<AccessLogSpec>): { log: AccessLog; lines: string[] } {
  const lines: string[] = []
  const logger = { isLevelEnabled: () => false } as never
  const log = new AccessLog({ logger, format: 'json', flush() {}, writeLine: (l) => lines.push(l) })
  log.configure({
    format: 'json',
    output: 'stdout',
    fields: ACCESS_FIELDS.filter((f) => f !== 'query'),
    includeQuery: false,
    ...spec,
  })
  return { log, lines }
}

const out = { bytesReceived: 5, bytesSent: 1234, upstreamMs: 1.5, attempts: 2 }

test('access_log json: every default field, written whatever logging.level says; no query by default', () => {
  const { log, lines } = sink({})
  log.request(facts, 'u', '127.0.0.1:1', 200, undefined, out)
  const j = JSON.parse(lines[0]!)
  assert.deepEqual(
    Object.keys(j),
    // No Referer, no failure, not traced.
    ACCESS_FIELDS.filter((f) => f !== 'query' && f !== 'referer' && f !== 'error_type' && f !== 'trace_id'),
  )
  assert.equal(j.client_ip, '10.0.0.1')
  assert.equal(j.host, 'example.com')
  assert.equal(j.protocol, 'HTTP/1.1')
  assert.equal(j.user_agent, 'curl/8')
  assert.equal(j.bytes_sent, 1234)
  assert.equal(j.bytes_received, 5)
  assert.equal(j.upstream_time_ms, 1.5)
  assert.equal(j.attempts, 2)
  assert.ok(!lines[0]!.includes('secret'), 'the query string is left out unless asked for')
})

test('access_log json: chosen fields in their order; query with include_query; HTTP/2', () => {
  const { log, lines } = sink({ fields: ['status', 'query', 'protocol'], includeQuery: true })
  log.request({ ...facts, req: { ...facts.req, httpVersion: '2.0' } }, 'u', undefined, 200, undefined, out)
  assert.equal(lines[0], '{"status":200,"query":"token=secret","protocol":"HTTP/2"}\n')
})

test('access_log text: key=value, quoted only when needed', () => {
  const { log, lines } = sink({ format: 'text', fields: ['method', 'path', 'user_agent', 'status'] })
  log.request({ ...facts, path: '/a b' }, 'u', undefined, 404, 'no_route', out)
  assert.equal(lines[0], 'method=GET path="/a b" user_agent=curl/8 status=404\n')
})

test('access_log common and combined: the exact Apache layout; %b is - for no body', () => {
  const c = sink({ format: 'common' })
  c.log.request(facts, 'u', undefined, 200, undefined, out)
  assert.match(
    c.lines[0]!,
    /^10\.0\.0\.1 - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET \/p HTTP\/1\.1" 200 1234\n$/,
  )
  c.log.request(facts, 'u', undefined, 304, undefined, { ...out, bytesSent: 0 })
  assert.match(c.lines[1]!, /" 304 -\n$/)
  const b = sink({ format: 'combined', includeQuery: true })
  b.log.request(facts, 'u', undefined, 200, undefined, out)
  assert.match(b.lines[0]!, /"GET \/p\?token=secret HTTP\/1\.1" 200 1234 "-" "curl\/8"\n$/)
})

test('access_log combined: a hostile header cannot end the quoted field or the line', () => {
  const b = sink({ format: 'combined' })
  const raw = ['User-Agent', 'evil" 200 9\r\nforged \\ \u00ff', 'Referer', '\x01']
  b.log.request({ ...facts, req: { ...facts.req, rawHeaders: raw } }, 'u', undefined, 200, undefined, out)
  const line = b.lines[0]!
  assert.equal(line.indexOf('\n'), line.length - 1, 'one line')
  assert.ok(line.endsWith('"\\x01" "evil\\x22 200 9\\x0D\\x0Aforged \\x5C \\xFF"\n'), line)
})

test('access_log: a file that cannot be written is refused with its path; stdout keeps working', () => {
  const { log } = sink({})
  assert.throws(
    () =>
      log.configure({
        format: 'json',
        output: '/nonexistent-dir/access.log',
        fields: ['status'],
        includeQuery: false,
      }),
    /logging\.access_log\.output: cannot write \/nonexistent-dir\/access\.log/,
  )
})

test('a traced request: trace_id in the line, the trace told the end with the logged status', () => {
  const { log, lines } = sink({ fields: ['status', 'trace_id'] })
  const ended: [number, string | undefined][] = []
  const trace = {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    end: (s: number, e: string | undefined) => ended.push([s, e]),
  }
  log.request({ ...facts, trace }, 'u', undefined, 0, 'upstream_timeout', out)
  assert.deepEqual(JSON.parse(lines[0]!), { status: 504, trace_id: trace.traceId })
  assert.deepEqual(ended, [[504, 'upstream_timeout']])
})

test('numberText writes every number as String does', () => {
  for (let us = 0; us <= 2_000_000; us++) {
    const ms = us / 1000
    if (numberText(ms) !== String(ms)) assert.fail(`${us} µs: ${numberText(ms)} against ${String(ms)}`)
  }
  // A fixed-seed LCG: the same samples every run, spread over the whole range the fast path takes.
  let seed = 12345
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  }
  for (let i = 0; i < 200_000; i++) {
    const ms = Math.floor(next() * 10 ** (4 + next() * 9)) / 1000
    if (numberText(ms) !== String(ms)) assert.fail(`${ms}: ${numberText(ms)} against ${String(ms)}`)
  }
  for (const v of [
    0,
    -0,
    1,
    200,
    65_536,
    1e10,
    1e13,
    1e13 + 0.001,
    1e16,
    1.23456,
    0.0004,
    2.5e-7,
    -1.5,
    -0.001,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    Number.MAX_SAFE_INTEGER,
    9_999_999_999.999,
    // Beyond the bound the microsecond digits are no longer the shortest text: 8801018991814.461 would be wrong.
    8_801_018_991_814.46,
    9_950_730_842_483.363,
  ]) {
    assert.equal(numberText(v), String(v), String(v))
  }
})
