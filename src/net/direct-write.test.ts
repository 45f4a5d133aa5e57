import assert from 'node:assert/strict'
import { once } from 'node:events'
import net, { type Socket } from 'node:net'
import { test } from 'node:test'
import { canWriteDirectly, queueAnswer, queueText } from './direct-write'
import { handleOf } from './handle'

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

/** The end of this turn of the event loop: the queued writes have been made. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

test('a queued text is written at the end of the turn, before the stream writes made after it', async () => {
  const { client, peer, close } = await pair()
  try {
    assert.equal(canWriteDirectly(client), true)
    const got = readAll(peer)
    let done = false
    assert.equal(
      queueText(client, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n', () => {
        done = true
      }),
      true,
    )
    // Written through the stream after it: held until the queued write is made.
    client.write('after')
    assert.equal(done, false)
    await turn()
    await turn()
    assert.equal(done, true)
    client.end()
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
    let done = false
    assert.equal(
      queueText(client, big, () => {
        done = true
      }),
      true,
    )
    // Queued already: another write waits behind it, through the stream.
    assert.equal(queueText(client, 'y'), false)
    await turn()
    // Left to libuv in part: a write now must wait behind it too.
    assert.equal(queueText(client, 'y'), false)
    client.write('tail')
    const got = readAll(peer)
    peer.resume()
    client.end()
    const text = await got
    assert.equal(done, true)
    assert.equal(text.length, big.length + 4)
    assert.equal(text.slice(-4), 'tail')
    assert.equal(text.slice(0, big.length) === big, true)
  } finally {
    close()
  }
})

test('nothing is queued past the stream: corked, or destroyed', async () => {
  const { client, close } = await pair()
  try {
    client.cork()
    assert.equal(queueText(client, 'a'), false)
    assert.equal(
      queueAnswer(client, 'a', Buffer.from('b'), undefined, () => {}),
      false,
    )
    client.uncork()
    client.destroy()
    assert.equal(queueText(client, 'a'), false)
  } finally {
    close()
  }
})

test('a socket destroyed before its queued write is told so, and nothing throws', async () => {
  const { client, close } = await pair()
  try {
    const told = new Promise<Error | null | undefined>((resolve) => queueText(client, 'never', resolve))
    client.destroy()
    const err = await told
    assert.equal((err as NodeJS.ErrnoException | undefined)?.code, 'ERR_STREAM_DESTROYED')
  } finally {
    close()
  }
})

test('an answer is copied when queued: its body may be reused at once', async () => {
  const { client, peer, close } = await pair()
  try {
    const got = readAll(peer)
    const body = Buffer.from('first body')
    assert.equal(
      queueAnswer(client, 'HEAD\r\n', body, undefined, () => {}),
      true,
    )
    body.fill('#')
    await turn()
    await turn()
    // A string body in its encoding, after the head.
    assert.equal(
      queueAnswer(client, 'H2\r\n', 'z\u00e9', 'utf8', () => {}),
      true,
    )
    await turn()
    client.end()
    assert.equal(Buffer.from(await got, 'latin1').toString('utf8'), 'HEAD\r\nfirst bodyH2\r\nz\u00e9')
  } finally {
    close()
  }
})

test('answers of many sockets in one turn, over several turns, each arrive whole', async () => {
  const pairs = await Promise.all(Array.from({ length: 12 }, () => pair()))
  try {
    const got = pairs.map(({ peer }) => readAll(peer))
    const expected = pairs.map(() => [] as string[])
    for (let t = 0; t < 6; t++) {
      let left = pairs.length
      const turnDone = new Promise<void>((resolve) => {
        pairs.forEach(({ client }, i) => {
          // 16 KiB bodies: several slabs a turn, reused the turn after.
          const body = Buffer.alloc(16 * 1024, 97 + ((i + t) % 26))
          const head = `${t}:${i}\r\n`
          expected[i]!.push(head + body.toString('latin1'))
          assert.equal(
            queueAnswer(client, head, body, undefined, () => {
              if (--left === 0) resolve()
            }),
            true,
          )
          body.fill(0)
        })
      })
      await turnDone
    }
    for (const { client } of pairs) client.end()
    const texts = await Promise.all(got)
    for (const [i, text] of texts.entries()) assert.equal(text === expected[i]!.join(''), true, `socket ${i}`)
  } finally {
    for (const p of pairs) p.close()
  }
})

test('a turn that queues more than 64 writes sends them as each 64 fill, without waiting for its end', async () => {
  const pairs = await Promise.all(Array.from({ length: 70 }, () => pair()))
  try {
    const done: boolean[] = pairs.map(() => false)
    for (const [i, { client }] of pairs.entries())
      assert.equal(
        queueText(client, `w${i}`, () => {
          done[i] = true
        }),
        true,
      )
    // A microtask later, before the turn's end: the first 64 were written (their callbacks run).
    await Promise.resolve()
    assert.deepEqual(
      done.map((d, i) => (d ? i : -1)).filter((i) => i >= 0),
      Array.from({ length: 64 }, (_, i) => i),
    )
    await turn()
    await turn()
    assert.equal(
      done.every((d) => d),
      true,
    )
  } finally {
    for (const p of pairs) p.close()
  }
})

test('an answer libuv still holds (a peer not reading) is not overwritten by later answers', async () => {
  const slow = await pair()
  const fast = await pair()
  try {
    slow.peer.pause()
    const sent: Buffer[] = []
    // Answers of 60 KiB, one a turn, until one is left in part to libuv (the slab it is in is
    // then kept for it) or the socket refuses (something is queued in the handle).
    let partial = false
    for (let i = 0; i < 400 && !partial; i++) {
      const body = Buffer.alloc(60 * 1024, 65 + (i % 26))
      let finished = false
      if (!queueAnswer(slow.client, '', body, undefined, () => (finished = true))) break
      sent.push(body)
      await turn()
      await turn()
      partial = !finished
    }
    assert.equal(partial, true)
    // Other answers fill and reuse slabs meanwhile.
    const fastGot = readAll(fast.peer)
    for (let t = 0; t < 4; t++) {
      const turnDone = new Promise<void>((resolve) => {
        assert.equal(
          queueAnswer(fast.client, '', Buffer.alloc(60 * 1024, 48 + t), undefined, () => resolve()),
          true,
        )
      })
      await turnDone
    }
    fast.client.end()
    assert.equal((await fastGot).length, 4 * 60 * 1024)
    const slowGot = readAll(slow.peer)
    slow.peer.resume()
    slow.client.end()
    const text = await slowGot
    assert.equal(text === Buffer.concat(sent).toString('latin1'), true)
  } finally {
    slow.close()
    fast.close()
  }
})

test('a write to a connection the peer reset destroys the socket with the error, never throws', async () => {
  const { client, peer, close } = await pair()
  try {
    // Not reading (the handle itself: a paused stream may still read): the reset can only show
    // up on a write.
    client.pause()
    const h = handleOf(client)!
    h.reading = false
    h.readStop()
    const errors: NodeJS.ErrnoException[] = []
    client.on('error', (err) => errors.push(err))
    const clientClosed = new Promise((r) => client.once('close', r))
    const closed = once(peer, 'close')
    peer.resetAndDestroy()
    await closed
    // The first write after a reset may still be taken by the kernel; a later one fails.
    const deadline = Date.now() + 10_000
    while (!client.destroyed && Date.now() < deadline) {
      assert.equal(queueText(client, 'after the reset'), true)
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
