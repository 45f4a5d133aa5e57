import assert from 'node:assert/strict'
import { once } from 'node:events'
import net, { type Socket } from 'node:net'
import { test } from 'node:test'
import { canWriteDirectly, writeTextDirectly } from './direct-write'

/** A connected pair on 127.0.0.1: the client side and the server's accepted socket. */
async function pair(): Promise<{ client: Socket; peer: Socket; close: () => void }> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const client = net.connect(port, '127.0.0.1')
  const [peer] = (await once(server, 'connection')) as [Socket]
  await once(client, 'connect')
  return {
    client,
    peer,
    close: () => {
      client.destroy()
      peer.destroy()
      server.close()
    },
  }
}

/** Everything `s` sends until it ends, as one latin1 string. */
async function readAll(s: Socket): Promise<string> {
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  await once(s, 'end')
  return Buffer.concat(chunks).toString('latin1')
}

test('a text written to the handle arrives whole, in order with the stream writes after it', async () => {
  const { client, peer, close } = await pair()
  try {
    assert.equal(canWriteDirectly(client), true)
    const got = readAll(peer)
    assert.equal(writeTextDirectly(client, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n'), true)
    client.end('after')
    assert.equal(await got, 'GET / HTTP/1.1\r\nhost: a\r\n\r\nafter')
  } finally {
    close()
  }
})

test('a text the kernel takes in part is finished by libuv before the next stream write', async () => {
  const { client, peer, close } = await pair()
  try {
    peer.pause()
    // Far more than the socket buffers take while the peer does not read (latin1, bytes > 0x7f too).
    const big = 'x\u00e9'.repeat(8 * 1024 * 1024)
    assert.equal(writeTextDirectly(client, big), true)
    // Queued in the handle: the stream's own writes must wait behind it, so this one is refused.
    assert.equal(writeTextDirectly(client, 'y'), false)
    client.end('tail')
    const got = readAll(peer)
    peer.resume()
    const text = await got
    assert.equal(text.length, big.length + 4)
    assert.equal(text.slice(-4), 'tail')
    assert.equal(text.slice(0, big.length) === big, true)
  } finally {
    close()
  }
})

test('nothing is written directly past the stream: corked, or destroyed', async () => {
  const { client, close } = await pair()
  try {
    client.cork()
    assert.equal(writeTextDirectly(client, 'a'), false)
    client.uncork()
    client.destroy()
    assert.equal(writeTextDirectly(client, 'a'), false)
  } finally {
    close()
  }
})

test('a write to a connection the peer reset destroys the socket with the error, never throws', async () => {
  const { client, peer, close } = await pair()
  try {
    // Not reading: the reset can only show up on a write.
    client.pause()
    const errors: NodeJS.ErrnoException[] = []
    client.on('error', (err) => errors.push(err))
    const clientClosed = new Promise((r) => client.once('close', r))
    const closed = once(peer, 'close')
    peer.resetAndDestroy()
    await closed
    // The first write after a reset may still be taken by the kernel; a later one fails.
    const deadline = Date.now() + 10_000
    while (!client.destroyed && Date.now() < deadline) {
      assert.equal(writeTextDirectly(client, 'after the reset'), true)
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal(client.destroyed, true)
    await clientClosed
    assert.equal(errors.length, 1)
    assert.equal(errors[0]!.syscall, 'write')
  } finally {
    close()
  }
})
