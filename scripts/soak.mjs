#!/usr/bin/env node
// Memory soak: drives bin/locci-proxy (load_balancer mode, per-request logging on, as in
// bench/peers-lb.yaml) with a bounded number of requests from 50 keep-alive connections, samples
// the proxy's RSS (/proc) and heapUsed (its ops listener's /metrics) every few seconds, and fails
// when memory keeps growing after the warm-up. Linux only (reads /proc); 127.0.0.1 only; the
// origin is scripts/bench-origin.mjs. Stops by itself: after --requests, or at --max-seconds.
//
//   npm run soak                       # 1,000,000 requests, 1 in 4 with a 16 KiB body
//   npm run soak -- --requests 200000 --max-rss-growth-mib 8
//
// Options: --requests N (1000000), --connections N (50), --big-every N (4: every Nth request
// asks for 16 KiB), --sample-secs N (3), --warmup-share F (0.2), --max-rss-growth-mib M (10),
// --max-heap-growth-mib M (5), --max-seconds N (900).
//
// Growth is measured after the warm-up (the first --warmup-share of the requests, while V8's
// young generation and the connection pools reach their working size): the highest RSS of the
// second half of the samples against that of the first half (bound --max-rss-growth-mib), and
// the old space right after each major GC, last against first (bound --max-heap-growth-mib).

import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

const ROOT = path.resolve(import.meta.dirname, '..')
const MIB = 1024 * 1024

try {
  await main()
} catch (err) {
  process.stderr.write(`soak: ${err.message}\n`)
  process.exitCode = 1
}

async function main() {
  const { values: opt } = parseArgs({
    options: {
      requests: { type: 'string', default: '1000000' },
      connections: { type: 'string', default: '50' },
      'big-every': { type: 'string', default: '4' },
      'sample-secs': { type: 'string', default: '3' },
      'warmup-share': { type: 'string', default: '0.2' },
      'max-rss-growth-mib': { type: 'string', default: '10' },
      'max-heap-growth-mib': { type: 'string', default: '5' },
      'max-seconds': { type: 'string', default: '900' },
      help: { type: 'boolean', default: false },
    },
  })
  if (opt.help) {
    // The header comment above the imports is the help text.
    const lines = readFileSync(new URL(import.meta.url), 'utf8')
      .split('\n')
      .slice(1)
    const header = lines.slice(
      0,
      lines.findIndex((l) => !l.startsWith('//')),
    )
    process.stdout.write(`${header.map((l) => l.replace(/^\/\/ ?/, '')).join('\n')}\n`)
    return
  }
  // What to stop and remove, newest first, however the soak ends (SIGINT included).
  const cleanups = []
  const cleanUp = () => {
    for (const c of cleanups.splice(0).reverse()) c()
  }
  process.on('SIGINT', () => {
    cleanUp()
    process.exit(130)
  })
  try {
    await soak(opt, cleanups)
  } finally {
    cleanUp()
  }
}

async function soak(opt, cleanups) {
  const TOTAL = positive(opt, 'requests')
  const CONNS = positive(opt, 'connections')
  const BIG_EVERY = positive(opt, 'big-every')
  const SAMPLE_MS = positive(opt, 'sample-secs') * 1000
  const WARMUP = Number(opt['warmup-share'])
  const MAX_RSS_MIB = bound(opt, 'max-rss-growth-mib')
  const MAX_HEAP_MIB = bound(opt, 'max-heap-growth-mib')
  const MAX_MS = positive(opt, 'max-seconds') * 1000
  if (!(WARMUP >= 0 && WARMUP < 0.9)) fail('--warmup-share must be in [0, 0.9)')

  // The origin: the bench origin (GET /small "ok", GET /16k 16384 bytes) in its own process, so
  // this one only generates load.
  const originPort = await freePort()
  const origin = spawn(process.execPath, [path.join(ROOT, 'scripts', 'bench-origin.mjs')], {
    env: { ...process.env, PORT: String(originPort) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  cleanups.push(() => origin.kill('SIGTERM'))
  await new Promise((resolve, reject) => {
    origin.stdout.once('data', resolve)
    origin.once('exit', () => reject(new Error('the origin (scripts/bench-origin.mjs) did not start')))
  })

  const dir = mkdtempSync(path.join(os.tmpdir(), 'locci-soak-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  const [port, opsPort] = [await freePort(), await freePort()]
  const config = path.join(dir, 'soak.yaml')
  writeFileSync(
    config,
    [
      'mode: load_balancer',
      'server:',
      `  bind_address: "127.0.0.1:${port}"`,
      `  ops_bind_address: "127.0.0.1:${opsPort}"`,
      'logging:',
      '  level: info',
      'upstreams:',
      '  origin:',
      `    servers: ["127.0.0.1:${originPort}"]`,
      'load_balancer:',
      '  upstream: origin',
      '',
    ].join('\n'),
  )
  // Started through the launcher's own line (its shebang's Node flags), as a user starts it. Its
  // stdout (one log line per request) goes to /dev/null: a pipe this process drains would hold
  // the proxy's log writes back whenever this process is busy, and that would be measured.
  const proxy = spawn(path.join(ROOT, 'bin', 'locci-proxy'), ['-c', config], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  proxy.stderr.on('data', (d) => {
    stderr += d
  })
  let exited = false
  proxy.on('exit', () => {
    exited = true
  })
  cleanups.push(() => {
    if (!exited) proxy.kill('SIGTERM')
  })

  const started = Date.now()
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONNS, pipelining: 1 })
  cleanups.push(() => void pool.destroy())
  await until(
    async () => (await get(opsPort, '/healthz')).status === 200,
    20_000,
    'the proxy to start',
    () => exited && `the proxy exited before it was ready${stderr ? `: ${stderr.trim()}` : ''}`,
  )
  const samples = []
  let sent = 0
  let done = 0
  let errors = 0
  let lastError = ''
  const sample = async () => {
    const rss = procKib(proxy.pid, 'VmRSS')
    const hwm = procKib(proxy.pid, 'VmHWM')
    const metrics = (await get(opsPort, '/metrics')).body
    const s = {
      t: (Date.now() - started) / 1000,
      done,
      rssMiB: rss / 1024,
      hwmMiB: hwm / 1024,
      heapMiB: gauge(metrics, 'nodejs_heap_size_used_bytes') / MIB,
      oldMiB: gauge(metrics, 'nodejs_heap_space_size_used_bytes{space="old"}') / MIB,
      majors: gauge(metrics, 'nodejs_gc_duration_seconds_count{kind="major"}'),
    }
    samples.push(s)
    process.stdout.write(
      `${s.t.toFixed(0).padStart(5)}s ${String(done).padStart(8)} req  rss ${s.rssMiB.toFixed(1)} MiB` +
        `  peak ${s.hwmMiB.toFixed(1)} MiB  heapUsed ${s.heapMiB.toFixed(1)} MiB` +
        `  old space ${s.oldMiB.toFixed(1)} MiB  major GCs ${s.majors}\n`,
    )
  }
  await sample()
  let sampling = Promise.resolve()
  const timer = setInterval(() => {
    sampling = sampling.then(sample, () => undefined)
  }, SAMPLE_MS)
  const deadline = started + MAX_MS
  const worker = async () => {
    while (sent < TOTAL && Date.now() < deadline && !exited) {
      const n = sent++
      try {
        const { statusCode, body } = await pool.request({
          method: 'GET',
          path: n % BIG_EVERY === 0 ? '/16k' : '/small',
        })
        await body.dump({ limit: Number.POSITIVE_INFINITY })
        if (statusCode !== 200) {
          errors++
          lastError = `status ${statusCode}`
        }
      } catch (err) {
        errors++
        lastError = err.message
      }
      done++
    }
  }
  await Promise.all(Array.from({ length: CONNS }, worker))
  clearInterval(timer)
  await sampling
  await sample()
  const secs = (Date.now() - started) / 1000
  process.stdout.write(
    `${done} requests in ${secs.toFixed(0)} s (${(done / secs).toFixed(0)} req/s), ${errors} errors\n`,
  )
  if (exited) fail(`the proxy exited during the soak${stderr ? `: ${stderr.trim()}` : ''}`)
  if (errors > 0) fail(`${errors} requests failed (last: ${lastError})`)
  if (done < TOTAL) fail(`only ${done} of ${TOTAL} requests within --max-seconds ${MAX_MS / 1000}`)
  const after = samples.filter((s) => s.done >= TOTAL * WARMUP)
  if (after.length < 8) fail(`only ${after.length} samples after the warm-up; lower --sample-secs`)
  // The old space rises by promotion and falls at each major GC (a saw-tooth, a few MiB high),
  // so RSS is compared peak to peak (first half after the warm-up against the second), and the
  // heap by the old space right after each major GC, which a leak raises and garbage does not.
  const half = Math.floor(after.length / 2)
  const rssBefore = max(after.slice(0, half), 'rssMiB')
  const rssAfter = max(after.slice(half), 'rssMiB')
  const rssGrowth = rssAfter - rssBefore
  const afterMajor = after.filter((s, i) => i > 0 && s.majors > after[i - 1].majors).map((s) => s.oldMiB)
  process.stdout.write(
    `after the warm-up: RSS peaks ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB (growth ` +
      `${rssGrowth.toFixed(1)}, bound ${MAX_RSS_MIB}); old space after each major GC: ` +
      `${afterMajor.length > 0 ? `${afterMajor.map((v) => v.toFixed(1)).join(', ')} MiB` : 'none'} (bound ${MAX_HEAP_MIB} above the first); ` +
      `peak RSS ${max(samples, 'hwmMiB').toFixed(1)} MiB\n`,
  )
  if (rssGrowth > MAX_RSS_MIB) fail(`RSS peaks grew ${rssGrowth.toFixed(1)} MiB after the warm-up`)
  if (afterMajor.length < 2) {
    process.stdout.write(
      'fewer than 2 major GCs after the warm-up: the heap is not judged (more --requests)\n',
    )
  } else if (afterMajor.at(-1) - afterMajor[0] > MAX_HEAP_MIB) {
    fail(`the old space after major GCs grew ${(afterMajor.at(-1) - afterMajor[0]).toFixed(1)} MiB`)
  }
  process.stdout.write('soak: memory flat\n')
}

function positive(opt, name) {
  const n = Number(opt[name])
  if (!Number.isInteger(n) || n <= 0) fail(`--${name} must be a positive integer`)
  return n
}

function bound(opt, name) {
  const n = Number(opt[name])
  if (!Number.isFinite(n) || n < 0) fail(`--${name} must be a number of MiB, 0 or more`)
  return n
}

function fail(message) {
  throw new Error(message)
}

function procKib(pid, field) {
  let text = ''
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return Number.NaN // the proxy is gone; the soak reports that
  }
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(text)
  return m ? Number(m[1]) : Number.NaN
}

/** One sample's value from Prometheus text (`name` with its labels, as written), NaN if absent. */
function gauge(text, name) {
  const at = text.indexOf(`\n${name} `)
  if (at < 0) return Number.NaN
  const end = text.indexOf('\n', at + 1)
  return Number(text.slice(at + name.length + 2, end < 0 ? undefined : end))
}

function max(rows, key) {
  return Math.max(...rows.map((r) => r[key]))
}

/** A free port on 127.0.0.1 (the proxy binds it a moment later). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address()
      s.close(() => resolve(p))
    })
  })
}

function get(p, urlPath) {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port: p, path: urlPath, agent: false, timeout: 5000 },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => {
          body += d
        })
        res.on('end', () => resolve({ status: res.statusCode, body }))
      },
    )
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', () => resolve({ status: 0, body: '' }))
  })
}

/** Polls `check` until it holds; `gone()` names why waiting is pointless (the proxy exited). */
async function until(check, ms, what, gone) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const why = gone()
    if (why) fail(why)
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  fail(`timed out waiting for ${what}`)
}
