// health_check.grpc: the standard gRPC health check (grpc.health.v1.Health/Check) over a fresh
// HTTP/2 connection (h2c, or h2 over TLS), healthy when the server answers SERVING. The two
// messages are one field each, so they are encoded here by hand instead of loading a protobuf
// library at run time: HealthCheckRequest { string service = 1 }, HealthCheckResponse
// { ServingStatus status = 1 } with SERVING = 1 (grpc/grpc doc/health-checking.md).

import http2 from 'node:http2'
import { tlsConnectOptions } from '../peer'
import type { ProbeResult, ProbeTarget } from './probe'

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check'
const SERVING = 1
const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN']

function varint(n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return out
}

/** A HealthCheckRequest for `service` in its gRPC frame (flag 0, 4-byte length, message). */
export function healthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8')
  const msg =
    name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, ...varint(name.length)]), name])
  const frame = Buffer.alloc(5 + msg.length)
  frame.writeUInt32BE(msg.length, 1)
  msg.copy(frame, 5)
  return frame
}

/**
 * The status of a HealthCheckResponse message (without its frame): field 1, a varint; an
 * absent field is its default, UNKNOWN (0). Undefined when the bytes are not such a message.
 */
export function healthCheckStatus(msg: Buffer): number | undefined {
  let status = 0
  let i = 0
  const readVarint = (): number | undefined => {
    let v = 0
    for (let shift = 0; shift < 35; shift += 7) {
      if (i >= msg.length) return undefined
      const b = msg[i++]!
      v += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return v
    }
    return undefined
  }
  while (i < msg.length) {
    const tag = readVarint()
    if (tag === undefined) return undefined
    const wire = tag & 7
    if (wire === 0) {
      const v = readVarint()
      if (v === undefined) return undefined
      if (tag >>> 3 === 1) status = v
    } else if (wire === 2) {
      const len = readVarint()
      if (len === undefined || i + len > msg.length) return undefined
      i += len
    } else if (wire === 1) i += 8
    else if (wire === 5) i += 4
    else return undefined
  }
  return i === msg.length ? status : undefined
}

export function grpcProbe(t: ProbeTarget, service: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const host = t.host.includes(':') ? `[${t.host}]` : t.host
    const tlsOptions = tlsConnectOptions(t.tls, t.host)
    let done = false
    let session: http2.ClientHttp2Session | undefined
    const finish = (r: ProbeResult) => {
      if (done) return
      done = true
      clearTimeout(timer)
      session?.destroy()
      resolve(r)
    }
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs)
    try {
      session = http2.connect(
        `${tlsOptions ? 'https' : 'http'}://${host}:${t.port}`,
        tlsOptions ? { ...tlsOptions, ALPNProtocols: ['h2'] } : {},
      )
    } catch (err) {
      finish({ ok: false, reason: (err as Error).message })
      return
    }
    session.on('error', (err: NodeJS.ErrnoException) =>
      finish({ ok: false, reason: err.code ?? err.message }),
    )
    const stream = session.request({
      ':method': 'POST',
      ':path': HEALTH_CHECK_PATH,
      ':authority': t.tls.servername ?? `${host}:${t.port}`,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'locci-proxy-health-check',
    })
    const chunks: Buffer[] = []
    let size = 0
    let grpcStatus: string | undefined
    stream.on('response', (h) => {
      if (h[':status'] !== 200) finish({ ok: false, reason: `status ${h[':status']}` })
      else if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status'])
    })
    stream.on('trailers', (h) => {
      grpcStatus = String(h['grpc-status'] ?? '')
    })
    stream.on('data', (c: Buffer) => {
      size += c.length
      // A health answer is a few bytes; anything large is not one.
      if (size > 4096) finish({ ok: false, reason: 'answer too large' })
      else chunks.push(c)
    })
    stream.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, reason: err.code ?? err.message }))
    stream.on('close', () => {
      if (grpcStatus !== '0') {
        finish({
          ok: false,
          reason: grpcStatus === undefined ? 'no grpc-status' : `grpc-status ${grpcStatus}`,
        })
        return
      }
      const body = Buffer.concat(chunks)
      const len = body.length >= 5 ? body.readUInt32BE(1) : -1
      const status =
        len === body.length - 5 && body[0] === 0 ? healthCheckStatus(body.subarray(5)) : undefined
      if (status === undefined) finish({ ok: false, reason: 'malformed health answer' })
      else if (status !== SERVING) finish({ ok: false, reason: STATUS_NAMES[status] ?? `status ${status}` })
      else finish({ ok: true })
    })
    stream.end(healthCheckRequest(service))
  })
}
