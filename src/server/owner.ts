// What is one per instance lives with the instance's owner: the config (reload, control-API
// changes, unsaved changes) and the sum of the metrics. A single process is its own owner; a
// worker's owner is the primary, asked over the typed RPC of protocol.ts. ProxyInstance picks
// one at start and never asks which it has.

import type { ChangeOp } from '../config/mutations'
import type { DashboardData } from '../control/dashboard'
import type { PurgeMatch } from '../middleware/cache/memory-store'
import type { Metrics } from '../observe/metrics'
import type { ConfigKeeper, ReloadResult } from './keeper'
import type { ChangeResult, MetricsText, ToPrimary, ToWorker } from './protocol'
import type { Rpc } from './rpc'

export interface Owner {
  /** Re-reads the config file; an invalid file leaves the running config as it is. */
  reload(): Promise<ReloadResult>
  /** A control-API change, validated like the file; `ifRevision`: see ControlActions.change. */
  change(c: ChangeOp, ifRevision?: number): Promise<ChangeResult>
  /** Runtime changes not saved to the file. */
  readonly unsaved: readonly string[]
  /** Prometheus text for the whole instance. */
  metricsText(): Promise<MetricsText>
  /** Drops cached responses in every process of the instance; how many. */
  purgeCache(m: PurgeMatch): Promise<number>
  /** The instance's recent series and the config's revision and history. */
  dashboard(): Promise<DashboardData>
}

/** The single process: its own keeper, its own metrics. */
export class LocalOwner implements Owner {
  constructor(
    readonly keeper: ConfigKeeper,
    readonly metrics: Metrics,
    readonly purge: (m: PurgeMatch) => Promise<number>,
  ) {}

  async purgeCache(m: PurgeMatch): Promise<number> {
    return this.purge(m)
  }

  reload(): Promise<ReloadResult> {
    return this.keeper.reload()
  }

  change(c: ChangeOp, ifRevision?: number): Promise<ChangeResult> {
    return this.keeper.change(c, ifRevision)
  }

  get unsaved(): readonly string[] {
    return this.keeper.unsaved
  }

  async metricsText(): Promise<MetricsText> {
    return { text: await this.metrics.text(), contentType: this.metrics.contentType }
  }

  async dashboard(): Promise<DashboardData> {
    return { series: this.metrics.series.data(), config: this.keeper.configRevision() }
  }
}

/** A worker: the primary validates every change once and hands it to all workers. */
export class PrimaryOwner implements Owner {
  #unsaved: readonly string[] = []
  #queue: Promise<unknown> = Promise.resolve()

  constructor(readonly rpc: Rpc<ToPrimary, ToWorker>) {}

  reload(): Promise<ReloadResult> {
    return this.rpc.request('reload', undefined)
  }

  change(c: ChangeOp, ifRevision?: number): Promise<ChangeResult> {
    return this.rpc.request('change', { change: c, ifRevision })
  }

  get unsaved(): readonly string[] {
    return this.#unsaved
  }

  metricsText(): Promise<MetricsText> {
    return this.rpc.request('metrics', undefined)
  }

  dashboard(): Promise<DashboardData> {
    return this.rpc.request('dashboard', undefined)
  }

  /** The primary asks every worker (each has its own memory cache) and sums. */
  purgeCache(m: PurgeMatch): Promise<number> {
    return this.rpc.request('purge', m)
  }

  /** Runs `install` for a config the primary sent, one at a time, then takes its unsaved list. */
  applied(unsaved: readonly string[], install: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(install, install).then(() => {
      this.#unsaved = unsaved
    })
    this.#queue = run.catch(() => undefined)
    return run
  }
}
