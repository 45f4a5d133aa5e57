// What must hold while the fuzzer attacks: the proxy stays up, answers a normal request, keeps
// its memory bounded, logs no uncaught error, returns its in-flight count to 0; and what reaches
// an upstream was allowed to (a token the gateway may accept, or a path that stays under an
// excluded prefix however the upstream resolves it), was not smuggled, and carries no forged
// identity.

import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import http from 'node:http'
import https from 'node:https'
import type { RunningProxy } from '../../helpers/proxy'
import { until } from '../../helpers/until'
import { FORGED_HOST, FORGED_USER, SMUGGLED } from './h1-inputs'

export const RSS_LIMIT_BYTES = 400 * 1024 * 1024
const LOG_ALARM = /uncaught exception|unhandled rejection|uncaughtException|unhandledRejection/i

export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

export function alive(proxy: RunningProxy): boolean {
  return proxy.child.exitCode === null && proxy.child.signalCode === null
}

/** Log lines (stdout JSON or text, and stderr) that report an uncaught error or a fatal. */
export function alarmingLogs(proxy: RunningProxy): string[] {
  const out: string[] = []
  for (const l of proxy.logs) {
    const text = JSON.stringify(l)
    if (LOG_ALARM.test(text) || l.level === 'fatal') out.push(text.slice(0, 600))
  }
  for (const line of proxy.stderr().split('\n')) {
    if (LOG_ALARM.test(line) || /^\s*at .+:\d+:\d+\)?$/.test(line)) out.push(line.slice(0, 600))
  }
  return out
}

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** A plain request through the proxy with a deadline (HTTP/1.1; TLS without certificate checks). */
export function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http
    const req = lib.request(
      url,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
        rejectUnauthorized: false,
        servername: 'localhost',
        timeout: opts.timeoutMs ?? 5_000,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          body += d
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () =>
      req.destroy(new Error(`no answer from ${url} within ${opts.timeoutMs ?? 5_000} ms`)),
    )
    req.on('error', reject)
    req.end()
  })
}

export async function inFlight(proxy: RunningProxy): Promise<number> {
  const r = await request(`${proxy.controlUrl}/api/v1/status`, { timeoutMs: 3_000 })
  return Number(JSON.parse(r.body).requests_in_flight)
}

/**
 * The health checks after a class. `probe` makes the normal request(s) and throws if they fail.
 * Returns the problems found (empty when healthy).
 */
export async function healthProblems(proxy: RunningProxy, probe: () => Promise<void>): Promise<string[]> {
  if (!alive(proxy)) {
    return [
      `the proxy exited (code ${proxy.child.exitCode}, signal ${proxy.child.signalCode}); stderr tail: ${proxy.stderr().slice(-1500)}`,
    ]
  }
  const problems: string[] = []
  try {
    await until(
      async () => {
        try {
          await probe()
          return true
        } catch {
          return false
        }
      },
      'a normal request to succeed',
      10_000,
      200,
    )
  } catch (e) {
    let last = ''
    try {
      await probe()
    } catch (err) {
      last = (err as Error).message
    }
    problems.push(`a normal request did not succeed within 10 s (${(e as Error).message}; last: ${last})`)
  }
  const rss = rssBytes(proxy.child.pid!)
  if (rss > RSS_LIMIT_BYTES)
    problems.push(`proxy RSS ${Math.round(rss / 1048576)} MB > ${RSS_LIMIT_BYTES / 1048576} MB`)
  const alarms = alarmingLogs(proxy)
  if (alarms.length > 0)
    problems.push(
      `proxy logged ${alarms.length} uncaught error line(s), first: ${alarms.slice(0, 3).join(' | ')}`,
    )
  let lastCount = -1
  try {
    await until(
      async () => {
        lastCount = await inFlight(proxy)
        return lastCount === 0
      },
      'requests_in_flight to return to 0',
      10_000,
      100,
    )
  } catch {
    problems.push(`requests_in_flight stayed at ${lastCount} for 10 s after the class ended (a leaked slot)`)
  }
  return problems
}

export interface Seen {
  upstream: string
  url: string
  headers: IncomingHttpHeaders
}

export interface SentMeta {
  acceptable: boolean
  /** The tokens the input carried, as the generator described them. */
  tokens: string[]
}

/** How different upstream stacks could resolve a path: a request is allowed unauthenticated only if all stay under `prefix`. */
export function pathReadings(url: string): string[] {
  let raw = url
  const abs = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(raw)
  if (abs) raw = raw.slice(abs[0].length) || '/'
  raw = raw.replace(/[?#].*$/s, '')
  const resolve = (p: string) => {
    try {
      return new URL(p.startsWith('/') ? p : `/${p}`, 'http://x').pathname
    } catch {
      return p
    }
  }
  let decoded = raw
  try {
    decoded = decodeURIComponent(raw)
  } catch {
    decoded = raw.replace(/%2e/gi, '.').replace(/%2f/gi, '/').replace(/%5c/gi, '\\')
  }
  const noParams = raw.replace(/;[^/]*/g, '')
  return [
    resolve(raw),
    resolve(decoded),
    resolve(decoded.replace(/\\/g, '/')),
    resolve(noParams),
    resolve(raw.replace(/\/{2,}/g, '/')),
  ]
}

export function underPrefix(url: string, prefix: string): boolean {
  return pathReadings(url).every((p) => p === prefix || p.startsWith(`${prefix}/`))
}

const header = (h: IncomingHttpHeaders, name: string) => {
  const v = h[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/** Problems with one request an upstream received, given what the fuzzer sent under its id. */
export function seenProblems(
  s: Seen,
  sent: Map<string, SentMeta>,
  opts: { protectedExcept: string | undefined; proto: 'http' | 'https' },
): { id: string; problem: string }[] {
  const id = header(s.headers, 'x-fuzz-id') ?? 'unattributed'
  const out: { id: string; problem: string }[] = []
  const add = (problem: string) => out.push({ id, problem })
  if (s.headers[SMUGGLED] !== undefined)
    add(`a request smuggled inside a body reached upstream ${s.upstream}: ${s.url}`)
  if (opts.protectedExcept !== undefined && id !== 'probe') {
    const meta = sent.get(id)
    if (!meta?.acceptable && !underPrefix(s.url, opts.protectedExcept)) {
      const where = `upstream ${s.upstream} at ${JSON.stringify(s.url)} (resolves to ${[...new Set(pathReadings(s.url))].join(' | ')})`
      const written = s.url.replace(/[?#].*$/s, '')
      if (written === opts.protectedExcept || written.startsWith(`${opts.protectedExcept}/`))
        add(`a path written under the excluded prefix resolves outside it at ${where}`)
      else if (meta && meta.tokens.length > 0)
        add(`a token the gateway must refuse (${meta.tokens.join(', ')}) got through to ${where}`)
      else add(`a request without a token got past authentication to ${where}`)
    }
  }
  const user = header(s.headers, 'x-user-id')
  if (opts.protectedExcept !== undefined && user?.includes(FORGED_USER))
    add(`a forged X-User-Id reached upstream ${s.upstream}: ${JSON.stringify(user)}`)
  if (s.headers['x-injected'] !== undefined)
    add(`a header injected through a JWT claim reached upstream ${s.upstream}`)
  // Appending to a client's X-Forwarded-For is common practice; what the proxy must own is the
  // last entry (the peer it saw) and the X-Forwarded-Proto/-Host it rebuilds.
  const xff = header(s.headers, 'x-forwarded-for') ?? ''
  const last = xff.split(',').pop()?.trim()
  if (last !== '127.0.0.1' && last !== '::ffff:127.0.0.1')
    add(`X-Forwarded-For does not end with the peer address: ${JSON.stringify(xff.slice(-80))}`)
  const xfp = header(s.headers, 'x-forwarded-proto')
  if (xfp !== opts.proto)
    add(`X-Forwarded-Proto ${JSON.stringify(xfp)} on a ${opts.proto} listener reached upstream ${s.upstream}`)
  if (header(s.headers, 'x-forwarded-host')?.includes(FORGED_HOST))
    add(`a forged X-Forwarded-Host reached upstream ${s.upstream}`)
  return out
}
