import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compilePlan } from '../proxy/runtime'
import { parseDiscoveryEntry, resolverProblem } from './discovery'
import { parseConfigText } from './load'

const config = (upstream: string, server = '') => `mode: load_balancer
server: { bind_address: "127.0.0.1:0"${server} }
upstreams:
  g:
${upstream}
load_balancer: { upstream: g }
`

function problems(yaml: string): Array<{ path: string; line: number | undefined; message: string }> {
  const r = compilePlan(parseConfigText('cfg.yaml', yaml, {}), {})
  return r.ok ? [] : r.problems.map((p) => ({ path: p.path, line: p.line, message: p.message }))
}

describe('dns: and srv: server entries', () => {
  test('parsed: names lower-cased, the final dot dropped', () => {
    assert.deepEqual(parseDiscoveryEntry('dns:API.internal.:8080'), {
      kind: 'dns',
      name: 'api.internal',
      port: 8080,
    })
    assert.deepEqual(parseDiscoveryEntry('srv:_http._tcp.API.internal'), {
      kind: 'srv',
      name: '_http._tcp.api.internal',
    })
    assert.equal(parseDiscoveryEntry('10.0.0.1:80'), undefined)
  })

  const bad: Array<[string, RegExp]> = [
    ['dns:api.internal', /the port is missing/],
    ['dns:api.internal:0', /port must be a number from 1 to 65535/],
    ['dns:api.internal:99999', /port must be a number/],
    ['dns::80', /the name is missing/],
    ['dns:10.0.0.1:80', /is an address, not a name to resolve/],
    ['dns:[::1]:80', /is an address/],
    ['dns:bad name:80', /must be a DNS name/],
    ['dns:a..b:80', /must be a DNS name/],
    ['dns:${x}.evil:80', /must be a DNS name/],
    [`dns:${'a'.repeat(64)}.x:80`, /must be a DNS name/],
    ['srv:api.internal', /must be srv:_service._proto.NAME/],
    ['srv:_http._tcp.', /must be srv:_service._proto.NAME/],
    ['srv:_http._tcp.10.0.0.1', /not an address|IPv4/],
  ]
  for (const [text, message] of bad) {
    test(`refused at load with its location: ${text}`, () => {
      const ps = problems(config(`    servers:\n      - "${text.replace(/\$/g, '$$$$')}"`))
      assert.equal(ps.length, 1, JSON.stringify(ps))
      assert.equal(ps[0]!.path, 'upstreams.g.servers[0]')
      assert.equal(ps[0]!.line, 6)
      assert.match(ps[0]!.message, message)
    })
  }

  test('a resolver must be an IP address and port', () => {
    assert.equal(resolverProblem('127.0.0.1:53'), undefined)
    assert.equal(resolverProblem('[::1]:5353'), undefined)
    assert.match(resolverProblem('dns.local:53')!, /must be an IP address and port/)
    assert.match(resolverProblem('127.0.0.1')!, /port is missing/)
  })

  test('a group resolver without dns: or srv: servers is refused', () => {
    const ps = problems(config(`    servers: ["127.0.0.1:80"]\n    resolver: "127.0.0.1:53"`))
    assert.deepEqual(
      ps.map((p) => [p.path, p.message]),
      [['upstreams.g.resolver', 'only applies to dns: and srv: servers; this group has none']],
    )
  })

  test('an srv: server takes no weight (the records carry them)', () => {
    const ps = problems(
      config(
        `    strategy: weighted\n    servers:\n      - { address: "srv:_http._tcp.api.internal", weight: 3 }`,
      ),
    )
    assert.deepEqual(
      ps.map((p) => p.path),
      ['upstreams.g.servers[0].weight'],
    )
  })

  test('dns_min_ttl_secs above dns_max_ttl_secs is refused', () => {
    const ps = problems(
      config(`    servers: ["dns:api.internal:80"]`, ', dns_min_ttl_secs: 60, dns_max_ttl_secs: 30'),
    )
    assert.deepEqual(
      ps.map((p) => [p.path, p.message]),
      [['server.dns_min_ttl_secs', 'must not be more than dns_max_ttl_secs (30)']],
    )
  })

  test('the snapshot keeps host:port servers as peers and the names to resolve apart', () => {
    const r = compilePlan(
      parseConfigText(
        'cfg.yaml',
        config(
          `    strategy: weighted\n    resolver: "127.0.0.1:5353"\n    servers:\n      - "127.0.0.1:80"\n      - { address: "dns:api.internal:8080", weight: 2 }\n      - "srv:_http._tcp.api.internal"`,
        ),
        {},
      ),
      {},
    )
    assert.ok(r.ok)
    const g = r.plan.snapshot.upstreams.get('g')!
    assert.deepEqual(
      g.peers.map((p) => p.address),
      ['127.0.0.1:80'],
    )
    assert.deepEqual(g.discovery, {
      servers: [
        {
          entry: 'dns:api.internal:8080',
          target: { kind: 'dns', name: 'api.internal', port: 8080 },
          weight: 2,
        },
        {
          entry: 'srv:_http._tcp.api.internal',
          target: { kind: 'srv', name: '_http._tcp.api.internal' },
          weight: 1,
        },
      ],
      resolver: { host: '127.0.0.1', port: 5353 },
      minTtlMs: 1000,
      maxTtlMs: 30000,
    })
  })
})
