import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { record } from '../../test/helpers/h1'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import type { Logger } from '../observe/logger'
import { UpstreamRegistry } from './registry'

const quiet = { info() {}, warn() {}, error() {} } as unknown as Logger

test('a server removed from the config keeps its in-flight request; its pool closes after', async () => {
  const server = http.createServer((_req, res) => setTimeout(() => res.end('late but whole'), 300))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  const cfg = (servers: string) =>
    compile(
      parseConfigText(
        'c.yaml',
        `mode: load_balancer\nupstreams: { g: { servers: [${servers}] } }\nload_balancer: { upstream: g }\n`,
        {},
      ),
    )
  const one = cfg(`"127.0.0.1:${port}"`)
  const other = cfg('"127.0.0.1:1"')
  assert.ok(one.ok && other.ok)
  const registry = new UpstreamRegistry(quiet)
  try {
    const groups = registry.build(one.snapshot)
    registry.activate(one.snapshot, groups)
    const peer = groups.get('g')!.peers[0]!
    const pending = record(peer.pool, { path: '/', method: 'GET' }).then((o) => o.body.toString())
    // Swap to a config without that server while the request is in flight.
    registry.activate(other.snapshot, registry.build(other.snapshot))
    assert.equal(await pending, 'late but whole')
    assert.equal(peer.pool.closed, true, 'the removed server’s pool is closed')
  } finally {
    registry.destroy()
    server.close()
  }
})
