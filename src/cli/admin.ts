// The admin commands: talk to a running proxy's control API, found from the config file
// (control_api.bind_address, api_key) or --control-url / --api-key (LOCCI_API_KEY). Readable
// output by default, --json for scripts; every failure is one clear line and a non-zero exit.

import { type Command, Option } from 'commander'
import type { Dispatcher } from 'undici'
import type { Overrides } from '../config/compile'
import { formatProblem } from '../config/problems'
import { loadPlan } from '../proxy/runtime'
import { type Explanation, explain, renderExplanation } from '../routing/explain'

interface AdminOptions {
  config?: string
  controlUrl?: string
  apiKey?: string
  json?: boolean
}

class CliError extends Error {}

interface Target {
  url: string
  apiKey: string | undefined
}

/** Where the control API is: flags and env first, then the config file. */
function target(opts: AdminOptions, file: string, overrides: Overrides): Target {
  const flagKey = opts.apiKey ?? (process.env.LOCCI_API_KEY || undefined)
  const r = loadPlan(file, overrides)
  const fileKey = r.ok ? r.plan.snapshot.controlApi.apiKey : undefined
  if (opts.controlUrl) return { url: opts.controlUrl.replace(/\/$/, ''), apiKey: flagKey ?? fileKey }
  if (!r.ok) {
    throw new CliError(
      `cannot find the control API from ${file}:\n${r.problems.map((p) => `  ${formatProblem(p)}`).join('\n')}\n(or pass --control-url)`,
    )
  }
  const c = r.plan.snapshot.controlApi
  if (!c.enabled)
    throw new CliError(
      `the control API is disabled in ${file} (control_api.enabled: false); pass --control-url`,
    )
  if (c.bind.port === 0) {
    throw new CliError(
      `control_api.bind_address in ${file} uses port 0 (any free port); pass --control-url with the port the proxy logged`,
    )
  }
  const host = c.bind.host === '0.0.0.0' ? '127.0.0.1' : c.bind.host === '::' ? '::1' : c.bind.host
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${c.bind.port}`,
    apiKey: flagKey ?? c.apiKey,
  }
}

async function call(
  t: Target,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  // undici.request, not fetch: fetch refuses the Fetch spec's "bad ports", which a control API may use.
  let status: number
  let text: string
  try {
    // Loaded by the admin commands only, not by a proxy starting up.
    const { request } = require('undici') as typeof import('undici')
    const res = await request(`${t.url}${path}`, {
      method: method as Dispatcher.HttpMethod,
      headers: {
        ...(t.apiKey ? { authorization: `Bearer ${t.apiKey}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    })
    status = res.statusCode
    text = await res.body.text()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw new CliError(
      `cannot reach the control API at ${t.url} (${code}): is the proxy running, with control_api.enabled?`,
    )
  }
  const json = text === '' ? undefined : JSON.parse(text)
  if (status === 401) {
    throw new CliError(
      `the control API at ${t.url} refused the API key (401); give it with --api-key or LOCCI_API_KEY`,
    )
  }
  if (status >= 400) {
    const j = json as { error?: string; problems?: string[] } | undefined
    const problems = j?.problems?.length ? `\n${j.problems.map((p) => `  ${p}`).join('\n')}` : ''
    throw new CliError(`${j?.error ?? `HTTP ${status}`} (${status})${problems}`)
  }
  return { status, json }
}

function out(opts: AdminOptions, json: unknown, text: string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`)
}

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

/** `group=weight`, the weight a whole number (the proxy checks the rest, as for the file). */
function parseWeight(arg: string): { name: string; weight: number } {
  const eq = arg.lastIndexOf('=')
  const name = arg.slice(0, eq)
  const weight = arg.slice(eq + 1)
  if (eq <= 0 || !/^\d{1,9}$/.test(weight)) {
    throw new CliError(`"${arg}" is not group=weight (a whole number), e.g. v1=90`)
  }
  return { name, weight: Number(weight) }
}

export function registerAdminCommands(
  program: Command,
  resolve: (opts: { config?: string }) => { file: string; overrides: Overrides },
): void {
  // --control-url and --api-key are program options, so they work before or after the command.
  const withTarget = (cmd: Command) => cmd.option('--json', 'print JSON for scripts')
  const run =
    (fn: (opts: AdminOptions, t: Target, ...args: string[]) => Promise<void>) =>
    async (...args: unknown[]) => {
      const cmd = args.at(-1) as Command
      const opts = cmd.optsWithGlobals<AdminOptions>()
      try {
        const { file, overrides } = resolve(opts)
        await fn(opts, target(opts, file, overrides), ...(args.slice(0, -2) as string[]))
      } catch (err) {
        if (!(err instanceof CliError)) throw err
        process.stderr.write(`locci-proxy: ${err.message}\n`)
        process.exitCode = 1
      }
    }

  withTarget(
    program.command('status').description('show the running proxy: mode, uptime, upstream health'),
  ).action(
    run(async (opts, t) => {
      const status = (await call(t, 'GET', '/api/v1/status')).json as Record<string, unknown>
      const ups = (await call(t, 'GET', '/api/v1/upstreams')).json as {
        upstreams: Array<{
          name: string
          strategy: string
          available: number
          active: boolean
          servers: Array<Record<string, unknown>>
        }>
      }
      const lines = [
        `${status.status}  mode ${status.mode}  version ${status.version}  pid ${status.pid}  uptime ${status.uptime_secs}s  workers ${status.workers}`,
        `config ${status.config_file}${(status.unsaved_changes as string[]).length ? `  (${(status.unsaved_changes as string[]).length} unsaved runtime change(s): ${(status.unsaved_changes as string[]).join('; ')})` : ''}`,
      ]
      lines.push(...storeLines(status.store as StoreView | null), 'upstreams:')
      for (const u of ups.upstreams) {
        lines.push(
          `  ${u.name}  ${u.strategy}  ${u.available}/${u.servers.length} in rotation${u.active ? '' : '  (not used by this mode)'}`,
        )
        for (const s of u.servers) {
          const state = !s.healthy ? 'unhealthy' : s.ejected ? `ejected until ${s.ejected_until}` : 'healthy'
          lines.push(`    ${s.address}  ${state}  in flight ${s.in_flight}`)
        }
      }
      out(opts, { status, upstreams: ups.upstreams }, lines.join('\n'))
    }),
  )

  withTarget(
    program
      .command('add-route <name>')
      .description('add a gateway route')
      .requiredOption('--path <pattern>', 'path_pattern (a regex)')
      .requiredOption('--upstream <name>', 'upstream group')
      .option('--methods <list>', 'comma-separated methods (default: all)')
      .option('--strip-prefix', 'remove the matched part of the path')
      .option('--timeout <secs>', 'upstream timeout for this route', Number)
      .option('--middlewares <list>', 'comma-separated middleware names, in order'),
  ).action(
    run(async (opts, t, name) => {
      const o = opts as AdminOptions & {
        path: string
        upstream: string
        methods?: string
        stripPrefix?: boolean
        timeout?: number
        middlewares?: string
      }
      const body = {
        name,
        path_pattern: o.path,
        upstream: o.upstream,
        ...(o.methods ? { methods: list(o.methods) } : {}),
        ...(o.stripPrefix ? { strip_prefix: true } : {}),
        ...(o.timeout !== undefined ? { timeout_secs: o.timeout } : {}),
        ...(o.middlewares ? { middlewares: list(o.middlewares) } : {}),
      }
      const r = (await call(t, 'POST', '/api/v1/routes', body)).json as ChangeAnswer
      out(opts, r, `${r.change}${whereKept(r)}`)
    }),
  )

  withTarget(program.command('remove-route <name>').description('remove a gateway route')).action(
    run(async (opts, t, name) => {
      await call(t, 'DELETE', `/api/v1/routes/${encodeURIComponent(name!)}`)
      out(opts, { removed: name }, `removed route ${name}`)
    }),
  )

  withTarget(
    program
      .command('set-weights <route> <weights...>')
      .description('set the weighted split of a gateway route: set-weights api v1=90 v2=10'),
  ).action(
    run(async (opts, t, route, weights) => {
      const upstreams = (weights as unknown as string[]).map(parseWeight)
      const r = (await call(t, 'PATCH', `/api/v1/routes/${encodeURIComponent(route!)}`, { upstreams }))
        .json as { change: string; saved: boolean }
      out(
        opts,
        r,
        `${r.change}${r.saved ? ' (saved to the config file)' : ' (not saved: lost at the next reload unless added to the file)'}`,
      )
    }),
  )

  withTarget(
    program
      .command('add-upstream <group> <servers...>')
      .description('add servers to an upstream group (creating the group if it does not exist)')
      .addOption(new Option('--strategy <name>', 'strategy of a new group')),
  ).action(
    run(async (opts, t, group, servers) => {
      const o = opts as AdminOptions & { strategy?: string }
      const body = { name: group, servers, ...(o.strategy ? { strategy: o.strategy } : {}) }
      const r = (await call(t, 'POST', '/api/v1/upstreams', body)).json as ChangeAnswer
      out(opts, r, `${r.change}${whereKept(r)}`)
    }),
  )

  withTarget(
    program.command('remove-upstream <group> <server>').description('remove a server from an upstream group'),
  ).action(
    run(async (opts, t, group, server) => {
      await call(
        t,
        'DELETE',
        `/api/v1/upstreams/${encodeURIComponent(group!)}/servers/${encodeURIComponent(server!)}`,
      )
      out(opts, { removed: server, upstream: group }, `removed server ${server} from ${group}`)
    }),
  )

  withTarget(
    program.command('reload').description('re-read the config file in the running proxy (like SIGHUP)'),
  ).action(
    run(async (opts, t) => {
      let r: {
        result: string
        changes?: Record<string, string[]>
        problems?: string[]
        dropped_runtime_changes?: string[]
      }
      try {
        r = (await call(t, 'POST', '/api/v1/reload')).json as typeof r
      } catch (err) {
        if (err instanceof CliError && err.message.includes('(422)'))
          throw new CliError(
            err.message.replace('invalid configuration', 'reload refused, the running config stays'),
          )
        throw err
      }
      const changed = Object.entries(r.changes ?? {})
        .filter(([, v]) => v.length > 0)
        .map(([k, v]) => `  ${k}: ${v.join(', ')}`)
      out(
        opts,
        r,
        r.result === 'unchanged' ? 'reloaded; nothing changed' : ['reloaded:', ...changed].join('\n'),
      )
    }),
  )

  program
    .command('explain <method> <path>')
    .description('show which route, middlewares and upstream a request gets, from the config file alone')
    .option(
      '-H, --header <header>',
      "a request header, 'Name: value' (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option('--json', 'print JSON')
    .action((method: string, path: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<AdminOptions & { header: string[] }>()
      const { file, overrides } = resolve(opts)
      const r = loadPlan(file, overrides)
      if (!r.ok) {
        process.stderr.write(
          `locci-proxy: ${file}: invalid configuration\n${r.problems.map((p) => `  ${formatProblem(p)}\n`).join('')}`,
        )
        process.exitCode = 1
        return
      }
      const headers = opts.header.flatMap((h) => {
        const colon = h.indexOf(':')
        return colon > 0 ? [h.slice(0, colon).trim(), h.slice(colon + 1).trim()] : []
      })
      const e: Explanation = explain(
        r.plan,
        undefined,
        method,
        path.startsWith('/') ? path : `/${path}`,
        headers,
      )
      out(opts, e, renderExplanation(e))
    })
}

/** /api/v1/status `store` (config_store), as much of it as `status` prints. */
interface StoreView {
  type: string
  url: string
  revision: number
  store_revision: number | null
  lag_ms: number
  last_error: string | null
  connected: boolean
  instances: Array<{
    id: string
    pid: number
    listener: string
    control_api: string | null
    revision: number
    last_error: string | null
  }>
}

/** The config store and every instance that heartbeats into it. */
function storeLines(s: StoreView | null): string[] {
  if (!s) return []
  const lines = [
    `config store ${s.type} ${s.url}  ${s.connected ? 'connected' : 'UNREACHABLE'}  revision ${s.revision}` +
      `${s.store_revision !== null && s.store_revision !== s.revision ? ` (store at ${s.store_revision}, behind ${s.lag_ms} ms)` : ''}` +
      `${s.last_error ? `  error: ${s.last_error}` : ''}`,
    `instances (${s.instances.length}):`,
  ]
  for (const i of s.instances) {
    lines.push(
      `  ${i.id}  pid ${i.pid}  ${i.listener}  control ${i.control_api ?? '-'}  revision ${i.revision}${i.last_error ? `  error: ${i.last_error}` : ''}`,
    )
  }
  return lines
}

/** A control-API change's answer. */
interface ChangeAnswer {
  change: string
  saved: boolean
  revision?: number
  stored?: boolean
}

/** Where a change lives now: the file, the config store (config_store), or only this process. */
function whereKept(r: ChangeAnswer): string {
  if (r.saved) return ' (saved to the config file)'
  if (r.stored) return ` (kept in the config store, revision ${r.revision}: every instance applies it)`
  return ' (not saved: lost at the next reload unless added to the file)'
}
