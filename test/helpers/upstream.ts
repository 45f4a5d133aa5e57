// Real node:http upstreams on 127.0.0.1 ephemeral ports that a test can steer: answer normally
// (JSON naming the server, echoing method, url, headers and body), fail health checks, stall,
// or drop the connection mid-body. Every request they see is recorded.

import { readFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface SeenRequest {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  body: string
}

export type Behaviour =
  | { kind: 'ok' }
  /** Answer every request with this status (health checks included). */
  | { kind: 'status'; status: number }
  /** Wait before sending headers. */
  | { kind: 'delay'; ms: number }
  /** Send headers and part of a body, then destroy the socket. */
  | { kind: 'drop_mid_body' }
  /** Stream `chunks` chunks of `size` bytes, `gapMs` apart. */
  | { kind: 'stream'; chunks: number; size: number; gapMs: number }
  /** Read the whole request, then reset the connection without answering. */
  | { kind: 'reset' }

export interface Upstream {
  name: string
  port: number
  address: string
  seen: SeenRequest[]
  /** Requests whose client side (the proxy) closed before the response finished. */
  aborted: number
  behaviour: Behaviour
  /** Behaviour for the health-check path only (defaults to `ok`). */
  health: 'ok' | 'fail'
  /** Health-check requests received. */
  healthHits: number
  close(): Promise<void>
}

export async function startUpstream(name: string, healthPath = '/health'): Promise<Upstream> {
  const sockets = new Set<Socket>()
  const up: Upstream = {
    name,
    port: 0,
    address: '',
    seen: [],
    aborted: 0,
    behaviour: { kind: 'ok' },
    health: 'ok',
    healthHits: 0,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      if (req.url === healthPath) {
        up.healthHits++
        res.writeHead(up.health === 'ok' ? 200 : 503).end(up.health)
        return
      }
      up.seen.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body,
      })
      let finished = false
      res.on('finish', () => {
        finished = true
      })
      res.on('close', () => {
        if (!finished) up.aborted++
      })
      const b = up.behaviour
      const json = () => {
        const text = JSON.stringify({
          server: name,
          method: req.method,
          url: req.url,
          headers: req.headers,
          body,
        })
        res.writeHead(200, {
          'content-type': 'application/json',
          'x-upstream': name,
          'keep-alive': 'timeout=5',
        })
        res.end(text)
      }
      switch (b.kind) {
        case 'ok':
          return json()
        case 'status':
          res.writeHead(b.status, { 'content-type': 'text/plain' }).end(`${name} says ${b.status}`)
          return
        case 'delay': {
          const t = setTimeout(json, b.ms)
          res.on('close', () => clearTimeout(t))
          return
        }
        case 'drop_mid_body':
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' })
          res.write('x'.repeat(1000), () => setTimeout(() => req.socket.destroy(), 20))
          return
        case 'reset':
          req.socket.destroy()
          return
        case 'stream': {
          res.writeHead(200, { 'content-type': 'application/octet-stream' })
          let sent = 0
          const tick = () => {
            if (res.destroyed) return
            res.write(Buffer.alloc(b.size, 97))
            if (++sent === b.chunks) res.end()
            else setTimeout(tick, b.gapMs)
          }
          tick()
          return
        }
      }
    })
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  up.port = (server.address() as AddressInfo).port
  up.address = `127.0.0.1:${up.port}`
  return up
}

/**
 * The kernel's ephemeral range (`listen(0)` and the source ports of outgoing connections come
 * from it), read once; Linux's default where it cannot be read.
 */
const EPHEMERAL: readonly [number, number] = (() => {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo!, hi!]
  } catch {}
  return [32768, 60999]
})()

/** Ports below the ephemeral range that closedPort() picks from (1024 and up: no privilege). */
const PICK_LOW = 10_000
/**
 * The ports closedPort() gave this process: never given twice, so two picks for one setup (a
 * proxy's port, then Pebble's management port) cannot be the same port. With listen(0) they
 * could: the kernel may hand a released port out again at once, and a CI run had Pebble's
 * challenge server and the proxy both given 127.0.0.1:35053.
 */
const handedOut = new Set<number>()

/**
 * A port with nothing listening on it, for a test to give to a server it starts later (a proxy,
 * Pebble, Redis) or to use as a refused address: picked at random below the ephemeral range,
 * checked free by binding it, never the same twice in a process. A port from `listen(0)`, once
 * released, may be handed out again by the kernel (to the next listen(0) of this process, to a
 * test file running beside it, or as an outgoing connection's source port) before the server it
 * was meant for binds it. Below the range only another process's closedPort() could pick it, one
 * chance in thousands.
 */
export async function closedPort(): Promise<number> {
  const top = Math.min(EPHEMERAL[0], 65536)
  for (let attempt = 0; top - PICK_LOW > 1000 && attempt < 50; attempt++) {
    const port = PICK_LOW + Math.floor(Math.random() * (top - PICK_LOW))
    if (handedOut.has(port) || !(await bindable(port))) continue
    handedOut.add(port)
    return port
  }
  // An ephemeral range that leaves no room below it: the kernel's choice, as before.
  const s = http.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

function bindable(port: number): Promise<boolean> {
  const s = http.createServer()
  return new Promise((resolve) => {
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}
