// load_balancer.protocol: tcp: raw connections balanced over the group with the same strategies,
// failover past a refused server, health checks, TLS passed through untouched, half-close kept.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { ROOT, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { closedPort } from '../helpers/upstream'

const CERTS = path.join(ROOT, 'test', 'fixtures', 'guide', 'certs')

/** A TCP server that greets with its name, then echoes what it reads until the client ends. */
async function tcpServer(name: string) {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.write(`${name}:`)
    const chunks: Buffer[] = []
    s.on('data', (d) => chunks.push(d))
    // After the client's half-close, answer with everything read, then close.
    s.on('end', () => s.end(`echo(${Buffer.concat(chunks).toString()})`))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` }
}

function talk(port: number, send: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    let got = ''
    s.on('data', (d) => {
      got += d
    })
    s.on('end', () => resolve(got))
    s.on('error', reject)
    s.end(send)
  })
}

test('tcp: round robin over connections, refused server skipped, half-close passed through', async () => {
  const a = await tcpServer('a')
  const b = await tcpServer('b')
  const dead = await closedPort()
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  g: { servers: ["${a.address}", "127.0.0.1:${dead}", "${b.address}"], passive_health: { enabled: false } }
load_balancer: { upstream: g, protocol: tcp }
`)
  try {
    assert.ok(proxy.url.startsWith('tcp:'))
    const got: string[] = []
    for (let i = 0; i < 4; i++) got.push(await talk(proxy.port, `hello-${i}`))
    assert.deepEqual(got, ['a:echo(hello-0)', 'b:echo(hello-1)', 'b:echo(hello-2)', 'a:echo(hello-3)'])
    const line = await proxy.waitForLog(
      (l) => l.msg === 'connection' && l.server === a.address,
      'connection line',
    )
    assert.equal(line.upstream, 'g')
    assert.equal(line.bytes_in, 'hello-0'.length)
    assert.equal(line.bytes_out, 'a:echo(hello-0)'.length)
    // The log is read from the proxy's stdout as it arrives: wait for the line, not just look.
    await proxy.waitForLog(
      (l) => l.error_type === 'connect_failed' && l.retry === true,
      'retried connect failure',
    )
  } finally {
    await proxy.stop()
    a.server.close()
    b.server.close()
  }
})

test('tcp: TLS passes through untouched (the client sees the upstream certificate)', async () => {
  const tlsUp = https.createServer(
    { cert: readFileSync(path.join(CERTS, 'cert.pem')), key: readFileSync(path.join(CERTS, 'key.pem')) },
    (_req, res) => res.end('over tls'),
  )
  await new Promise<void>((r) => tlsUp.listen(0, '127.0.0.1', r))
  const port = (tlsUp.address() as net.AddressInfo).port
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  g: { servers: ["127.0.0.1:${port}"], health_check: { interval_secs: 5, timeout_secs: 1 } }
load_balancer: { upstream: g, protocol: tcp }
`)
  try {
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(
          {
            host: '127.0.0.1',
            port: proxy.port,
            path: '/',
            servername: 'localhost',
            ca: readFileSync(path.join(CERTS, 'cert.pem')),
          },
          (res) => {
            let b = ''
            res.on('data', (d) => {
              b += d
            })
            res.on('end', () => resolve(b))
          },
        )
        .on('error', reject)
    })
    assert.equal(body, 'over tls')
  } finally {
    await proxy.stop()
    tlsUp.close()
  }
})

test('tcp: no available server closes the connection; TLS termination is refused in config', async () => {
  const dead = await closedPort()
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  g: { servers: ["127.0.0.1:${dead}"], health_check: { interval_secs: 0.2, timeout_secs: 1 } }
load_balancer: { upstream: g, protocol: tcp }
`)
  try {
    await proxy.waitForLog((l) => String(l.msg).includes('unhealthy'), 'the server marked unhealthy')
    // With no server to join it to, the proxy closes the connection (a reset, as input is unread).
    const outcome = await talk(proxy.port, 'x').catch((e: NodeJS.ErrnoException) => e.code)
    assert.ok(outcome === '' || outcome === 'ECONNRESET', String(outcome))
    await proxy.waitForLog(
      (l) => l.msg === 'connection' && l.error_type === 'no_healthy_peer',
      'connection line',
    )
  } finally {
    await proxy.stop()
  }
  const { file } = writeConfig(`mode: load_balancer
server:
  tls: { cert_path: ${path.join(CERTS, 'cert.pem')}, key_path: ${path.join(CERTS, 'key.pem')} }
upstreams: { g: { servers: ["127.0.0.1:1"], hash_key: path, strategy: consistent_hash } }
load_balancer: { upstream: g, protocol: tcp }
`)
  const r = runCli(['validate', file])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /server\.tls: cannot be used with load_balancer\.protocol: tcp/)
  assert.match(
    r.stderr,
    /upstreams\.g\.hash_key: only client_ip can be used with load_balancer\.protocol: tcp/,
  )
})
