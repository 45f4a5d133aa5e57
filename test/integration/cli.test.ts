// The command line as a user meets it: validate, --help/--version, precedence of flags over
// environment over file, .env loading, refusing to start on a bad file, graceful shutdown.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { BIN, ROOT, runCli, spawnProxy, startProxy, writeConfig } from '../helpers/proxy'
import { until } from '../helpers/until'
import { closedPort, startUpstream } from '../helpers/upstream'

const GUIDE = path.join(ROOT, 'test', 'fixtures', 'guide')

describe('locci-proxy validate', () => {
  test('a good file: exit 0 and a one-line summary', () => {
    const r = runCli(['validate', path.join(GUIDE, 'gateway.yaml')])
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /gateway\.yaml: OK \(mode api_gateway, 3 upstreams, 3 routes\)/)
  })

  test('a bad file: exit 1 and every problem with file:line: key path', () => {
    const { file } = writeConfig(`mode: load_balancer
server:
  bind_address: "0.0.0.0:8484"
upstreams:
  users:
    servers:
      - "127.0.0.1:3001"
      - "http://127.0.0.1:3002"
load_balancer:
  upstream: orders
`)
    const r = runCli(['validate', file])
    assert.equal(r.status, 1)
    assert.match(r.stderr, /invalid configuration \(2 problems\)/)
    assert.ok(
      r.stderr.includes(`${file}:8: upstreams.users.servers[1]: must be host:port without a scheme`),
      r.stderr,
    )
    assert.ok(
      r.stderr.includes(`${file}:10: load_balancer.upstream: upstream "orders" is not defined`),
      r.stderr,
    )
  })

  test('-c and LOCCI_CONFIG pick the file when validate gets none', () => {
    assert.equal(runCli(['-c', path.join(GUIDE, 'gateway.yaml'), 'validate']).status, 0)
    const env = runCli(['validate'], { env: { LOCCI_CONFIG: path.join(GUIDE, 'load-balancer.yaml') } })
    assert.equal(env.status, 0, env.stderr)
    assert.match(env.stdout, /load-balancer\.yaml: OK \(mode load_balancer/)
    const none = runCli(['validate'], { cwd: GUIDE })
    assert.equal(none.status, 1)
    assert.match(none.stderr, /config\.yaml: config file not found/)
  })

  test('--mode overrides the file (and an unknown mode is refused)', () => {
    const r = runCli(['--mode', 'lb', 'validate', path.join(GUIDE, 'gateway.yaml')])
    assert.equal(r.status, 1)
    assert.match(r.stderr, /load_balancer: is required when mode is load_balancer/)
    const bad = runCli(['--mode', 'fast', 'validate', path.join(GUIDE, 'gateway.yaml')])
    assert.equal(bad.status, 1)
    assert.match(bad.stderr, /--mode: unknown mode "fast"; use lb or gateway/)
  })
})

test('--help lists the options and commands; --version prints the version', () => {
  const help = runCli(['--help'])
  assert.equal(help.status, 0)
  for (const s of ['--config', '--mode', '--bind', '--log-level', 'start', 'validate'])
    assert.ok(help.stdout.includes(s), s)
  const v = runCli(['-V'])
  assert.equal(v.status, 0)
  assert.match(v.stdout.trim(), /^\d+\.\d+\.\d+/)
})

test('start refuses a bad file with its problems and exits non-zero', () => {
  const { file } = writeConfig(
    'mode: api_gateway\nupstreams: {}\napi_gateway:\n  routes:\n    r: { path_pattern: "^/", upstream: missing }\n',
  )
  const r = runCli(['-c', file])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /api_gateway\.routes\.r\.upstream: upstream "missing" is not defined/)
})

test('start refuses a port already in use with a clear message', async () => {
  const up = await startUpstream('u')
  try {
    const { file } = writeConfig(
      `mode: load_balancer\nserver: { bind_address: "127.0.0.1:${up.port}" }\nupstreams: { u: { servers: ["${up.address}"] } }\nload_balancer: { upstream: u }\n`,
    )
    const r = runCli(['-c', file])
    assert.equal(r.status, 1)
    assert.match(r.stderr, new RegExp(`cannot listen on 127.0.0.1:${up.port}: address already in use`))
  } finally {
    await up.close()
  }
})

test('precedence: --bind > LOCCI_BIND > file; LOG_LEVEL from .env unless the shell sets it', async () => {
  const up = await startUpstream('u')
  const yaml = `mode: load_balancer
server: { bind_address: "127.0.0.1:1" }
logging: { level: info }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`
  const { dir, file } = writeConfig(yaml)
  const envPort = await closedPort()
  writeFileSync(path.join(dir, '.env'), `LOCCI_BIND=127.0.0.1:${envPort}\nLOG_LEVEL=warn\n`)
  try {
    // .env supplies LOCCI_BIND and LOG_LEVEL=warn: the proxy serves on the .env port and its
    // info lines (the listening line among them) are not printed.
    const p1 = await spawnProxy(['-c', file], { cwd: dir, waitReady: false })
    await until(
      () =>
        fetch(`http://127.0.0.1:${envPort}/`).then(
          (r) => r.status === 200,
          () => false,
        ),
      'the proxy to serve on the .env port',
    )
    await p1.stop()
    assert.equal(p1.logs.filter((l) => l.msg === 'locci-proxy listening').length, 0, 'LOG_LEVEL=warn applied')

    const p2 = await spawnProxy(['-c', file], { cwd: dir, env: { LOG_LEVEL: 'info' } })
    assert.notEqual(p2.port, 1, 'LOCCI_BIND from .env beat the file')
    assert.equal((await fetch(`${p2.url}/`)).status, 200)
    await p2.stop()

    const p3 = await spawnProxy(['-c', file, '--bind', '127.0.0.1:0', '--log-level', 'debug'], {
      cwd: dir,
      env: { LOCCI_BIND: '127.0.0.1:1' },
    })
    assert.notEqual(p3.port, 1, '--bind beat LOCCI_BIND')
    await p3.stop()
  } finally {
    await up.close()
  }
})

test('SIGTERM lets an in-flight request finish, then exits 0', async () => {
  const up = await startUpstream('u')
  up.behaviour = { kind: 'delay', ms: 800 }
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", shutdown_timeout_secs: 10 }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`)
  try {
    const pending = fetch(`${proxy.url}/slow`).then(async (r) => ({ status: r.status, body: await r.text() }))
    await until(() => up.seen.length === 1, 'the request to reach the upstream')
    proxy.child.kill('SIGTERM')
    await proxy.waitForLog((l) => l.msg === 'shutting down', 'shutting down')
    const res = await pending
    assert.equal(res.status, 200)
    assert.match(res.body, /"server":"u"/)
    assert.equal(await proxy.exited, 0)
    // New connections are refused once draining began.
    await assert.rejects(fetch(`${proxy.url}/late`))
  } finally {
    await proxy.stop()
    await up.close()
  }
})

test('the shutdown grace period bounds how long a stuck request can hold the exit', async () => {
  const up = await startUpstream('u')
  up.behaviour = { kind: 'delay', ms: 30_000 }
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", shutdown_timeout_secs: 0.5 }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`)
  try {
    const pending = fetch(`${proxy.url}/stuck`).catch(() => 'cut')
    await until(() => up.seen.length === 1, 'the request to reach the upstream')
    const t0 = Date.now()
    proxy.child.kill('SIGTERM')
    assert.equal(await proxy.exited, 0)
    assert.ok(Date.now() - t0 < 10_000)
    assert.equal(await pending, 'cut')
    assert.ok(proxy.logs.some((l) => l.msg === 'grace period over; closing remaining connections'))
  } finally {
    await proxy.stop()
    await up.close()
  }
})

test('logging.format: text writes key=value lines', async () => {
  const up = await startUpstream('u')
  const proxy = await startProxy(
    `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
logging: { format: text }
upstreams: { u: { servers: ["${up.address}"] } }
load_balancer: { upstream: u }
`,
    { waitReady: false },
  )
  try {
    const ready = await proxy.waitForLog(
      (l) => String(l.text).includes('msg="locci-proxy listening"'),
      'listening',
    )
    const port = Number(/bind=http:\/\/127\.0\.0\.1:(\d+)/.exec(String(ready.text))![1])
    await (await fetch(`http://127.0.0.1:${port}/t?x=1`)).text()
    const line = await proxy.waitForLog((l) => String(l.text).includes('msg=request'), 'access line')
    assert.match(
      String(line.text),
      /^time=\S+ level=info msg=request .*method=GET path=\/t .*status=200 duration_ms=[\d.]+ request_id=[0-9a-f-]{36}/,
    )
  } finally {
    await proxy.stop()
    await up.close()
  }
})

describe('a log reader that goes away (stdout a closed pipe)', () => {
  // The flush at exit used to retry the broken pipe forever (sonic-boom 4's flushSync): SIGTERM,
  // and the second one too, left the process running. Now the lines are dropped and it exits.
  for (const requests of [0, 3]) {
    test(`SIGTERM still exits 0 (${requests} requests logged into the closed pipe first)`, async () => {
      const up = await startUpstream('a')
      const { file } = writeConfig(
        `mode: load_balancer\nserver: {bind_address: "127.0.0.1:0"}\nlogging: {level: info}\nupstreams:\n  web: {servers: ["${up.address}"]}\nload_balancer: {upstream: web}\n`,
      )
      const child = spawn(process.execPath, [BIN, '-c', file], { stdio: ['ignore', 'pipe', 'ignore'] })
      try {
        let seen = ''
        child.stdout.setEncoding('utf8')
        child.stdout.on('data', (d: string) => {
          seen += d
        })
        const bind = await until(
          () => /"bind":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(seen)?.[1],
          'the listening line',
          15_000,
        )
        child.stdout.destroy() // the reader is gone: the proxy's next write gets EPIPE
        for (let i = 0; i < requests; i++) assert.equal((await fetch(`${bind}/x`)).status, 200)
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
        child.kill('SIGTERM')
        const code = await Promise.race([
          exited,
          new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 20_000).unref()),
        ])
        assert.equal(code, 0)
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL')
        await up.close()
      }
    })
  }
})
