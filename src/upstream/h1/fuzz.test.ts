// A bounded, seeded fuzz run of upstream answers: valid responses mutated (bytes flipped,
// inserted, cut; framing fields added; line ends changed; numbers swapped; a second answer
// appended), written in random pieces, to an H1Pool driven by handlers that also pause, abort
// and throw (every other one taking bodies as views, onDataView). It asserts the client's
// contract: dispatch never throws, no callback comes after the end, and every request ends with
// exactly one onComplete or onError; no exception escapes.
// H1_FUZZ_SEED=<n> replays a run; a failure prints the seed and the case.

import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { prng } from '../../../test/helpers/prng'
import type { H1Handler } from './pool'
import { H1Pool } from './pool'

const CASES = Number(process.env.H1_FUZZ_CASES ?? 1200)
const CONCURRENCY = 16

const BASE = [
  'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n',
  'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited body',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.1 204 No Content\r\n\r\n',
  'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n',
  'HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc',
  'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n',
  `HTTP/1.1 200 OK\r\nContent-Length: 3000\r\nX-Big: ${'v'.repeat(300)}\r\n\r\n${'b'.repeat(3000)}`,
]

const FRAMING = [
  'Content-Length: 0',
  'Content-Length: 3',
  'Content-Length: 99999',
  'Content-Length: -1',
  'Content-Length: 1e3',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: gzip',
  'Transfer-Encoding: chunked, identity',
  'Connection: close',
  'Connection: upgrade',
  'Upgrade: websocket',
  'Keep-Alive: timeout=0',
  'Trailer: X-T',
]

function mutate(rand: () => number, input: string): string {
  let s = input
  const n = 1 + Math.floor(rand() * 3)
  const at = () => Math.floor(rand() * (s.length + 1))
  for (let i = 0; i < n; i++) {
    switch (Math.floor(rand() * 9)) {
      case 0: {
        const p = at()
        s = s.slice(0, p) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(p + 1)
        break
      }
      case 1: {
        const p = at()
        let junk = ''
        for (let k = Math.floor(rand() * 8); k > 0; k--) junk += String.fromCharCode(Math.floor(rand() * 256))
        s = s.slice(0, p) + junk + s.slice(p)
        break
      }
      case 2: {
        const p = at()
        s = s.slice(0, p) + s.slice(p + Math.floor(rand() * 10))
        break
      }
      case 3: {
        const p = at()
        const q = Math.min(s.length, p + Math.floor(rand() * 20))
        s = s.slice(0, q) + s.slice(p, q) + s.slice(q)
        break
      }
      case 4: {
        const line = FRAMING[Math.floor(rand() * FRAMING.length)]!
        const eol = s.indexOf('\r\n')
        if (eol > 0) s = `${s.slice(0, eol + 2)}${line}\r\n${s.slice(eol + 2)}`
        break
      }
      case 5:
        s = rand() < 0.5 ? s.replace(/\r\n/, '\n') : s.replace(/\r\n/, '\r')
        break
      case 6: {
        const nums = ['0', '1', '7', 'ffffffff', '18446744073709551616', '-5', '0x10', ' 3', '']
        s = s.replace(/\d+/, nums[Math.floor(rand() * nums.length)]!)
        break
      }
      case 7:
        s = s.slice(0, at())
        break
      default:
        s += BASE[Math.floor(rand() * BASE.length)]!
        break
    }
  }
  return s
}

interface Plan {
  reply: string
  pieces: number[]
  closeAfter: boolean
  behaviour: 'plain' | 'pause' | 'abort-data' | 'throw-headers' | 'throw-data' | 'abort-connect'
  method: string
}

test('fuzzed upstream answers: every request ends exactly once, nothing escapes', async () => {
  const seed = Number(process.env.H1_FUZZ_SEED ?? Date.now() % 2 ** 31)
  const rand = prng(seed)
  const behaviours: Plan['behaviour'][] = [
    'plain',
    'plain',
    'plain',
    'pause',
    'abort-data',
    'throw-headers',
    'throw-data',
    'abort-connect',
  ]
  const plans: Plan[] = []
  for (let i = 0; i < CASES; i++) {
    const base = BASE[Math.floor(rand() * BASE.length)]!
    const reply = rand() < 0.15 ? base : mutate(rand, base)
    const pieces: number[] = []
    for (let k = Math.floor(rand() * 4); k > 0; k--) pieces.push(Math.floor(rand() * reply.length))
    pieces.sort((a, b) => a - b)
    plans.push({
      reply,
      pieces,
      closeAfter: rand() < 0.3,
      behaviour: behaviours[Math.floor(rand() * behaviours.length)]!,
      method: rand() < 0.1 ? 'HEAD' : 'GET',
    })
  }

  // The origin answers each request by its path's case number, in pieces, and drops every
  // connection after a while so that no answer can keep a request open for long.
  const sockets = new Set<net.Socket>()
  const server = net.createServer((sock) => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => undefined)
    setTimeout(() => sock.destroy(), 400).unref()
    let buf = ''
    sock.setEncoding('latin1')
    sock.on('data', (d: string) => {
      buf += d
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end)
        buf = buf.slice(end + 4)
        const m = /^[A-Z]+ \/(\d+) /.exec(head)
        const plan = m ? plans[Number(m[1])] : undefined
        if (plan === undefined) {
          sock.destroy()
          return
        }
        const cuts = [0, ...plan.pieces, plan.reply.length]
        let k = 0
        const next = () => {
          if (sock.destroyed) return
          if (k >= cuts.length - 1) {
            if (plan.closeAfter) sock.end()
            return
          }
          sock.write(plan.reply.slice(cuts[k]!, cuts[k + 1]!), 'latin1')
          k++
          setImmediate(next)
        }
        next()
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  const pool = new H1Pool(
    { host: '127.0.0.1', port },
    { connections: 8, idleTimeoutMs: 2000, connectTimeoutMs: 2000 },
  )

  const escaped: unknown[] = []
  const onUncaught = (err: unknown) => escaped.push(err)
  process.on('uncaughtException', onUncaught)
  const problems: string[] = []

  const runOne = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const plan = plans[i]!
      let ends = 0
      let heads = 0
      let abort: ((err?: Error) => void) | undefined
      const late = (what: string) => {
        if (ends > 0) problems.push(`case ${i}: ${what} after the end`)
      }
      const end = (what: string) => {
        if (++ends > 1) problems.push(`case ${i}: a second end (${what})`)
        else setTimeout(resolve, 5)
      }
      const deadline = setTimeout(() => {
        problems.push(`case ${i}: no end within 5 s (${JSON.stringify(plan.reply.slice(0, 120))})`)
        resolve()
      }, 5000)
      const handler: H1Handler = {
        onConnect(a) {
          late('onConnect')
          abort = a
          if (plan.behaviour === 'abort-connect') a(new Error('abort in onConnect'))
        },
        onHeaders(status, _raw, resume) {
          late('onHeaders')
          if (status >= 200 && ++heads > 1) problems.push(`case ${i}: two final heads`)
          if (plan.behaviour === 'throw-headers' && status >= 200) throw new Error('handler fault')
          if (plan.behaviour === 'pause' && status >= 200) {
            setTimeout(resume, 20)
            return false
          }
          return true
        },
        onData() {
          late('onData')
          if (plan.behaviour === 'throw-data') throw new Error('handler fault')
          if (plan.behaviour === 'abort-data') abort?.(new Error('abort in onData'))
          return true
        },
        onComplete() {
          late('onComplete')
          clearTimeout(deadline)
          end('onComplete')
        },
        onError() {
          late('onError')
          clearTimeout(deadline)
          end('onError')
        },
      }
      // Every other case takes bodies as the Exchange does: views of the shared read buffer.
      if (i % 2 === 1) handler.onDataView = handler.onData!
      try {
        pool.dispatch(
          {
            path: `/${i}`,
            method: plan.method,
            headers: [],
            body: null,
            headersTimeout: 1500,
            bodyTimeout: 300,
          },
          handler,
        )
      } catch (err) {
        problems.push(`case ${i}: dispatch threw ${(err as Error).message}`)
        clearTimeout(deadline)
        resolve()
      }
    })

  try {
    let next = 0
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < plans.length) await runOne(next++)
      }),
    )
    // Late calls show up within a few turns of the event loop.
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(
      problems.slice(0, 10),
      [],
      `seed ${seed} (replay with H1_FUZZ_SEED=${seed}): ${problems.length} problems`,
    )
    assert.deepEqual(escaped.map(String), [], `seed ${seed}: exceptions escaped`)
    assert.equal(pool.stats.running, 0, `seed ${seed}: requests left running`)
  } finally {
    process.off('uncaughtException', onUncaught)
    await pool.destroy()
    for (const s of sockets) s.destroy()
    await new Promise<void>((r) => server.close(() => r()))
  }
})
