#!/usr/bin/env node
// Runs the compiled tests with node:test: unit tests (dist/src/**/*.test.js) and integration
// tests (dist/test/integration/*.test.js). `node scripts/run-tests.mjs unit|integration` runs one set;
// `client` runs only what depends on Node's internal bindings (the built-in client's, the
// own HTTP/1.1 server side's and the direct socket writes' tests, and the forwarding files below), which
// scripts/node-matrix.mjs runs on other Node.js majors.
// The tests that forward requests upstream run a second time with LOCCI_UPSTREAM_CLIENT=undici
// (the fallback where the built-in client cannot run; the built-in h1 is the default), so both
// upstream clients (src/upstream/client.ts) stay covered.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..')
const which = process.argv[2] ?? 'all'

function sourceOf(compiled) {
  return path.join(root, path.relative(path.join(root, 'dist'), compiled)).replace(/\.js$/, '.ts')
}

function find(dir) {
  let out = []
  let entries = []
  try {
    entries = readdirSync(dir)
  } catch {
    return out
  }
  for (const name of entries) {
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) out = out.concat(find(p))
    // Only tests whose TypeScript source still exists: tsc leaves deleted files' output behind.
    else if (name.endsWith('.test.js') && existsSync(sourceOf(p))) out.push(p)
  }
  return out.sort()
}

// A small set, chosen for what depends on the client: forwarding, failover and retries, error
// replies, pooling, TLS to upstreams, hostile upstream answers, the in-process pipeline.
const UNDICI_AGAIN = [
  'src/proxy/pipeline.test.js',
  'test/integration/bad-requests.test.js',
  'test/integration/connection-pool.test.js',
  'test/integration/error-replies.test.js',
  'test/integration/load-balancer.test.js',
  'test/integration/mirror.test.js',
  'test/integration/strategies.test.js',
  'test/integration/tls-h2-websocket.test.js',
  'test/hostile/upstream-faults.test.js',
].map((f) => path.join(root, 'dist', f))

// The same for the server side: these run again on node:http (LOCCI_HTTP1_SERVER=node, the
// fallback where Node's parser binding is not usable), so both server sides stay covered.
const NODE_SERVER_AGAIN = [
  'test/integration/bad-requests.test.js',
  'test/integration/load-balancer.test.js',
  'test/integration/websocket-tunnel.test.js',
  'test/hostile/limits.test.js',
  'test/hostile/protocol-edges.test.js',
  'test/hostile/client-gone.test.js',
].map((f) => path.join(root, 'dist', f))

const files = []
if (which === 'all' || which === 'unit') files.push(...find(path.join(root, 'dist', 'src')))
if (which === 'all' || which === 'integration') files.push(...find(path.join(root, 'dist', 'test')))
if (which === 'client')
  files.push(
    ...find(path.join(root, 'dist', 'src', 'upstream', 'h1')),
    ...find(path.join(root, 'dist', 'src', 'server', 'h1')),
    ...find(path.join(root, 'dist', 'src', 'net')),
    ...UNDICI_AGAIN.filter((f) => existsSync(f)),
  )
if (files.length === 0) {
  console.error('no test files found under dist/; run `npm run build` first')
  process.exit(1)
}
// --test-force-exit: a test that fails before it can close what it opened (an upstream server,
// a child) must not keep its file, and so the whole run, from ever finishing. --test-timeout:
// a test that waits forever fails instead. The preload keeps force-exit from losing verdicts
// still on their way to the runner (test-stdout-blocking.cjs says how).
const PRELOAD = path.join(root, 'scripts', 'test-stdout-blocking.cjs')
// TAP on stdout as before; the failures alone, a few lines each, into a file per run, printed
// after the last run (scripts/failures-reporter.mjs), so a log's tail says what failed.
const FAILURES = path.join(root, 'scripts', 'failures-reporter.mjs')
const failuresDir = mkdtempSync(path.join(os.tmpdir(), 'locci-test-failures-'))
const runs = []
function run(list, env, label) {
  const out = path.join(failuresDir, `${runs.length}.txt`)
  runs.push({ label, out })
  const r = spawnSync(
    process.execPath,
    [
      '--require',
      PRELOAD,
      '--test',
      '--test-concurrency=2',
      '--test-force-exit',
      '--test-timeout=300000',
      '--test-reporter=tap',
      '--test-reporter-destination=stdout',
      `--test-reporter=${FAILURES}`,
      `--test-reporter-destination=${out}`,
      ...list,
    ],
    { stdio: 'inherit', cwd: root, env: { ...process.env, ...env } },
  )
  const status = r.status ?? 1
  if (status !== 0) runs.at(-1).failed = `exit ${r.status ?? r.signal}`
  return status
}

function summary() {
  const parts = []
  for (const { label, out, failed } of runs) {
    let text = ''
    try {
      text = readFileSync(out, 'utf8').trim()
    } catch {}
    if (failed !== undefined || text !== '')
      parts.push(`# ${label}: ${failed ?? 'ok'}${text === '' ? ' (no test reported a failure)' : ''}`, text)
  }
  rmSync(failuresDir, { recursive: true, force: true })
  if (parts.length === 0) console.log(`# all ${runs.length} runs passed`)
  else console.log(['', '# failures, by run:', ...parts.filter((p) => p !== '')].join('\n'))
}

let status = run(files, {}, `${which} (${files.length} files)`)
const again = UNDICI_AGAIN.filter((f) => files.includes(f))
if (again.length > 0 && process.env.LOCCI_UPSTREAM_CLIENT === undefined) {
  console.log(`# again with LOCCI_UPSTREAM_CLIENT=undici: ${again.length} files`)
  status =
    run(again, { LOCCI_UPSTREAM_CLIENT: 'undici' }, 'again with LOCCI_UPSTREAM_CLIENT=undici') || status
}
const onNode = NODE_SERVER_AGAIN.filter((f) => files.includes(f))
if (onNode.length > 0 && process.env.LOCCI_HTTP1_SERVER === undefined) {
  console.log(`# again with LOCCI_HTTP1_SERVER=node: ${onNode.length} files`)
  status = run(onNode, { LOCCI_HTTP1_SERVER: 'node' }, 'again with LOCCI_HTTP1_SERVER=node') || status
}
summary()
process.exit(status)
