// The attacker's fuzz run (issue 11: "no single request can crash, hang or get past the gateway").
// A bounded, seeded stream of malformed HTTP/1.1 and HTTP/2 input against the real proxy in both
// modes: an api_gateway (JWT authentication with an excluded prefix and forwarded claims, rate
// limiting, CORS, a WebSocket route) and a load_balancer on TLS with HTTP/2. After each class the
// proxy must be alive, answer a normal request, stay under an RSS bound, have logged no uncaught
// error, and bring requests_in_flight back to 0; what reached an upstream must have been allowed
// to. At the end SIGTERM must stop it, exit 0, well inside the grace period.
//
// Deterministic per seed: input i of class c is made from its own generator (seed, c, i).
//   LOCCI_FUZZ_SEED=0x1234        another seed (decimal or hex)
//   LOCCI_FUZZ_ITERATIONS=100     inputs per class (default 400)
//   LOCCI_FUZZ_REPLAY=h1-headers:17,18   only those inputs of that class, one at a time
//   LOCCI_FUZZ_DEADLINE_SECS=90   stop starting new inputs after this long (default 75)
// Run alone: node --test dist/test/hostile/fuzz.test.js

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import http2 from 'node:http2'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import { makeCert, type TestCert } from '../helpers/certs'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'
import { chunkedInput, type H1Input, headerInput, requestLineInput } from './fuzz/h1-inputs'
import {
  type H2ClientInput,
  type H2RawInput,
  h2ClientInput,
  h2ClientRequest,
  h2FramesInput,
} from './fuzz/h2-inputs'
import { type ClassSpec, type Failure, type RunSettings, replayFor, report, runClass } from './fuzz/harness'
import { JWT_SECRET, probeToken } from './fuzz/jwt'
import {
  alive,
  healthProblems,
  inFlight,
  request,
  type Seen,
  type SentMeta,
  seenProblems,
} from './fuzz/oracle'
import { fuzzSeed } from './fuzz/prng'
import { exchange, type WireResult, type WireTarget } from './fuzz/wire'
import { startWsUpstream, type WsUpstream } from './fuzz/ws-upstream'

const SEED = fuzzSeed(0x10cc1f11)
const SEED_HEX = `0x${SEED.toString(16)}`
const ITERATIONS = Number(process.env.LOCCI_FUZZ_ITERATIONS ?? 400)
const DEADLINE_MS = Number(process.env.LOCCI_FUZZ_DEADLINE_SECS ?? 75) * 1000
const LIMITS = { idleMs: 600, capMs: 2_000 }
const artifacts = mkdtempSync(path.join(tmpdir(), 'locci-fuzz-'))
const runStart = Date.now()
// A replay goes one input at a time and may take long; a normal run is bounded by DEADLINE_MS.
const SUITE_TIMEOUT = process.env.LOCCI_FUZZ_REPLAY ? Number.POSITIVE_INFINITY : 240_000

function settingsFor(cls: string): RunSettings | undefined {
  const only = replayFor(cls)
  if (only === 'skip') return undefined
  return { seed: SEED, iterations: ITERATIONS, deadline: runStart + DEADLINE_MS, artifacts, only }
}

/** Problems one raw HTTP/1.1 exchange shows by itself. */
function h1Problems(r: WireResult): string[] {
  const out: string[] = []
  if (r.outcome === 'error') out.push(`connection failed: ${r.error}`)
  if (r.statuses.includes(500) || r.received.includes('internal proxy error'))
    out.push('the proxy answered 500 (internal proxy error)')
  if (r.received.length > 0 && r.received.subarray(0, 5).toString('latin1') !== 'HTTP/') {
    out.push(
      `the reply does not start with a status line: ${JSON.stringify(r.received.subarray(0, 60).toString('latin1'))}`,
    )
  }
  return out
}

/** HEADERS frames the proxy sent whose block starts with the static-table entry for :status 500. */
function h2Status500(received: Buffer): boolean {
  let at = 0
  while (at + 9 <= received.length) {
    const len = received.readUIntBE(at, 3)
    const type = received[at + 3]!
    const flags = received[at + 4]!
    if (type === 1 && at + 9 + len <= received.length) {
      let p = at + 9
      if (flags & 0x8) p += 1
      if (flags & 0x20) p += 5
      if (received[p] === 0x8e) return true
    }
    at += 9 + len
  }
  return false
}

class Run {
  failures: Failure[] = []
  sent = new Map<string, SentMeta>()
  checkedSeen = 0

  constructor(
    public proxy: RunningProxy,
    readonly restart: () => Promise<RunningProxy>,
  ) {}

  /** Runs one class, then the health checks and the upstream oracle; restarts a dead proxy for the next class. */
  async fuzz<I extends { id: string; what: string[] }>(
    t: { diagnostic(m: string): void; skip(m?: string): void },
    spec: ClassSpec<I>,
    seen: () => Seen[],
    oracle: { protectedExcept: string | undefined; proto: 'http' | 'https' },
    probe: () => Promise<void>,
    acceptable: (input: I) => boolean,
  ): Promise<string> {
    const settings = settingsFor(spec.name)
    if (!settings) {
      t.skip(`LOCCI_FUZZ_REPLAY names another class`)
      return ''
    }
    const failures: Failure[] = []
    // Replay only: after each input, in-flight must fall back to the slots already known leaked.
    let leaked = 0
    const settle = async () => {
      let n = 0
      try {
        await until(
          async () => {
            n = await inFlight(this.proxy)
            return n <= leaked
          },
          'in flight to settle',
          2_000,
          25,
        )
        return undefined
      } catch {
        const more = n - leaked
        leaked = n
        return `${more} more request(s) in flight 2 s after this input's connection closed (a leaked slot)`
      }
    }
    const run = await runClass(
      this.proxy,
      spec,
      settings,
      (input) => {
        const tokens = input.what.filter((w) => w.startsWith('token: ')).map((w) => w.slice(7))
        this.sent.set(input.id, { acceptable: acceptable(input), tokens })
        // A pipelined second request travels under `<id>.2` and carries no token.
        this.sent.set(`${input.id}.2`, { acceptable: false, tokens: [] })
      },
      settle,
    )
    failures.push(...run.failures)
    const all = seen()
    for (const s of all.slice(this.checkedSeen)) {
      for (const p of seenProblems(s, this.sent, oracle)) {
        failures.push({
          cls: spec.name,
          id: p.id,
          problem: p.problem,
          detail: `as the upstream saw it: ${JSON.stringify(s.headers).slice(0, 600)}`,
        })
      }
    }
    this.checkedSeen = all.length
    for (const p of await healthProblems(this.proxy, probe)) {
      failures.push({
        cls: spec.name,
        id: settings.only ? `${spec.name}.${settings.only.join(',')}` : `${spec.name}.0-${run.started - 1}`,
        problem: `after the class: ${p}`,
        detail:
          'the class as a whole; a replay runs the inputs one at a time and names each one that leaves a slot in flight',
      })
    }
    t.diagnostic(
      `${spec.name}: seed ${SEED_HEX}, ${run.started} inputs in ${run.ms} ms, ${failures.length} failure(s)${run.started < (settings.only?.length ?? settings.iterations) ? ' (stopped at the run deadline)' : ''}`,
    )
    if (!alive(this.proxy)) {
      this.proxy = await this.restart()
      this.checkedSeen = seen().length
    }
    this.failures.push(...failures)
    return failures.length === 0 ? '' : report(failures, settings)
  }
}

function h1Spec(
  name: string,
  make: (rng: import('./fuzz/prng').Rng, id: string) => H1Input,
  target: () => WireTarget,
): ClassSpec<H1Input> {
  return {
    name,
    make,
    width: 24,
    bytes: (input) => Buffer.concat(input.steps.filter((s): s is Buffer => Buffer.isBuffer(s))),
    send: async (input) => h1Problems(await exchange(target(), input, LIMITS)),
  }
}

describe(`fuzz: api_gateway over HTTP/1.1 (seed ${SEED_HEX}, ${ITERATIONS} inputs per class)`, {
  timeout: SUITE_TIMEOUT,
}, () => {
  let api: Upstream
  let ws: WsUpstream
  let run: Run
  const config = () => `mode: api_gateway
server:
  bind_address: "127.0.0.1:0"
  shutdown_timeout_secs: 20
  upstream_timeout_secs: 5
  websocket_idle_timeout_secs: 5
upstreams:
  api: { servers: ["${api.address}"] }
  ws: { servers: ["${ws.address}"] }
api_gateway:
  routes:
    ws: { path_pattern: "^/ws", upstream: ws, middlewares: [authentication] }
    api: { path_pattern: "^/", upstream: api, middlewares: [cors, authentication, rate_limiting] }
  middlewares:
    authentication:
      jwt_secret: "${JWT_SECRET}"
      excluded_paths: ["/public/*"]
      forward_claims: { sub: X-User-Id }
    rate_limiting: { requests_per_minute: 60000000, burst_size: 1000000, store: memory }
    cors: { allowed_origins: "*" }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`
  const log: Seen[] = []
  let apiSeen = 0
  let wsSeen = 0
  const seenInOrder = () => {
    for (; apiSeen < api.seen.length; apiSeen++) {
      const s = api.seen[apiSeen]!
      log.push({ upstream: 'api', url: s.url, headers: s.headers })
    }
    for (; wsSeen < ws.seen.length; wsSeen++) log.push(ws.seen[wsSeen]!)
    return log
  }

  const probe = async () => {
    const headers = { 'x-fuzz-id': 'probe' }
    const open = await request(`http://127.0.0.1:${run.proxy.port}/public/probe`, { headers })
    assert.equal(open.status, 200, `GET /public/probe: ${open.status} ${open.body.slice(0, 200)}`)
    assert.equal(JSON.parse(open.body).server, 'api')
    const authed = await request(`http://127.0.0.1:${run.proxy.port}/account`, {
      headers: { ...headers, authorization: `Bearer ${probeToken()}` },
    })
    assert.equal(
      authed.status,
      200,
      `GET /account with a token: ${authed.status} ${authed.body.slice(0, 200)}`,
    )
    assert.equal(JSON.parse(authed.body).headers['x-user-id'], 'probe')
    await new Promise<void>((resolve, reject) => {
      const c = new WebSocket(`ws://127.0.0.1:${run.proxy.port}/ws/probe`, {
        headers: { ...headers, authorization: `Bearer ${probeToken()}` },
        handshakeTimeout: 3_000,
      })
      c.once('message', (m) => {
        c.close()
        if (String(m) === 'hello /ws/probe probe') resolve()
        else reject(new Error(`WebSocket greeting ${String(m)}`))
      })
      c.once('unexpected-response', (_q, res) =>
        reject(new Error(`WebSocket handshake answered ${res.statusCode}`)),
      )
      c.once('error', reject)
    })
  }
  const gatewayOracle = { protectedExcept: '/public', proto: 'http' as const }
  const target = () => ({ port: run.proxy.port })

  before(async () => {
    api = await startUpstream('api')
    ws = await startWsUpstream()
    const restart = () => startProxy(config())
    run = new Run(await restart(), restart)
  })
  after(async () => {
    if (alive(run.proxy)) await run.proxy.stop('SIGKILL')
    await api.close()
    await ws.close()
  })

  test('HTTP/1.1 request lines: methods, targets (dot segments, encodings, NUL, UTF-8, absolute-form, huge), versions', async (t) => {
    const r = await run.fuzz(
      t,
      h1Spec('h1-request-line', requestLineInput, target),
      seenInOrder,
      gatewayOracle,
      probe,
      (i) => i.acceptable,
    )
    if (r) assert.fail(r)
  })

  test('HTTP/1.1 headers: duplicates, CL+TE, obs-fold, bad characters, floods, upgrades, forgeries, tokens', async (t) => {
    const r = await run.fuzz(
      t,
      h1Spec('h1-headers', headerInput, target),
      seenInOrder,
      gatewayOracle,
      probe,
      (i) => i.acceptable,
    )
    if (r) assert.fail(r)
  })

  test('HTTP/1.1 chunked bodies: bad and huge sizes, missing CRLF, trailers, truncation, slow drip', async (t) => {
    const r = await run.fuzz(
      t,
      h1Spec('h1-chunked', chunkedInput, target),
      seenInOrder,
      gatewayOracle,
      probe,
      (i) => i.acceptable,
    )
    if (r) assert.fail(r)
  })

  test('SIGTERM after the fuzz: exits 0 well inside the 20 s grace period', async () => {
    const t0 = Date.now()
    const code = await Promise.race([
      run.proxy.stop('SIGTERM'),
      new Promise<string>((resolve) => setTimeout(resolve, 10_000, 'still running after 10 s')),
    ])
    assert.equal(
      code,
      0,
      `exit: ${code} after ${Date.now() - t0} ms; stderr: ${run.proxy.stderr().slice(-1000)}`,
    )
  })
})

describe(`fuzz: load_balancer on TLS with HTTP/2 (seed ${SEED_HEX}, ${ITERATIONS} inputs per class)`, {
  timeout: SUITE_TIMEOUT,
}, () => {
  let web: Upstream
  let cert: TestCert
  let run: Run
  const seen = () => web.seen.map((s) => ({ upstream: 'web', url: s.url, headers: s.headers }))
  const lbOracle = { protectedExcept: undefined, proto: 'https' as const }

  const probe = async () => {
    const h1 = await request(`https://127.0.0.1:${run.proxy.port}/probe`, {
      headers: { 'x-fuzz-id': 'probe' },
    })
    assert.equal(h1.status, 200, `HTTPS GET /probe: ${h1.status}`)
    const status = await new Promise<number>((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${run.proxy.port}`, {
        rejectUnauthorized: false,
        servername: 'localhost',
      })
      const timer = setTimeout(() => {
        session.destroy()
        reject(new Error('no HTTP/2 answer within 5 s'))
      }, 5_000)
      session.on('error', reject)
      const req = session.request({ ':path': '/probe-h2', 'x-fuzz-id': 'probe' })
      req.on('response', (h) => {
        clearTimeout(timer)
        req.resume()
        req.on('end', () => {
          session.close()
          resolve(Number(h[':status']))
        })
      })
      req.on('error', reject)
      req.end()
    })
    assert.equal(status, 200, `HTTP/2 GET /probe-h2: ${status}`)
  }

  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'locci-fuzz-tls-'))
    cert = await makeCert(dir, 'localhost')
    web = await startUpstream('web')
    const restart = () =>
      startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  shutdown_timeout_secs: 20
  upstream_timeout_secs: 5
  tls: { cert_path: "${cert.certPath}", key_path: "${cert.keyPath}" }
upstreams:
  web: { servers: ["${web.address}"] }
load_balancer: { upstream: web }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
    run = new Run(await restart(), restart)
  })
  after(async () => {
    if (alive(run.proxy)) await run.proxy.stop('SIGKILL')
    await web.close()
  })

  test('HTTP/2 frames after a valid preface: SETTINGS, bad HPACK, CONTINUATION floods, rapid reset, WINDOW_UPDATE, PING floods, GOAWAY', async (t) => {
    const spec: ClassSpec<H2RawInput> = {
      name: 'h2-frames',
      make: h2FramesInput,
      width: 12,
      bytes: (input) => input.bytes,
      send: async (input) => {
        const r = await exchange(
          { port: run.proxy.port, tls: { alpn: ['h2'] } },
          { steps: [input.bytes], endWrite: false },
          LIMITS,
        )
        const out: string[] = []
        if (r.outcome === 'error') out.push(`connection failed: ${r.error}`)
        if (h2Status500(r.received)) out.push('the proxy answered :status 500 (internal proxy error)')
        return out
      },
    }
    const r = await run.fuzz(t, spec, seen, lbOracle, probe, () => true)
    if (r) assert.fail(r)
  })

  test('HTTP/2 requests from node:http2: CONNECT, odd :path and :scheme, :authority with host, cookies, bodies without length, cancels', async (t) => {
    const spec: ClassSpec<H2ClientInput> = {
      name: 'h2-client',
      make: h2ClientInput,
      width: 12,
      bytes: () => undefined,
      send: async (input) => {
        const r = await h2ClientRequest(run.proxy.port, input, LIMITS.capMs + 1_000)
        const out: string[] = []
        if (r.status === 500) out.push('the proxy answered :status 500 (internal proxy error)')
        if (r.error === 'ECONNREFUSED') out.push('connection refused')
        return out
      },
    }
    const r = await run.fuzz(t, spec, seen, lbOracle, probe, () => true)
    if (r) assert.fail(r)
  })

  test('HTTP/1.1 headers over TLS (ALPN http/1.1)', async (t) => {
    const spec = h1Spec('tls-h1-headers', headerInput, () => ({
      port: run.proxy.port,
      tls: { alpn: ['http/1.1'] },
    }))
    const r = await run.fuzz(t, spec, seen, lbOracle, probe, () => true)
    if (r) assert.fail(r)
  })

  test('SIGTERM after the fuzz: exits 0 well inside the 20 s grace period', async () => {
    const t0 = Date.now()
    const code = await Promise.race([
      run.proxy.stop('SIGTERM'),
      new Promise<string>((resolve) => setTimeout(resolve, 10_000, 'still running after 10 s')),
    ])
    assert.equal(
      code,
      0,
      `exit: ${code} after ${Date.now() - t0} ms; stderr: ${run.proxy.stderr().slice(-1000)}`,
    )
  })
})
