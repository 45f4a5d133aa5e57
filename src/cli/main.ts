// The locci-proxy command line: options resolved flag > environment > file > default (docs/GUIDE.md),
// `start` (the default command) and `validate`. Exit codes: 0 ok, 1 bad config or failed start.

import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import type { Overrides } from '../config/compile'
import { loadDotEnv } from '../config/env'
import { formatProblem, type Problem } from '../config/problems'
import { LOG_LEVELS } from '../config/schema'
import type { Mode } from '../config/snapshot'
import { createLogger } from '../observe/logger'
import { loadPlan, type Plan } from '../proxy/runtime'
import { openConfigStore, type SharedStart } from '../server/config-store'
import { ProxyInstance } from '../server/instance'
import { http1ServerProblem } from '../server/listener'
import { Primary } from '../server/primary'
import type { ToPrimary, ToWorker } from '../server/protocol'
import { Rpc } from '../server/rpc'
import {
  selectUpstreamClient,
  type UpstreamClient,
  type UpstreamClientKind,
  upstreamClientProblem,
} from '../upstream/client'
import { registerAdminCommands } from './admin'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../../package.json').version

interface GlobalOptions {
  config?: string
  mode?: string
  bind?: string
  logLevel?: string
}

const MODES: Record<string, Mode> = {
  lb: 'load_balancer',
  load_balancer: 'load_balancer',
  gateway: 'api_gateway',
  api_gateway: 'api_gateway',
}

export function main(argv: string[]): void {
  argv = seaWorkerArgv(argv)
  loadDotEnv(process.cwd())
  const program = new Command('locci-proxy')
    .description('HTTP load balancer and API gateway, configured by one YAML file')
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'config file (env LOCCI_CONFIG; default config.yaml)')
    .addOption(new Option('--mode <mode>', 'override mode (env LOCCI_MODE): lb | gateway'))
    .option('--bind <addr>', 'override server.bind_address, e.g. 0.0.0.0:443 (env LOCCI_BIND)')
    .addOption(
      new Option('--log-level <level>', 'override logging.level (env LOG_LEVEL)').choices(
        LOG_LEVELS as unknown as string[],
      ),
    )
    .option('--control-url <url>', 'control API of a running proxy, for the admin commands')
    .option('--api-key <key>', 'control API key, for the admin commands (env LOCCI_API_KEY)')
    .showHelpAfterError()

  program
    .command('start', { isDefault: true })
    .description('start the proxy (the default command)')
    .action(async (_opts, cmd: Command) => {
      await start(cmd.optsWithGlobals<GlobalOptions>())
    })

  program
    .command('validate [file]')
    .description('check a config file; exit 0 when valid, 1 with every problem listed otherwise')
    .action((file: string | undefined, _opts, cmd: Command) => {
      validate(file, cmd.optsWithGlobals<GlobalOptions>())
    })

  registerAdminCommands(program, (opts) => {
    const r = resolveOptions(opts as GlobalOptions, process.env)
    return { file: r.file, overrides: r.overrides }
  })

  program.parseAsync(argv).catch((err: Error) => {
    process.stderr.write(`locci-proxy: ${err.message}\n`)
    process.exit(1)
  })
}

/**
 * In a single executable, argv[1] is the executable itself; cluster.fork adds its exec path
 * (the same file) again for a worker. Drop that duplicate so workers parse the same options.
 */
function seaWorkerArgv(argv: string[]): string[] {
  let sea = false
  try {
    sea = (require('node:sea') as { isSea(): boolean }).isSea()
  } catch {
    // Node without node:sea: not a single executable.
  }
  return sea && cluster.isWorker && argv[2] === argv[1] ? [argv[0]!, argv[1]!, ...argv.slice(3)] : argv
}

/** Config path and overrides, by precedence: flag > environment > file > default. */
export function resolveOptions(
  opts: GlobalOptions,
  env: NodeJS.ProcessEnv,
): {
  file: string
  overrides: Overrides
  upstreamClient: UpstreamClientKind | undefined
  problems: string[]
} {
  const problems: string[] = []
  const file = opts.config ?? nonEmpty(env.LOCCI_CONFIG) ?? 'config.yaml'
  const modeText = opts.mode ?? nonEmpty(env.LOCCI_MODE)
  let mode: Mode | undefined
  if (modeText !== undefined) {
    mode = MODES[modeText]
    if (!mode)
      problems.push(`${opts.mode ? '--mode' : 'LOCCI_MODE'}: unknown mode "${modeText}"; use lb or gateway`)
  }
  const logLevel = opts.logLevel ?? nonEmpty(env.LOG_LEVEL)
  if (logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`LOG_LEVEL: unknown level "${logLevel}"; use one of ${LOG_LEVELS.join(', ')}`)
  }
  const client = nonEmpty(env.LOCCI_UPSTREAM_CLIENT)
  const clientProblem = upstreamClientProblem(client)
  if (clientProblem !== undefined) problems.push(clientProblem)
  const serverProblem = http1ServerProblem(nonEmpty(env.LOCCI_HTTP1_SERVER))
  if (serverProblem !== undefined) problems.push(serverProblem)
  return {
    file,
    overrides: { mode, bind: opts.bind ?? nonEmpty(env.LOCCI_BIND), logLevel },
    upstreamClient: clientProblem === undefined ? (client as UpstreamClientKind | undefined) : undefined,
    problems,
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v
}

function printProblems(file: string, problems: readonly Problem[]): void {
  process.stderr.write(
    `locci-proxy: ${file}: invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'})\n` +
      problems.map((p) => `  ${formatProblem(p)}\n`).join(''),
  )
}

function loadOrExit(file: string, overrides: Overrides, usage: string[]): Plan {
  if (usage.length > 0) {
    for (const u of usage) process.stderr.write(`locci-proxy: ${u}\n`)
    process.exit(1)
  }
  const result = loadPlan(file, overrides)
  if (!result.ok) {
    printProblems(file, result.problems)
    process.exit(1)
  }
  return result.plan
}

function validate(fileArg: string | undefined, opts: GlobalOptions): void {
  const r = resolveOptions(opts, process.env)
  const file = fileArg ?? r.file
  const { snapshot } = loadOrExit(file, r.overrides, r.problems)
  const mode = snapshot.mode
  const routes = mode.kind === 'api_gateway' ? mode.routes.length : 0
  process.stdout.write(
    `${file}: OK (mode ${mode.kind}, ${snapshot.upstreams.size} upstream${snapshot.upstreams.size === 1 ? '' : 's'}` +
      (mode.kind === 'api_gateway' ? `, ${routes} route${routes === 1 ? '' : 's'}` : '') +
      ')\n',
  )
}

async function start(opts: GlobalOptions): Promise<void> {
  const r = resolveOptions(opts, process.env)
  const filePlan = loadOrExit(r.file, r.overrides, r.problems)
  let plan = filePlan
  const { snapshot } = filePlan
  let upstreamClient: UpstreamClient
  try {
    upstreamClient = selectUpstreamClient(r.upstreamClient)
  } catch (err) {
    process.stderr.write(`locci-proxy: ${(err as Error).message}\n`)
    process.exit(1)
  }
  const logging = createLogger({ level: snapshot.logging.level, format: snapshot.logging.format })
  const log = logging.logger
  if (upstreamClient.fallback !== undefined && cluster.isPrimary) {
    log.warn(
      { reason: upstreamClient.fallback, upstream_client: 'undici' },
      'the built-in upstream client cannot run here; forwarding with undici instead',
    )
  }
  // Last line of defence. Every request path guards itself (a fault ends that request, not the
  // process); reaching these handlers is a bug, logged loudly and counted, and the process
  // keeps serving the requests that are fine.
  let countFault: () => void = () => undefined
  process.on('uncaughtException', (err) => {
    log.error(
      { err: err?.stack ?? String(err), error_type: 'internal' },
      'uncaught exception (a bug; please report it)',
    )
    countFault()
  })
  process.on('unhandledRejection', (reason) => {
    log.error(
      { err: (reason as Error)?.stack ?? String(reason), error_type: 'internal' },
      'unhandled rejection (a bug; please report it)',
    )
    countFault()
  })

  let stop: () => Promise<void>
  // Installed before the start, so a SIGHUP or SIGUSR1 sent while workers are still starting
  // meets these handlers instead of Node's defaults (SIGHUP ends a process, SIGUSR1 starts the
  // debugger); one that arrives early is carried out once the proxy is up.
  let reload: (() => void) | undefined
  let reopenLogs: (() => void) | undefined
  let pendingReload = false
  let pendingReopen = false
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading the config file')
    if (reload) reload()
    else pendingReload = true
  })
  // logrotate's postrotate: the access log file is reopened by its path.
  process.on('SIGUSR1', () => {
    if (reopenLogs) reopenLogs()
    else pendingReopen = true
  })
  try {
    let text = readFileSync(r.file, 'utf8')
    // config_store: the owner of the config (never a worker) starts from file + the shared layer.
    let shared: SharedStart | undefined
    if (snapshot.configStore && cluster.isPrimary) {
      const opened = await openConfigStore(
        {
          url: snapshot.configStore.url,
          keyPrefix: snapshot.configStore.keyPrefix,
          log,
          file: r.file,
          env: process.env,
          overrides: r.overrides,
          waitMs: 3000,
        },
        filePlan,
        text,
      )
      shared = { store: opened.store, layered: opened.layered }
      plan = opened.plan
      text = opened.text
    }
    if (snapshot.workers > 1 && cluster.isPrimary) {
      const primary = new Primary(
        { file: r.file, overrides: r.overrides, env: process.env, logging, upstreamClient, shared },
        plan,
        text,
      )
      await primary.start()
      stop = () => primary.stop()
      reload = () => void primary.reload()
      reopenLogs = () => primary.reopenLogs()
    } else {
      let link: Rpc<ToPrimary, ToWorker> | undefined
      if (cluster.isWorker) {
        link = new Rpc((m) => process.send!(m))
        process.on('message', (m) => link!.receive(m))
      }
      const instance = await ProxyInstance.start(
        {
          file: r.file,
          overrides: r.overrides,
          env: process.env,
          version: VERSION,
          logging,
          primary: link,
          upstreamClient,
          shared,
        },
        plan,
        text,
      )
      stop = () => instance.stop()
      reload = () => void instance.reload()
      reopenLogs = () => instance.reopenLogs()
      countFault = () => instance.metrics.error(snapshot.mode.kind, 'internal')
      // A worker whose primary is gone drains and exits.
      if (cluster.isWorker) process.on('disconnect', () => void stop().then(() => process.exit(0)))
    }
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'failed to start')
    logging.flush()
    process.stderr.write(`locci-proxy: ${(err as Error).message}\n`)
    process.exit(1)
  }

  if (pendingReload) reload!()
  if (pendingReopen) reopenLogs!()
  let signals = 0
  const onSignal = (signal: NodeJS.Signals) => {
    // A worker hears Ctrl-C's SIGINT and then the primary's SIGTERM: one shutdown, not a forced exit.
    if (signals > 0 && cluster.isWorker) return
    if (++signals > 1) {
      log.warn({ signal }, 'second signal; exiting now')
      logging.flush()
      process.exit(1)
    }
    log.info({ signal }, 'signal received')
    stop().then(
      () => {
        logging.flush()
        process.exit(0)
      },
      (err: Error) => {
        log.error({ err: err.message }, 'error while stopping')
        logging.flush()
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}
