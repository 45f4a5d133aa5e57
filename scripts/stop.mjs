#!/usr/bin/env node
// `npm run stop`: stops the processes a demo started, by the PIDs it recorded in .demo.pids.
import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'

const PIDFILE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '.demo.pids')
let pids
try {
  pids = readFileSync(PIDFILE, 'utf8').split('\n').filter(Boolean).map(Number)
} catch {
  console.log('stop: no demo is running (no .demo.pids)')
  process.exit(0)
}
let stopped = 0
// The first PID is the demo runner: signalling it stops its children and cleans up.
for (const pid of pids) {
  try {
    process.kill(pid, 'SIGTERM')
    stopped++
  } catch {
    // Already gone.
  }
}
rmSync(PIDFILE, { force: true })
console.log(`stop: signalled ${stopped} demo process(es)`)
