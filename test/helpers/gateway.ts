// The in-process harness (in the spirit of Hono's app.request() and Fastify's inject()): a whole
// gateway built from a YAML string in the test's own process — the same compilePlan(),
// ProxyInstance, listener, pipeline, exchange, retries and middlewares as the binary — with
// requests sent to it over loopback and every log line captured. Starting one takes
// milliseconds, so pipeline, retry and preflight logic get fast unit tests; the black-box tests
// of bin/locci-proxy (test/helpers/proxy.ts) stay for the process, CLI, signals and workers.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { request as undiciRequest } from 'undici'
import { parseConfigText } from '../../src/config/load'
import { formatProblem } from '../../src/config/problems'
import { createLogger } from '../../src/observe/logger'
import { compilePlan } from '../../src/proxy/runtime'
import { ProxyInstance } from '../../src/server/instance'
import { selectUpstreamClient, type UpstreamClientKind } from '../../src/upstream/client'

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export interface Gateway {
  /** http://127.0.0.1:port of the listener. */
  url: string
  /** The control API's URL, when the config enables it. */
  controlUrl: string | null
  instance: ProxyInstance
  /** Every log line so far, parsed (access lines have `status`; app lines `msg`). */
  logs(): Array<Record<string, unknown>>
  /** Access-log lines so far (flushed first). */
  access(): Array<Record<string, unknown>>
  request(
    method: string,
    path: string,
    opts?: { headers?: Record<string, string>; body?: string },
  ): Promise<Reply>
  close(): Promise<void>
}

/**
 * Builds and starts a gateway from `yaml`. Give `server.bind_address: 127.0.0.1:0` (the
 * default here when the YAML has no server section is not assumed: write it). Throws with the
 * config's problems if it does not compile.
 */
export async function gateway(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<Gateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-harness-'))
  const file = path.join(dir, 'config.yaml')
  writeFileSync(file, yaml)
  const r = compilePlan(parseConfigText(file, yaml, env))
  if (!r.ok) throw new Error(`config does not compile:\n${r.problems.map(formatProblem).join('\n')}`)
  let text = ''
  const logging = createLogger({
    level: r.plan.snapshot.logging.level,
    format: 'json',
    sink: { write: (t: string) => (text += t) },
  })
  const instance = await ProxyInstance.start(
    {
      file,
      overrides: {},
      env,
      version: 'harness',
      logging,
      // As the binary: LOCCI_UPSTREAM_CLIENT of the test run (scripts/run-tests.mjs sets it).
      upstreamClient: selectUpstreamClient(
        (process.env.LOCCI_UPSTREAM_CLIENT || undefined) as UpstreamClientKind | undefined,
      ),
    },
    r.plan,
    yaml,
  )
  const urls = instance.urls()
  const logs = () => {
    logging.flush()
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  }
  return {
    url: urls.bind,
    controlUrl: urls.control_api,
    instance,
    logs,
    access: () => logs().filter((l) => typeof l.status === 'number' && 'duration_ms' in l),
    async request(method, p, opts = {}) {
      const res = await undiciRequest(`${urls.bind}${p}`, {
        method,
        headers: opts.headers,
        body: opts.body,
      })
      const body = await res.body.text()
      return { status: res.statusCode, headers: res.headers, body }
    },
    async close() {
      await instance.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
