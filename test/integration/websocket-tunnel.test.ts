// The WebSocket tunnel once the handshake is done (src/proxy/tunnel.ts): large messages arrive
// intact, a slow reader on either side holds the other back without the proxy buffering, FINs
// pass after the last byte (half-close, both ways), resets pass as resets, bytes read around the
// handshake keep their order, the idle timeout counts traffic either way, max_connections counts
// open tunnels, and the TLS paths (listener, upstream) relay the same.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { WebSocket, WebSocketServer } from 'ws'
import { makeCert } from '../helpers/certs'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rssOf } from '../helpers/raw'
import { until } from '../helpers/until'

const MiB = 1024 * 1024
const HANDSHAKE =
  'GET /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
const SWITCHING =
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n'

/** Reads `s` up to the end of an HTTP head, then pauses it and hands over the head and what followed. */
function readHead(s: net.Socket, then: (head: string, rest: Buffer) => void): void {
  let buf = Buffer.alloc(0)
  const onData = (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    const end = buf.indexOf('\r\n\r\n')
    if (end < 0) return
    s.off('data', onData)
    s.pause()
    then(buf.subarray(0, end).toString('latin1'), buf.subarray(end + 4))
  }
  s.on('data', onData)
}

/**
 * An upstream that answers every upgrade with a raw 101 and hands the socket to `onTunnel` with
 * the bytes that came after the request head. Not a WebSocket server: past the handshake the
 * tests speak raw bytes, to control exactly what passes and when.
 */
async function rawUpstream(onTunnel: (s: net.Socket, rest: Buffer) => void) {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => undefined)
    readHead(s, (_head, rest) => onTunnel(s, rest))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/**
 * Sends a WebSocket handshake through the proxy (with `extra` bytes in the same write); `ready`
 * resolves once the 101 head is read, with the bytes that came after it.
 */
function openRaw(port: number, extra: Buffer = Buffer.alloc(0)) {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  const ready = new Promise<{ head: string; rest: Buffer }>((resolve, reject) => {
    readHead(s, (head, rest) => {
      s.off('error', reject)
      resolve({ head, rest })
    })
    s.once('error', reject)
    s.once('close', () => reject(new Error('closed before the 101')))
  })
  s.write(Buffer.concat([Buffer.from(HANDSHAKE, 'latin1'), extra]))
  return { s, ready }
}

async function rawClient(port: number) {
  const { s, ready } = openRaw(port)
  return { s, ...(await ready) }
}

/** A 1 MiB pattern for pump. */
function pattern(): Buffer {
  const chunk = Buffer.alloc(MiB)
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) % 251
  return chunk
}

/**
 * Writes `total` bytes of `chunk` (1 MiB, repeated) as fast as `s` takes them; returns the live
 * counters.
 */
function pump(s: net.Socket, total: number, then: 'end' | 'stay' = 'end', chunk = pattern()) {
  const state = { written: 0, hash: createHash('sha1') }
  const go = () => {
    while (state.written < total) {
      const piece = chunk.subarray(0, Math.min(MiB, total - state.written))
      state.written += piece.length
      state.hash.update(piece)
      if (!s.write(piece)) {
        s.once('drain', go)
        return
      }
    }
    if (then === 'end') s.end()
  }
  go()
  return state
}

/** Counts and hashes what `s` reads (from `rest` on), until its end. */
function drain(s: net.Socket, rest: Buffer = Buffer.alloc(0)) {
  const state = { got: rest.length, ended: false, hash: createHash('sha1').update(rest) }
  s.on('data', (d: Buffer) => {
    state.got += d.length
    state.hash.update(d)
  })
  s.on('end', () => {
    state.ended = true
  })
  return state
}

/** Every byte `sent` wrote arrived in `got`, in order. */
function assertArrived(got: ReturnType<typeof drain>, sent: ReturnType<typeof pump>, total: number) {
  assert.equal(got.got, total)
  assert.equal(got.hash.digest('hex'), sent.hash.digest('hex'))
}

/** Waits until `read()` stops growing between two looks `stepMs` apart. */
async function settled(read: () => number, what: string) {
  let last = -1
  await until(
    () => {
      const now = read()
      const stable = now === last
      last = now
      return stable
    },
    what,
    30_000,
    300,
  )
  return last
}

const lb = (address: string, server = '') => `mode: load_balancer
server: { bind_address: "127.0.0.1:0"${server} }
upstreams: { u: { servers: ["${address}"] } }
load_balancer: { upstream: u }
`

describe('WebSocket tunnel: messages', () => {
  let wss: WebSocketServer
  let proxy: RunningProxy
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * MiB })
    await new Promise((r) => wss.once('listening', r))
    wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m as Buffer, { binary })))
    proxy = await startProxy(lb(`127.0.0.1:${(wss.address() as net.AddressInfo).port}`))
  })
  after(async () => {
    await proxy.stop()
    wss.close()
  })

  test('16 MiB text and binary messages, and many small ones, come back intact', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`, { maxPayload: 64 * MiB })
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    const received: Array<{ data: Buffer; binary: boolean }> = []
    ws.on('message', (data, binary) => received.push({ data: data as Buffer, binary }))
    const text = Buffer.alloc(16 * MiB, 'BAsd7&jh23')
    const binary = randomBytes(16 * MiB)
    const small = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 997) % 70_000)))
    ws.send(text, { binary: false })
    ws.send(binary, { binary: true })
    for (const m of small) ws.send(m)
    await until(() => received.length === 2 + small.length, 'every echo', 60_000)
    assert.equal(received[0]!.binary, false)
    assert.ok(received[0]!.data.equals(text), 'the text message came back unchanged')
    assert.equal(received[1]!.binary, true)
    assert.ok(received[1]!.data.equals(binary), 'the binary message came back unchanged')
    for (let i = 0; i < small.length; i++) assert.ok(received[2 + i]!.data.equals(small[i]!), `message ${i}`)
    ws.close()
    await proxy.waitForLog((l) => l.msg === 'request' && l.status === 101, 'the access line at close')
  })
})

describe('WebSocket tunnel: raw bytes', () => {
  let onTunnel: (s: net.Socket, rest: Buffer) => void = () => undefined
  let onTunnelCalls = 0
  let up: Awaited<ReturnType<typeof rawUpstream>>
  let proxy: RunningProxy
  before(async () => {
    up = await rawUpstream((s, rest) => onTunnel(s, rest))
    proxy = await startProxy(lb(up.address))
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  /** The next tunnel's upstream socket, answered with a 101 (and `withHead` after it). */
  const nextTunnel = (withHead = Buffer.alloc(0), delay?: Promise<void>) =>
    new Promise<{ s: net.Socket; rest: Buffer }>((resolve) => {
      onTunnel = (s, rest) => {
        onTunnelCalls++
        void (delay ?? Promise.resolve()).then(() => {
          s.write(Buffer.concat([Buffer.from(SWITCHING, 'latin1'), withHead]))
          resolve({ s, rest })
        })
      }
    })

  /** A tunnel through `port`: the client's side past the 101, the upstream's past the handshake. */
  const openTunnel = async (port = proxy.port) => {
    const upstream = nextTunnel()
    const c = await rawClient(port)
    return { c, u: await upstream }
  }

  for (const [reader, writer] of [
    ['client', 'upstream'],
    ['upstream', 'client'],
  ] as const) {
    test(`a ${reader} that stops reading holds the ${writer} back; the proxy buffers little; every byte arrives`, async () => {
      const { c, u } = await openTunnel()
      const [from, to] = reader === 'client' ? [u, { s: c.s, rest: c.rest }] : [{ s: c.s }, u]
      const total = 256 * MiB
      const rss0 = await rssOf(proxy.child.pid!)
      const sent = pump(from.s, total)
      const got = drain(to.s, to.rest)
      to.s.resume()
      await until(() => got.got > 4 * MiB, 'the first bytes')
      to.s.pause()
      const held = await settled(() => sent.written, `the ${writer} to be held back`)
      // What is in flight sits in four kernel socket buffers (a few MiB each) and one read of
      // the proxy: far below the 256 MiB the writer wants to send.
      assert.ok(held - got.got < 64 * MiB, `${Math.round((held - got.got) / MiB)} MiB in flight`)
      const rss = await rssOf(proxy.child.pid!)
      assert.ok(rss - rss0 < 64 * MiB, `proxy RSS grew by ${Math.round((rss - rss0) / MiB)} MiB`)
      to.s.resume()
      await until(() => got.ended, 'all of it and the end', 60_000)
      assertArrived(got, sent, total)
      to.s.end()
    })
  }

  test('tunnels stalled at the same time each keep their own bytes, both ways; the proxy holds little', async () => {
    // Every tunnel of the process reads into one shared buffer and a stalled direction keeps the
    // write buffer its pending write holds: bytes of one tunnel must never land in another's, nor
    // a later read overwrite a pending write. Each direction sends its own random 1 MiB, repeated.
    const tunnels = []
    for (let i = 0; i < 3; i++) tunnels.push(await openTunnel())
    const rss0 = await rssOf(proxy.child.pid!)
    // More than the kernel's socket buffers hold, so the proxy's own writes end up waiting.
    const total = 48 * MiB
    const flows = tunnels.flatMap(({ c, u }) => [
      { sent: pump(u.s, total, 'stay', randomBytes(MiB)), got: drain(c.s, c.rest), reader: c.s },
      { sent: pump(c.s, total, 'stay', randomBytes(MiB)), got: drain(u.s, u.rest), reader: u.s },
    ])
    for (const f of flows) f.reader.resume()
    await until(() => flows.every((f) => f.got.got > MiB), 'the first bytes every way')
    for (const f of flows) f.reader.pause()
    await settled(() => flows.reduce((n, f) => n + f.sent.written, 0), 'every writer to be held back')
    const rss = await rssOf(proxy.child.pid!)
    assert.ok(rss - rss0 < 64 * MiB, `proxy RSS grew by ${Math.round((rss - rss0) / MiB)} MiB`)
    for (const f of flows) f.reader.resume()
    await until(() => flows.every((f) => f.got.got >= total), 'every byte every way', 60_000)
    for (const f of flows) assertArrived(f.got, f.sent, total)
    for (const { c, u } of tunnels) {
      c.s.destroy()
      u.s.destroy()
    }
  })

  test("the upstream's FIN right after a burst reaches a slow client after the burst's last byte", async () => {
    const { c, u } = await openTunnel()
    const sent = pump(u.s, 8 * MiB)
    // Reads a little at a time: the upstream's FIN reaches the proxy while most of the burst
    // still waits to be written to the client.
    const got = drain(c.s, c.rest)
    c.s.pause()
    const tick = setInterval(() => {
      c.s.resume()
      setImmediate(() => c.s.pause())
    }, 5)
    try {
      await until(() => got.ended, 'the end of the burst', 60_000)
    } finally {
      clearInterval(tick)
    }
    assertArrived(got, sent, 8 * MiB)
    // Half-closed: the client may still talk, and the upstream still hears it.
    const heard = drain(u.s, u.rest)
    u.s.resume()
    c.s.end('after the end')
    await until(() => heard.ended, 'the client end upstream')
    assert.equal(heard.got, 'after the end'.length)
  })

  test("the client's FIN reaches the upstream after its last byte; the upstream can still answer", async () => {
    const { c, u } = await openTunnel()
    const sent = pump(c.s, 4 * MiB)
    const got = drain(u.s, u.rest)
    u.s.resume()
    await until(() => got.ended, 'the client bytes and FIN upstream', 30_000)
    assertArrived(got, sent, 4 * MiB)
    const answer = pump(u.s, 2 * MiB)
    const back = drain(c.s, c.rest)
    c.s.resume()
    await until(() => back.ended, 'the answer and the upstream end', 30_000)
    assert.equal(back.hash.digest('hex'), answer.hash.digest('hex'))
    await until(() => c.s.destroyed || c.s.closed, 'the client socket to close')
  })

  for (const side of ['upstream', 'client'] as const) {
    test(`a reset by the ${side} resets the other side`, async () => {
      const { c, u } = await openTunnel()
      const [resetter, other] = side === 'upstream' ? [u.s, c.s] : [c.s, u.s]
      const outcome = new Promise<string>((resolve) => {
        other.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
        other.once('end', () => resolve('end'))
      })
      other.resume()
      resetter.resetAndDestroy()
      assert.equal(await outcome, 'ECONNRESET')
    })
  }

  test('bytes around the handshake keep their order both ways', async () => {
    let answer!: () => void
    const gate = new Promise<void>((r) => {
      answer = r
    })
    const calls = onTunnelCalls
    const upstream = nextTunnel(Buffer.from('C'.repeat(1000)), gate)
    // A with the handshake (in the same write), B while the proxy waits for the upstream's
    // answer: both are read before the tunnel exists, and must go first, in order.
    const c = openRaw(proxy.port, Buffer.from('A'.repeat(1000)))
    await new Promise<void>((r) => c.s.write('B'.repeat(1000), () => r()))
    await until(() => onTunnelCalls > calls, 'the handshake upstream')
    setTimeout(answer, 50)
    const u = await upstream
    const heard = drain(u.s, u.rest)
    u.s.resume()
    const { head, rest } = await c.ready
    assert.match(head, /^HTTP\/1\.1 101 /)
    const back = { text: rest.toString('latin1') }
    c.s.on('data', (d: Buffer) => {
      back.text += d.toString('latin1')
    })
    c.s.resume()
    u.s.write('D'.repeat(1000))
    c.s.end('E'.repeat(1000))
    await until(() => heard.ended, 'the client bytes upstream')
    assert.equal(heard.got, 3000)
    assert.equal(
      heard.hash.digest('hex'),
      createHash('sha1')
        .update(`${'A'.repeat(1000)}${'B'.repeat(1000)}${'E'.repeat(1000)}`)
        .digest('hex'),
    )
    await until(() => back.text.length === 2000, 'the upstream bytes at the client')
    assert.equal(back.text, `${'C'.repeat(1000)}${'D'.repeat(1000)}`)
    u.s.end()
  })

  test('traffic either way keeps a tunnel open past the idle timeout; silence closes it', async () => {
    const idle = await startProxy(lb(up.address, ', websocket_idle_timeout_secs: 0.4'))
    try {
      const { c, u } = await openTunnel(idle.port)
      const heard = drain(u.s, u.rest)
      const back = drain(c.s, c.rest)
      u.s.resume()
      c.s.resume()
      // One byte every 100 ms, alternating directions, for 3 idle periods.
      for (let i = 0; i < 12; i++) {
        await new Promise((r) => setTimeout(r, 100))
        ;(i % 2 ? u.s : c.s).write('x')
      }
      await until(() => heard.got === 6 && back.got === 6, 'every byte')
      assert.equal(c.s.destroyed || c.s.readableEnded, false, 'still open')
      await until(() => back.ended && heard.ended, 'the idle timeout to close both sides')
    } finally {
      await idle.stop()
    }
  })

  test('max_connections counts open tunnels; a closed tunnel frees its place', async () => {
    const limited = await startProxy(lb(up.address, ', max_connections: 2'))
    try {
      const tunnels = []
      for (let i = 0; i < 2; i++) tunnels.push(await openTunnel(limited.port))
      // A third connection is closed as it arrives.
      const refused = await new Promise<string>((resolve) => {
        const s = net.connect(limited.port, '127.0.0.1')
        s.on('data', () => resolve('answered'))
        s.on('close', () => resolve('closed'))
        s.on('error', () => resolve('closed'))
        s.write(HANDSHAKE)
      })
      assert.equal(refused, 'closed')
      const first = tunnels[0]!
      first.c.s.end()
      first.u.s.resume()
      first.u.s.end()
      first.c.s.resume()
      await until(() => first.c.s.closed, 'the first tunnel to close')
      const upstream = nextTunnel()
      const again = await until(
        () => rawClient(limited.port).catch(() => undefined),
        'a new tunnel in the freed place',
      )
      assert.match(again.head, /^HTTP\/1\.1 101 /)
      await upstream
      for (const t of [...tunnels, { c: again }]) t.c.s.destroy()
    } finally {
      await limited.stop()
    }
  })
})

describe('WebSocket tunnel over TLS', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-ws-tls-'))
  let plain: WebSocketServer
  let secure: WebSocketServer
  let secureServer: https.Server
  let front: RunningProxy
  let back: RunningProxy
  let ca: string
  before(async () => {
    const cert = await makeCert(dir, 'localhost', ['localhost'])
    ca = cert.cert
    const echo = (ws: WebSocket) => ws.on('message', (m, binary) => ws.send(m as Buffer, { binary }))
    plain = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * MiB })
    await new Promise((r) => plain.once('listening', r))
    plain.on('connection', echo)
    secureServer = https.createServer({ cert: cert.cert, key: cert.key })
    secure = new WebSocketServer({ server: secureServer, maxPayload: 64 * MiB })
    secure.on('connection', echo)
    await new Promise<void>((r) => secureServer.listen(0, '127.0.0.1', r))
    // A TLS listener in front of a plain upstream, and a plain listener in front of a TLS one.
    front = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  tls: { cert_path: ${cert.certPath}, key_path: ${cert.keyPath} }
upstreams: { u: { servers: ["127.0.0.1:${(plain.address() as net.AddressInfo).port}"] } }
load_balancer: { upstream: u }
`)
    back = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  u:
    servers: ["127.0.0.1:${(secureServer.address() as net.AddressInfo).port}"]
    tls: true
    sni: localhost
    ca_path: ${cert.certPath}
load_balancer: { upstream: u }
`)
  })
  after(async () => {
    await front.stop()
    await back.stop()
    plain.close()
    secure.close()
    secureServer.close()
  })

  for (const [name, url] of [
    ['a TLS listener', () => `wss://localhost:${front.port}/`],
    ['a TLS upstream', () => `ws://127.0.0.1:${back.port}/`],
  ] as const) {
    test(`through ${name}: a 16 MiB message comes back intact, and the close passes`, async () => {
      const ws = new WebSocket(url(), { ca, maxPayload: 64 * MiB })
      await new Promise((resolve, reject) => {
        ws.once('open', resolve)
        ws.once('error', reject)
      })
      const message = randomBytes(16 * MiB)
      const echoed = new Promise<Buffer>((resolve) => ws.once('message', (m) => resolve(m as Buffer)))
      ws.send(message)
      assert.ok((await echoed).equals(message), 'the message came back unchanged')
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
      ws.close(1000)
      assert.equal(await closed, 1000)
    })
  }
})
