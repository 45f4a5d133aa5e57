// server.workers > 1: the primary process forks N workers that share the listener (Node's
// cluster), replaces a worker that dies unexpectedly, and on SIGTERM/SIGINT waits for every
// worker to drain. Each worker runs a whole instance (instance.ts), control API included.

import cluster, { type Worker } from 'node:cluster'
import type { Snapshot } from '../config/snapshot'
import type { Logger } from '../observe/logger'

export interface Supervisor {
  stop(): Promise<void>
  /** Passes SIGHUP on: every worker reloads the config file itself. */
  reload(): void
}

export function superviseWorkers(snapshot: Snapshot, log: Logger): Promise<Supervisor> {
  let stopping = false
  const expected = snapshot.workers
  const fork = (): Worker => cluster.fork({ LOCCI_WORKER: '1' })
  let replaced = 0

  return new Promise((resolve, reject) => {
    let ready = 0
    let settled = false
    const onListening = () => {
      if (++ready === expected && !settled) {
        settled = true
        log.info({ workers: expected, pid: process.pid }, 'all workers listening')
        resolve({ stop, reload })
      }
    }
    cluster.on('listening', (w) => {
      // Each worker listens on the proxy port (and the control port); count the first.
      if (!(w as Worker & { counted?: boolean }).counted) {
        ;(w as Worker & { counted?: boolean }).counted = true
        onListening()
      }
    })
    cluster.on('exit', (w, code, signal) => {
      if (stopping) return
      if (!settled) {
        settled = true
        stopping = true
        for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM')
        reject(new Error(`worker ${w.id} exited during start (code ${code ?? signal})`))
        return
      }
      replaced++
      log.error({ worker: w.id, code, signal, replaced }, 'worker died; starting a replacement')
      fork()
    })
    for (let i = 0; i < expected; i++) fork()
  })

  function reload(): void {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP')
  }

  function stop(): Promise<void> {
    stopping = true
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
    return Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((done) => {
            if (w.isDead()) return done()
            w.once('exit', () => done())
            w.process.kill('SIGTERM')
          }),
      ),
    ).then(() => undefined)
  }
}
