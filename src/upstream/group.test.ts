import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import type { UpstreamSpec } from '../config/snapshot'
import { UpstreamGroup } from './group'
import { Peer } from './peer'

const pool = { maxConnections: 4, idleTimeoutMs: 1000, connectTimeoutMs: 1000 }
const spec: UpstreamSpec = {
  name: 'g',
  peers: [0, 1, 2].map((i) => ({
    address: `127.0.0.1:${4000 + i}`,
    host: '127.0.0.1',
    port: 4000 + i,
  })),
  strategy: 'round_robin',
  tls: false,
  sni: undefined,
  healthCheck: undefined,
}

describe('round robin candidates', () => {
  const peers = spec.peers.map((p) => new Peer('g', p, { enabled: false, servername: undefined }, pool))
  after(() => {
    for (const p of peers) p.destroy()
  })
  const first = (g: UpstreamGroup) => g.candidates()[0]?.port

  test('cycles in server order', () => {
    const g = new UpstreamGroup(spec, peers)
    assert.deepEqual(
      Array.from({ length: 6 }, () => first(g)),
      [4000, 4001, 4002, 4000, 4001, 4002],
    )
  })

  test('candidates list the fallbacks after the first choice', () => {
    const g = new UpstreamGroup(spec, peers)
    assert.deepEqual(
      g.candidates().map((p) => p.port),
      [4000, 4001, 4002],
    )
    assert.deepEqual(
      g.candidates().map((p) => p.port),
      [4001, 4002, 4000],
    )
  })

  test('unhealthy peers are skipped and the cycle continues after the one chosen', () => {
    const g = new UpstreamGroup(spec, peers)
    peers[1]!.healthy = false
    try {
      assert.deepEqual(
        Array.from({ length: 4 }, () => first(g)),
        [4000, 4002, 4000, 4002],
      )
      assert.deepEqual(
        g.candidates().map((p) => p.port),
        [4000, 4002],
      )
    } finally {
      peers[1]!.healthy = true
    }
  })

  test('no healthy peer: no candidates', () => {
    const g = new UpstreamGroup(spec, peers)
    for (const p of peers) p.healthy = false
    try {
      assert.deepEqual(g.candidates(), [])
      assert.equal(g.healthyCount(), 0)
    } finally {
      for (const p of peers) p.healthy = true
    }
  })
})
