// Spawns the real bin/locci-proxy on a config written to a temp dir, collects its stdout log
// lines (parsed when JSON), and stops it by PID. Ports are ephemeral: the proxy binds port 0 and
// the test reads the real port from the "locci-proxy listening" line.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { until } from './until'

export const ROOT = path.resolve(__dirname, '..', '..', '..')
export const BIN = path.join(ROOT, 'bin', 'locci-proxy')

export type LogLine = Record<string, unknown> & { msg?: string; level?: string }

export interface RunningProxy {
  child: ChildProcess
  port: number
  controlPort: number | undefined
  url: string
  controlUrl: string | undefined
  /** Every stdout line parsed as JSON (text lines are kept as { text }). */
  logs: LogLine[]
  stderr: () => string
  dir: string
  configFile: string
  waitForLog(pred: (l: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
  exited: Promise<number | null>
}

export function writeConfig(yaml: string, name = 'config.yaml', dir?: string): { dir: string; file: string } {
  const d = dir ?? mkdtempSync(path.join(tmpdir(), 'locci-test-'))
  const file = path.join(d, name)
  writeFileSync(file, yaml)
  return { dir: d, file }
}

export interface SpawnOptions {
  args?: string[]
  env?: Record<string, string>
  cwd?: string
  /** Wait for the listening line (default true). */
  waitReady?: boolean
  /** Run this executable instead of `node bin/locci-proxy` (the single executable). */
  bin?: string
}

export async function startProxy(yaml: string, opts: SpawnOptions = {}): Promise<RunningProxy> {
  const { dir, file } = writeConfig(yaml)
  return spawnProxy(['-c', file, ...(opts.args ?? [])], { ...opts, cwd: opts.cwd ?? dir }, dir, file)
}

export async function spawnProxy(
  args: string[],
  opts: SpawnOptions,
  dir = opts.cwd ?? ROOT,
  configFile = '',
): Promise<RunningProxy> {
  const child = spawn(opts.bin ?? process.execPath, opts.bin ? args : [BIN, ...args], {
    cwd: opts.cwd ?? dir,
    env: { ...cleanEnv(), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: LogLine[] = []
  let err = ''
  let buf = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (d: string) => {
    buf += d
    let nl = buf.indexOf('\n')
    while (nl >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      try {
        logs.push(JSON.parse(line))
      } catch {
        logs.push({ text: line })
      }
      nl = buf.indexOf('\n')
    }
  })
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (d: string) => {
    err += d
  })
  let exitCode: number | null | undefined
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code
      resolve(code)
    }),
  )
  const waitForLog = (pred: (l: LogLine) => boolean, what: string, timeoutMs = 30_000) =>
    until(
      () => {
        const found = logs.find(pred)
        if (found) return found
        if (exitCode !== undefined)
          throw new Error(`proxy exited (${exitCode}) before ${what}; stderr: ${err}`)
        return undefined
      },
      what,
      timeoutMs,
    )
  const proxy: RunningProxy = {
    child,
    port: 0,
    controlPort: undefined,
    url: '',
    controlUrl: undefined,
    logs,
    stderr: () => err,
    dir,
    configFile,
    waitForLog,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (exitCode === undefined) child.kill(signal)
      return exited
    },
  }
  if (opts.waitReady !== false) {
    // A proxy that never says it is listening is stopped: left running, it would keep the test
    // file (and the whole run) from ever finishing.
    const ready = await waitForLog((l) => l.msg === 'locci-proxy listening', 'the listening line').catch(
      async (err: Error) => {
        await proxy.stop('SIGKILL')
        throw err
      },
    )
    const bind = new URL(String(ready.bind))
    proxy.port = Number(bind.port)
    proxy.url = `${bind.protocol}//127.0.0.1:${proxy.port}`
    if (typeof ready.control_api === 'string') {
      proxy.controlPort = Number(new URL(ready.control_api).port)
      proxy.controlUrl = `http://127.0.0.1:${proxy.controlPort}`
    }
  }
  return proxy
}

/** Runs the CLI to completion (validate, --help, a start that must fail). */
export function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...cleanEnv(), ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 20_000,
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/**
 * The test runner's environment without variables that would steer the proxy. LOCCI_UPSTREAM_CLIENT
 * stays: scripts/run-tests.mjs runs the forwarding tests again with it set to undici.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const k of ['LOCCI_CONFIG', 'LOCCI_MODE', 'LOCCI_BIND', 'LOG_LEVEL', 'LOCCI_API_KEY', 'NODE_OPTIONS'])
    delete env[k]
  return env
}

/**
 * Starts a proxy whose config sets `server.workers: n` and waits until each worker listens;
 * `url` and `controlUrl` are the first worker's (they share the listeners). Stopped if it never
 * gets there, like spawnProxy.
 */
export async function startWorkers(yaml: string, n = 2): Promise<RunningProxy> {
  const proxy = await startProxy(yaml, { waitReady: false })
  try {
    await proxy.waitForLog((l) => l.msg === 'all workers listening', 'workers', 20_000)
    const ready = await until(() => {
      const lines = proxy.logs.filter((l) => l.msg === 'locci-proxy listening')
      return lines.length === n ? lines : undefined
    }, 'every listening line')
    proxy.url = String(ready[0]!.bind)
    if (ready[0]!.control_api !== undefined) proxy.controlUrl = String(ready[0]!.control_api)
    return proxy
  } catch (err) {
    await proxy.stop('SIGKILL')
    throw err
  }
}
