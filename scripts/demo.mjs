#!/usr/bin/env node
// `npm run demo` / `npm run demo:lb`: starts three json-server instances (ports 3001-3003) and
// the proxy (8484, control API 8485), prints what to try, and stops them all on Ctrl-C.
// Data files are copied to a temp dir, so writes through the demo never touch the repo.
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
let stopping = false

function stopAll(code) {
  if (stopping) return
  stopping = true
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

const jsonServer = path.join(root, 'node_modules', 'json-server', 'lib', 'cli', 'bin.js')
for (const s of services) {
  const db = path.join(dataDir, s.db)
  copyFileSync(path.join(ex, s.db), db)
  const c = spawn(
    process.execPath,
    [jsonServer, db, '--port', String(s.port), '--host', '127.0.0.1', '--quiet'],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  )
  children.push(c)
}
writeFileSync(PIDFILE, `${[process.pid, ...children.map((c) => c.pid)].join('\n')}\n`)
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
writeFileSync(PIDFILE, `${[process.pid, ...children.map((c) => c.pid)].join('\n')}\n`)
for (const c of children) {
  c.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`demo: a process exited unexpectedly (${code ?? signal}); stopping the demo`)
      stopAll(1)
    }
  })
}
await waitOpen(8484, 'locci-proxy')

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
    `Try, in another terminal:\n${tries.map((t) => `  ${t}\n`).join('')}Ctrl-C (or npm run stop) stops everything.\n\n`,
)
