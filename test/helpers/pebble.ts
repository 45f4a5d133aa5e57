// A real ACME server for tests: Pebble (Debian's `pebble` package, Let's Encrypt's test CA) with
// pebble-challtestsrv as its DNS server (every name resolves to 127.0.0.1). Pebble validates
// challenges on the ports given here (the proxy's), so the caller picks them first. Its own
// HTTPS certificate is made here; the proxy trusts it through NODE_EXTRA_CA_CERTS. Stopped by PID.

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { makeCert } from './certs'
import { portOpen, until } from './until'
import { closedPort } from './upstream'

export interface RunningPebble {
  directoryUrl: string
  /** Pebble's own TLS certificate (PEM file): NODE_EXTRA_CA_CERTS for the proxy. */
  caFile: string
  /** Orders Pebble has accepted (its log). */
  orders(): number
  /** The root its certificates chain to (management /roots/0). */
  root(): Promise<string>
  stop(): Promise<void>
}

export interface PebbleOptions {
  /** Where Pebble connects for HTTP-01 (the proxy's redirect_http_bind port). */
  httpPort: number
  /** Where Pebble connects for TLS-ALPN-01 (the proxy's TLS port). */
  tlsPort: number
  /** Validity of issued certificates, seconds (Pebble's default is 5 years). */
  validitySecs?: number
}

function spawnTool(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d
  })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    out += d
  })
  const failed = new Promise<never>((_, reject) =>
    child.once('error', (e) =>
      reject(new Error(`cannot start ${cmd} (apt-get install pebble): ${e.message}`)),
    ),
  )
  failed.catch(() => undefined)
  return { child, out: () => out, failed }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  await exited
}

export async function startPebble(o: PebbleOptions): Promise<RunningPebble> {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-pebble-'))
  const cert = await makeCert(dir, 'localhost', ['localhost'])
  const [acmePort, mgmtPort, dnsPort, dnsMgmtPort] = [
    await closedPort(),
    await closedPort(),
    await closedPort(),
    await closedPort(),
  ]
  const dns = spawnTool('pebble-challtestsrv', [
    '-defaultIPv4',
    '127.0.0.1',
    '-defaultIPv6',
    '',
    '-dns01',
    `127.0.0.1:${dnsPort}`,
    '-http01',
    '',
    '-https01',
    '',
    '-tlsalpn01',
    '',
    '-management',
    `127.0.0.1:${dnsMgmtPort}`,
  ])
  await Promise.race([dns.failed, until(() => portOpen(dnsMgmtPort), 'pebble-challtestsrv to listen')])
  const config = path.join(dir, 'pebble.json')
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: cert.certPath,
        privateKey: cert.keyPath,
        httpPort: o.httpPort,
        tlsPort: o.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(o.validitySecs ? { certificateValidityPeriod: o.validitySecs } : {}),
      },
    }),
  )
  const pebble = spawnTool('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
    ...process.env,
    // No random sleep before validation, no nonce rejection drills, no authorization reuse
    // (every order is validated, so each test sees its challenge answered).
    PEBBLE_VA_NOSLEEP: '1',
    PEBBLE_WFE_NONCEREJECT: '0',
    PEBBLE_AUTHZREUSE: '0',
  })
  try {
    await Promise.race([pebble.failed, until(() => portOpen(acmePort), 'pebble to listen')])
  } catch (err) {
    await stopChild(pebble.child)
    await stopChild(dns.child)
    throw err
  }
  return {
    directoryUrl: `https://localhost:${acmePort}/dir`,
    caFile: cert.certPath,
    orders: () => (pebble.out().match(/POST \/order-plz/g) ?? []).length,
    root: () =>
      new Promise((resolve, reject) => {
        https
          .get(`https://127.0.0.1:${mgmtPort}/roots/0`, { ca: cert.cert, servername: 'localhost' }, (res) => {
            let body = ''
            res.setEncoding('utf8').on('data', (d: string) => {
              body += d
            })
            res.on('end', () => resolve(body))
          })
          .on('error', reject)
      }),
    stop: async () => {
      await stopChild(pebble.child)
      await stopChild(dns.child)
    },
  }
}
