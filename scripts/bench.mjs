#!/usr/bin/env node
// `npm run bench`: requests/s and p50/p99 latency, direct to an origin vs through Locci Proxy
// (load_balancer and api_gateway modes, per-request logging on), on this machine. Uses wrk when
// installed, else autocannon (npm). Everything runs on 127.0.0.1 and stops by itself.
//   BENCH_DURATION=10 BENCH_CONNECTIONS=50 npm run bench
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const DURATION = Number(process.env.BENCH_DURATION ?? 10)
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const useWrk = spawnSync('wrk', ['--version']).error === undefined
const children = []

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function start(cmd, args, env, readyText) {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(c)
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 15000)
    c.stdout.on('data', (d) => {
      if (out !== null) {
        out += d
        if (out.includes(readyText)) {
          clearTimeout(timer)
          const seen = out
          out = null
          // Keep draining stdout (per-request log lines) as a log collector would.
          c.stdout.resume()
          resolve({ child: c, seen })
        }
      }
    })
    c.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)))
  })
}

function stop(c) {
  return new Promise((resolve) => {
    if (c.exitCode !== null) return resolve()
    c.removeAllListeners('exit')
    c.once('exit', () => resolve())
    c.kill('SIGTERM')
  })
}

function load(url) {
  if (useWrk) {
    const r = spawnSync('wrk', ['-t1', `-c${CONNS}`, `-d${DURATION}s`, '--latency', url], {
      encoding: 'utf8',
    })
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1])
    const ms = (label) => {
      const m = new RegExp(`\\s${label}%\\s+([\\d.]+)(us|ms|s)`).exec(r.stdout)
      if (!m) return Number.NaN
      const v = Number(m[1])
      return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
    }
    const errors = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? '0'
    return { rps, p50: ms('50'), p99: ms('99'), errors: Number(errors) }
  }
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'autocannon', 'autocannon.js'),
      '-c',
      String(CONNS),
      '-d',
      String(DURATION),
      '-j',
      url,
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  )
  const j = JSON.parse(r.stdout)
  return { rps: j.requests.average, p50: j.latency.p50, p99: j.latency.p99, errors: j.non2xx + j.errors }
}

const originPort = await freePort()
await start(process.execPath, [path.join(root, 'scripts', 'bench-origin.mjs')], { PORT: originPort }, 'ready')
const dir = mkdtempSync(path.join(os.tmpdir(), 'locci-bench-'))
const configs = {
  load_balancer: `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
logging: { level: info }
upstreams: { origin: { servers: ["127.0.0.1:${originPort}"] } }
load_balancer: { upstream: origin }
`,
  api_gateway: `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
logging: { level: info }
upstreams: { origin: { servers: ["127.0.0.1:${originPort}"] } }
api_gateway:
  routes:
    small: { path_pattern: "^/small", methods: [GET], upstream: origin }
    big: { path_pattern: "^/16k", methods: [GET], upstream: origin }
    other: { path_pattern: "^/", upstream: origin }
`,
}

const rows = []
const tool = useWrk ? `wrk -t1 -c${CONNS} -d${DURATION}s` : `autocannon -c ${CONNS} -d ${DURATION}`
process.stderr.write(
  `bench: ${tool}; origin on :${originPort}; ${os.cpus().length} cores, Node ${process.version}\n`,
)
try {
  for (const body of ['small', '16k']) {
    process.stderr.write(`bench: direct /${body}\n`)
    rows.push({ target: 'direct (origin alone)', body, ...load(`http://127.0.0.1:${originPort}/${body}`) })
    for (const [mode, yaml] of Object.entries(configs)) {
      const file = path.join(dir, `${mode}.yaml`)
      writeFileSync(file, yaml)
      const { child: proxy, seen } = await start(
        process.execPath,
        [path.join(root, 'bin', 'locci-proxy'), '-c', file],
        {},
        'locci-proxy listening',
      )
      const port = Number(/"bind":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(seen)?.[1])
      process.stderr.write(`bench: locci ${mode} /${body}\n`)
      load(`http://127.0.0.1:${port}/${body}`) // warm-up run is discarded
      rows.push({ target: `locci-proxy ${mode}`, body, ...load(`http://127.0.0.1:${port}/${body}`) })
      await stop(proxy)
    }
  }
} finally {
  for (const c of children) await stop(c)
}

const direct = Object.fromEntries(
  rows.filter((r) => r.target.startsWith('direct')).map((r) => [r.body, r.rps]),
)
const fmt = (n, d = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '-'
console.log(`\n| target | body | req/s | × direct | p50 ms | p99 ms | non-2xx |`)
console.log('|---|---|---:|---:|---:|---:|---:|')
for (const r of rows) {
  console.log(
    `| ${r.target} | ${r.body} | ${fmt(r.rps)} | ${fmt(r.rps / direct[r.body], 2)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.errors} |`,
  )
}
console.log(
  `\n${tool}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`,
)
