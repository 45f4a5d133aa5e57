// A real redis-server for tests (Debian's package; .ci/run installs it), on a free port, with
// no persistence, stopped by PID.

import { type ChildProcess, spawn } from 'node:child_process'
import { portOpen, until } from './until'
import { closedPort } from './upstream'

export interface RunningRedis {
  port: number
  url: string
  child: ChildProcess
  stop(): Promise<void>
}

/**
 * `port`: a given one (a restart on the same address); `args` are added to redis-server's
 * (`--requirepass`, persistence in a directory of the test's).
 */
export async function startRedis(o: { port?: number; args?: string[] } = {}): Promise<RunningRedis> {
  const port = o.port ?? (await closedPort())
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(o.args ?? [])],
    {
      stdio: 'ignore',
    },
  )
  const failed = new Promise<never>((_, reject) =>
    child.once('error', (e) =>
      reject(new Error(`cannot start redis-server (apt-get install redis-server): ${e.message}`)),
    ),
  )
  await Promise.race([failed, until(() => portOpen(port), 'redis-server to listen')])
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}
