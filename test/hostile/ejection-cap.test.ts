// Passive health under a shared fault. When most servers of a group fail together (a database
// down, a bad deploy), ejecting each of them would pile all traffic onto the few left and take
// those down too; an attacker who can make some servers answer 5xx could steer traffic the same
// way. The proxy ejects at most `max_ejection_percent` (default 50, rounded down) of a group.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startProxy } from '../helpers/proxy'
import { startUpstream } from '../helpers/upstream'

test('with 2 of 3 servers answering 500, passive health ejects at most 1 of them (default 50%)', async () => {
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)))
  const [a, b, c] = ups as [(typeof ups)[0], (typeof ups)[0], (typeof ups)[0]]
  a.behaviour = { kind: 'status', status: 500 }
  b.behaviour = { kind: 'status', status: 500 }
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  g:
    servers: ["${a.address}", "${b.address}", "${c.address}"]
    passive_health: { consecutive_failures: 1, base_ejection_secs: 60 }
load_balancer: { upstream: g }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  try {
    for (let i = 0; i < 30; i++) await (await fetch(`${proxy.url}/r${i}`)).text()
    const view = (await (await fetch(`${proxy.controlUrl}/api/v1/upstreams`)).json()) as {
      upstreams: Array<{ servers: Array<{ address: string; ejected: boolean }> }>
    }
    const ejected = view.upstreams[0]!.servers.filter((s) => s.ejected).map((s) => s.address)
    assert.equal(ejected.length, 1, `ejected: ${ejected.join(', ')}`)
    assert.ok([a.address, b.address].includes(ejected[0]!), 'the one ejected is a failing one')
    // The other failing server stayed in: the cap said so.
    const line = await proxy.waitForLog(
      (l) => String(l.msg).includes('past max_ejection_percent'),
      'the cap warning',
    )
    assert.equal(line.level, 'warn')
    assert.equal(line.max_ejected, 1)
  } finally {
    await proxy.stop()
    await Promise.all(ups.map((u) => u.close()))
  }
})
