#!/usr/bin/env node
// `npm run bench`: requests/s and p50/p99 latency, direct to an origin vs through Locci Proxy
// (load_balancer and api_gateway modes, per-request logging on), on this machine. Uses wrk when
// installed, else autocannon (npm). Everything runs on 127.0.0.1 and stops by itself.
//   BENCH_DURATION=10 BENCH_CONNECTIONS=50 npm run bench
//   BENCH_ONLY='^api_gateway$' npm run bench     (only the proxy scenarios whose label matches;
//                                                 'nginx' selects the nginx rows, shown when installed)
//   BENCH_ONLY=grpc npm run bench   (gRPC unary calls/s direct vs through the proxy only)
//   BENCH_PAIRS=5 npm run bench     (the target ratios measured by turns, that many times each: cache
//                                    hit vs nginx, 50 routes + three middlewares vs load_balancer,
//                                    workers: 2 vs one process)
//   BENCH_PROFILE=1 npm run bench   (also: CPU µs per request by stage, from `node --cpu-prof`, for
//                                    load_balancer, api_gateway + all three, and 50 routes + all three)
import { spawn, spawnSync } from 'node:child_process'
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import bcrypt from 'bcryptjs'
import { SignJWT } from 'jose'
import { stagesOf, stageTable } from './profile-stages.mjs'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const DURATION = Number(process.env.BENCH_DURATION ?? 10)
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 50)
// Profiling is opt-in: the profiler's own cost shows in the profiled rows' CPU and RSS.
const PROFILE = !['', '0', undefined].includes(process.env.BENCH_PROFILE)
const PROFILED = new Set(['load_balancer', 'api_gateway + all three', 'api_gateway, 50 routes + all three'])
// The Node flags bin/locci-proxy's first line gives (`#!/usr/bin/env -S node FLAGS`): the proxy
// is measured as it runs for users, though started through process.execPath (for --cpu-prof).
const LAUNCHER_FLAGS =
  /^#!\S*env -S node(.*)$/m
    .exec(readFileSync(path.join(root, 'bin', 'locci-proxy'), 'utf8').split('\n')[0])?.[1]
    .trim()
    .split(/\s+/)
    .filter(Boolean) ?? []
const useWrk = spawnSync('wrk', ['--version']).error === undefined
// nginx, when installed, proxies the same origin in rows of its own: the reference the cache
// row is held against (the shared peer benchmark's nginx config: one worker, a keep-alive pool
// to the origin, no access log; and the same with a buffered access log).
const hasNginx = spawnSync('nginx', ['-v']).error === undefined
const NGINX_NO_LOG = 'nginx (1 worker, no access log)'
const NGINX_LOG = 'nginx (1 worker, buffered access log)'
const CACHE_HIT = 'api_gateway + cache (hit)'
/** How many times each pair of BY_TURNS is measured by turns (the ratios' lines). */
const PAIRS = Number(process.env.BENCH_PAIRS ?? 5)
/**
 * The ratios the performance targets are stated in, [what, target, reference]: a row's CPU per
 * request against another's, measured by turns (one run of each, PAIRS times) because single rows
 * are at the mercy of a shared box's slow phases (a 2-core VM's CPU cost per request moves by up
 * to 1.5x from one minute to the next, and rows run minutes apart). NGINX is nginx proxying the
 * same origin without an access log.
 */
const NGINX = 'nginx'
const LB_SAME_REQUESTS = "load_balancer, with the chain's request headers"
const BY_TURNS = [
  ['cache', CACHE_HIT, NGINX],
  ['50 routes + cors, authentication, rate_limiting', 'api_gateway, 50 routes + all three', 'load_balancer'],
  // The same, against load_balancer mode sent the very requests the chain gets (an API key, a
  // bearer token and an Origin): what the gateway's routing and middlewares cost, apart from
  // reading and forwarding ~200 more request bytes, which load_balancer mode pays as well.
  [
    '50 routes + all three, load_balancer sent the same requests',
    'api_gateway, 50 routes + all three',
    LB_SAME_REQUESTS,
  ],
  ['load_balancer, workers: 2', 'load_balancer, workers: 2', 'load_balancer'],
]
/** [what, target, reference, [{ a, b } CPU µs per request]] of each BY_TURNS pair measured. */
const turns = []
const children = []
/** The started processes' stdout (their log lines), one file each; removed once they are stopped. */
const logDir = mkdtempSync(path.join(os.tmpdir(), 'locci-bench-logs-'))

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/**
 * Starts a process whose stdout goes to a file, as a log collector's would: a pipe read by this
 * script stalls while wrk runs (spawnSync blocks the event loop), and the proxy then holds every
 * log line in memory, which showed as 30-80 MiB more peak RSS and more CPU per request.
 */
let started = 0
function start(cmd, args, env, readyText) {
  const out = path.join(logDir, `${started++}.log`)
  const fd = openSync(out, 'w')
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, 'inherit'] })
    closeSync(fd)
    children.push(c)
    const deadline = Date.now() + 15000
    const exited = (code) => reject(new Error(`${args.join(' ')} exited with ${code}`))
    c.once('exit', exited)
    const poll = () => {
      const seen = readFileSync(out, 'utf8')
      if (readyText.every((t) => seen.includes(t))) {
        c.removeListener('exit', exited)
        resolve({ child: c, seen })
      } else if (Date.now() > deadline) reject(new Error(`${args.join(' ')} did not start`))
      else setTimeout(poll, 50)
    }
    poll()
  })
}

function stop(c) {
  return new Promise((resolve) => {
    if (c.exitCode !== null) return resolve()
    c.removeAllListeners('exit')
    c.once('exit', () => resolve())
    c.kill('SIGTERM')
  })
}

/** `own(pid)` summed over a process and its children (workers), from /proc (Linux). */
function overTree(pid, own) {
  try {
    let total = own(pid)
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
    for (const c of children) total += overTree(Number(c), own) ?? 0
    return total
  } catch {
    return undefined
  }
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/** CPU time (µs) a process and its workers have used so far. */
const cpuMicros = (pid) =>
  overTree(pid, (p) => {
    const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK
  })

/** Peak resident memory (KiB) of a process plus that of each of its workers. */
const peakRssKiB = (pid) =>
  overTree(pid, (p) => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]))

/** µs on the clock V8's profiler stamps samples with (CLOCK_MONOTONIC on Linux, as hrtime). */
const monoMicros = () => Number(process.hrtime.bigint() / 1000n)

/**
 * A measured run against a proxy: adds the proxy's CPU µs per request, its peak RSS so far, and
 * the run's time window (to pick this run's samples out of a profile).
 */
function measure(url, headers, pid) {
  const before = cpuMicros(pid)
  const from = monoMicros()
  const r = load(url, headers)
  const to = monoMicros()
  const after = cpuMicros(pid)
  const served = r.rps * DURATION
  return {
    ...r,
    cpu: before === undefined || after === undefined || !served ? Number.NaN : (after - before) / served,
    rss: peakRssKiB(pid),
    window: { from, to },
  }
}

function load(url, headers = {}) {
  const hflags = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`])
  if (useWrk) {
    const r = spawnSync('wrk', ['-t1', `-c${CONNS}`, `-d${DURATION}s`, '--latency', ...hflags, url], {
      encoding: 'utf8',
    })
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1])
    const ms = (label) => {
      const m = new RegExp(`\\s${label}%\\s+([\\d.]+)(us|ms|s)`).exec(r.stdout)
      if (!m) return Number.NaN
      const v = Number(m[1])
      return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
    }
    const errors = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? '0'
    return { rps, p50: ms('50'), p99: ms('99'), errors: Number(errors) }
  }
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'autocannon', 'autocannon.js'),
      '-c',
      String(CONNS),
      '-d',
      String(DURATION),
      '-j',
      ...hflags,
      url,
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  )
  const j = JSON.parse(r.stdout)
  return { rps: j.requests.average, p50: j.latency.p50, p99: j.latency.p99, errors: j.non2xx + j.errors }
}

const originPort = await freePort()
await start(process.execPath, [path.join(root, 'scripts', 'bench-origin.mjs')], { PORT: originPort }, [
  'ready',
])
const dir = mkdtempSync(path.join(os.tmpdir(), 'locci-bench-'))
const upstreams = `upstreams: { origin: { servers: ["127.0.0.1:${originPort}"] } }`
const gateway = (middlewares, declarations = '') => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
logging: { level: info }
${upstreams}
api_gateway:
  routes:
    small: { path_pattern: "^/small", methods: [GET], upstream: origin, middlewares: [${middlewares}] }
    big: { path_pattern: "^/16k", methods: [GET], upstream: origin, middlewares: [${middlewares}] }
    json: { path_pattern: "^/json16k", methods: [GET], upstream: origin, middlewares: [${middlewares}] }
    cached: { path_pattern: "^/cached", methods: [GET], upstream: origin, middlewares: [${middlewares}] }
    other: { path_pattern: "^/", upstream: origin }
${declarations}`
// 50 routes, each with the three middlewares: the table's cost when a request lands on a route
// in the middle of it (`/api/v1/svc42/...`; the origin answers any other path like /small).
const ROUTES50_PREFIX = '/api/v1/svc42'
const gateway50 = (middlewares, declarations = '') => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
logging: { level: info }
${upstreams}
api_gateway:
  routes:
${Array.from({ length: 50 }, (_, i) => {
  const n = String(i).padStart(2, '0')
  return `    svc${n}: { path_pattern: "^/api/v1/svc${n}(/|$)", methods: [GET, POST], upstream: origin, middlewares: [${middlewares}] }`
}).join('\n')}
${declarations}`
const withWorkers = (yaml) =>
  yaml.replace('bind_address: "127.0.0.1:0" }', 'bind_address: "127.0.0.1:0", workers: 2 }')
/** load_balancer mode in front of the origin; `workers` when given. */
const loadBalancer = (workers) =>
  `mode: load_balancer\nserver: { bind_address: "127.0.0.1:0"${workers === undefined ? '' : `, workers: ${workers}`} }\nlogging: { level: info }\n${upstreams}\nload_balancer: { upstream: origin }\n`
const SECRET = 'bench-secret-bench-secret-bench-secret'
const token = await new SignJWT({ sub: 'bench' })
  .setProtectedHeader({ alg: 'HS256' })
  .setExpirationTime('1h')
  .sign(new TextEncoder().encode(SECRET))
const declarations = `middlewares:
  rate_limiting: { requests_per_minute: 100000000, burst_size: 1000000, key_header: X-API-Key }
  authentication: { jwt_secret: "${SECRET}", forward_claims: { sub: X-User-Id } }
  cors: { allowed_origins: ["https://app.example"], allowed_methods: [GET] }
  ip_filter: { allow: [10.0.0.0/8, 192.168.0.0/16, 127.0.0.0/8], deny: [127.0.0.66] }
  headers: { request: { set: { X-Client-IP: "$\{client_ip}" }, remove: [X-Debug] }, response: { set: { Cache-Control: no-store } }, frame_deny: true, content_type_nosniff: true }
  rewrite: { regex: "^/small(.*)", replacement: "/tiny$1" }
  compress: { encodings: [br, gzip] }
`
const mwHeaders = { 'x-api-key': 'k1', authorization: `Bearer ${token}`, origin: 'https://app.example' }
// basic_auth (a bcrypt hash: the warm-up run leaves the credentials cached), api_key, and
// forward_auth asking the origin itself (its /small answers 200).
const BENCH_KEY = 'bench-key-0123456789abcdef'
const authDeclarations = `middlewares:
  basic_auth: { users: ["bench:${bcrypt.hashSync('bench-password', 5)}"], forward_user: X-Remote-User }
  api_key: { keys: [{ consumer: bench, key: "${BENCH_KEY}" }] }
  forward_auth: { address: "http://127.0.0.1:${originPort}/small", auth_response_headers: [X-Auth-User] }
`
const basicHeaders = { authorization: `Basic ${Buffer.from('bench:bench-password').toString('base64')}` }
// [label, config, bodies, request headers, path prefix (default none)]
const scenarios = [
  ['load_balancer', loadBalancer(), ['small', '16k'], {}],
  ['api_gateway', gateway(''), ['small', '16k'], {}],
  [LB_SAME_REQUESTS, loadBalancer(), ['small'], mwHeaders],
  ['load_balancer, workers: 2', loadBalancer(2), ['small'], {}],
  ['load_balancer, workers: auto', loadBalancer('auto'), ['small'], {}],
  ['api_gateway + rate_limiting', gateway('rate_limiting', declarations), ['small'], mwHeaders],
  ['api_gateway + authentication (HS256)', gateway('authentication', declarations), ['small'], mwHeaders],
  ['api_gateway + cors', gateway('cors', declarations), ['small'], mwHeaders],
  ['api_gateway + ip_filter', gateway('ip_filter', declarations), ['small'], mwHeaders],
  ['api_gateway + headers', gateway('headers', declarations), ['small'], mwHeaders],
  ['api_gateway + rewrite', gateway('rewrite', declarations), ['small'], mwHeaders],
  [
    'api_gateway + all three',
    gateway('cors, authentication, rate_limiting', declarations),
    ['small'],
    mwHeaders,
  ],
  [
    'api_gateway, 50 routes + all three',
    gateway50('cors, authentication, rate_limiting', declarations),
    ['small'],
    mwHeaders,
    ROUTES50_PREFIX,
  ],
  ['api_gateway + basic_auth (cached)', gateway('basic_auth', authDeclarations), ['small'], basicHeaders],
  ['api_gateway + api_key', gateway('api_key', authDeclarations), ['small'], { 'x-api-key': BENCH_KEY }],
  ['api_gateway + forward_auth', gateway('forward_auth', authDeclarations), ['small'], {}],
  // cache: a stored 2-byte answer (the warm-up run stores it; every measured request is a HIT),
  // against the same bytes proxied by api_gateway (the summary line below the table).
  [CACHE_HIT, gateway('cache', 'middlewares:\n  cache: {}\n'), ['cached'], {}],
  // The cost of instance-wide state: with workers, each rate-limit check is a round trip to the primary.
  ['api_gateway, workers: 2', withWorkers(gateway('')), ['small'], {}],
  [
    'api_gateway + rate_limiting, workers: 2',
    withWorkers(gateway('rate_limiting', declarations)),
    ['small'],
    mwHeaders,
  ],
  // compress: what it costs when the client asks for nothing (the baseline for the rows below),
  // and per coding on 16 KiB of JSON; bytes on the wire are printed in a table of their own.
  ['api_gateway + compress (not asked)', gateway('compress', declarations), ['small', 'json16k'], {}],
  [
    'api_gateway + compress (gzip)',
    gateway('compress', declarations),
    ['json16k'],
    { 'accept-encoding': 'gzip' },
  ],
  [
    'api_gateway + compress (br)',
    gateway('compress', declarations),
    ['json16k'],
    { 'accept-encoding': 'br' },
  ],
]

/** Bytes of one response's body as sent (not decoded), and its Content-Encoding. */
function wireBytes(url, headers) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        let n = 0
        res.on('data', (c) => {
          n += c.length
        })
        res.on('end', () => resolve({ bytes: n, encoding: res.headers['content-encoding'] ?? 'identity' }))
      })
      .on('error', reject)
  })
}
const wire = new Map()
/** Stage tables of the profiled runs: { target, body, cpu, file, result }. */
const staged = []

/** Resolves once `child` accepts connections on 127.0.0.1:`port` (15 s at most). */
async function listening(child, port) {
  const deadline = Date.now() + 15000
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`)
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function nginxConfig(run, port, accessLog) {
  return `worker_processes 1;
daemon off;
pid ${run}/nginx.pid;
error_log ${run}/nginx.error.log warn;
events { worker_connections 4096; }
http {
    access_log ${accessLog};
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path ${run}/body;
    proxy_temp_path ${run}/proxy;
    fastcgi_temp_path ${run}/fastcgi;
    uwsgi_temp_path ${run}/uwsgi;
    scgi_temp_path ${run}/scgi;
    upstream origin {
        server 127.0.0.1:${originPort};
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`
}

const rows = []
const tool = useWrk ? `wrk -t1 -c${CONNS} -d${DURATION}s` : `autocannon -c ${CONNS} -d ${DURATION}`
process.stderr.write(
  `bench: ${tool}; origin on :${originPort}; ${os.cpus().length} cores, Node ${process.version}\n`,
)
try {
  for (const body of ['small', '16k']) {
    process.stderr.write(`bench: direct /${body}\n`)
    rows.push({ target: 'direct (origin alone)', body, ...load(`http://127.0.0.1:${originPort}/${body}`) })
  }
  const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined
  // nginx twice: without an access log (the peers' usual setting), and writing one line per
  // request through a buffer as this proxy's default access line is written (logger.ts).
  const nginxRuns = [
    { target: NGINX_NO_LOG, bodies: ['small', '16k'], accessLog: () => 'off' },
    {
      target: NGINX_LOG,
      bodies: ['small'],
      accessLog: (run) => `${run}/access.log combined buffer=64k flush=50ms`,
    },
  ]
  let nginxStarts = 0
  /** An nginx proxying the origin, or undefined (said on stderr) when it cannot start here. */
  const startNginx = async (accessLog) => {
    const run = path.join(dir, `nginx-${nginxStarts++}`)
    mkdirSync(run)
    const port = await freePort()
    writeFileSync(path.join(run, 'nginx.conf'), nginxConfig(run, port, accessLog(run)))
    const { child } = await start(
      'nginx',
      ['-p', run, '-e', path.join(run, 'nginx.error.log'), '-c', path.join(run, 'nginx.conf')],
      {},
      [],
    )
    // A reference only: an nginx that cannot start here is left out, the bench goes on.
    return listening(child, port).then(
      () => ({ child, port }),
      async (err) => {
        process.stderr.write(`bench: nginx left out (${err.message}; see ${run}/nginx.error.log)\n`)
        await stop(child)
        return undefined
      },
    )
  }
  for (const n of hasNginx && (!only || only.test('nginx')) ? nginxRuns : []) {
    const started = await startNginx(n.accessLog)
    if (started === undefined) continue
    const { child, port } = started
    for (const body of n.bodies) {
      process.stderr.write(`bench: ${n.target} /${body}\n`)
      const url = `http://127.0.0.1:${port}/${body}`
      load(url, {})
      rows.push({ target: n.target, body, ...measure(url, {}, child.pid) })
    }
    await stop(child)
  }
  /** Starts a scenario's proxy: its process and the URL of a body (`/${body}` after its prefix). */
  const startScenario = async ([label, yaml, , , prefix = ''], profDir) => {
    const file = path.join(dir, `${label.replace(/\W+/g, '-')}-${started}.yaml`)
    writeFileSync(file, yaml)
    const { child, seen } = await start(
      process.execPath,
      [
        ...LAUNCHER_FLAGS,
        ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
        path.join(root, 'bin', 'locci-proxy'),
        '-c',
        file,
      ],
      {},
      yaml.includes('workers:')
        ? ['locci-proxy listening', 'all workers listening']
        : ['locci-proxy listening'],
    )
    const port = Number(/"bind":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(seen)?.[1])
    return { child, port, url: (body) => `http://127.0.0.1:${port}${prefix}/${body}` }
  }
  for (const scenario of scenarios) {
    const [label, , bodies, headers] = scenario
    if (only && !only.test(label)) continue
    // The profile is written when the proxy exits (it does on SIGTERM), one file per process.
    const profDir = PROFILE && PROFILED.has(label) ? path.join(dir, `${rows.length}-profile`) : undefined
    const { child: proxy, port, url: urlOf } = await startScenario(scenario, profDir)
    const measured = []
    for (const body of bodies) {
      process.stderr.write(`bench: locci ${label} /${body}\n`)
      const url = urlOf(body)
      load(url, headers) // warm-up run is discarded
      if (label.includes('compress'))
        wire.set(`${label} /${body}`, await wireBytes(`http://127.0.0.1:${port}/${body}`, headers))
      const row = {
        target: `locci-proxy ${label}${profDir ? ' (profiled)' : ''}`,
        body,
        ...measure(url, headers, proxy.pid),
      }
      rows.push(row)
      measured.push(row)
    }
    await stop(proxy)
    if (profDir) {
      mkdirSync(profDir, { recursive: true })
      const profile = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))
      for (const row of measured) {
        const prof = profile && path.join(profDir, profile)
        const result = prof && stagesOf(JSON.parse(readFileSync(prof, 'utf8')), row.window)
        staged.push({ target: row.target, body: row.body, cpu: row.cpu, file: prof, result })
      }
    }
  }
  // BY_TURNS: both sides started at once, each warmed up, then measured one after the other, so
  // each pair's ratio is taken seconds apart. A pair is measured when its target was selected
  // (BENCH_ONLY) and its reference was too, or is nginx and nginx is installed.
  const selected = (label) => scenarios.find((s) => s[0] === label && (!only || only.test(label)))
  for (const [what, target, reference] of BY_TURNS) {
    const a = selected(target)
    const b = reference === NGINX ? undefined : selected(reference)
    if (a === undefined || (reference === NGINX ? !hasNginx : b === undefined) || PAIRS < 1) continue
    const sides = []
    for (const s of [a, b]) {
      if (s === undefined) {
        const ng = await startNginx(() => 'off')
        if (ng !== undefined)
          sides.push({ child: ng.child, url: `http://127.0.0.1:${ng.port}/small`, headers: {} })
      } else {
        const p = await startScenario(s)
        sides.push({ child: p.child, url: p.url(s[2][0]), headers: s[3] })
      }
    }
    if (sides.length === 2) {
      for (const side of sides) load(side.url, side.headers) // warm-up runs are discarded
      const measuredPairs = []
      for (let i = 0; i < PAIRS; i++) {
        process.stderr.write(`bench: ${what} by turns, ${i + 1}/${PAIRS}\n`)
        const [x, y] = sides.map((side) => measure(side.url, side.headers, side.child.pid).cpu)
        measuredPairs.push({ a: x, b: y })
      }
      turns.push([what, target, reference, measuredPairs])
    }
    for (const side of sides) await stop(side.child)
  }
} finally {
  for (const c of children) await stop(c)
  rmSync(logDir, { recursive: true, force: true })
}

const direct = Object.fromEntries(
  rows.filter((r) => r.target.startsWith('direct')).map((r) => [r.body, r.rps]),
)
const fmt = (n, d = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '-'
// A middleware's cost: the proxy's extra CPU per request over plain api_gateway mode (CPU time
// is steadier than req/s on a box shared with the load generator and the origin).
const cpuOf = (target) =>
  rows.find((r) => r.target.replace(' (profiled)', '') === target && r.body === 'small')?.cpu
const baseline = (target) =>
  target.endsWith(', workers: 2')
    ? cpuOf('locci-proxy api_gateway, workers: 2')
    : cpuOf('locci-proxy api_gateway')
console.log(
  '\n| target | body | req/s | × direct | p50 ms | p99 ms | proxy CPU µs/req | middleware µs/req | peak RSS MiB | non-2xx |',
)
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
for (const r of rows) {
  const extra =
    // A profiled row's CPU includes the profiler's cost: no middleware cost from it.
    r.target.includes(' + ') && r.body === 'small' && !r.target.endsWith('(profiled)') && baseline(r.target)
      ? fmt(r.cpu - baseline(r.target), 1)
      : ''
  console.log(
    `| ${r.target} | ${r.body} | ${fmt(r.rps)} | ${fmt(r.rps / direct[r.body], 2)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.cpu ?? Number.NaN, 1)} | ${extra} | ${fmt((r.rss ?? Number.NaN) / 1024)} | ${r.errors} |`,
  )
}
console.log(
  `\n${tool}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`,
)

// The gateway's cost over plain forwarding, and the workers' over one process (CPU per request).
const lbCpu = cpuOf('locci-proxy load_balancer')
for (const [what, target, base] of [
  [
    '50 routes + cors, authentication, rate_limiting',
    'locci-proxy api_gateway, 50 routes + all three',
    lbCpu,
  ],
  ['load_balancer, workers: 2', 'locci-proxy load_balancer, workers: 2', lbCpu],
]) {
  const c = cpuOf(target)
  if (c && base)
    console.log(
      `\n${what}: ${fmt(c, 1)} µs CPU per request, ${fmt(c / base, 2)}× load_balancer (${fmt(base, 1)})`,
    )
}

// cache: what answering from the store costs against proxying the same 2 bytes.
const cacheHit = rows.find((r) => r.target.startsWith(`locci-proxy ${CACHE_HIT}`))
const proxied = cpuOf('locci-proxy api_gateway')
const nginxSmall = cpuOf(NGINX_NO_LOG)
const nginxLogged = cpuOf(NGINX_LOG)
if (cacheHit && proxied)
  console.log(
    `\ncache: a HIT (access line included) costs ${fmt(cacheHit.cpu, 1)} µs CPU per request against ${fmt(proxied, 1)} µs to proxy the same 2 bytes (api_gateway /small): ${fmt(cacheHit.cpu / proxied, 2)}×` +
      (nginxSmall
        ? `; nginx proxying them costs ${fmt(nginxSmall, 1)} µs without an access log (${fmt(cacheHit.cpu / nginxSmall, 2)}×)`
        : '') +
      (nginxLogged
        ? ` and ${fmt(nginxLogged, 1)} µs writing one (${fmt(cacheHit.cpu / nginxLogged, 2)}×)`
        : ''),
  )
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
if (turns.length > 0)
  console.log(`\nBy turns (${PAIRS} pairs, ${DURATION} s each; CPU µs per request, medians):`)
for (const [what, target, reference, ps] of turns) {
  const ratios = ps.map((p) => p.a / p.b)
  const ref = reference === NGINX ? 'nginx without an access log' : reference
  console.log(
    `- ${what}: ${target} ${fmt(median(ps.map((p) => p.a)), 1)} µs, ${ref} ${fmt(median(ps.map((p) => p.b)), 1)} µs; ` +
      `ratio median ${fmt(median(ratios), 2)}× (pairs in order: ${ratios.map((r) => fmt(r, 2)).join(', ')})`,
  )
}

// compress: bytes on the wire and CPU per request for 16 KiB of JSON, against the same
// middleware when the client asks for no coding (the body then passes as it is).
const compressRows = rows.filter((r) => r.target.includes('compress') && r.body === 'json16k')
if (compressRows.length > 0) {
  const plain = compressRows.find((r) => r.target.includes('(not asked)'))
  console.log(
    '\n| compress, /json16k | coding | bytes on the wire | ratio | proxy CPU µs/req | compression µs/req | peak RSS MiB |',
  )
  console.log('|---|---|---:|---:|---:|---:|---:|')
  for (const r of compressRows) {
    const w = wire.get(`${r.target.replace('locci-proxy ', '')} /json16k`)
    const base = wire.get('api_gateway + compress (not asked) /json16k')?.bytes
    const extra = plain && r !== plain ? fmt(r.cpu - plain.cpu, 1) : ''
    console.log(
      `| ${r.target} | ${w?.encoding ?? '-'} | ${fmt(w?.bytes ?? Number.NaN)} | ${base && w ? fmt(w.bytes / base, 2) : '-'} | ${fmt(r.cpu, 1)} | ${extra} | ${fmt((r.rss ?? Number.NaN) / 1024)} |`,
    )
  }
}

// BENCH_PROFILE: the profiled runs' CPU per request split by stage (scripts/profile-stages.mjs says
// how samples are attributed). Only the samples of the measured run count, not start-up or warm-up.
for (const s of staged) {
  console.log(`\nCPU by stage, ${s.target} /${s.body} (${fmt(s.cpu, 1)} µs/req measured)`)
  if (!s.result) console.log(`no .cpuprofile was written (${s.file ?? 'none found'})`)
  else if (s.result.samples === 0) console.log(`no samples in the measured run's window: ${s.file}`)
  else console.log(`${stageTable(s.result, s.cpu)}\nprofile: ${s.file}`)
}

// WebSocket throughput: Autobahn 9.1.x/9.2.x-style echo of one large message at a time, direct
// and through the proxy, with the ratio (scripts/bench-ws.mjs; about 15 s). BENCH_WS=0 skips it;
// with BENCH_ONLY set it runs only when BENCH_ONLY matches "websocket"; BENCH_WS_PIN=1 runs the
// proxy on one core and the echo server and client on the other.
const wsOnly = process.env.BENCH_ONLY
if (process.env.BENCH_WS !== '0' && (wsOnly === undefined || new RegExp(wsOnly).test('websocket'))) {
  const { benchWebSocket } = await import('./bench-ws.mjs')
  const { markdown } = await benchWebSocket({
    log: () => undefined,
    pin: !['', '0', undefined].includes(process.env.BENCH_WS_PIN),
  })
  console.log(`\nWebSocket echo, one message at a time (ms per message, medians)\n${markdown}`)
}

// gRPC unary calls per second, direct and through the proxy (scripts/bench-grpc.mjs; about
// 2 x (BENCH_DURATION + 1) s). BENCH_GRPC=0 skips it; with BENCH_ONLY set it runs only when
// BENCH_ONLY matches "grpc".
if (process.env.BENCH_GRPC !== '0' && (wsOnly === undefined || new RegExp(wsOnly).test('grpc'))) {
  const { benchGrpc } = await import('./bench-grpc.mjs')
  const { markdown } = await benchGrpc({ log: (m) => process.stderr.write(`${m}\n`) })
  console.log(`\n${markdown}`)
}
