#!/usr/bin/env node
// `npm run build:sea`: a single executable for this platform, dist/locci-proxy-<os>-<arch>.
// 1. compile (tsc) and bundle the CLI and its dependencies into one file (@vercel/ncc);
// 2. turn that into a Node single-executable-application blob (node --experimental-sea-config);
//    The dashboard's static files (dashboard/) go into the blob as assets;
// 3. copy the local node binary and inject the blob (postject). No download: the Node that runs
//    this script is the one inside the executable. Releases build on the current Node LTS (24,
//    .github/workflows/release.yml); an older Node still works here, with a warning.
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { arch, platform } from 'node:os'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const out = path.join(root, 'dist', 'sea')
const target = `${platform()}-${arch()}`
const exe = path.join(root, 'dist', `locci-proxy-${target}${platform() === 'win32' ? '.exe' : ''}`)
const bin = (name) => path.join(root, 'node_modules', '.bin', name)
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' })

const LTS = 24
const major = Number(process.versions.node.split('.')[0])
if (major < LTS) {
  console.warn(
    `build:sea: this executable embeds Node ${process.versions.node}; releases use Node ${LTS} (the current LTS)`,
  )
}

rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

run(bin('tsc'), ['-p', 'tsconfig.build.json', '--outDir', path.join(out, 'tsc')])
// The entry calls the CLI; ncc follows every require (package.json included) into one file.
writeFileSync(path.join(out, 'tsc', 'sea-entry.js'), "require('./src/cli/main.js').main(process.argv)\n")
// tsc's output sits one level deeper than dist/, so put package.json where main.js looks for it.
copyFileSync(path.join(root, 'package.json'), path.join(out, 'package.json'))
run(bin('ncc'), [
  'build',
  path.join(out, 'tsc', 'sea-entry.js'),
  '-o',
  path.join(out, 'bundle'),
  '--target',
  'es2022',
  '-q',
])

const config = path.join(out, 'sea-config.json')
writeFileSync(
  config,
  JSON.stringify({
    main: path.join(out, 'bundle', 'index.js'),
    output: path.join(out, 'sea-prep.blob'),
    disableExperimentalSEAWarning: true,
    // The dashboard's page, read with node:sea getAsset() (src/control/dashboard.ts).
    assets: Object.fromEntries(
      ['index.html', 'app.js', 'app.css'].map((f) => [`dashboard/${f}`, path.join(root, 'dashboard', f)]),
    ),
  }),
)
run(process.execPath, ['--experimental-sea-config', config])

copyFileSync(process.execPath, exe)
chmodSync(exe, 0o755)
if (platform() === 'darwin') run('codesign', ['--remove-signature', exe])
run(bin('postject'), [
  exe,
  'NODE_SEA_BLOB',
  path.join(out, 'sea-prep.blob'),
  '--sentinel-fuse',
  'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
  ...(platform() === 'darwin' ? ['--macho-segment-name', 'NODE_SEA'] : []),
])
if (platform() === 'darwin') run('codesign', ['--sign', '-', exe])
console.log(`build:sea: ${path.relative(process.cwd(), exe)}`)
