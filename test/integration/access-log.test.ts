// logging.access_log end to end: the real binary writes nginx's combined layout to a file that
// GoAccess reads without a rejected line, reopens it on SIGUSR1 as logrotate expects, writes
// JSON with chosen fields to stdout, logs the HTTPS redirect listener's answers, follows a
// reload, and refuses an output it cannot write (at start and on reload) with the path named.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { WebSocket, WebSocketServer } from 'ws'
import { makeCert } from '../helpers/certs'
import { type RunningProxy, runCli, startProxy, writeConfig } from '../helpers/proxy'
import { rawRequest } from '../helpers/raw'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const hasGoAccess = spawnSync('goaccess', ['--version']).error === undefined

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .request(url, { method, headers }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      .on('error', reject)
      .end()
  })
}

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'latin1').split('\n').filter(Boolean) : []
}

describe('access_log: combined to a file', () => {
  let up: Upstream
  let proxy: RunningProxy
  let file: string
  before(async () => {
    up = await startUpstream('web')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
logging:
  level: info
  access_log: { format: combined, output: logs-access.log }
upstreams: { web: { servers: ["${up.address}"] } }
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: web }
`)
    file = path.join(proxy.dir, 'logs-access.log')
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('one line per request in the exact layout, hostile fields escaped, GoAccess reads every line', async () => {
    assert.equal(
      await get(`${proxy.url}/api/a?token=secret`, {
        'user-agent': 'Mozilla/5.0',
        referer: 'https://r.example/',
      }),
      200,
    )
    assert.equal(await get(`${proxy.url}/nothing`), 404)
    assert.equal(await get(`${proxy.url}/api/head`, {}, 'HEAD'), 200)
    // A User-Agent that tries to close the quotes and forge a second line (obs-text and quotes
    // are legal bytes in a field value; CR/LF are refused by the parser before any log).
    const answer = await rawRequest(
      proxy.port,
      Buffer.from(
        'GET /api/evil HTTP/1.1\r\nHost: x\r\nUser-Agent: a" 200 1 "-" "\xff\\\r\nConnection: close\r\n\r\n',
        'latin1',
      ),
    )
    assert.equal(answer.status, 200)
    const got = await until(() => (lines(file).length >= 4 ? lines(file) : undefined), 'four access lines')
    const clf =
      /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "([A-Z]+) (\S+) HTTP\/1\.1" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$/
    for (const l of got) assert.match(l, clf)
    assert.match(got[0]!, /"GET \/api\/a HTTP\/1\.1" 200 \d+ "https:\/\/r\.example\/" "Mozilla\/5\.0"$/)
    assert.ok(!got[0]!.includes('secret'), 'no query string unless include_query')
    assert.match(got[1]!, /"GET \/nothing HTTP\/1\.1" 404 \d+ "-" "-"$/)
    assert.match(got[2]!, /"HEAD \/api\/head HTTP\/1\.1" 200 - /)
    assert.ok(got[3]!.endsWith('"-" "a\\x22 200 1 \\x22-\\x22 \\x22\\xFF\\x5C"'), got[3])
    if (!hasGoAccess) {
      // CI installs GoAccess (.ci/run); a missing binary there is a failure, not a skip.
      assert.ok(!process.env.CI, 'goaccess is not installed')
      return
    }
    const report = path.join(proxy.dir, 'report.json')
    const r = spawnSync('goaccess', [file, '--log-format=COMBINED', '--no-global-config', '-o', report], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    assert.equal(r.status, 0, r.stderr)
    const general = JSON.parse(readFileSync(report, 'utf8')).general
    assert.equal(general.total_requests, got.length)
    assert.equal(general.valid_requests, got.length)
    assert.equal(general.failed_requests, 0)
  })

  test('SIGUSR1 reopens the file: lines after a logrotate-style rename go to the new file', async () => {
    await get(`${proxy.url}/api/before`)
    await until(() => lines(file).some((l) => l.includes('/api/before')) || undefined, 'the line before')
    renameSync(file, `${file}.1`)
    process.kill(proxy.child.pid!, 'SIGUSR1')
    await proxy.waitForLog((l) => l.msg === 'access log reopened', 'the reopen')
    await get(`${proxy.url}/api/after`)
    await until(
      () => lines(file).some((l) => l.includes('/api/after')) || undefined,
      'a line in the new file',
    )
    assert.ok(lines(`${file}.1`).some((l) => l.includes('/api/before')))
    assert.ok(!lines(`${file}.1`).some((l) => l.includes('/api/after')))
    assert.equal(proxy.child.exitCode, null, 'SIGUSR1 does not end the process')
  })
})

describe('access_log: json to stdout, fields, reload', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('web')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
logging:
  level: info
  access_log: { include_query: true, fields: [method, path, query, status, bytes_sent, attempts, upstream_time_ms, host, protocol] }
upstreams: { web: { servers: ["${up.address}"] } }
load_balancer: { upstream: web }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('only the chosen fields, in their order', async () => {
    assert.equal(await get(`${proxy.url}/x?a=1`), 200)
    const l = await proxy.waitForLog((j) => j.path === '/x', 'the access line')
    assert.deepEqual(Object.keys(l), [
      'method',
      'path',
      'query',
      'status',
      'bytes_sent',
      'attempts',
      'upstream_time_ms',
      'host',
      'protocol',
    ])
    assert.equal(l.query, 'a=1')
    assert.equal(l.attempts, 1)
    assert.equal(l.protocol, 'HTTP/1.1')
    assert.equal(l.host, `127.0.0.1:${proxy.port}`)
    assert.ok(Number(l.bytes_sent) > 0)
    assert.ok(Number(l.upstream_time_ms) >= 0)
  })

  test('a reload switches the layout; an output that cannot be written is refused and the old one stays', async () => {
    const yaml = readFileSync(proxy.configFile, 'utf8')
    writeFileSync(
      proxy.configFile,
      yaml.replace(/access_log: \{.*\}/, 'access_log: { format: text, fields: [method, path, status] }'),
    )
    process.kill(proxy.child.pid!, 'SIGHUP')
    await until(async () => {
      await get(`${proxy.url}/text`)
      return proxy.logs.some((j) => j.text === 'method=GET path=/text status=200') || undefined
    }, 'a text access line')
    writeFileSync(
      proxy.configFile,
      yaml.replace(/access_log: \{.*\}/, 'access_log: { output: /nonexistent-dir/a.log }'),
    )
    process.kill(proxy.child.pid!, 'SIGHUP')
    const refused = await proxy.waitForLog(
      (j) => JSON.stringify(j).includes('cannot write /nonexistent-dir/a.log'),
      'the refused reload',
    )
    assert.ok(refused)
    assert.equal(await get(`${proxy.url}/still`), 200)
  })
})

test('access_log: an output that cannot be written stops the start with the path named', async () => {
  const { file } = writeConfig(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
logging: { access_log: { output: /nonexistent-dir/access.log } }
upstreams: { web: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: web }
`)
  const r = runCli(['-c', file])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /logging\.access_log\.output: cannot write \/nonexistent-dir\/access\.log/)
})

test('access_log: fields with a fixed layout, and query without include_query, are refused with their line', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-al-'))
  const { file } = writeConfig(
    `mode: load_balancer
upstreams: { web: { servers: ["127.0.0.1:9"] } }
load_balancer: { upstream: web }
logging:
  access_log:
    format: common
    fields: [status]
`,
    'c.yaml',
    dir,
  )
  const r = runCli(['validate', file])
  assert.equal(r.status, 1)
  assert.match(
    r.stderr,
    /:7: logging\.access_log\.fields: applies to the json and text formats; common has a fixed layout/,
  )
  writeFileSync(
    file,
    readFileSync(file, 'utf8')
      .replace('format: common', 'format: json')
      .replace('[status]', '[status, query]'),
  )
  const q = runCli(['validate', file])
  assert.equal(q.status, 1)
  assert.match(q.stderr, /logging\.access_log\.fields: lists query, which needs include_query: true/)
})

describe('access_log: the HTTPS redirect listener is logged too', () => {
  let up: Upstream
  let proxy: RunningProxy
  let file: string
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'locci-al-tls-'))
    const cert = await makeCert(dir, 'a.test', ['a.test'])
    up = await startUpstream('web')
    proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  redirect_http_bind: "127.0.0.1:0"
  tls: { cert_path: ${cert.certPath}, key_path: ${cert.keyPath} }
logging:
  access_log: { format: common, output: access.log }
upstreams: { web: { servers: ["${up.address}"] } }
load_balancer: { upstream: web }
`)
    file = path.join(proxy.dir, 'access.log')
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('a 308 from the redirect listener has its line', async () => {
    const redirect = new URL(String(proxy.logs.find((l) => l.msg === 'locci-proxy listening')!.redirect_http))
    const status = await new Promise<number>((resolve, reject) =>
      http
        .get(
          { host: '127.0.0.1', port: redirect.port, path: '/r?x=1', headers: { host: 'a.test' } },
          (res) => {
            res.resume()
            resolve(res.statusCode ?? 0)
          },
        )
        .on('error', reject),
    )
    assert.equal(status, 308)
    const l = await until(() => lines(file).find((x) => x.includes('/r HTTP/1.1')), 'the redirect line')
    assert.match(l, /"GET \/r HTTP\/1\.1" 308 -$/)
  })
})

test("access_log with workers: SIGUSR1 to the primary reopens every worker's file", async () => {
  const up = await startUpstream('web')
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", workers: 2 }
logging: { access_log: { format: common, output: access.log } }
upstreams: { web: { servers: ["${up.address}"] } }
load_balancer: { upstream: web }
`)
  try {
    const file = path.join(proxy.dir, 'access.log')
    await get(`${proxy.url}/before`)
    await until(() => lines(file).some((l) => l.includes('/before')) || undefined, 'the line before')
    renameSync(file, `${file}.1`)
    process.kill(proxy.child.pid!, 'SIGUSR1')
    // Each request goes to whichever worker accepts it: enough of them reach both.
    await until(async () => {
      await Promise.all(Array.from({ length: 8 }, () => get(`${proxy.url}/after`)))
      const pids = new Set(proxy.logs.filter((l) => l.msg === 'access log reopened').map((l) => l.pid))
      return pids.size === 2 || undefined
    }, 'both workers reopening')
    // From now on every worker writes to the new file only.
    await Promise.all(Array.from({ length: 8 }, () => get(`${proxy.url}/late`)))
    await until(
      () => lines(file).filter((l) => l.includes('/late')).length === 8 || undefined,
      'eight late lines',
    )
    assert.ok(!lines(`${file}.1`).some((l) => l.includes('/late')))
  } finally {
    await proxy.stop()
    await up.close()
  }
})

test('access_log: a WebSocket tunnel has its bytes, attempts and upstream time', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((r) => wss.once('listening', r))
  wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })))
  const port = (wss.address() as { port: number }).port
  const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
logging:
  level: info
  access_log: { fields: [path, status, bytes_received, bytes_sent, attempts, upstream_time_ms] }
upstreams: { ws: { servers: ["127.0.0.1:${port}"] } }
load_balancer: { upstream: ws }
`)
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`)
    await new Promise((r, j) => ws.once('open', r).once('error', j))
    const got = new Promise((r) => ws.once('message', r))
    ws.send(Buffer.alloc(10_000, 1))
    await got
    ws.close()
    const l = await proxy.waitForLog((j) => j.path === '/chat', 'the WebSocket access line')
    assert.equal(l.status, 101)
    assert.equal(l.attempts, 1)
    assert.ok(Number(l.upstream_time_ms) >= 0)
    // 10,000 bytes each way in frames (the client's masked), plus the close frames; no heads.
    assert.ok(
      Number(l.bytes_received) >= 10_000 && Number(l.bytes_received) < 10_100,
      `received ${l.bytes_received}`,
    )
    assert.ok(Number(l.bytes_sent) >= 10_000 && Number(l.bytes_sent) < 10_100, `sent ${l.bytes_sent}`)
  } finally {
    await proxy.stop()
    wss.close()
  }
})
