// The own HTTP/1.1 server side on a real socket: framing, keep-alive, pipelining one request at a
// time, body backpressure, refusals, upgrades, timeouts and closing, each seen as raw bytes by a
// client. The proxy's behaviour on top of it is covered by the integration and hostile suites,
// which run on this server side by default.

import assert from 'node:assert/strict'
import type { AddressInfo, Socket } from 'node:net'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { until } from '../../../test/helpers/until'
import { handleOf } from '../../net/handle'
import type { H1Request } from './request'
import type { H1Response } from './response'
import {
  type ClientError,
  createH1Server,
  type H1Handlers,
  type H1Server,
  type H1ServerOptions,
} from './server'

const OPTIONS: H1ServerOptions = {
  maxHeaderSize: 16 * 1024,
  headersTimeoutMs: 60_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 65_000,
}

interface Started {
  server: H1Server
  port: number
  errors: ClientError[]
  upgrades: Array<{ req: H1Request; socket: Socket; head: Buffer }>
  connects: H1Request[]
  close(): Promise<void>
}

const started: Started[] = []
/** Whether servers started now let the parser consume their sockets (both ways are tested). */
let consume = true
after(async () => {
  for (const s of started) await s.close()
})

async function start(
  request: H1Handlers['request'],
  options: Partial<H1ServerOptions> = {},
  upgrade?: H1Handlers['upgrade'],
): Promise<Started> {
  const errors: ClientError[] = []
  const upgrades: Started['upgrades'] = []
  const connects: H1Request[] = []
  const server = createH1Server(
    { ...OPTIONS, consume, directWrite: consume, ...options },
    {
      request,
      upgrade:
        upgrade ??
        ((req, socket, head) => {
          upgrades.push({ req, socket, head })
          socket.end(
            'HTTP/1.1 101 Switching Protocols\r\nupgrade: test\r\nconnection: upgrade\r\n\r\nswitched',
          )
        }),
      connect: (req, socket) => {
        connects.push(req)
        socket.end('HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
      },
      clientError: (err, socket) => {
        errors.push(err)
        socket.end(
          `HTTP/1.1 400 Bad Request\r\nx-code: ${err.code}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
        )
      },
      internalError: (err) => {
        throw err
      },
    },
  )
  assert.ok(server, 'the llhttp binding is usable on this Node.js')
  await new Promise<void>((r) => server.server.listen(0, '127.0.0.1', r))
  const s: Started = {
    server,
    port: (server.server.address() as AddressInfo).port,
    errors,
    upgrades,
    connects,
    // Sockets handed over or refused are no longer the server's: not waited for.
    close: async () => {
      server.server.close()
      server.closeAll()
    },
  }
  started.push(s)
  return s
}

/** A raw client: what the server sent, until it closed (or `endAfterMs` passed and we closed). */
function exchange(
  port: number,
  bytes: string | Buffer | Array<string | Buffer>,
  opts: { endAfterMs?: number; halfClose?: boolean } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: opts.halfClose === true })
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    s.on('close', () => resolve(out))
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(out) : reject(e)))
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) s.write(b)
    if (opts.halfClose) s.end()
    setTimeout(() => s.destroy(), opts.endAfterMs ?? 10_000).unref()
  })
}

/** A raw client on one connection: its socket, and everything the server sent on it so far. */
function rawClient(port: number): { sock: Socket; received: () => string } {
  const sock = net.connect(port, '127.0.0.1')
  let got = ''
  sock.setEncoding('latin1')
  sock.on('data', (d: string) => {
    got += d
  })
  return { sock, received: () => got }
}

/** Status lines of every response in `raw`, in order. */
function statuses(raw: string): number[] {
  return [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
}

const echo: H1Handlers['request'] = (req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (d: Buffer) => chunks.push(d))
  req.on('end', () => {
    const body = `${req.method} ${req.url} ${Buffer.concat(chunks).length}`
    res.writeHead(200, ['content-type', 'text/plain', 'content-length', String(body.length)])
    res.end(body)
  })
}

/** Answers `<url>:<body>` once the request's body has ended (the pipelining tests' handler). */
const urlAndBody: H1Handlers['request'] = (req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (d: Buffer) => chunks.push(d))
  req.on('end', () => {
    const body = `${req.url}:${Buffer.concat(chunks).toString()}`
    res.writeHead(200, ['content-length', String(body.length)])
    res.end(body)
  })
}

// Every case twice: with the parser reading the socket's handle in C++ and short answers written
// straight to it (the defaults where Node.js has the bindings), and with 'data' events and
// socket.write (sockets with bytes already buffered, TLS, older bindings).
for (const mode of [true, false]) {
  describe(mode ? 'reading by parser.consume' : "reading by 'data' events", () => {
    before(() => {
      consume = mode
    })
    describe('framing and keep-alive', () => {
      test('a keep-alive connection carries requests one after another; node:http headers are added', async () => {
        const s = await start(echo)
        const { sock, received } = rawClient(s.port)
        sock.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n')
        await until(() => received().includes('GET /one 0'), 'first answer')
        sock.write('POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello')
        await until(() => received().includes('POST /two 5'), 'second answer on the same connection')
        assert.match(
          received(),
          /\r\ndate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/,
        )
        assert.match(received(), /\r\nconnection: keep-alive\r\nkeep-alive: timeout=65\r\n/)
        sock.destroy()
      })

      test(`the socket's bytes reach the server ${mode ? 'without' : 'as'} 'data' events`, async () => {
        let dataEvents = -1
        const s = await start((req, res) => {
          if (dataEvents < 0) {
            dataEvents = 0
            req.socket.on('data', () => dataEvents++)
          }
          res.end(req.url)
        })
        const { sock, received } = rawClient(s.port)
        sock.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n')
        await until(() => received().includes('\r\n/a\r\n0\r\n\r\n'), 'first answer')
        sock.write('GET /b HTTP/1.1\r\nHost: x\r\n\r\n')
        await until(() => received().includes('\r\n/b\r\n0\r\n\r\n'), 'second answer')
        sock.destroy()
        // The second request came in a read of its own, after the listener was added.
        assert.equal(dataEvents, mode ? 0 : 1)
      })

      test('no length: chunked for HTTP/1.1 (with trailers), close-delimited for HTTP/1.0', async () => {
        const s = await start((req, res) => {
          res.writeHead(200, ['content-type', 'text/plain'])
          res.write('abc')
          res.write(Buffer.from('defgh'))
          if (req.url === '/trailers') res.addTrailers({ 'x-sum': '8' })
          res.end('!')
        })
        const h11 = await exchange(s.port, 'GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        assert.match(
          h11,
          /transfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n1\r\n!\r\n0\r\nx-sum: 8\r\n\r\n$/,
        )
        const h10 = await exchange(s.port, 'GET / HTTP/1.0\r\n\r\n')
        assert.ok(!/transfer-encoding/i.test(h10))
        assert.match(h10, /connection: close\r\n\r\nabcdefgh!$/)
      })

      test('HTTP/1.0 with keep-alive stays open; HEAD, 204 and 304 have no body', async () => {
        const s = await start((req, res) => {
          const status = Number(req.url.slice(1)) || 200
          res.writeHead(status, ['content-length', '4'])
          res.end(status === 200 ? 'body' : undefined)
        })
        const kept = await exchange(
          s.port,
          'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        )
        assert.deepEqual(statuses(kept), [200, 200, 204, 304])
        assert.equal(kept.split('body').length - 1, 1, 'only the GET has a body')
        assert.match(
          kept,
          /^HTTP\/1\.1 200 OK\r\ncontent-length: 4\r\ndate: [^\r]+\r\nconnection: keep-alive\r\n/,
        )
      })

      test('a head that would inject headers is refused before anything is written', async () => {
        let thrown = ''
        const s = await start((_req, res) => {
          try {
            res.writeHead(200, ['x-evil', 'a\r\nset-cookie: admin=1'])
          } catch (err) {
            thrown = (err as Error).message
          }
          try {
            res.writeHead(200, 'OK\r\nx: y', [])
          } catch {}
          assert.equal(res.headersSent, false)
          res.writeHead(502, ['content-length', '0', 'connection', 'close'])
          res.end()
        })
        const out = await exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        assert.match(thrown, /invalid header/)
        assert.ok(!out.includes('admin=1'))
        assert.deepEqual(statuses(out), [502])
      })

      test('checkedFields: fields equal to the checked ones are not tested again; a changed one is refused', async () => {
        const fields = ['content-type', 'text/plain', 'x-up', 'v']
        let tested: string[] = []
        let thrown = ''
        const s = await start((_req, res) => {
          const original = RegExp.prototype.test
          RegExp.prototype.test = function (this: RegExp, v: string) {
            tested.push(v)
            return original.call(this, v)
          }
          try {
            // Changed in place after the copy was made: the copy's content no longer matches.
            res.checkedFields = fields.slice()
            try {
              res.writeHead(200, ['content-type', 'text/plain', 'x-up', 'v\r\nset-cookie: admin=1'])
            } catch (err) {
              thrown = (err as Error).message
            }
            assert.equal(res.checkedFields, undefined, 'used by one writeHead only')
            tested = []
            res.checkedFields = fields.slice()
            res.writeHead(200, [...fields, 'x-added', 'w', 'content-length', '2'])
          } finally {
            RegExp.prototype.test = original
          }
          res.end('ok')
        })
        const out = await exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        assert.match(thrown, /invalid header x-up/)
        assert.ok(!out.includes('admin=1'))
        assert.match(out, /^HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain\r\nx-up: v\r\nx-added: w\r\n/)
        for (const f of fields) assert.ok(!tested.includes(f), `${f} tested again`)
        for (const f of ['x-added', 'w', 'content-length', '2'])
          assert.ok(tested.includes(f), `${f} not tested`)
      })
    })

    describe('pipelining', () => {
      test('pipelined requests are answered in order, one handled at a time', async () => {
        let inHandler = 0
        let most = 0
        const s = await start((req, res) => {
          inHandler++
          most = Math.max(most, inHandler)
          const chunks: Buffer[] = []
          req.on('data', (d: Buffer) => chunks.push(d))
          req.on('end', () => {
            // The first answers last if the requests ran concurrently.
            setTimeout(
              () => {
                inHandler--
                const body = `${req.url}:${Buffer.concat(chunks).toString()}`
                res.writeHead(200, ['content-length', String(body.length)])
                res.end(body)
              },
              req.url === '/a' ? 200 : 1,
            )
          })
        })
        const out = await exchange(
          s.port,
          'GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        )
        assert.deepEqual(
          [...out.matchAll(/\r\n\r\n(\/[a-d]:[a-z]*)/g)].map((m) => m[1]),
          ['/a:', '/b:xyz', '/c:hi', '/d:'],
        )
        assert.equal(most, 1)
      })

      test('answered at once, pipelined requests with and without bodies all end, in one read', async () => {
        // A request without a body ends in its head callback; the next one's body and end must
        // still be heard (llhttp's message-complete callback is cleared for the bodiless only).
        const s = await start((req, res) => {
          urlAndBody(req, res)
          req.resume()
        })
        const out = await exchange(
          s.port,
          'GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: x\r\n\r\nPOST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        )
        assert.deepEqual(
          [...out.matchAll(/\r\n\r\n(\/[a-f]:[a-z]*)/g)].map((m) => m[1]),
          ['/a:', '/b:xyz', '/c:', '/d:hi', '/e:', '/f:'],
        )
      })

      test('a flood of pipelined requests is parsed one ahead of the answers, not all at once', async () => {
        let seen = 0
        const waiting: H1Response[] = []
        const s = await start((_req, res) => {
          seen++
          waiting.push(res)
        })
        const n = 5_000
        const sock = net.connect(s.port, '127.0.0.1')
        sock.on('error', () => undefined)
        sock.resume()
        sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(n))
        await until(() => seen === 1, 'the first request')
        // Everything was sent; only the first request is being handled.
        await new Promise((r) => setTimeout(r, 200))
        assert.equal(seen, 1)
        for (let answered = 0; answered < 20; answered++) {
          await until(() => waiting.length > 0, 'a request to answer')
          const res = waiting.shift()!
          res.writeHead(204)
          res.end()
          await until(() => seen === answered + 2, `request ${answered + 2}`)
        }
        assert.equal(seen, 21)
        sock.destroy()
      })

      test('a request read only after it was complete still ends: without a body, and with one', async () => {
        const s = await start((req, res) => {
          // Nobody reads until the whole request is in: a bodiless one's end waits for the read.
          until(() => req.complete, 'the request read whole').then(
            () => urlAndBody(req, res),
            () => res.destroy(),
          )
        })
        const out = await exchange(
          s.port,
          'GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        )
        assert.deepEqual(
          [...out.matchAll(/\r\n\r\n(\/[a-c]:[a-z]*)/g)].map((m) => m[1]),
          ['/a:', '/b:xyz', '/c:'],
        )
      })

      test('a request piped after it was complete ends its destination', async () => {
        const { PassThrough } = await import('node:stream')
        const s = await start((req, res) => {
          until(() => req.complete, 'the request read whole').then(
            () => {
              const sink = new PassThrough()
              let n = 0
              sink.on('data', (d: Buffer) => {
                n += d.length
              })
              sink.on('end', () => {
                res.writeHead(200, ['content-length', String(String(n).length)])
                res.end(String(n))
              })
              req.pipe(sink)
            },
            () => res.destroy(),
          )
        })
        const out = await exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        assert.match(out, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\n0$/)
      })

      test('bad bytes after a valid request: the request is answered first, then the 400', async () => {
        const s = await start((_req, res) => {
          setTimeout(() => {
            res.writeHead(200, ['content-length', '2'])
            res.end('ok')
          }, 100)
        })
        const out = await exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /a b c\r\n\r\n')
        assert.deepEqual(statuses(out), [200, 400])
        assert.equal(s.errors.length, 1)
        assert.match(s.errors[0]!.code, /^HPE_/)
      })
    })

    describe('request bodies', () => {
      test('an unread body stops the reading of the socket (bounded memory), and flows once read', async () => {
        let hold: H1Request | undefined
        const s = await start((req, res) => {
          hold = req
          req.once('end', () => {
            res.writeHead(200, ['content-length', '4'])
            res.end('done')
          })
        })
        const size = 32 * 1024 * 1024
        const { sock, received } = rawClient(s.port)
        sock.on('error', () => undefined)
        sock.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`)
        const chunk = Buffer.alloc(1024 * 1024, 0x61)
        let written = 0
        const pump = () => {
          while (written < size && sock.write(chunk)) written += chunk.length
          if (written < size) sock.once('drain', pump)
        }
        pump()
        await until(() => hold !== undefined, 'the request')
        await until(() => hold!.readableLength > 0, 'some body buffered')
        // Give the client time to push what it can: the server has stopped reading.
        await new Promise((r) => setTimeout(r, 300))
        assert.ok(hold!.socket.bytesRead < 16 * 1024 * 1024, `read ${hold!.socket.bytesRead} bytes`)
        let got = 0
        hold!.on('data', (d: Buffer) => {
          got += d.length
        })
        await until(() => received().includes('done'), 'the answer after the whole body', 30_000)
        assert.equal(got, size)
        sock.destroy()
      })

      test('answered before the body was read: the body is dropped and the connection goes on', async () => {
        const s = await start((req, res) => {
          const body = `${req.method} ${req.url}`
          res.writeHead(201, ['content-length', String(body.length)])
          res.end(body)
        })
        const big = 'z'.repeat(1024 * 1024)
        const out = await exchange(s.port, [
          `POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`,
          big,
          'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        ])
        assert.deepEqual(statuses(out), [201, 201])
        assert.ok(out.endsWith('GET /after'))
      })

      test('Expect: 100-continue gets its interim answer first; another expectation gets 417', async () => {
        const s = await start(echo)
        const out = await exchange(
          s.port,
          'POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n',
        )
        assert.deepEqual(statuses(out), [100, 200, 417])
      })

      test('the client leaving mid-body aborts the request; mid-answer closes the response unfinished', async () => {
        let req: H1Request | undefined
        let res: H1Response | undefined
        let aborted = false
        let closed = false
        const s = await start((q, r) => {
          req = q
          res = r
          q.on('aborted', () => {
            aborted = true
          })
          r.once('close', () => {
            closed = true
          })
          r.writeHead(200, [])
          r.write('partial')
        })
        const sock = net.connect(s.port, '127.0.0.1')
        sock.on('error', () => undefined)
        sock.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc')
        await until(() => req !== undefined, 'the request')
        sock.destroy()
        await until(() => aborted && closed, 'aborted and closed')
        assert.equal(res!.writableFinished, false)
        assert.equal(res!.destroyed, true)
        assert.equal(res!.write('more'), false)
      })
    })

    describe('refusals', () => {
      const cases: Array<[string, string, RegExp]> = [
        ['malformed request line', 'GET /a b c\r\n\r\n', /^HPE_/],
        ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\n\r\n', /^HPE_MISSING_HOST$/],
        [
          'Content-Length with Transfer-Encoding',
          'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
          /^HPE_/,
        ],
        [
          'a head over max_header_size',
          `GET / HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`,
          /^HPE_HEADER_OVERFLOW$/,
        ],
        [
          'more than 2000 header fields',
          `GET / HTTP/1.1\r\nHost: x\r\n${'a:\r\n'.repeat(2100)}\r\n`,
          /^HPE_HEADER_OVERFLOW$/,
        ],
        ['a head cut by the end of the connection', 'GET / HTTP/1.1\r\nHost:', /^HPE_/],
      ]
      for (const [what, bytes, code] of cases) {
        test(`${what}: the client-error handler answers, no request is handled`, async () => {
          let handled = 0
          const s = await start((_req, res) => {
            handled++
            res.end()
          })
          const out = await exchange(s.port, bytes, { halfClose: true })
          assert.equal(handled, 0)
          assert.equal(s.errors.length, 1, `errors: ${JSON.stringify(s.errors)}`)
          assert.match(s.errors[0]!.code, code)
          assert.deepEqual(statuses(out), [400])
        })
      }

      test('a refused client that never closes its side is cut off after the linger time', async () => {
        const s = await start(echo, { endedLingerMs: 300 })
        const sock = net.connect({ port: s.port, host: '127.0.0.1', allowHalfOpen: true })
        let out = ''
        sock.setEncoding('latin1')
        sock.on('data', (d: string) => {
          out += d
        })
        sock.on('error', () => undefined)
        let ended = false
        sock.on('end', () => {
          ended = true
        })
        sock.write('GET /a b c\r\n\r\n')
        await until(() => ended, "the server's FIN after its 400")
        assert.deepEqual(statuses(out), [400])
        // The client keeps its side open and says nothing: the server lets go of the socket.
        const open = () =>
          new Promise<number>((r, j) => s.server.server.getConnections((e, n) => (e ? j(e) : r(n))))
        assert.equal(await open(), 1)
        await until(async () => (await open()) === 0, 'the server side closed')
        sock.destroy()
      })

      test('a head sent too slowly is answered by the timeout; so is a body', async () => {
        const s = await start(
          (req, res) => {
            req.resume()
            req.on('end', () => res.end('never'))
          },
          { headersTimeoutMs: 300, requestTimeoutMs: 1500 },
        )
        const head = await exchange(s.port, 'GET / HTTP/1.1\r\nHost:', { endAfterMs: 20_000 })
        assert.match(head, /x-code: ERR_HTTP_REQUEST_TIMEOUT/)
        const body = await exchange(s.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc', {
          endAfterMs: 20_000,
        })
        assert.match(body, /x-code: ERR_HTTP_REQUEST_TIMEOUT/)
      })

      test("on a kept-alive connection, the next head's deadline starts at its first bytes", async () => {
        // Keep-alive far longer than the head timeout: a partial head must be refused by the head
        // deadline, not sit under the idle one (and then be closed without an answer).
        const s = await start(echo, { headersTimeoutMs: 300, keepAliveTimeoutMs: 60_000 })
        const { sock, received } = rawClient(s.port)
        sock.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n')
        await until(() => statuses(received()).length === 1, 'the first answer')
        sock.write('GET /two HTTP/1.1\r\nHo')
        await until(() => /x-code: ERR_HTTP_REQUEST_TIMEOUT/.test(received()), 'the head deadline refusal')
        assert.deepEqual(statuses(received()), [200, 400]) // this harness answers every refusal 400
        sock.destroy()
      })

      test('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
        const s = await start(echo, { keepAliveTimeoutMs: 200 })
        const out = await exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { endAfterMs: 20_000 })
        assert.deepEqual(statuses(out), [200])
        assert.match(out, /connection: keep-alive\r\n/)
        await until(() => s.server.connections === 0, 'the connection forgotten')
      })
    })

    describe('writing to a slow or vanished client', () => {
      // 1,200 pipelined requests for 14 KiB answers (one write each): ~17 MB, more than the
      // loopback socket buffers of both sides hold, so with the client not reading, a write
      // is left for the kernel to finish later.
      const COUNT = 1200
      const BODY = 14 * 1024
      const pipelined = Array.from({ length: COUNT }, (_, i) => `GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join(
        '',
      )
      const startBig = () => {
        let serverSide: Socket | undefined
        return start((req, res) => {
          serverSide = req.socket as Socket
          const n = (req.url ?? '/').slice(1)
          // Another connection's answers (/b...) are of other bytes: a write left waiting must
          // not change when they are written meanwhile.
          const body = Buffer.alloc(BODY, n.startsWith('b') ? 'y' : 'x')
          body.write(`<${n}>`)
          res.writeHead(200, ['content-length', String(BODY)])
          res.end(body)
        }).then((s) => ({
          s,
          /** A write the kernel could not take at once is waiting on the server's side. */
          stalled: () => ((serverSide && handleOf(serverSide)?.writeQueueSize) ?? 0) > 0,
        }))
      }

      /** A client that sends every request and stops reading until the server's write waits. */
      const stalledClient = async (port: number, stalled: () => boolean) => {
        const sock = net.connect(port, '127.0.0.1')
        const chunks: Buffer[] = []
        sock.on('data', (d: Buffer) => chunks.push(d))
        sock.on('error', () => undefined)
        sock.pause()
        sock.write(pipelined)
        await until(stalled, 'a write waiting for the client to read', 20_000)
        return {
          sock,
          /** Reads again; resolves with every answer, checked whole and in order. */
          readAll: async (): Promise<string> => {
            sock.resume()
            const total = () => chunks.reduce((n, c) => n + c.length, 0)
            // Every answer's head is as long as the first one's (same headers, a fixed-width date).
            await until(() => Buffer.concat(chunks).includes('\r\n\r\n'), 'the first head', 20_000)
            const headLength = Buffer.concat(chunks).indexOf('\r\n\r\n') + 4
            await until(() => total() >= COUNT * (headLength + BODY), 'every answer', 20_000)
            sock.destroy()
            const text = Buffer.concat(chunks).toString('latin1')
            assert.equal(statuses(text).length, COUNT)
            const order = [...text.matchAll(/\r\n\r\n<(\d+)>/g)].map((m) => Number(m[1]))
            assert.deepEqual(
              order,
              Array.from({ length: COUNT }, (_, i) => i),
            )
            return text
          },
        }
      }

      test('answers the socket cannot take at once go out whole and in order once it can', async () => {
        const { s, stalled } = await startBig()
        await (await stalledClient(s.port, stalled)).readAll()
      })

      test('answers on other connections leave the bytes of a waiting write as they were', async () => {
        const { s, stalled } = await startBig()
        const client = await stalledClient(s.port, stalled)
        for (let i = 0; i < 20; i++) {
          const out = await exchange(s.port, `GET /b${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
          assert.equal(
            out.slice(out.indexOf('\r\n\r\n') + 4),
            `<b${i}>${'y'.repeat(BODY - 3 - String(i).length)}`,
          )
        }
        const text = await client.readAll()
        assert.ok(!text.includes('y'), 'no byte of the other connection in this one')
      })

      test('a client that resets with writes waiting costs its connection only', async () => {
        const { s, stalled } = await startBig()
        const { sock } = await stalledClient(s.port, stalled)
        sock.resetAndDestroy()
        await until(() => s.server.connections === 0, 'the connection forgotten', 20_000)
        const out = await exchange(s.port, 'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        assert.deepEqual(statuses(out), [200])
        assert.match(out, /<after>/)
      })
    })

    describe('upgrades and closing', () => {
      test('an Upgrade request hands over the socket with the bytes after the head; CONNECT too', async () => {
        const s = await start(echo)
        const out = await exchange(
          s.port,
          'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nfirst-frame',
        )
        assert.match(out, /^HTTP\/1\.1 101 /)
        assert.equal(s.upgrades.length, 1)
        assert.equal(s.upgrades[0]!.req.url, '/ws')
        assert.equal(s.upgrades[0]!.head.toString(), 'first-frame')
        const c = await exchange(s.port, 'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n')
        assert.match(c, /^HTTP\/1\.1 405 /)
        assert.equal(s.connects.length, 1)
      })

      test('the handler reads an upgraded socket itself (it is not left paused)', async () => {
        let handedOver = false
        const s = await start(echo, {}, (_req, socket, head) => {
          handedOver = true
          let got = head.toString()
          socket.on('data', (d: Buffer) => {
            got += d.toString()
            if (got.includes('two')) socket.end(`HTTP/1.1 101 X\r\n\r\n${got}`)
          })
        })
        const { sock, received } = rawClient(s.port)
        sock.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: t\r\nConnection: upgrade\r\n\r\none ')
        // The second part only once the first has been handed over: it must arrive by 'data'.
        await until(() => handedOver, 'handed over')
        sock.write('two')
        await until(() => received().endsWith('one two'), 'the handler read both parts')
        sock.destroy()
        assert.match(received(), /one two$/)
      })

      test("the client's FIN abandons the answer in progress (as node:http), so the work can be cancelled", async () => {
        let res: H1Response | undefined
        let closed = false
        const s = await start((_req, r) => {
          res = r
          r.once('close', () => {
            closed = true
          })
        })
        const out = await exchange(s.port, 'GET /hello HTTP/1.1\r\nHost: x\r\n\r\n', { halfClose: true })
        assert.equal(out, '')
        await until(() => closed, "the response's close")
        assert.equal(res!.writableFinished, false)
      })

      test("an answer ended before the client's FIN is read still arrives, then the connection ends", async () => {
        // Ended in a check-phase callback: its bytes wait for the next turn's (direct-write.ts),
        // whose poll phase reads the FIN first.
        const s = await start((_req, res) => {
          setImmediate(() => {
            res.writeHead(200, ['content-length', '4'])
            res.end('late')
          })
        })
        const out = await exchange(s.port, 'GET /hello HTTP/1.1\r\nHost: x\r\n\r\n', { halfClose: true })
        assert.deepEqual(statuses(out), [200])
        assert.match(out, /\r\n\r\nlate$/)
      })

      test('closeIdle closes idle connections now and busy ones after their answer; closeAll the rest', async () => {
        const waiting: H1Response[] = []
        const s = await start((_req, res) => {
          waiting.push(res)
        })
        const idle = net.connect(s.port, '127.0.0.1')
        const idleClosed = new Promise((r) => idle.once('close', r))
        idle.on('error', () => undefined)
        await new Promise((r) => idle.once('connect', r))
        const busy = exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        await until(() => waiting.length === 1, 'the busy request')
        s.server.closeIdle()
        await idleClosed
        waiting[0]!.writeHead(200, ['content-length', '0'])
        waiting[0]!.end()
        const out = await busy
        assert.deepEqual(statuses(out), [200])
        await until(() => s.server.connections === 0, 'no connection left')
      })
    })
  })
}
