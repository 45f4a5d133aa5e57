#!/usr/bin/env node
// The tests that depend on Node's internal bindings (the built-in upstream client and the own
// HTTP/1.1 server side reach into the HTTP parser, src/upstream/h1/binding.ts; the server side
// and the client write with node:net's WriteWrap, src/net/direct-write.ts) on the other Node.js majors
// this project supports: `node scripts/run-tests.mjs client` (the client's own tests,
// differential and fuzz included, the server side's, then the forwarding files on both clients) under Node 22 and 24, after the full suite ran on
// the Node that runs this script. The binaries are npm's `node-<platform>-<arch>` packages
// (the ones the `node` package installs), kept in .cache/node/ between runs.
//   node scripts/node-matrix.mjs            (22 and 24)
//   NODE_MATRIX="22" node scripts/node-matrix.mjs
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const majors = (process.env.NODE_MATRIX ?? '22 24').split(/[\s,]+/).filter(Boolean)
const pkg = `node-${process.platform}-${process.arch}`
const cache = path.join(root, '.cache', 'node')

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts })
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr || r.stdout}`,
    )
  return r.stdout.trim()
}

/** The `node` binary of the newest release of `major`, fetched once into the cache. */
function nodeOf(major) {
  const dir = path.join(cache, major)
  const bin = path.join(dir, 'package', 'bin', 'node')
  if (existsSync(bin)) return bin
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  // A registry hiccup is not a failure of the code under test: three tries, a few seconds apart.
  for (let attempt = 1; ; attempt++) {
    try {
      sh('npm', ['pack', '--silent', `${pkg}@${major}`], { cwd: dir })
      break
    } catch (err) {
      if (attempt === 3) throw err
      console.log(`# Node ${major}: ${err.message.trim()}; trying again`)
      spawnSync('sleep', [String(5 * attempt)])
    }
  }
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))
  if (tgz === undefined) throw new Error(`npm pack ${pkg}@${major} left no archive`)
  sh('tar', ['xzf', tgz], { cwd: dir })
  rmSync(path.join(dir, tgz))
  return bin
}

const failed = []
for (const major of majors) {
  let node
  let version
  try {
    node = nodeOf(major)
    version = sh(node, ['--version'])
    if (!version.startsWith(`v${major}.`)) throw new Error(`${node} is ${version}, not Node ${major}`)
  } catch (err) {
    // On stdout as well: the tail of a CI log is often all that is shown.
    console.log(`# Node ${major}: no binary to run the tests on: ${err.message}`)
    failed.push(`Node ${major} (no binary)`)
    continue
  }
  console.log(`# Node ${version}: the upstream client's and server side's tests, the forwarding files`)
  const r = spawnSync(node, [path.join(root, 'scripts', 'run-tests.mjs'), 'client'], {
    stdio: 'inherit',
    cwd: root,
    // The proxies the tests start run on the same binary (test/helpers/proxy.ts: process.execPath).
    env: { ...process.env, LOCCI_UPSTREAM_CLIENT: undefined },
  })
  if (r.status !== 0) failed.push(version)
}
if (failed.length > 0) {
  console.log(`# failed on ${failed.join(', ')}`)
  process.exit(1)
}
console.log(`# passed on Node ${majors.join(', ')}`)
