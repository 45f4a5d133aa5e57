// The control API's exposure rule: a non-loopback bind_address needs api_key or insecure: true.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compile } from './compile'
import { parseConfigText } from './load'
import { formatProblem } from './problems'

const config = (control: string) => `mode: load_balancer
server: { bind_address: "127.0.0.1:8484" }
upstreams: { a: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: a }
control_api:
${control}
`

const cases: Array<{ desc: string; control: string; env?: Record<string, string>; refused: boolean }> = [
  { desc: 'the default address without a key', control: '  enabled: true', refused: false },
  {
    desc: '127.0.0.1 without a key',
    control: '  enabled: true\n  bind_address: "127.0.0.1:8485"',
    refused: false,
  },
  {
    desc: 'another 127/8 address',
    control: '  enabled: true\n  bind_address: "127.1.2.3:8485"',
    refused: false,
  },
  { desc: '[::1] without a key', control: '  enabled: true\n  bind_address: "[::1]:8485"', refused: false },
  {
    desc: 'localhost without a key',
    control: '  enabled: true\n  bind_address: "LocalHost:8485"',
    refused: false,
  },
  {
    desc: '0.0.0.0 without a key',
    control: '  enabled: true\n  bind_address: "0.0.0.0:8485"',
    refused: true,
  },
  { desc: ':: without a key', control: '  enabled: true\n  bind_address: "[::]:8485"', refused: true },
  {
    desc: 'a LAN address without a key',
    control: '  enabled: true\n  bind_address: "10.0.0.5:8485"',
    refused: true,
  },
  {
    desc: 'a host name without a key',
    control: '  enabled: true\n  bind_address: "admin.internal:8485"',
    refused: true,
  },
  {
    desc: 'port 0 on 0.0.0.0 without a key',
    control: '  enabled: true\n  bind_address: "0.0.0.0:0"',
    refused: true,
  },
  {
    desc: '0.0.0.0 with a key',
    control: '  enabled: true\n  bind_address: "0.0.0.0:8485"\n  api_key: "${LOCCI_API_KEY}"',
    env: { LOCCI_API_KEY: 'k' },
    refused: false,
  },
  {
    desc: '0.0.0.0 with insecure: true',
    control: '  enabled: true\n  bind_address: "0.0.0.0:8485"\n  insecure: true',
    refused: false,
  },
  {
    desc: '0.0.0.0 while disabled',
    control: '  enabled: false\n  bind_address: "0.0.0.0:8485"',
    refused: false,
  },
]
for (const c of cases) {
  test(`control API on ${c.desc}: ${c.refused ? 'refused' : 'accepted'}`, () => {
    const r = compile(parseConfigText('c.yaml', config(c.control), c.env ?? {}))
    const problems = r.ok ? [] : r.problems.map(formatProblem)
    if (!c.refused) {
      assert.deepEqual(problems, [])
      return
    }
    assert.equal(problems.length, 1, problems.join('\n'))
    assert.match(problems[0]!, /^c\.yaml:\d+: control_api\.api_key: is required/)
    assert.match(problems[0]!, /not a loopback address/)
    assert.match(problems[0]!, /api_key: \$\{LOCCI_API_KEY\}/)
    assert.match(problems[0]!, /insecure: true/)
  })
}

test('config_store: refused with control_api.persist (the change would be applied twice), and its fields checked', () => {
  const withStore = (store: string, control = '  enabled: true') =>
    compile(parseConfigText('c.yaml', `${config(control)}config_store:\n${store}\n`, {}))
  assert.ok(withStore('  type: redis\n  url: "redis://127.0.0.1:6379"').ok)
  const persist = withStore(
    '  type: redis\n  url: "redis://127.0.0.1:6379"',
    '  enabled: true\n  persist: true',
  )
  assert.ok(!persist.ok)
  assert.match(
    persist.problems.map(formatProblem).join('\n'),
    /control_api\.persist.*cannot be used with config_store/,
  )
  const bad = withStore('  type: etcd\n  url: "http://x"\n  prefix: a')
  assert.ok(!bad.ok)
  const text = bad.problems.map(formatProblem).join('\n')
  assert.match(text, /config_store\.type.*must be "redis"/)
  assert.match(text, /config_store\.url.*redis:\/\//)
  assert.match(text, /config_store\.prefix: unknown key "prefix"/)
})
