#!/usr/bin/env node
// Where a proxy's CPU time goes, by stage of the request, from a V8 .cpuprofile (`node --cpu-prof`).
//   node scripts/profile-stages.mjs FILE.cpuprofile [--from µs --to µs] [--cpu-per-request µs]
//                                  [--top N] [--json]
// --from/--to keep the samples taken in that window (the profile's clock: process.hrtime in µs,
// CLOCK_MONOTONIC on Linux), so a benchmark can leave start-up and warm-up out. With
// --cpu-per-request (the process's measured CPU µs per request in the same window) the table
// also gives µs per request: the stage's share of the sampled time × that number.
//
// Attribution: each sample goes to the nearest frame on its stack, the sampled function itself
// included, that belongs to a stage: our dist/src folders, the libraries a stage uses, and Node's
// HTTP server modules (server side). So a socket write under the logger counts as logging, one
// under res.end() as server side, and a Buffer copy under the routing code as routing. Samples
// with no stage frame on their stack (reading a socket before Node's HTTP parser sees it, timers,
// GC, native code with no JS on the stack) go to a bucket named by the nearest Node module that
// has one. "(idle)" samples are left out of the shares. The last column says how much of each
// stage was spent in the functions it called outside itself (Node internals, native calls).
import { readFileSync, realpathSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

/**
 * Stages in the order tables list them. A frame belongs to the first stage whose `ours` matches
 * its path under dist/src/, `lib` its path under the last node_modules/, or `node` its node: module.
 */
export const STAGES = [
  { name: 'server side', ours: /^server\//, node: /^node:_http_(server|outgoing|incoming|common)$/ },
  { name: 'routing', ours: /^routing\// },
  // jose (authentication), bcryptjs (basic_auth) and ioredis (rate_limiting's Redis store) are
  // used by middlewares only.
  { name: 'middlewares', ours: /^middleware\//, lib: /^(jose|bcryptjs|ioredis)\// },
  { name: 'proxy core', ours: /^proxy\// },
  { name: 'upstream client', ours: /^upstream\//, lib: /^undici\// },
  {
    name: 'logging',
    ours: /^observe\/(access-log|logger)\.js$/,
    lib: /^(pino[^/]*|sonic-boom|thread-stream|quick-format-unescaped|safe-stable-stringify|@pinojs\/redact|atomic-sleep|on-exit-leak-free)\//,
  },
  { name: 'metrics', ours: /^observe\/(request-)?metrics\.js$/, lib: /^(prom-client|tdigest|bintrees)\// },
  // Short answers and upstream request heads, gathered and written at the end of each turn of
  // the event loop (net/direct-write.ts): mostly the write system calls to clients and origins.
  { name: 'socket writes', ours: /^net\// },
  // The rest of ours: config, control, cli, the in-flight count and the error catalogue.
  { name: 'other (ours)', ours: /./, lib: /^(yaml|zod|commander)\// },
]

/** Buckets for samples with no stage frame on their stack, by the nearest Node module that has one. */
export const BUCKETS = [
  {
    name: 'sockets & streams',
    match: /^node:(net|stream|internal\/net|internal\/stream_base_commons|internal\/streams\/.*|_stream_.*)$/,
  },
  {
    name: 'event loop',
    match:
      /^node:(timers|internal\/timers|internal\/process\/task_queues|internal\/process\/promises|internal\/async_hooks)$/,
  },
]
export const OTHER_NODE = 'other Node internals'
export const GC = 'GC'
export const PROGRAM = 'native, no JS on the stack'
const ORDER = [...STAGES.map((s) => s.name), ...BUCKETS.map((b) => b.name), OTHER_NODE, GC, PROGRAM]

function stageOf(url) {
  if (!url) return undefined
  const lib = url.lastIndexOf('/node_modules/')
  if (lib >= 0) return STAGES.find((s) => s.lib?.test(url.slice(lib + 14)))?.name
  if (url.startsWith('node:')) return STAGES.find((s) => s.node?.test(url))?.name
  const ours = url.lastIndexOf('/dist/src/')
  if (ours >= 0) return STAGES.find((s) => s.ours?.test(url.slice(ours + 10)))?.name
  return url.endsWith('/bin/locci-proxy') ? 'other (ours)' : undefined
}

function bucketOf(url) {
  return url ? BUCKETS.find((b) => b.match.test(url))?.name : undefined
}

/**
 * Self time per stage. `from`/`to` (µs, the profile's clock) keep the samples taken in that
 * window. Returns the sampled µs per stage (`us`), the part of it spent in frames outside the
 * stage (`calledUs`), its share of the non-idle sampled time, and the top leaf functions.
 */
export function stagesOf(profile, { from = -Infinity, to = Infinity } = {}) {
  if (!['nodes', 'samples', 'timeDeltas'].every((k) => Array.isArray(profile?.[k])) || !profile.nodes[0])
    throw new Error('not a .cpuprofile: it needs nodes, samples and timeDeltas')
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  // Each node's attribution, top-down: its own stage, else its parent's; the same for buckets.
  const where = new Map()
  const root = profile.nodes[0]
  const stack = [[root, undefined, undefined]]
  while (stack.length > 0) {
    const [n, parentStage, parentBucket] = stack.pop()
    const { url, functionName } = n.callFrame
    const own = stageOf(url)
    const stage = own ?? parentStage
    const bucket = bucketOf(url) ?? parentBucket
    let name = stage
    if (name === undefined) {
      if (functionName === '(garbage collector)') name = GC
      else if (functionName === '(program)') name = PROGRAM
      else if (functionName === '(idle)') name = 'idle'
      else name = bucket ?? OTHER_NODE
    }
    where.set(n.id, { name, called: stage !== undefined && own === undefined })
    for (const c of n.children ?? []) {
      if (!nodes.has(c))
        throw new Error(`not a .cpuprofile: node ${n.id} names a child ${c} it does not hold`)
      stack.push([nodes.get(c), stage, bucket])
    }
  }

  const us = new Map(ORDER.map((s) => [s, 0]))
  const calledUs = new Map(ORDER.map((s) => [s, 0]))
  const leaves = new Map()
  let t = profile.startTime
  let idleUs = 0
  let samples = 0
  for (let i = 0; i < profile.samples.length; i++) {
    // A sample's weight is the interval before it (as V8's own summaries and prof-top.js count).
    const dt = profile.timeDeltas[i] ?? 0
    t += dt
    if (t < from || t > to) continue
    samples++
    const w = where.get(profile.samples[i])
    if (w === undefined)
      throw new Error(`not a .cpuprofile: sample ${i} names a node ${profile.samples[i]} it does not hold`)
    if (w.name === 'idle') {
      idleUs += dt
      continue
    }
    us.set(w.name, us.get(w.name) + dt)
    if (w.called) calledUs.set(w.name, calledUs.get(w.name) + dt)
    const cf = nodes.get(profile.samples[i]).callFrame
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`
    const leaf = leaves.get(key) ?? { fn: key, stage: w.name, us: 0 }
    leaf.us += dt
    leaves.set(key, leaf)
  }
  const busyUs = [...us.values()].reduce((a, b) => a + b, 0)
  return {
    samples,
    busyUs,
    idleUs,
    rows: ORDER.map((stage) => ({
      stage,
      us: us.get(stage),
      calledUs: calledUs.get(stage),
      share: busyUs > 0 ? us.get(stage) / busyUs : 0,
    })),
    top: [...leaves.values()].sort((a, b) => b.us - a.us),
  }
}

const fmt = (n, d = 1) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '-'

/** A markdown table of stagesOf()'s result; µs per request when the measured CPU per request is given. */
export function stageTable(result, cpuPerRequest = Number.NaN) {
  const lines = [
    '| stage | share | µs/req | of which in Node internals & natives it called, µs/req |',
    '|---|---:|---:|---:|',
  ]
  for (const r of result.rows) {
    const called = result.busyUs > 0 ? (r.calledUs / result.busyUs) * cpuPerRequest : Number.NaN
    lines.push(`| ${r.stage} | ${fmt(r.share * 100)} % | ${fmt(r.share * cpuPerRequest)} | ${fmt(called)} |`)
  }
  const total = result.busyUs + result.idleUs
  lines.push(
    `\n${result.samples} samples over ${fmt(total / 1e6, 2)} s sampled, ${fmt(total > 0 ? (100 * result.idleUs) / total : Number.NaN)} % idle (left out)`,
  )
  return lines.join('\n')
}

function main(argv) {
  const args = { top: 0 }
  let file
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--json') args.json = true
    else if (a === '--from' || a === '--to' || a === '--cpu-per-request' || a === '--top') {
      const v = Number(argv[++i])
      if (!Number.isFinite(v)) throw new Error(`${a} needs a number`)
      args[a.slice(2).replace(/-./g, (m) => m[1].toUpperCase())] = v
    } else if (file === undefined && !a.startsWith('--')) file = a
    else throw new Error(`unknown argument ${a}`)
  }
  if (file === undefined)
    throw new Error(
      'usage: profile-stages.mjs FILE.cpuprofile [--from µs --to µs] [--cpu-per-request µs] [--top N] [--json]',
    )
  const result = stagesOf(JSON.parse(readFileSync(file, 'utf8')), args)
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ ...result, top: result.top.slice(0, args.top) }, null, 2)}\n`)
    return
  }
  console.log(stageTable(result, args.cpuPerRequest))
  if (args.top > 0) {
    console.log('\n| self time, top functions | stage | share |\n|---|---|---:|')
    for (const l of result.top.slice(0, args.top))
      console.log(`| ${l.fn} | ${l.stage} | ${fmt((100 * l.us) / result.busyUs)} % |`)
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  try {
    main(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`profile-stages: ${err.message}\n`)
    process.exit(2)
  }
}
