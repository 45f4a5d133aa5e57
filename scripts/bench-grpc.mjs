// gRPC unary calls per second, straight to a @grpc/grpc-js server and through Locci Proxy
// (h2c listener, protocol: h2c upstream), with the Echo service of test/fixtures/grpc/echo.proto.
// The server runs in its own process (`node scripts/bench-grpc.mjs --server` prints its port);
// the client is one grpc-js channel keeping BENCH_GRPC_CONCURRENCY calls in flight for
// BENCH_GRPC_DURATION seconds after a 1 s warm-up. Used by `npm run bench`; alone:
//   node scripts/bench-grpc.mjs
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const require = createRequire(path.join(root, 'package.json'))
const grpc = require('@grpc/grpc-js')
const loader = require('@grpc/proto-loader')
const PROTO = path.join(root, 'test', 'fixtures', 'grpc', 'echo.proto')
const Echo = grpc.loadPackageDefinition(loader.loadSync(PROTO, { keepCase: true, defaults: true })).locci.test
  .Echo

if (process.argv.includes('--server')) {
  const server = new grpc.Server()
  server.addService(Echo.service, {
    Unary: (call, cb) => cb(null, { text: call.request.text, blob: Buffer.alloc(0) }),
  })
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err
    process.stdout.write(`port ${port}\n`)
  })
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const { markdown } = await benchGrpc({ log: (m) => process.stderr.write(`${m}\n`) })
  console.log(markdown)
}

function startChild(args, ready) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 15000)
    c.stdout.on('data', (d) => {
      if (out === null) return
      out += d
      const m = ready.exec(out)
      if (m) {
        clearTimeout(timer)
        out = null
        c.stdout.resume()
        resolve({ child: c, port: Number(m[1]) })
      }
    })
    c.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)))
  })
}

async function run(address, seconds, concurrency) {
  const client = new Echo(address, grpc.credentials.createInsecure())
  let done = 0
  let failed = 0
  let stopAt = 0
  const lat = []
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now()
      client.Unary({ text: 'bench' }, (err) => {
        if (err) failed++
        else {
          done++
          lat.push(performance.now() - t0)
        }
        resolve()
      })
    })
  const loop = async () => {
    while (performance.now() < stopAt) await one()
  }
  stopAt = performance.now() + 1000 // warm-up, not counted
  await Promise.all(Array.from({ length: concurrency }, loop))
  done = 0
  failed = 0
  lat.length = 0
  const start = performance.now()
  stopAt = start + seconds * 1000
  await Promise.all(Array.from({ length: concurrency }, loop))
  const elapsed = (performance.now() - start) / 1000
  client.close()
  lat.sort((a, b) => a - b)
  return {
    cps: done / elapsed,
    p50: lat[Math.floor(lat.length * 0.5)] ?? Number.NaN,
    p99: lat[Math.floor(lat.length * 0.99)] ?? Number.NaN,
    failed,
  }
}

export async function benchGrpc({ log = () => undefined } = {}) {
  const seconds = Number(process.env.BENCH_GRPC_DURATION ?? process.env.BENCH_DURATION ?? 10)
  const concurrency = Number(process.env.BENCH_GRPC_CONCURRENCY ?? 50)
  const children = []
  try {
    const server = await startChild([new URL(import.meta.url).pathname, '--server'], /port (\d+)/)
    children.push(server.child)
    const dir = mkdtempSync(path.join(os.tmpdir(), 'locci-bench-grpc-'))
    const file = path.join(dir, 'grpc.yaml')
    writeFileSync(
      file,
      `mode: load_balancer
server: { bind_address: "127.0.0.1:0", h2c: true }
upstreams:
  echo: { servers: ["127.0.0.1:${server.port}"], protocol: h2c }
load_balancer: { upstream: echo }
`,
    )
    const proxy = await startChild(
      [path.join(root, 'bin', 'locci-proxy'), '-c', file],
      /"bind":"http:\/\/127\.0\.0\.1:(\d+)"/,
    )
    children.push(proxy.child)
    log('bench: gRPC unary, direct')
    const direct = await run(`127.0.0.1:${server.port}`, seconds, concurrency)
    log('bench: gRPC unary, through locci-proxy')
    const proxied = await run(`127.0.0.1:${proxy.port}`, seconds, concurrency)
    const f = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    const row = (name, r) =>
      `| ${name} | ${f(r.cps)} | ${f(r.cps / direct.cps, 2)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${r.failed} |`
    const markdown = [
      `gRPC unary calls (grpc-js client, ${concurrency} in flight, ${seconds} s)`,
      '| target | calls/s | × direct | p50 ms | p99 ms | failed |',
      '|---|---:|---:|---:|---:|---:|',
      row('direct (grpc-js server alone)', direct),
      row('locci-proxy (h2c -> h2c)', proxied),
    ].join('\n')
    return { direct, proxied, markdown }
  } finally {
    for (const c of children) c.kill('SIGTERM')
  }
}
