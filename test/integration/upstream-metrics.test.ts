// Per-server upstream metrics, scraped from the ops listener as Prometheus would: attempts by
// status class and their duration, retries, passive ejections and active health checks (which
// the primary runs when there are workers), with buckets up to 60 s; promtool accepts the text.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream } from '../helpers/upstream'

/** The value of the one series of `text` that matches `series` (a regex source), or 0. */
function value(text: string, series: string): number {
  const m = new RegExp(`^${series} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

function opsUrl(proxy: { logs: Array<Record<string, unknown>> }): string {
  const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')!
  return `${String(line.ops).replace('0.0.0.0', '127.0.0.1')}/metrics`
}

for (const workers of [1, 2]) {
  test(`upstream metrics per server (workers: ${workers}); promtool check metrics passes`, async () => {
    const bad = await startUpstream('bad')
    const good = await startUpstream('good')
    bad.behaviour = { kind: 'status', status: 503 }
    bad.health = 'fail'
    const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", ops_bind_address: "127.0.0.1:0", workers: ${workers} }
upstreams:
  web:
    servers: ["${bad.address}", "${good.address}"]
    retries: 1
    retry_on: [5xx]
    health_check: { interval_secs: 1, path: /health, unhealthy_threshold: 1000 }
    passive_health: { consecutive_failures: 1, max_ejection_percent: 50 }
load_balancer: { upstream: web }
`)
    try {
      const url = opsUrl(proxy)
      const b = bad.address.replace(/\./g, '\\.')
      const g = good.address.replace(/\./g, '\\.')
      // Until bad is ejected, round robin sends it requests: each 503 is retried on good.
      const text = await until(async () => {
        for (let i = 0; i < 4; i++) assert.equal((await fetch(`${proxy.url}/x`)).status, 200)
        const t = await (await fetch(url)).text()
        const ready =
          value(t, `locci_upstream_ejections_total\\{upstream="web",server="${b}"\\}`) >= 1 &&
          value(t, `locci_health_checks_total\\{upstream="web",server="${b}",result="failure"\\}`) >= 1 &&
          value(t, `locci_health_checks_total\\{upstream="web",server="${g}",result="success"\\}`) >= 1
        return ready ? t : undefined
      }, 'an ejection and health checks in the metrics')
      const bad5xx = value(
        text,
        `locci_upstream_requests_total\\{upstream="web",server="${b}",status_class="5xx"\\}`,
      )
      const good2xx = value(
        text,
        `locci_upstream_requests_total\\{upstream="web",server="${g}",status_class="2xx"\\}`,
      )
      const retries = value(text, 'locci_upstream_retries_total\\{upstream="web"\\}')
      assert.ok(bad5xx >= 1, 'the 503 attempts are counted on their server')
      assert.equal(retries, bad5xx, 'every 503 was retried')
      assert.equal(good2xx, good.seen.length, 'every answer of good is counted')
      assert.equal(
        value(text, `locci_upstream_request_duration_seconds_count\\{upstream="web",server="${g}"\\}`),
        good2xx,
      )
      assert.match(text, /locci_upstream_request_duration_seconds_bucket\{le="60",upstream="web"/)
      assert.match(text, /locci_request_duration_seconds_bucket\{le="60",mode="load_balancer"/)
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
      if (promtool.error) assert.fail('promtool not installed (apt-get install prometheus; .ci/run does)')
      assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr)
    } finally {
      await proxy.stop()
      await bad.close()
      await good.close()
    }
  })
}
