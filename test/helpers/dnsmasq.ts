// A real DNS server for tests: Debian's dnsmasq on 127.0.0.1 and a free high port, answering
// from a hosts file the test rewrites (SIGHUP to its PID re-reads it) and SRV records from a
// config file (read at start: `restart()` after changing them). `--local=/test/` makes it the
// authority for *.test: an unknown name is NXDOMAIN, not REFUSED.

import { type ChildProcess, spawn } from 'node:child_process'
import dgram from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { until } from './until'
import { closedPort } from './upstream'

export interface Dnsmasq {
  port: number
  /** `127.0.0.1:port`, for `resolver:`. */
  address: string
  /** Rewrites the hosts file (`ip name` lines) and tells dnsmasq to read it again. */
  setHosts(lines: readonly string[]): Promise<void>
  /** `srv-host=` values; takes effect at the next restart(). */
  setSrv(records: readonly string[]): void
  stop(): Promise<void>
  /** Starts it again on the same port with the current files. */
  restart(): Promise<void>
}

/**
 * A port free for both UDP and TCP on 127.0.0.1: closedPort()'s (below the ephemeral range, so
 * no listen(0) or outgoing connection of a test running beside this one takes it), checked for
 * UDP too.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await closedPort()
    const udp = dgram.createSocket('udp4')
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false))
      udp.bind(port, '127.0.0.1', () => resolve(true))
    })
    await new Promise<void>((resolve) => (ok ? udp.close(() => resolve()) : resolve()))
    if (ok) return port
  }
}

export async function startDnsmasq(
  hosts: readonly string[],
  srv: readonly string[] = [],
  opts: { ttl?: number } = {},
): Promise<Dnsmasq> {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-dns-'))
  const hostsFile = path.join(dir, 'hosts')
  const confFile = path.join(dir, 'dnsmasq.conf')
  // Always there, so readiness can be asked for whatever the test's names are.
  const write = (lines: readonly string[]) =>
    writeFileSync(hostsFile, `127.0.0.1 ready.test\n${lines.join('\n')}\n`)
  const writeSrv = (records: readonly string[]) =>
    writeFileSync(confFile, records.map((r) => `srv-host=${r}\n`).join(''))
  write(hosts)
  writeSrv(srv)
  let child: ChildProcess | undefined
  let port = 0

  const launch = async (p: number): Promise<boolean> => {
    const c = spawn(
      'dnsmasq',
      [
        '--no-daemon',
        `--port=${p}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        `--addn-hosts=${hostsFile}`,
        `--local-ttl=${opts.ttl ?? 1}`,
        '--local=/test/',
        `--conf-file=${confFile}`,
        '--pid-file=',
        '--cache-size=0',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let exited = false
    c.once('exit', () => {
      exited = true
    })
    c.stderr!.resume()
    const r = new Resolver({ timeout: 200, tries: 1 })
    r.setServers([`127.0.0.1:${p}`])
    const up = await until(
      async () => {
        if (exited) return 'exited'
        return (await r.resolve4('ready.test').then(
          () => true,
          () => false,
        ))
          ? 'up'
          : false
      },
      'dnsmasq answering',
      10_000,
    )
    if (up === 'up') {
      child = c
      return true
    }
    return false
  }

  // The port may be taken between finding it and dnsmasq binding it: try another.
  for (let i = 0; i < 5 && child === undefined; i++) {
    const p = await freePort()
    if (await launch(p)) port = p
  }
  if (child === undefined) throw new Error('dnsmasq did not start')

  const stop = async () => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null) return
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve())
      c.kill('SIGTERM')
    })
  }
  return {
    port,
    address: `127.0.0.1:${port}`,
    async setHosts(lines) {
      write(lines)
      child?.kill('SIGHUP')
    },
    setSrv: writeSrv,
    stop,
    async restart() {
      await stop()
      if (!(await launch(port))) throw new Error(`dnsmasq did not start again on port ${port}`)
    },
  }
}
