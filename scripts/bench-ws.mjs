#!/usr/bin/env node
// WebSocket tunnel benchmark in the manner of Autobahn|Testsuite's performance cases 9.1.1-9.1.6
// (one text message of 64 KiB, 256 KiB, 1, 4, 8, 16 MiB, echoed back) and 9.2.1-9.2.6 (the same,
// binary): each message is sent and its echo awaited before the next, once straight to an echo
// server and once through bin/locci-proxy (load_balancer mode), alternating which goes first,
// and the medians compared. The echo server (the `ws` package) runs in a child process of its
// own, so it does not share the client's event loop. Everything is on 127.0.0.1 and bounded:
// each case sends a fixed number of messages (about 16 MiB worth), a few rounds.
//   node scripts/bench-ws.mjs
//   BENCH_WS_ROUNDS=5 BENCH_WS_ONLY='^9\.1\.6$' node scripts/bench-ws.mjs
//   BENCH_WS_PROXY_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' node scripts/bench-ws.mjs
//   BENCH_WS_PIN=1 node scripts/bench-ws.mjs   (Linux, taskset: the proxy on CPU 0, the echo
//                                             server and the client on CPU 1)
// From another script: `const { markdown } = await benchWebSocket({ rounds: 3 })`.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket, WebSocketServer } from 'ws'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const KiB = 1024
const MiB = 1024 * KiB
/** Autobahn 9.x.1 .. 9.x.6 message sizes. */
const SIZES = [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 8 * MiB, 16 * MiB]
/** Large enough for the largest case; `ws` refuses bigger messages (1009) by default above 100 MiB. */
const MAX_PAYLOAD = 64 * MiB

/** The cases: Autobahn numbering, kind, size, and how many messages one run sends. */
export function wsCases(bytesPerRun = 16 * MiB) {
  const cases = []
  for (const [section, binary] of [
    ['9.1', false],
    ['9.2', true],
  ]) {
    SIZES.forEach((size, i) => {
      cases.push({
        name: `${section}.${i + 1}`,
        binary,
        size,
        // At least 2 messages, at most 64: a run of a small case is not over in a millisecond.
        count: Math.min(64, Math.max(2, Math.round(bytesPerRun / size))),
      })
    })
  }
  return cases
}

/** Autobahn's payloads: a repeated ASCII phrase for text, 0xFE bytes for binary. */
function payload(size, binary) {
  if (binary) return Buffer.alloc(size, 0xfe)
  return Buffer.alloc(size, 'BAsd7&jh23')
}

// --- the echo server (child process) ---------------------------------------------------------

function runEchoServer() {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: MAX_PAYLOAD,
  })
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    ws.on('error', () => ws.terminate())
  })
  wss.on('listening', () => process.stdout.write(`ready ${wss.address().port}\n`))
  // Ends with its parent: stdin closes when the bench exits, however it exits.
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

// --- helpers ---------------------------------------------------------------------------------

/**
 * Spawns `args` with node (on CPU `cpu` alone when set, through taskset) and resolves once every
 * text of `ready` has appeared on stdout.
 */
function startNode(args, ready, children, cpu) {
  return new Promise((resolve, reject) => {
    const c =
      cpu === undefined
        ? spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
        : spawn('taskset', ['-c', String(cpu), process.execPath, ...args], {
            stdio: ['pipe', 'pipe', 'inherit'],
          })
    children.push(c)
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 15_000)
    const onData = (d) => {
      out += d
      if (!ready.every((t) => out.includes(t))) return
      clearTimeout(timer)
      c.stdout.off('data', onData)
      // Keep draining stdout (the proxy's log lines) as a log collector would.
      c.stdout.resume()
      resolve({ child: c, seen: out })
    }
    c.stdout.on('data', onData)
    c.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)))
  })
}

function stop(c) {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve()
    c.removeAllListeners('exit')
    c.once('exit', () => resolve())
    c.kill('SIGTERM')
  })
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100

/** Runs this process (the client, all its threads) on CPU `cpu` alone (Linux taskset); false if that failed. */
function pinSelf(cpu) {
  return spawnSync('taskset', ['-apc', String(cpu), String(process.pid)]).status === 0
}

/** CPU time (ms, user and system) process `pid` has used so far, from /proc; undefined elsewhere. */
function cpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    const user = (Number(fields[11]) * 1000) / CLK_TCK
    const sys = (Number(fields[12]) * 1000) / CLK_TCK
    return { user, sys, total: user + sys }
  } catch {
    return undefined
  }
}

/** CPU ms used so far by this process (the client), the echo server and the proxy. */
function cpuSnapshot(echoPid, proxyPid) {
  const own = process.cpuUsage()
  return { client: (own.user + own.system) / 1000, echo: cpuMs(echoPid), proxy: cpuMs(proxyPid) }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: MAX_PAYLOAD })
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)))
  })
}

/**
 * One run of a case on a fresh connection (as Autobahn opens one per case): `count` messages,
 * each sent once the previous echo is back. Resolves to milliseconds per message.
 */
async function runCase(url, c, message) {
  const ws = await open(url)
  try {
    return await new Promise((resolve, reject) => {
      let left = c.count
      const t0 = performance.now()
      ws.on('message', (data, isBinary) => {
        if (isBinary !== c.binary || !message.equals(data)) {
          reject(new Error(`case ${c.name}: the echo differs from the message sent`))
          return
        }
        if (--left === 0) resolve((performance.now() - t0) / c.count)
        else ws.send(message, { binary: c.binary })
      })
      ws.once('error', reject)
      ws.once('close', (code) => left > 0 && reject(new Error(`case ${c.name}: closed (${code})`)))
      ws.send(message, { binary: c.binary })
    })
  } finally {
    ws.terminate()
  }
}

// --- the benchmark ---------------------------------------------------------------------------

/**
 * Runs the cases direct and through the proxy, `rounds` times each, alternating which goes first.
 * Returns one row per case (medians: ms per message direct and through the proxy, their ratio,
 * the proxy's CPU ms per message) and the same as a markdown table.
 * `pin`: the proxy on CPU 0 alone, the echo server and the client on CPU 1 (taskset), so the
 * proxy's work does not compete with theirs for a core and other load disturbs less.
 * @param {{ rounds?: number, only?: RegExp, bytesPerRun?: number, proxyNodeArgs?: string[],
 *   proxyBin?: string, pin?: boolean, log?: (line: string) => void }} [opts]
 */
export async function benchWebSocket(opts = {}) {
  const rounds = opts.rounds ?? 3
  const pin = opts.pin === true && os.cpus().length >= 2 && pinSelf(1)
  const log = opts.log ?? ((line) => process.stderr.write(`${line}\n`))
  const cases = wsCases(opts.bytesPerRun).filter((c) => !opts.only || opts.only.test(c.name))
  const children = []
  try {
    const self = fileURLToPath(import.meta.url)
    const echo = await startNode([self, '--echo-server'], ['ready'], children, pin ? 1 : undefined)
    const echoPort = Number(/ready (\d+)/.exec(echo.seen)[1])
    const dir = mkdtempSync(path.join(os.tmpdir(), 'locci-bench-ws-'))
    const config = path.join(dir, 'ws.yaml')
    writeFileSync(
      config,
      `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
logging: { level: info }
upstreams: { echo: { servers: ["127.0.0.1:${echoPort}"] } }
load_balancer: { upstream: echo }
`,
    )
    const proxy = await startNode(
      [...(opts.proxyNodeArgs ?? []), opts.proxyBin ?? path.join(root, 'bin', 'locci-proxy'), '-c', config],
      ['locci-proxy listening'],
      children,
      pin ? 0 : undefined,
    )
    const proxyPort = Number(/"bind":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(proxy.seen)[1])
    const targets = {
      direct: `ws://127.0.0.1:${echoPort}/`,
      proxy: `ws://127.0.0.1:${proxyPort}/`,
    }
    log(
      `bench-ws: echo on :${echoPort}, proxy on :${proxyPort}${pin ? ' (pinned: proxy CPU 0, echo + client CPU 1)' : ''}; ${rounds} rounds; ${os.cpus().length} cores, load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    )
    // One warm-up run each way (JIT, first allocations), not counted.
    const warm = cases[0] ?? wsCases()[0]
    for (const url of Object.values(targets))
      await runCase(url, { ...warm, count: 4 }, payload(warm.size, warm.binary))

    const rows = []
    for (const c of cases) {
      const message = payload(c.size, c.binary)
      const ms = { direct: [], proxy: [] }
      // CPU ms used during each target's runs, summed over the rounds (/proc counts in ticks of
      // 10 ms, too coarse for one run): the proxy's (user and system apart), and the client's
      // and echo server's together (the work the proxy's comes on top of, on the same cores).
      const cpu = { proxyUser: 0, proxySys: 0, proxyMsgs: 0, ends: { direct: 0, proxy: 0 }, msgs: 0 }
      for (let r = 0; r < rounds; r++) {
        for (const which of r % 2 ? ['proxy', 'direct'] : ['direct', 'proxy']) {
          const before = cpuSnapshot(echo.child.pid, proxy.child.pid)
          ms[which].push(await runCase(targets[which], c, message))
          const after = cpuSnapshot(echo.child.pid, proxy.child.pid)
          cpu.ends[which] +=
            after.client - before.client + (after.echo?.total ?? 0) - (before.echo?.total ?? 0)
          if (which === 'proxy' && before.proxy && after.proxy) {
            cpu.proxyUser += after.proxy.user - before.proxy.user
            cpu.proxySys += after.proxy.sys - before.proxy.sys
            cpu.proxyMsgs += c.count
          }
        }
        cpu.msgs += c.count
      }
      const row = {
        case: c.name,
        kind: c.binary ? 'binary' : 'text',
        size: c.size,
        count: c.count,
        directMs: median(ms.direct),
        proxyMs: median(ms.proxy),
        proxyUserMs: cpu.proxyMsgs ? cpu.proxyUser / cpu.proxyMsgs : Number.NaN,
        proxySysMs: cpu.proxyMsgs ? cpu.proxySys / cpu.proxyMsgs : Number.NaN,
        endpointsCpuMs: cpu.ends.direct / cpu.msgs,
        runs: ms,
      }
      row.ratio = row.proxyMs / row.directMs
      row.proxyCpuMs = row.proxyUserMs + row.proxySysMs
      // On a machine whose cores are all busy, wall time follows CPU time: the proxy's CPU on top
      // of the ends'. Unlike the measured ratio, this hardly moves with other load.
      row.cpuBoundRatio = 1 + row.proxyCpuMs / row.endpointsCpuMs
      rows.push(row)
      log(
        `bench-ws: ${c.name} ${row.kind} ${sizeLabel(c.size)} x${c.count}: direct ${row.directMs.toFixed(1)} ms, proxy ${row.proxyMs.toFixed(1)} ms (${row.ratio.toFixed(2)}x); proxy CPU ${row.proxyUserMs.toFixed(1)} user + ${row.proxySysMs.toFixed(1)} sys ms/msg, client + echo ${row.endpointsCpuMs.toFixed(1)} ms/msg`,
      )
    }
    return { rows, markdown: markdown(rows, rounds, pin) }
  } finally {
    for (const c of children) await stop(c)
  }
}

function sizeLabel(n) {
  return n >= MiB ? `${n / MiB} MiB` : `${n / KiB} KiB`
}

function markdown(rows, rounds, pin) {
  const f = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-')
  const lines = [
    '| case | message | msgs/run | direct ms/msg | through proxy ms/msg | × direct | proxy CPU ms/msg (user + sys) | client + echo CPU ms/msg | × if CPU-bound |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const r of rows) {
    lines.push(
      `| ${r.case} | ${r.kind} ${sizeLabel(r.size)} | ${r.count} | ${f(r.directMs)} | ${f(r.proxyMs)} | ${f(r.ratio, 2)} | ${f(r.proxyCpuMs)} (${f(r.proxyUserMs)} + ${f(r.proxySysMs)}) | ${f(r.endpointsCpuMs)} | ${f(r.cpuBoundRatio, 2)} |`,
    )
  }
  lines.push(
    '',
    `Times: medians of ${rounds} alternating runs; CPU: means over them (client + echo: the direct runs; × if CPU-bound: 1 + proxy CPU / client + echo CPU, the slowdown to expect when every core is busy). One message in flight at a time, echoed (Autobahn 9.1.x/9.2.x style).${pin ? ' Pinned: the proxy on CPU 0, the echo server and the client on CPU 1.' : ''} Load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(
        ' ',
      )} at the end. ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}.`,
  )
  return lines.join('\n')
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--echo-server')) runEchoServer()
  else {
    const env = process.env
    const { markdown: table } = await benchWebSocket({
      rounds: env.BENCH_WS_ROUNDS ? Number(env.BENCH_WS_ROUNDS) : undefined,
      only: env.BENCH_WS_ONLY ? new RegExp(env.BENCH_WS_ONLY) : undefined,
      bytesPerRun: env.BENCH_WS_MIB ? Number(env.BENCH_WS_MIB) * MiB : undefined,
      proxyNodeArgs: env.BENCH_WS_PROXY_NODE_ARGS ? env.BENCH_WS_PROXY_NODE_ARGS.split(' ') : undefined,
      proxyBin: env.BENCH_WS_PROXY_BIN || undefined,
      pin: !['', '0', undefined].includes(env.BENCH_WS_PIN),
    })
    console.log(`\n${table}`)
  }
}
