// closedPort(): the ports tests hand to servers they start later must not come from the kernel's
// ephemeral range, where the same process or a test running beside it may be given them first.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { test } from 'node:test'
import { closedPort } from './upstream'

test('closedPort: below the ephemeral range, free to listen on, never the same port twice', async () => {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
  const ports: number[] = []
  for (let i = 0; i < 20; i++) ports.push(await closedPort())
  for (const port of ports) assert.ok(port >= 1024 && port < low, `${port} is below ${low}`)
  // One setup takes several (a proxy's port, then Pebble's management port): never the same.
  assert.equal(new Set(ports).size, ports.length, `picks: ${ports.join(' ')}`)
  const s = net.createServer()
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject)
    s.listen(ports[0], '127.0.0.1', resolve)
  })
  await new Promise<void>((resolve) => s.close(() => resolve()))
})
