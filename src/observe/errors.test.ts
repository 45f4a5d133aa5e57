// The error catalogue: errorKind() maps each code to the kind it should, the table holds its own
// rules (a status for every reply kind, retry only for upstream faults), and docs/GUIDE.md's
// Errors table lists every kind with the same status and error_type, and nothing else.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import {
  BODY_TIMEOUT,
  BODY_TOO_LARGE,
  ERROR_KINDS,
  ERRORS,
  type ErrorKind,
  errorKind,
  type FailureSide,
  loggedStatus,
  replyBody,
  TIMED_OUT,
} from './errors'

const codes: Array<{ desc: string; code: string | undefined; side: FailureSide; kind: ErrorKind }> = [
  {
    desc: 'undici connect timeout',
    code: 'UND_ERR_CONNECT_TIMEOUT',
    side: 'connect',
    kind: 'connect_timeout',
  },
  {
    desc: 'undici connect timeout reported once on a socket',
    code: 'UND_ERR_CONNECT_TIMEOUT',
    side: 'exchange',
    kind: 'connect_timeout',
  },
  {
    desc: 'the proxy connect deadline (TCP, upgrade)',
    code: TIMED_OUT,
    side: 'connect',
    kind: 'connect_timeout',
  },
  { desc: 'refused before anything was sent', code: 'ECONNREFUSED', side: 'connect', kind: 'connect_failed' },
  {
    desc: 'a TLS failure before anything was sent',
    code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    side: 'connect',
    kind: 'connect_failed',
  },
  { desc: 'a reset before anything was sent', code: 'ECONNRESET', side: 'connect', kind: 'connect_failed' },
  { desc: 'no code before anything was sent', code: undefined, side: 'connect', kind: 'connect_failed' },
  {
    desc: 'the proxy head deadline on a connection',
    code: TIMED_OUT,
    side: 'exchange',
    kind: 'upstream_timeout',
  },
  {
    desc: 'undici headers timeout',
    code: 'UND_ERR_HEADERS_TIMEOUT',
    side: 'exchange',
    kind: 'upstream_timeout',
  },
  { desc: 'undici body timeout', code: 'UND_ERR_BODY_TIMEOUT', side: 'exchange', kind: 'upstream_timeout' },
  { desc: 'undici socket error', code: 'UND_ERR_SOCKET', side: 'exchange', kind: 'upstream_reset' },
  { desc: 'a reset connection', code: 'ECONNRESET', side: 'exchange', kind: 'upstream_reset' },
  { desc: 'a broken pipe', code: 'EPIPE', side: 'exchange', kind: 'upstream_reset' },
  { desc: 'undici closed', code: 'UND_ERR_CLOSED', side: 'exchange', kind: 'upstream_reset' },
  { desc: 'undici destroyed', code: 'UND_ERR_DESTROYED', side: 'exchange', kind: 'upstream_reset' },
  { desc: 'a malformed answer', code: 'HPE_INVALID_CONSTANT', side: 'exchange', kind: 'upstream_error' },
  { desc: 'no code on a connection', code: undefined, side: 'exchange', kind: 'upstream_error' },
  {
    desc: 'headers over the parser limit',
    code: 'HPE_HEADER_OVERFLOW',
    side: 'client',
    kind: 'header_too_large',
  },
  { desc: 'a slow request head', code: 'ERR_HTTP_REQUEST_TIMEOUT', side: 'client', kind: 'header_timeout' },
  { desc: 'a body over the limit', code: BODY_TOO_LARGE, side: 'client', kind: 'payload_too_large' },
  { desc: 'a stalled body', code: BODY_TIMEOUT, side: 'client', kind: 'body_timeout' },
  { desc: 'the client reset its connection', code: 'ECONNRESET', side: 'client', kind: 'client_aborted' },
  { desc: 'a malformed request line', code: 'HPE_INVALID_METHOD', side: 'client', kind: 'bad_request' },
  { desc: 'a client error without a code', code: undefined, side: 'client', kind: 'bad_request' },
]

for (const c of codes) {
  test(`errorKind: ${c.desc} (${c.code}, ${c.side}) is ${c.kind}`, () => {
    assert.equal(errorKind(c.code, c.side), c.kind)
  })
}

const CONNECTION_KINDS = new Set<ErrorKind>(['connection_limit', 'http2_rapid_reset', 'idle_timeout'])

test('every kind that answers has an HTTP status and a body; connection kinds have neither', () => {
  for (const kind of ERROR_KINDS) {
    const e = ERRORS[kind]
    if (CONNECTION_KINDS.has(kind)) {
      assert.equal(e.status, 0, kind)
      continue
    }
    assert.ok(e.status >= 400 && e.status <= 599, `${kind}: ${e.status}`)
    if (kind !== 'client_aborted') assert.equal(replyBody(kind as never), `${e.status} ${e.body}\n`, kind)
  }
})

test('only upstream faults are retried, and every upstream fault but no_healthy_peer and circuit_open may be', () => {
  for (const kind of ERROR_KINDS) {
    const e = ERRORS[kind]
    if (e.retry !== undefined) assert.ok(e.upstream, `${kind} is retried but not charged to the upstream`)
    if (e.upstream && kind !== 'no_healthy_peer' && kind !== 'circuit_open')
      assert.ok(e.retry, `${kind} has no retry condition`)
    if (e.upstream) assert.equal(e.level, 'warn', `${kind} is logged as an upstream error at warn`)
  }
})

test('status and error_type together name one kind (so the guide can list each once)', () => {
  const seen = new Map<string, ErrorKind>()
  for (const kind of ERROR_KINDS) {
    const key = `${ERRORS[kind].status} ${ERRORS[kind].label}`
    assert.equal(seen.get(key), undefined, `${kind} and ${seen.get(key)} are both ${key}`)
    seen.set(key, kind)
  }
})

const logged: Array<{ desc: string; sent: number; kind: ErrorKind | undefined; status: number }> = [
  { desc: 'a relayed answer', sent: 200, kind: undefined, status: 200 },
  { desc: 'a reply of the proxy', sent: 502, kind: 'connect_failed', status: 502 },
  { desc: 'a response cut short mid-way', sent: 200, kind: 'upstream_reset', status: 200 },
  { desc: 'nothing sent before the failure', sent: 0, kind: 'upstream_timeout', status: 504 },
  { desc: 'the client left mid-response', sent: 200, kind: 'client_aborted', status: 499 },
  { desc: 'the client left before an answer', sent: 0, kind: 'client_aborted', status: 499 },
]

for (const c of logged) {
  test(`the access line's status for ${c.desc} is ${c.status}`, () => {
    assert.equal(loggedStatus(c.sent, c.kind), c.status)
  })
}

/** The rows of the table under `### Errors` in docs/GUIDE.md: status (0: none) and error_type. */
function guideRows(): Array<{ status: number; label: string; line: string }> {
  // dist/src/observe -> the repository root.
  const guide = readFileSync(path.resolve(__dirname, '..', '..', '..', 'docs', 'GUIDE.md'), 'utf8')
  const section = guide.slice(guide.indexOf('\n### Errors\n'))
  assert.ok(section.length > 0, 'docs/GUIDE.md has an Errors section')
  const lines = section.split('\n')
  const first = lines.findIndex((l) => l.startsWith('|---'))
  const rows: Array<{ status: number; label: string; line: string }> = []
  for (const line of lines.slice(first + 1)) {
    if (!line.startsWith('|')) break
    const cells = line.split('|').slice(1, -1)
    const label = /`([a-z0-9_]+)`/.exec(cells[cells.length - 1]!)?.[1] ?? ''
    const status = Number(/`(\d{3})`/.exec(cells[cells.length - 2]!)?.[1] ?? 0)
    rows.push({ status, label, line })
  }
  return rows
}

test("docs/GUIDE.md's Errors table lists every kind with its status and error_type, and nothing else", () => {
  const rows = guideRows()
  const wanted = new Map(ERROR_KINDS.map((k) => [`${ERRORS[k].status} ${ERRORS[k].label}`, k]))
  const listed = new Set<string>()
  for (const r of rows) {
    const key = `${r.status} ${r.label}`
    assert.ok(wanted.has(key), `the guide row names no kind of observe/errors.ts (${key}): ${r.line}`)
    assert.ok(!listed.has(key), `the guide lists ${key} twice`)
    listed.add(key)
  }
  const missing = [...wanted].filter(([key]) => !listed.has(key)).map(([key, kind]) => `${kind} (${key})`)
  assert.deepEqual(missing, [], 'kinds missing from the guide')
})
