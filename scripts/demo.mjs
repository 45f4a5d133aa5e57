#!/usr/bin/env node
// `npm run demo` / `npm run demo:lb`: starts three json-server instances (ports 3001-3003) and
// the proxy (8484, control API 8485), prints what to try, and stops them all on Ctrl-C.
// Data files are copied to a temp dir, so writes through the demo never touch the repo.
// Failover: kill one json-server and the demo keeps running. It prints what the proxy sees
// (polling the control API's /api/v1/upstreams): the server out of rotation, then, once the
// demo has restarted it (RESTART_SECS later), back in.
import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const ex = path.join(root, 'examples', 'json-server')
const PIDFILE = path.join(root, '.demo.pids')
const mode = process.argv[2] === 'lb' ? 'lb' : 'gateway'
const services =
  mode === 'lb'
    ? [1, 2, 3].map((n) => ({ db: `db-lb-${n}.json`, port: 3000 + n }))
    : [
        { db: 'db-users.json', port: 3001 },
        { db: 'db-products.json', port: 3002 },
        { db: 'db-web.json', port: 3003 },
      ]
const config = path.join(ex, mode === 'lb' ? 'config-lb.yaml' : 'config-gateway.yaml')
const CONTROL = 'http://127.0.0.1:8485'
const RESTART_SECS = 10

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

async function waitOpen(port, what, ms = 15000) {
  const deadline = Date.now() + ms
  while (!(await portOpen(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not start listening on port ${port}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const busy = []
for (const p of [...services.map((s) => s.port), 8484, 8485]) if (!(await portFree(p))) busy.push(p)
if (busy.length) {
  console.error(`demo: port(s) ${busy.join(', ')} already in use. A demo still running? Try: npm run stop`)
  process.exit(1)
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'locci-demo-'))
const children = []
const timers = new Set()
let stopping = false

function stopAll(code) {
  if (stopping) return
  stopping = true
  for (const t of timers) clearTimeout(t)
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
  const done = () => {
    rmSync(PIDFILE, { force: true })
    rmSync(dataDir, { recursive: true, force: true })
    process.exit(code)
  }
  const left = () => children.filter((c) => c.exitCode === null && c.signalCode === null)
  const t0 = Date.now()
  const poll = setInterval(() => {
    if (left().length === 0 || Date.now() - t0 > 12000) {
      clearInterval(poll)
      for (const c of left()) c.kill('SIGKILL')
      done()
    }
  }, 50)
}

process.on('SIGINT', () => stopAll(0))
process.on('SIGTERM', () => stopAll(0))

/** The PIDs `npm run stop` signals: this runner first, then every child still tracked. */
function writePids() {
  writeFileSync(PIDFILE, `${[process.pid, ...children.map((c) => c.pid)].join('\n')}\n`)
}

const jsonServer = path.join(root, 'node_modules', 'json-server', 'lib', 'cli', 'bin.js')

/** Starts (or restarts) one json-server; if it dies, the demo says so and starts it again. */
function startService(s, slot) {
  const c = spawn(
    process.execPath,
    [jsonServer, path.join(dataDir, s.db), '--port', String(s.port), '--host', '127.0.0.1', '--quiet'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  c.on('exit', (code, signal) => {
    if (stopping) return
    console.error(
      `demo: json-server :${s.port} (pid ${c.pid}) exited (${signal ?? code}); the proxy keeps serving ` +
        `from the others. Restarting it in ${RESTART_SECS} s.`,
    )
    const t = setTimeout(() => {
      timers.delete(t)
      if (stopping) return
      startService(s, slot)
      console.error(`demo: json-server :${s.port} restarted (pid ${children[slot].pid})`)
    }, RESTART_SECS * 1000)
    timers.add(t)
  })
  children[slot] = c
  writePids()
}

services.forEach((s, i) => {
  copyFileSync(path.join(ex, s.db), path.join(dataDir, s.db))
  startService(s, i)
})
try {
  await Promise.all(services.map((s) => waitOpen(s.port, `json-server (${s.db})`)))
} catch (err) {
  console.error(`demo: ${err.message}`)
  stopAll(1)
}

const proxy = spawn(process.execPath, [path.join(root, 'bin', 'locci-proxy'), '-c', config], {
  stdio: 'inherit',
})
children.push(proxy)
writePids()
proxy.on('exit', (code, signal) => {
  if (!stopping) {
    console.error(`demo: the proxy exited unexpectedly (${code ?? signal}); stopping the demo`)
    stopAll(1)
  }
})
await waitOpen(8484, 'locci-proxy')
// What the proxy sees now, before anything can change: the baseline the failover messages compare to.
let first
for (const deadline = Date.now() + 15000; !first; ) {
  first = await rotation().catch(() => undefined)
  if (!first && Date.now() > deadline) {
    console.error(`demo: the control API (${CONTROL}) did not answer`)
    stopAll(1)
    await new Promise(() => undefined) // stopAll exits
  }
  if (!first) await new Promise((r) => setTimeout(r, 100))
}

const tries =
  mode === 'lb'
    ? [
        'npm run demo:curl-lb',
        'curl http://localhost:8484/instance',
        'curl http://localhost:8485/api/v1/upstreams',
      ]
    : [
        'curl http://localhost:8484/users      # -> users_service    (:3001)',
        'curl http://localhost:8484/products   # -> products_service (:3002)',
        'curl http://localhost:8484/pages      # -> web_service      (:3003)',
        'curl -i http://localhost:8484/nothing # -> 404, no route',
        'curl http://localhost:8485/api/v1/status',
      ]
process.stderr.write(
  `\nLocci Proxy ${mode} demo is up: proxy http://localhost:8484, control API http://localhost:8485\n` +
    `Try, in another terminal:\n${tries.map((t) => `  ${t}\n`).join('')}` +
    `Failover: kill one json-server (kill ${children[1].pid} stops :${services[1].port}) and watch this terminal.\n` +
    'Ctrl-C (or npm run stop) stops everything.\n\n',
)
for (const [key, srv] of first) if (!srv.serving) console.error(`demo: ${describe(key, srv)}`)
watchRotation(first)

/**
 * Prints every server that leaves or rejoins the rotation, as the control API reports it:
 * out when its health check fails (or passive health ejects it), back in when it passes again.
 */
function watchRotation(first) {
  let last = first
  const poll = async () => {
    if (stopping) return
    try {
      const now = await rotation()
      for (const [key, srv] of now) {
        const before = last.get(key)
        if (before && srv.serving !== before.serving) console.error(`demo: ${describe(key, srv)}`)
      }
      last = now
    } catch {
      // The control API is briefly unreachable (a reload, the end of the demo): try again.
    }
    const t = setTimeout(() => {
      timers.delete(t)
      poll()
    }, 500)
    timers.add(t)
  }
  poll()
}

/** Every server of every group, by "group address", with whether it is in rotation. */
async function rotation() {
  const { upstreams } = await (await fetch(`${CONTROL}/api/v1/upstreams`)).json()
  const all = new Map()
  for (const u of upstreams) {
    const serving = u.servers.filter((x) => x.healthy && !x.ejected).length
    for (const srv of u.servers) {
      all.set(`${u.name} ${srv.address}`, {
        serving: srv.healthy && !srv.ejected,
        healthy: srv.healthy,
        of: `${serving} of ${u.servers.length} serving`,
      })
    }
  }
  return all
}

function describe(key, srv) {
  if (srv.serving) return `${key} is back in rotation (${srv.of})`
  const why = srv.healthy ? 'ejected after failed requests (passive health)' : 'health check failed'
  return `${key} is out of rotation: ${why} (${srv.of})`
}
