// A real gRPC stack for tests: the Echo service of test/fixtures/grpc/echo.proto served by
// @grpc/grpc-js (clear text or TLS), with the standard health service, and clients for it.

import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { ROOT } from './proxy'

/** The YAML route (under api_gateway.routes) that sends the Echo service to group `echo`. */
export const ECHO_ROUTE = 'echo: { path_pattern: "^/locci\\\\.test\\\\.Echo/", upstream: echo }'

export const PROTO = path.join(ROOT, 'test', 'fixtures', 'grpc', 'echo.proto')

export interface EchoRequest {
  text?: string
  blob?: Buffer
  repeat?: number
  delay_ms?: number
  fail_code?: number
}
export interface EchoReply {
  text: string
  blob: Buffer
}

type Ctor = new (
  address: string,
  creds: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => grpc.Client
const def = loader.loadSync(PROTO, { keepCase: true, defaults: true })
const pkg = grpc.loadPackageDefinition(def) as unknown as {
  locci: { test: { Echo: Ctor & { service: grpc.ServiceDefinition } } }
}
export const Echo = pkg.locci.test.Echo

export interface EchoClient extends grpc.Client {
  Unary(
    req: EchoRequest,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: EchoReply) => void,
  ): grpc.ClientUnaryCall
  ServerStream(
    req: EchoRequest,
    md?: grpc.Metadata,
    opts?: grpc.CallOptions,
  ): grpc.ClientReadableStream<EchoReply>
  ClientStream(
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: EchoReply) => void,
  ): grpc.ClientWritableStream<EchoRequest>
  Bidi(md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<EchoRequest, EchoReply>
}

export interface GrpcServer {
  server: grpc.Server
  port: number
  address: string
  /** Calls seen, by method name. */
  calls: Record<string, number>
  /** Calls whose client cancelled (the server heard 'cancelled'). */
  cancelled: number
  /** What the health service answers for a service name ('' = the whole server). */
  health: Map<string, 'SERVING' | 'NOT_SERVING'>
  close(): Promise<void>
}

const HEALTH_STATUS = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const

/** Hand-made definition of grpc.health.v1.Health/Check (a string in, an enum out). */
const healthService: grpc.ServiceDefinition = {
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: Buffer) => v,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (v: Buffer) => v,
    responseDeserialize: (b: Buffer) => b,
  },
}

function readServiceName(b: Buffer): string {
  // field 1, wire type 2: tag 0x0a, a one-byte length (test names are short)
  return b.length >= 2 && b[0] === 0x0a ? b.subarray(2, 2 + b[1]!).toString() : ''
}

export async function startGrpcServer(
  opts: { tls?: { cert: string; key: string }; name?: string } = {},
): Promise<GrpcServer> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 8 << 20 })
  const s: GrpcServer = {
    server,
    port: 0,
    address: '',
    calls: {},
    cancelled: 0,
    health: new Map([['', 'SERVING']]),
    close: () => new Promise((r) => server.tryShutdown(() => r())),
  }
  const count = (m: string) => {
    s.calls[m] = (s.calls[m] ?? 0) + 1
  }
  const name = opts.name ?? 'echo'
  const failWith = (req: EchoRequest): grpc.ServiceError | undefined => {
    if (!req.fail_code) return undefined
    const md = new grpc.Metadata()
    md.set('x-why', 'asked')
    return Object.assign(new Error('failed on purpose'), {
      code: req.fail_code,
      details: `failed on purpose: ${req.text ?? ''}`,
      metadata: md,
    })
  }
  server.addService(Echo.service, {
    Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      count('Unary')
      call.on('cancelled', () => s.cancelled++)
      const md = new grpc.Metadata()
      const echo = call.metadata.get('x-echo')[0]
      if (echo !== undefined) md.set('x-echo', String(echo))
      md.set('x-server', name)
      call.sendMetadata(md)
      const req = call.request
      const answer = () => {
        const err = failWith(req)
        if (err) return cb(err)
        const trailer = new grpc.Metadata()
        trailer.set('x-trailer', 'done')
        cb(null, { text: `${name}:${req.text ?? ''}`, blob: req.blob ?? Buffer.alloc(0) }, trailer)
      }
      if (req.delay_ms) setTimeout(answer, req.delay_ms)
      else answer()
    },
    ServerStream(call: grpc.ServerWritableStream<EchoRequest, EchoReply>) {
      count('ServerStream')
      call.on('cancelled', () => s.cancelled++)
      const n = call.request.repeat || 1
      let i = 0
      const next = () => {
        if (call.cancelled) return
        if (i >= n) {
          const err = failWith(call.request)
          if (err) call.destroy(err)
          else call.end()
          return
        }
        call.write({ text: `${call.request.text ?? ''}#${i++}`, blob: Buffer.alloc(0) })
        if (call.request.delay_ms) setTimeout(next, call.request.delay_ms)
        else setImmediate(next)
      }
      next()
    },
    ClientStream(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      count('ClientStream')
      call.on('cancelled', () => s.cancelled++)
      const texts: string[] = []
      let bytes = 0
      call.on('data', (r: EchoRequest) => {
        texts.push(r.text ?? '')
        bytes += r.blob?.length ?? 0
      })
      call.on('end', () => cb(null, { text: `${texts.join(',')}|${bytes}`, blob: Buffer.alloc(0) }))
    },
    Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
      count('Bidi')
      call.on('cancelled', () => s.cancelled++)
      call.on('data', (r: EchoRequest) =>
        call.write({ text: `echo:${r.text ?? ''}`, blob: r.blob ?? Buffer.alloc(0) }),
      )
      call.on('end', () => call.end())
    },
  })
  server.addService(healthService, {
    Check(call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      count('Health')
      const status = s.health.get(readServiceName(call.request))
      if (status === undefined) return cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' })
      cb(null, Buffer.from([0x08, HEALTH_STATUS[status]]))
    },
  })
  const creds = opts.tls
    ? grpc.ServerCredentials.createSsl(null, [
        { cert_chain: Buffer.from(opts.tls.cert), private_key: Buffer.from(opts.tls.key) },
      ])
    : grpc.ServerCredentials.createInsecure()
  s.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))),
  )
  s.address = `127.0.0.1:${s.port}`
  return s
}

/** A client of the Echo service at `address`, clear text or TLS trusting `ca`. */
export function echoClient(address: string, ca?: string, servername?: string): EchoClient {
  const creds = ca ? grpc.credentials.createSsl(Buffer.from(ca)) : grpc.credentials.createInsecure()
  const options: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 8 << 20 }
  if (servername) options['grpc.ssl_target_name_override'] = servername
  return new Echo(address, creds, options) as EchoClient
}

/**
 * A client of the proxy on `port`, connected: a first call's deadline would otherwise include
 * the channel's connect.
 */
export async function readyClient(port: number): Promise<EchoClient> {
  const c = echoClient(`127.0.0.1:${port}`)
  await unary(c, { text: 'warm-up' })
  return c
}

/** A unary call with an empty message to any path; the error, or one with code OK. */
export function rawUnary(c: grpc.Client, method: string): Promise<grpc.ServiceError> {
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      (err) =>
        resolve(
          err ??
            Object.assign(new Error('succeeded'), { code: 0, details: '', metadata: new grpc.Metadata() }),
        ),
    )
  })
}

/** A unary call as a promise: the reply, its header metadata and its trailers, or the error. */
export function unary(
  c: EchoClient,
  req: EchoRequest,
  opts: { md?: grpc.Metadata; deadlineMs?: number } = {},
): Promise<{ reply: EchoReply; headers: grpc.Metadata; trailers: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    let headers = new grpc.Metadata()
    let trailers = new grpc.Metadata()
    let reply: EchoReply | undefined
    let error: grpc.ServiceError | undefined
    const callOpts: grpc.CallOptions = {}
    if (opts.deadlineMs !== undefined) callOpts.deadline = Date.now() + opts.deadlineMs
    const call = c.Unary(req, opts.md ?? new grpc.Metadata(), callOpts, (err, res) => {
      if (err) error = err
      else reply = res
    })
    call.on('metadata', (m) => {
      headers = m
    })
    call.on('status', (st) => {
      trailers = st.metadata
      // The status comes after the callback's arguments are known.
      setImmediate(() => (error ? reject(error) : resolve({ reply: reply!, headers, trailers })))
    })
  })
}

export { grpc }
