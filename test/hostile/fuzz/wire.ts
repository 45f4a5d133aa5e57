// The fuzzer's raw client: writes an input's bytes to a fresh TCP (or TLS) connection, step by
// step (a step is bytes or a pause, so a body can drip), then reads until the proxy closes, the
// connection goes quiet, or a hard cap. Every connection ends by itself: nothing here waits on
// the proxy without a deadline.

import net from 'node:net'
import tls from 'node:tls'

export type Step = Buffer | { pauseMs: number }

export interface WireInput {
  steps: Step[]
  /** Half-close our side after the last step (a stalled client keeps it open). */
  endWrite: boolean
}

export interface WireResult {
  received: Buffer
  /** How it ended: the proxy closed, we gave up on silence, we hit the cap, or a socket error. */
  outcome: 'closed' | 'idle' | 'cap' | 'error'
  error?: string
  /** Status codes of the responses at the start of `received` and after each blank line. */
  statuses: number[]
  ms: number
}

export interface WireTarget {
  port: number
  /** Connect with TLS (certificate not checked: the fuzzer is the attacker, not a verifier). */
  tls?: { alpn: string[] }
}

export interface WireLimits {
  /** Give up after this long without a byte from the proxy (after our last write). */
  idleMs: number
  /** The whole exchange, writes included. */
  capMs: number
  /** Stop reading after this much (the response to a flood can be large). */
  maxBytes?: number
}

const STATUS_LINE = /HTTP\/\d(?:\.\d)? (\d{3})/g

export function statusesOf(received: Buffer): number[] {
  const text = received.toString('latin1')
  const out: number[] = []
  for (const m of text.matchAll(STATUS_LINE)) {
    const at = m.index ?? 0
    if (at === 0 || text.slice(Math.max(0, at - 2), at) === '\r\n') out.push(Number(m[1]))
  }
  return out
}

export function connectTo(target: WireTarget): net.Socket {
  if (target.tls) {
    return tls.connect({
      host: '127.0.0.1',
      port: target.port,
      servername: 'localhost',
      rejectUnauthorized: false,
      ALPNProtocols: target.tls.alpn,
    })
  }
  return net.connect({ host: '127.0.0.1', port: target.port })
}

export function exchange(target: WireTarget, input: WireInput, limits: WireLimits): Promise<WireResult> {
  const t0 = Date.now()
  const maxBytes = limits.maxBytes ?? 4 * 1024 * 1024
  return new Promise((resolve) => {
    const socket = connectTo(target)
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    let idle: NodeJS.Timeout | undefined
    const timers = new Set<NodeJS.Timeout>()
    const finish = (outcome: WireResult['outcome'], error?: string) => {
      if (done) return
      done = true
      clearTimeout(cap)
      clearTimeout(idle)
      for (const t of timers) clearTimeout(t)
      socket.destroy()
      const received = Buffer.concat(chunks)
      resolve({ received, outcome, error, statuses: statusesOf(received), ms: Date.now() - t0 })
    }
    const cap = setTimeout(() => finish('cap'), limits.capMs)
    const armIdle = () => {
      clearTimeout(idle)
      idle = setTimeout(() => finish('idle'), limits.idleMs)
    }
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => {
      if (size < maxBytes) chunks.push(d)
      size += d.length
      if (size >= maxBytes) finish('closed')
      else if (writesDone) armIdle()
    })
    socket.on('end', () => finish('closed'))
    socket.on('close', () => finish('closed'))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the proxy answered is the proxy closing on a bad request, not a failure.
      finish(
        chunks.length > 0 || err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'closed' : 'error',
        err.code ?? err.message,
      )
    })
    let writesDone = false
    const ready = target.tls ? 'secureConnect' : 'connect'
    socket.once(ready, () => {
      let i = 0
      const next = () => {
        if (done) return
        while (i < input.steps.length) {
          const step = input.steps[i++]!
          if (Buffer.isBuffer(step)) {
            if (step.length > 0) socket.write(step)
          } else {
            const t = setTimeout(() => {
              timers.delete(t)
              next()
            }, step.pauseMs)
            timers.add(t)
            return
          }
        }
        writesDone = true
        if (input.endWrite) socket.end()
        armIdle()
      }
      next()
    })
  })
}

/** Runs `count` jobs, at most `width` at a time, in index order; stops starting new ones after `deadline`. */
export async function pool(
  count: number,
  width: number,
  deadline: number,
  job: (i: number) => Promise<void>,
): Promise<number> {
  let nextIndex = 0
  let started = 0
  const lane = async () => {
    while (nextIndex < count && Date.now() < deadline) {
      const i = nextIndex++
      started++
      await job(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, count) }, lane))
  return started
}
