// The documented ways to run the proxy, checked as far as this machine can: every YAML file
// under deploy/ and docker/ and compose.yaml parses; the configs they carry compile with the
// proxy's own compile; probes, ports and health checks point at endpoints the ops listener of
// that config really serves (the proxy is started on it to see); the systemd unit passes
// `systemd-analyze verify` where that exists; the release workflow tests before it publishes,
// moves :latest only for a version tag, and ships checksums and an SBOM. No Docker daemon needed.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { parse, parseAllDocuments } from 'yaml'
import type { Snapshot } from '../../src/config/snapshot'
import { loadPlan } from '../../src/proxy/runtime'
import { ROOT, startProxy } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field
type Doc = any

const read = (rel: string) => readFileSync(path.join(ROOT, rel), 'utf8')

function yamlFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => path.join(dir, f))
}

/** The config in `text`, compiled as `locci-proxy -c` would with `env`. */
function compileText(text: string, env: NodeJS.ProcessEnv = {}): Snapshot {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-deploy-'))
  const file = path.join(dir, 'config.yaml')
  writeFileSync(file, text)
  const r = loadPlan(file, {}, env)
  assert.ok(r.ok, r.ok ? '' : r.problems.map((p) => `${p.path}: ${p.message}`).join('\n'))
  return r.plan.snapshot
}

/** `text` with its listeners moved to loopback port 0 and its upstream servers replaced, for a test run. */
function onLoopback(text: string, servers: string[]): string {
  const doc = parse(text)
  doc.server.bind_address = '127.0.0.1:0'
  doc.server.ops_bind_address = '127.0.0.1:0'
  doc.server.trusted_proxies = []
  for (const u of Object.values(doc.upstreams) as Doc[]) u.servers = servers
  return JSON.stringify(doc)
}

/** Starts the proxy on `text` (moved to loopback) in front of `up`; returns the ops base URL. */
async function opsOf(text: string, up: Upstream) {
  const proxy = await startProxy(onLoopback(text, [up.address]))
  const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')
  return { proxy, ops: `http://127.0.0.1:${new URL(String(line?.ops)).port}` }
}

/** `${NAME:-default}` as compose resolves it with NAME unset. */
const composeDefault = (v: string) => v.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')

test('every YAML file under deploy/ and docker/, and compose.yaml, parses', () => {
  const files = [
    ...yamlFiles('deploy'),
    ...yamlFiles('docker'),
    'compose.yaml',
    '.github/workflows/release.yml',
  ]
  assert.ok(files.length >= 7, `found ${files.join(', ')}`)
  for (const f of files) {
    const docs = parseAllDocuments(read(f), { uniqueKeys: true })
    assert.ok(Array.isArray(docs) && docs.length > 0, `${f}: no document`)
    for (const d of docs) {
      assert.deepEqual(
        [...d.errors, ...d.warnings].map((e) => e.message),
        [],
        `${f}: YAML problems`,
      )
      assert.ok(d.toJS() !== null, `${f}: an empty document`)
    }
  }
})

describe('Docker image', () => {
  const config = read('docker/config.yaml')
  const dockerfile = read('Dockerfile').replace(/\\\n\s*/g, ' ')
  const snapshot = compileText(config)
  let up: Upstream
  before(async () => {
    up = await startUpstream('app')
  })
  after(() => up.close())

  test('docker/config.yaml listens on every interface: proxy 8484, ops 8486, upstream from UPSTREAM', () => {
    assert.deepEqual(snapshot.bind, { host: '0.0.0.0', port: 8484 })
    assert.deepEqual(snapshot.ops, { host: '0.0.0.0', port: 8486 })
    assert.deepEqual(
      snapshot.upstreams.get('app')?.peers.map((p) => p.address),
      ['host.docker.internal:8080'],
      'the default upstream',
    )
    const set = compileText(config, { UPSTREAM: 'api.internal:9000', TRUSTED_PROXY: '10.0.0.7' })
    assert.deepEqual(
      set.upstreams.get('app')?.peers.map((p) => p.address),
      ['api.internal:9000'],
    )
    assert.equal(set.limits.trustedProxy?.('10.0.0.7'), true)
    assert.equal(snapshot.limits.trustedProxy?.('10.0.0.7'), false, 'nobody outside is trusted by default')
  })

  test('the Dockerfile runs docker/config.yaml on the current Node LTS and exposes its ports', () => {
    assert.match(dockerfile, /^WORKDIR \/app$/m)
    assert.match(dockerfile, /^COPY (--chown=\S+ )?docker\/config\.yaml \.\/config\.yaml$/m)
    assert.match(dockerfile, /^CMD \["-c", "\/app\/config\.yaml"\]$/m)
    const exposed = /^EXPOSE (.+)$/m.exec(dockerfile)?.[1]?.split(/\s+/).map(Number)
    assert.deepEqual(exposed, [snapshot.bind.port, snapshot.ops!.port])
    const majors = [...dockerfile.matchAll(/^FROM node:(\d+)-/gm)].map((m) => Number(m[1]))
    assert.equal(majors.length, 2, 'a build and a runtime stage')
    for (const m of majors) assert.ok(m >= 24 && m % 2 === 0, `node:${m} is not the current LTS line`)
    const engines = JSON.parse(read('package.json')).engines.node
    assert.equal(engines, '>=20.19', 'npm users keep Node 20')
  })

  test('the HEALTHCHECK asks the ops listener of docker/config.yaml, and passes against it', async () => {
    const check = /^HEALTHCHECK .*CMD (\[.*\])$/m.exec(dockerfile)
    assert.ok(check, 'a HEALTHCHECK in exec form')
    const argv = JSON.parse(check[1]!) as string[]
    assert.equal(argv[0], 'node')
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(argv.join(' '))
    assert.ok(url, 'the HEALTHCHECK fetches a loopback URL')
    assert.equal(Number(url[1]), snapshot.ops!.port, 'on the ops port')
    assert.ok(['/healthz', '/readyz'].includes(url[2]!), `${url[2]} is a probe`)

    const { proxy, ops } = await opsOf(config, up)
    const port = new URL(ops).port
    const run = () =>
      spawnSync(
        process.execPath,
        argv.slice(1).map((a) => a.replace(`:${url[1]}/`, `:${port}/`)),
        {
          timeout: 10_000,
        },
      ).status
    try {
      assert.equal(run(), 0, 'the HEALTHCHECK command passes against the running proxy')
    } finally {
      await proxy.stop()
    }
    assert.equal(run(), 1, 'and fails once it is gone')
  })
})

describe('compose.yaml', () => {
  const compose: Doc = parse(read('compose.yaml'))
  const traefik = compose.services.traefik
  const proxy = compose.services['locci-proxy']

  test('the proxy trusts X-Forwarded-For from Traefik only', () => {
    const network = Object.keys(proxy.networks)[0]!
    const traefikIp = traefik.networks[network]?.ipv4_address
    assert.ok(traefikIp, `Traefik has a fixed address on ${network}`)
    assert.equal(proxy.environment.TRUSTED_PROXY, traefikIp)
    const env = Object.fromEntries(
      Object.entries(proxy.environment as Record<string, string>).map(([k, v]) => [
        k,
        composeDefault(String(v)),
      ]),
    )
    assert.equal(proxy.build, '.', 'the image of the Dockerfile, which runs docker/config.yaml')
    const s = compileText(read('docker/config.yaml'), env)
    assert.equal(s.limits.trustedProxy?.(traefikIp), true)
    assert.equal(s.limits.trustedProxy?.('172.30.84.3'), false, 'another container on the network is not')
    const subnet = compose.networks[network].ipam.config[0].subnet as string
    assert.ok(traefikIp.startsWith(subnet.replace(/0\/24$/, '')), `${traefikIp} in ${subnet}`)
  })

  test('Traefik sends traffic to the port the proxy listens on', () => {
    const s = compileText(read('docker/config.yaml'), { UPSTREAM: 'app:8080' })
    const labels = proxy.labels as string[]
    const port = labels.find((l) => l.startsWith('traefik.http.services.proxy.loadbalancer.server.port='))
    assert.equal(Number(port?.split('=')[1]), s.bind.port)
    assert.ok(!labels.some((l) => l.includes('8485')), 'no route to a control API the config leaves off')
  })
})

describe('Kubernetes manifests', () => {
  const dir = 'deploy/kubernetes'
  const docs: Doc[] = yamlFiles(dir).flatMap((f) => parseAllDocuments(read(f)).map((d) => d.toJS()))
  const byKind = (kind: string) => {
    const found = docs.filter((d) => d.kind === kind)
    assert.equal(found.length, 1, `one ${kind}`)
    return found[0]
  }
  const deployment = byKind('Deployment')
  const configMap = byKind('ConfigMap')
  const pod = deployment.spec.template
  const container = pod.spec.containers[0]
  const portOf = (name: string | number) =>
    typeof name === 'number' ? name : container.ports.find((p: Doc) => p.name === name)?.containerPort
  const snapshot = compileText(configMap.data['config.yaml'])
  let up: Upstream
  before(async () => {
    up = await startUpstream('app')
  })
  after(() => up.close())

  test('the proxy reads the ConfigMap, which compiles', () => {
    const arg = container.args[container.args.indexOf('-c') + 1] as string
    const mount = container.volumeMounts.find((m: Doc) => arg.startsWith(`${m.mountPath}/`))
    assert.ok(mount, `${arg} is on a mounted volume`)
    const volume = pod.spec.volumes.find((v: Doc) => v.name === mount.name)
    assert.equal(volume.configMap.name, configMap.metadata.name)
    assert.equal(path.basename(arg), 'config.yaml')
    assert.equal(snapshot.bind.host, '0.0.0.0', 'reachable from outside the pod')
  })

  test('liveness and readiness probe the ops listener; the Service reaches the proxy port', () => {
    assert.deepEqual(snapshot.ops, { host: '0.0.0.0', port: 8486 })
    assert.equal(container.livenessProbe.httpGet.path, '/healthz')
    assert.equal(container.readinessProbe.httpGet.path, '/readyz')
    assert.equal(portOf(container.livenessProbe.httpGet.port), snapshot.ops!.port)
    assert.equal(portOf(container.readinessProbe.httpGet.port), snapshot.ops!.port)
    const service = byKind('Service')
    assert.equal(portOf(service.spec.ports[0].targetPort), snapshot.bind.port)
    const annotations = pod.metadata.annotations
    assert.equal(Number(annotations['prometheus.io/port']), snapshot.ops!.port)
    assert.equal(annotations['prometheus.io/path'], '/metrics')
  })

  test('the Service and the PodDisruptionBudget select the Deployment pods', () => {
    const labels = pod.metadata.labels
    const matches = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v)
    assert.ok(matches(deployment.spec.selector.matchLabels))
    assert.ok(matches(byKind('Service').spec.selector))
    const pdb = byKind('PodDisruptionBudget')
    assert.ok(matches(pdb.spec.selector.matchLabels))
    assert.ok(pdb.spec.minAvailable < deployment.spec.replicas, 'a drain can still evict one pod')
  })

  test('the grace period covers the preStop pause and the drain', () => {
    const pause = Number(container.lifecycle.preStop.exec.command[1])
    assert.ok(pod.spec.terminationGracePeriodSeconds > pause + snapshot.shutdownTimeoutMs / 1000)
  })

  test('kustomization.yaml lists every manifest', () => {
    const k = byKind('Kustomization')
    const files = readdirSync(path.join(ROOT, dir)).filter((f) => f !== 'kustomization.yaml')
    assert.deepEqual([...k.resources].sort(), files.sort())
  })

  test('the probe and scrape paths are served by the ConfigMap config', async () => {
    const { proxy, ops } = await opsOf(configMap.data['config.yaml'], up)
    try {
      const live = await fetch(`${ops}${container.livenessProbe.httpGet.path}`)
      assert.equal(live.status, 200)
      const ready = await fetch(`${ops}${container.readinessProbe.httpGet.path}`)
      assert.equal(ready.status, 200, await ready.text())
      const metrics = await fetch(`${ops}${pod.metadata.annotations['prometheus.io/path']}`)
      assert.match(await metrics.text(), /^# HELP locci_/m)
    } finally {
      await proxy.stop()
    }
  })
})

describe('systemd unit', () => {
  const unitPath = 'deploy/systemd/locci-proxy.service'
  const unit = read(unitPath)
  const setting = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1])

  test('reload is SIGHUP, stop waits out the drain, and the service is hardened', () => {
    assert.deepEqual(setting('ExecReload'), ['/bin/kill -HUP $MAINPID'])
    assert.deepEqual(setting('NoNewPrivileges'), ['yes'])
    assert.deepEqual(setting('ProtectSystem'), ['strict'])
    assert.deepEqual(setting('KillSignal'), ['SIGTERM'])
    assert.ok(Number(setting('TimeoutStopSec')[0]) > 10, 'longer than the default shutdown_timeout_secs')
    assert.deepEqual(setting('MemoryDenyWriteExecute'), [], "V8's JIT needs it off")
    const config = /-c (\S+)$/.exec(setting('ExecStart')[0]!)?.[1]
    assert.equal(setting('ExecStartPre')[0], `${setting('ExecStart')[0]!.split(' ')[0]} validate ${config}`)
  })

  test('systemd-analyze verify accepts the unit', (t) => {
    if (spawnSync('systemd-analyze', ['--version']).error) {
      t.skip('systemd-analyze is not installed here')
      return
    }
    // verify insists that ExecStart's program exists: point it at a stand-in.
    const dir = mkdtempSync(path.join(tmpdir(), 'locci-unit-'))
    const exe = path.join(dir, 'locci-proxy')
    writeFileSync(exe, '#!/bin/sh\n')
    chmodSync(exe, 0o755)
    const file = path.join(dir, 'locci-proxy.service')
    writeFileSync(file, unit.replaceAll('/usr/local/bin/locci-proxy', exe))
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    // Unknown keys and bad values are warnings (exit 0): none may name the unit.
    const about = r.stderr.split('\n').filter((l) => l.includes('locci-proxy.service'))
    assert.deepEqual(about, [])
  })
})

describe('release workflow', () => {
  const wf: Doc = parse(read('.github/workflows/release.yml'))
  const jobs = wf.jobs

  test('nothing is built for release before lint, typecheck and the tests pass', () => {
    const runs = jobs.test.steps.map((s: Doc) => s.run).filter(Boolean)
    for (const cmd of ['npm run lint', 'npm run typecheck', 'npm test']) assert.ok(runs.includes(cmd), cmd)
    assert.equal(jobs.executables.needs, 'test')
    assert.equal(jobs.image.needs, 'test')
    assert.deepEqual(jobs.release.needs, ['executables', 'image'])
    const node = jobs.executables.steps.find((s: Doc) => s.uses?.startsWith('actions/setup-node'))
    assert.ok(node.with['node-version'] >= 24, 'executables embed the current LTS')
  })

  test('only a version tag publishes, and only a release version moves :latest', () => {
    assert.equal(
      wf.env.PUBLISH,
      "${{ github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v') }}",
    )
    assert.deepEqual(wf.on.push.tags, ['v*'])
    assert.equal(jobs.release.if, "github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')")
    const build = jobs.image.steps.find((s: Doc) => s.uses?.startsWith('docker/build-push-action'))
    assert.equal(build.with.push, "${{ env.PUBLISH == 'true' }}")
    const script = jobs.image.steps.find((s: Doc) => s.id === 'tags').run as string
    const tags = (publish: boolean, ref: string) => {
      const out = path.join(mkdtempSync(path.join(tmpdir(), 'locci-gh-')), 'output')
      writeFileSync(out, '')
      const r = spawnSync('bash', ['-c', script], {
        env: { PATH: process.env.PATH, PUBLISH: String(publish), GITHUB_REF_NAME: ref, GITHUB_OUTPUT: out },
        encoding: 'utf8',
      })
      assert.equal(r.status, 0, r.stderr)
      return readFileSync(out, 'utf8').trim()
    }
    assert.equal(tags(true, 'v1.2.3'), 'tags=locci/proxy:1.2.3,locci/proxy:latest')
    assert.equal(tags(true, 'v1.3.0-rc.1'), 'tags=locci/proxy:1.3.0-rc.1')
    assert.doesNotMatch(tags(false, 'main'), /latest/, 'a run by hand from a branch')
  })

  test('the release carries SHA-256 checksums and a CycloneDX SBOM that npm can produce', () => {
    const runs = jobs.release.steps.map((s: Doc) => s.run ?? '').join('\n')
    assert.match(runs, /sha256sum -- \* > SHA256SUMS/)
    const sbom = /npm (sbom [^>]+)>/.exec(runs)?.[1]?.trim().split(/\s+/)
    assert.ok(sbom, 'an npm sbom step')
    assert.ok(sbom.includes('cyclonedx'))
    const r = spawnSync('npm', sbom, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
    assert.equal(r.status, 0, r.stderr)
    const bom = JSON.parse(r.stdout)
    assert.equal(bom.bomFormat, 'CycloneDX')
    const names = bom.components.map((c: Doc) => c.name)
    assert.ok(names.includes('undici') && names.includes('pino'), 'the runtime dependencies')
    assert.ok(!names.includes('typescript'), 'not the dev dependencies')
  })
})
