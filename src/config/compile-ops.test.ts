// server.ops_bind_address: a listen address like the others, on a port of its own.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compile } from './compile'
import { parseConfigText } from './load'
import { formatProblem } from './problems'

const config = (server: string, control = '') => `mode: load_balancer
server:
  bind_address: "127.0.0.1:8484"
${server}
upstreams: { a: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: a }
${control}`

const cases: Array<{ desc: string; server: string; control?: string; problem: RegExp | undefined }> = [
  { desc: 'off by default', server: '', problem: undefined },
  { desc: 'a port of its own', server: '  ops_bind_address: "0.0.0.0:8486"', problem: undefined },
  {
    desc: 'the main listener address',
    server: '  ops_bind_address: "127.0.0.1:8484"',
    problem: /uses the same address as server.bind_address \(127.0.0.1:8484\)/,
  },
  {
    desc: 'the main listener port on every interface',
    server: '  ops_bind_address: "0.0.0.0:8484"',
    problem: /same address as server.bind_address/,
  },
  {
    desc: 'the main port on another address',
    server: '  ops_bind_address: "127.0.0.2:8484"',
    problem: undefined,
  },
  {
    desc: 'the enabled control API address',
    server: '  ops_bind_address: "127.0.0.1:8485"',
    control: 'control_api: { enabled: true }\n',
    problem: /uses the same address as control_api.bind_address \(127.0.0.1:8485\)/,
  },
  {
    desc: 'the control API address while the control API is off',
    server: '  ops_bind_address: "127.0.0.1:8485"',
    problem: undefined,
  },
  {
    desc: 'port 0 (the OS picks a free one)',
    server: '  ops_bind_address: "127.0.0.1:0"',
    control: 'control_api: { enabled: true, bind_address: "127.0.0.1:0" }\n',
    problem: undefined,
  },
  {
    desc: 'not an address',
    server: '  ops_bind_address: "8486"',
    problem: /./,
  },
  {
    desc: 'a port out of range',
    server: '  ops_bind_address: "0.0.0.0:70000"',
    problem: /port/,
  },
]

for (const c of cases) {
  test(`ops_bind_address: ${c.desc}`, () => {
    const r = compile(parseConfigText('cfg.yaml', config(c.server, c.control), {}))
    const problems = r.ok ? [] : r.problems.filter((p) => p.path === 'server.ops_bind_address')
    if (c.problem === undefined) {
      assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'))
      return
    }
    assert.equal(problems.length, 1, r.ok ? 'compiled' : r.problems.map(formatProblem).join('\n'))
    assert.match(problems[0]!.message, c.problem)
    assert.equal(problems[0]!.line, 4)
  })
}

test('ops_bind_address reaches the snapshot', () => {
  const r = compile(parseConfigText('cfg.yaml', config('  ops_bind_address: "[::1]:8486"'), {}))
  assert.ok(r.ok)
  assert.deepEqual(r.snapshot.ops, { host: '::1', port: 8486 })
  const off = compile(parseConfigText('cfg.yaml', config(''), {}))
  assert.ok(off.ok)
  assert.equal(off.snapshot.ops, undefined)
})
