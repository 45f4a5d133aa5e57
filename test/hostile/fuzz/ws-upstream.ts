// The WebSocket upstream for the gateway's upgrade route: a node:http server that records every
// request and upgrade it receives (so an unauthenticated one cannot go unseen) and hands
// upgrades to a `ws` WebSocketServer that greets and echoes.

import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocketServer } from 'ws'
import type { Seen } from './oracle'

export interface WsUpstream {
  address: string
  seen: Seen[]
  close(): Promise<void>
}

export async function startWsUpstream(): Promise<WsUpstream> {
  const seen: Seen[] = []
  const sockets = new Set<Socket>()
  const wss = new WebSocketServer({ noServer: true })
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.url} ${req.headers['x-user-id'] ?? '-'}`)
    ws.on('message', (m) => ws.send(`echo:${m}`))
    ws.on('error', () => ws.terminate())
  })
  const server = http.createServer((req, res) => {
    seen.push({ upstream: 'ws', url: req.url ?? '', headers: req.headers })
    req.resume()
    res.writeHead(426, { 'content-type': 'text/plain' }).end('upgrade required')
  })
  server.on('upgrade', (req, socket, head) => {
    seen.push({ upstream: 'ws', url: req.url ?? '', headers: req.headers })
    socket.on('error', () => socket.destroy())
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('clientError', (_err, socket) => socket.destroy())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate()
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
