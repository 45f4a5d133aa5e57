// One health probe of one peer: an HTTP GET that must answer 2xx, or a TCP connect, within the
// timeout. Each probe uses a fresh connection so it also proves the server accepts new ones.

import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { type PeerTls, tlsConnectOptions } from '../peer'

export interface ProbeTarget {
  host: string
  port: number
  tls: PeerTls
}

export interface ProbeResult {
  ok: boolean
  /** Why the probe failed: `status 503`, `ECONNREFUSED`, `timeout`. */
  reason?: string
}

export function probe(
  target: ProbeTarget,
  path: string | undefined,
  timeoutMs: number,
): Promise<ProbeResult> {
  return path === undefined ? tcpProbe(target, timeoutMs) : httpProbe(target, path, timeoutMs)
}

function tcpProbe(t: ProbeTarget, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: t.host, port: t.port })
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs)
    const finish = (r: ProbeResult) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(r)
    }
    socket.once('connect', () => finish({ ok: true }))
    socket.once('error', (err: NodeJS.ErrnoException) =>
      finish({ ok: false, reason: err.code ?? err.message }),
    )
  })
}

function httpProbe(t: ProbeTarget, path: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const mod = t.tls.enabled ? https : http
    let done = false
    const req = mod.request({
      host: t.host,
      port: t.port,
      path,
      method: 'GET',
      agent: false,
      headers: {
        host: t.tls.servername ?? (t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`),
        'user-agent': 'locci-proxy-health-check',
        connection: 'close',
      },
      ...tlsConnectOptions(t.tls, t.host),
    })
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs)
    const finish = (r: ProbeResult) => {
      if (done) return
      done = true
      clearTimeout(timer)
      req.destroy()
      resolve(r)
    }
    req.once('response', (res) => {
      const status = res.statusCode ?? 0
      res.resume()
      finish(status >= 200 && status < 300 ? { ok: true } : { ok: false, reason: `status ${status}` })
    })
    req.once('error', (err: NodeJS.ErrnoException) => finish({ ok: false, reason: err.code ?? err.message }))
    req.end()
  })
}
