// TCP pass-through under hostile clients. An attacker can open connections and go quiet (each one
// holds a client socket, an upstream socket and their buffers forever), or open many at once.
// The proxy closes a connection that moves no byte either way for `tcp_idle_timeout_secs`
// (including one that goes quiet while the upstream connect is still under way), and refuses
// connections beyond `max_connections` as they arrive, leaving the open ones alone.

import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { test } from 'node:test'
import { startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'

/** A TCP server that echoes every chunk back at once. */
async function echoServer() {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => undefined)
    s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

/** A client socket that records what it reads and when it closed. */
function client(port: number) {
  const s = net.connect({ port, host: '127.0.0.1' })
  const state = { socket: s, got: '', closedAt: 0, openedAt: Date.now() }
  s.on('data', (d) => {
    state.got += d
  })
  s.on('error', () => undefined)
  s.on('close', () => {
    state.closedAt = Date.now()
  })
  return state
}

function connected(s: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!s.connecting) return resolve()
    s.once('connect', () => resolve())
    s.once('error', reject)
  })
}

const config = (upstream: string, server = '', pool = '') => `mode: load_balancer
server: { bind_address: "127.0.0.1:0"${server}${pool} }
upstreams:
  g: { servers: ["${upstream}"], passive_health: { enabled: false } }
load_balancer: { upstream: g, protocol: tcp }
`

test('tcp: a connection silent both ways is closed after tcp_idle_timeout_secs; a chatty one stays open', async () => {
  const up = await echoServer()
  const proxy = await startProxy(config(up.address, ', tcp_idle_timeout_secs: 0.5'))
  const idle = client(proxy.port)
  const chatty = client(proxy.port)
  try {
    await Promise.all([connected(idle.socket), connected(chatty.socket)])
    // One byte every 100 ms for 2 s, each echoed back through the proxy.
    for (let i = 0; i < 20; i++) {
      chatty.socket.write('x')
      await until(() => chatty.got.length === i + 1, `echo ${i + 1}`, 5000, 5)
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(chatty.closedAt, 0, 'traffic keeps the connection open past the idle timeout')
    // The silent one has long been closed (0.5 s idle, checked after 2 s of the other's traffic).
    await until(() => idle.closedAt > 0, 'the idle connection closed', 10_000)
    assert.ok(idle.closedAt - idle.openedAt >= 400, 'not before the idle timeout')
    const line = await proxy.waitForLog(
      (l) => l.msg === 'connection' && l.error_type === 'idle_timeout',
      'the idle connection line',
    )
    assert.equal(line.bytes_in, 0)
    chatty.socket.end()
    await until(() => chatty.closedAt > 0, 'the chatty connection closed by its client')
    assert.equal(proxy.logs.filter((l) => l.error_type === 'idle_timeout').length, 1, 'only the idle one')
  } finally {
    idle.socket.destroy()
    chatty.socket.destroy()
    await proxy.stop()
    await up.close()
  }
})

/**
 * An upstream that never completes a connect: a listener in a child process that is stopped
 * (SIGSTOP) with its accept queue filled, so the kernel drops further SYNs.
 */
async function blackHole(): Promise<{ address: string; fillers: net.Socket[]; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () {
         process.stdout.write(String(this.address().port) + '\\n', () => process.kill(process.pid, 'SIGSTOP'))
       })`,
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  )
  let out = ''
  child.stdout!.on('data', (d) => {
    out += d
  })
  const port = await until(() => (out.includes('\n') ? Number(out.trim()) : undefined), 'the port')
  await until(() => {
    try {
      return /\nState:\s+T/.test(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
    } catch {
      return false
    }
  }, 'the listener stopped')
  // Fill the accept queue: connects complete until it is full, then hang.
  const fillers: net.Socket[] = []
  for (let i = 0; i < 8; i++) {
    const s = net.connect({ port, host: '127.0.0.1' })
    s.on('error', () => undefined)
    fillers.push(s)
  }
  await new Promise((r) => setTimeout(r, 300))
  return { address: `127.0.0.1:${port}`, fillers, child }
}

test('tcp: a silent client is closed by the idle timeout even while the upstream connect hangs', async (t) => {
  if (process.platform !== 'linux') return t.skip('needs Linux /proc and SYN drop on a full accept queue')
  const hole = await blackHole()
  const probe = net.connect({ port: Number(hole.address.split(':')[1]), host: '127.0.0.1' })
  probe.on('error', () => undefined)
  const probeConnected = await new Promise<boolean>((r) => {
    probe.once('connect', () => r(true))
    setTimeout(() => r(false), 500)
  })
  probe.destroy()
  if (probeConnected) {
    hole.child.kill('SIGKILL')
    return t.skip('this kernel completes connects on a full accept queue')
  }
  const proxy = await startProxy(
    config(hole.address, ', tcp_idle_timeout_secs: 0.5', ', connection_pool: { connect_timeout_secs: 60 }'),
  )
  const c = client(proxy.port)
  try {
    await connected(c.socket)
    await until(() => c.closedAt > 0, 'the client closed while the connect hangs', 10_000)
    const line = await proxy.waitForLog((l) => l.msg === 'connection', 'the connection line')
    assert.equal(line.error_type, 'idle_timeout')
  } finally {
    c.socket.destroy()
    await proxy.stop()
    for (const s of hole.fillers) s.destroy()
    hole.child.kill('SIGKILL')
  }
})

test('tcp: with max_connections 2 a third connection is closed at once; the first two keep working', async () => {
  const up = await echoServer()
  const proxy = await startProxy(config(up.address, ', max_connections: 2'))
  const a = client(proxy.port)
  const b = client(proxy.port)
  let c: ReturnType<typeof client> | undefined
  try {
    a.socket.write('a1')
    b.socket.write('b1')
    await until(() => a.got === 'a1' && b.got === 'b1', 'both proxied')
    c = client(proxy.port)
    c.socket.write('c1')
    await until(() => c!.closedAt > 0, 'the third connection closed', 5000)
    assert.equal(c.got, '', 'the third connection reached no upstream')
    a.socket.write('a2')
    b.socket.write('b2')
    await until(() => a.got === 'a1a2' && b.got === 'b1b2', 'the first two still proxied')
    assert.equal(a.closedAt + b.closedAt, 0)
    await proxy.waitForLog((l) => l.error_type === 'connection_limit', 'the refusal logged')
  } finally {
    a.socket.destroy()
    b.socket.destroy()
    c?.socket.destroy()
    await proxy.stop()
    await up.close()
  }
})
