#!/usr/bin/env node
// Upstream-client micro benchmark: CPU µs per request of a small node:http front proxy that
// forwards through undici's Pool (as src/upstream/peer.ts configures it) or through H1Pool
// (src/upstream/h1), with the same dispatch handler. Origin, proxy and load generator
// (autocannon, a fixed number of requests) are separate processes; the proxy reports its own
// process.cpuUsage() over each run. Rounds alternate between the clients; medians and minimums
// are printed (on a shared, loaded machine the minimum is the steadier estimate of the cost).
//   npm run build && node scripts/bench-h1.mjs
//   BENCH_REQUESTS=100000 BENCH_ROUNDS=5 BENCH_CONNECTIONS=50 BENCH_PATHS=/small,/16k node scripts/bench-h1.mjs
// Everything runs on 127.0.0.1 and stops by itself.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 60_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const PATHS = (process.env.BENCH_PATHS ?? '/small,/16k').split(',')
const CLIENTS = ['undici', 'h1']

// ---------------------------------------------------------------- the proxy (child process)
if (process.argv[2] === 'proxy') {
  const require = createRequire(import.meta.url)
  const { Pool } = require('undici')
  const { H1Pool } = require(path.join(root, 'dist/src/upstream/h1/pool.js'))
  const which = process.argv[3]
  const upstreamPort = Number(process.argv[4])
  const pool =
    which === 'undici'
      ? new Pool(`http://127.0.0.1:${upstreamPort}`, {
          connections: 128,
          pipelining: 1,
          keepAliveTimeout: 60_000,
          keepAliveMaxTimeout: 60_000,
          connect: { timeout: 10_000 },
          headersTimeout: 0,
          bodyTimeout: 0,
        })
      : new H1Pool(
          { host: '127.0.0.1', port: upstreamPort },
          { connections: 128, idleTimeoutMs: 60_000, connectTimeoutMs: 10_000 },
        )
  const HOP = new Set([
    'connection',
    'keep-alive',
    'transfer-encoding',
    'te',
    'trailer',
    'upgrade',
    'proxy-connection',
  ])
  let count = 0

  // The same handler for both clients: what proxy/forward.ts's Exchange does, minus features.
  class Handler {
    constructor(res) {
      this.res = res
      this.resume = null
    }
    onConnect() {}
    onHeaders(status, raw, resume, text) {
      if (status < 200) return true
      const out = []
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].latin1Slice(0, raw[i].length)
        if (!HOP.has(name.toLowerCase())) out.push(name, raw[i + 1].latin1Slice(0, raw[i + 1].length))
      }
      this.resume = resume
      this.res.writeHead(status, text, out)
      return true
    }
    // H1Pool's string form (Exchange takes it too); undici never calls it.
    onHeaderStrings(status, fields, resume, text) {
      if (status < 200) return true
      const out = []
      for (let i = 0; i < fields.length; i += 2) {
        if (!HOP.has(fields[i].toLowerCase())) out.push(fields[i], fields[i + 1])
      }
      this.resume = resume
      this.res.writeHead(status, text, out)
      return true
    }
    onData(chunk) {
      if (this.res.write(chunk)) return true
      this.res.once('drain', () => this.resume())
      return false
    }
    onComplete() {
      count++
      this.res.end()
    }
    onError() {
      if (!this.res.headersSent) {
        this.res.writeHead(502)
        this.res.end()
      } else this.res.destroy()
    }
  }

  let mark = process.cpuUsage()
  let markCount = 0
  const server = http.createServer((req, res) => {
    if (req.url === '/__mark') {
      const u = process.cpuUsage(mark)
      const n = count - markCount
      mark = process.cpuUsage()
      markCount = count
      res.end(JSON.stringify({ cpuUs: u.user + u.system, requests: n, connected: pool.stats.connected }))
      return
    }
    const raw = req.rawHeaders
    const headers = []
    for (let i = 0; i < raw.length; i += 2)
      if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1])
    headers.push('x-forwarded-for', req.socket.remoteAddress)
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
    pool.dispatch(
      {
        path: req.url,
        method: req.method,
        headers,
        body: hasBody ? req : null,
        headersTimeout: 0,
        bodyTimeout: 30_000,
      },
      new Handler(res),
    )
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${server.address().port}\n`))
  process.on('SIGTERM', () => process.exit(0))
} else {
  await main()
}

// ---------------------------------------------------------------- the driver
function start(args, readyRe) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], cwd: root })
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      const m = readyRe.exec(out)
      if (m) resolve({ child, match: m })
    })
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)))
  })
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function get(port, p) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
        let body = ''
        res.on('data', (d) => {
          body += d
        })
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
}

function autocannon(port, p, amount) {
  const bin = path.join(root, 'node_modules/.bin/autocannon')
  const r = spawnSync(
    bin,
    ['-c', String(CONNS), '-a', String(amount), '-j', `http://127.0.0.1:${port}${p}`],
    {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    },
  )
  if (r.status !== 0) throw new Error(`autocannon failed: ${r.stderr}`)
  const j = JSON.parse(r.stdout)
  return { rps: j.requests.average, p99: j.latency.p99, errors: j.errors + j.non2xx }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function main() {
  if (!existsSync(path.join(root, 'dist/src/upstream/h1/pool.js'))) {
    console.error('dist/ is missing: run `npm run build` first')
    process.exit(1)
  }
  const originPort = await freePort()
  const origin = spawn(process.execPath, [path.join(root, 'scripts/bench-origin.mjs')], {
    env: { ...process.env, PORT: String(originPort) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise((r) => origin.stdout.once('data', r))
  const results = {}
  const procs = []
  try {
    for (const which of CLIENTS) {
      const { child, match } = await start(
        [path.join(root, 'scripts/bench-h1.mjs'), 'proxy', which, String(originPort)],
        /ready (\d+)/,
      )
      procs.push(child)
      results[which] = { port: Number(match[1]), child }
    }
    console.log(
      `node ${process.version}, ${REQUESTS} requests per run, ${CONNS} connections, ${ROUNDS} rounds, clients alternating`,
    )
    const table = {}
    for (const p of PATHS) {
      for (const which of CLIENTS) {
        // Warm-up: JIT, pools filled.
        autocannon(results[which].port, p, Math.min(20_000, REQUESTS))
      }
      for (let round = 0; round < ROUNDS; round++) {
        for (const which of CLIENTS) {
          const port = results[which].port
          await get(port, '/__mark')
          const load = autocannon(port, p, REQUESTS)
          const m = JSON.parse(await get(port, '/__mark'))
          const key = `${p} ${which}`
          table[key] ??= { us: [], rps: [], p99: [], errors: 0 }
          table[key].us.push(m.cpuUs / m.requests)
          table[key].rps.push(load.rps)
          table[key].p99.push(load.p99)
          table[key].errors += load.errors
          table[key].connected = m.connected
        }
      }
    }
    console.log(
      '| path | client | CPU µs/request (median) | (min) | runs | req/s (median) | p99 ms | errors | upstream sockets |',
    )
    console.log('|---|---|---:|---:|---|---:|---:|---:|---:|')
    for (const p of PATHS) {
      for (const which of CLIENTS) {
        const t = table[`${p} ${which}`]
        console.log(
          `| ${p} | ${which === 'h1' ? 'H1Pool' : 'undici Pool'} | ${median(t.us).toFixed(1)} | ${Math.min(...t.us).toFixed(1)} | ${t.us.map((x) => x.toFixed(1)).join(' ')} | ${Math.round(median(t.rps))} | ${median(t.p99)} | ${t.errors} | ${t.connected} |`,
        )
      }
      const u = table[`${p} undici`].us
      const h = table[`${p} h1`].us
      console.log(
        `| ${p} | H1Pool / undici | ${(median(h) / median(u)).toFixed(2)}x | ${(Math.min(...h) / Math.min(...u)).toFixed(2)}x | | | | | |`,
      )
    }
  } finally {
    for (const c of procs) c.kill('SIGTERM')
    origin.kill('SIGTERM')
  }
}
