// The live config as its owner sees it: the YAML text (the file as last read, plus runtime
// changes), the runtime changes not yet saved (the net difference between the file's config and
// the live one), and the ways it changes: a reload of the file (SIGHUP, the control API, or a
// change of the file with `watch: true`) and a control-API change. Both are validated by
// compilePlan() and applied one at a time; making a new plan live is the owner's job (the single
// process swaps it in, the primary hands it to its workers). One implementation for both, so they
// log, count and persist alike.
// With a shared store (config_store, server/config-store.ts) the runtime changes are a layer kept
// in the store: the live config is always the file + that layer. A change is validated here on
// top of the store's latest layer, then committed by compare-and-set on the layer's revision
// (a lost race is a conflict, never a merge), then made live; layers committed by other
// instances arrive through applyShared(). A reload re-applies the layer on the new file.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { type Document, parseDocument } from 'yaml'
import type { Overrides } from '../config/compile'
import { type ConfigDiff, describeDiff, diffSnapshots, isEmpty } from '../config/diff'
import { parseConfigText, readConfigFile } from '../config/load'
import { applyChange, type ChangeOp } from '../config/mutations'
import { formatChangeProblem, formatProblem } from '../config/problems'
import { ChangeRefused } from '../config/refused'
import { EMPTY_LAYER, layerDocument, type RuntimeLayer } from '../config/runtime-layer'
import type { Snapshot } from '../config/snapshot'
import { writeAtomically } from '../config/write'
import type { ConfigEvent, ConfigRevision } from '../control/dashboard'
import type { Logger } from '../observe/logger'
import { compilePlan, type Plan } from '../proxy/runtime'
import { ConfigWatcher } from './watch'

export interface ReloadResult {
  result: 'success' | 'failure' | 'unchanged'
  changes?: ConfigDiff
  dropped_runtime_changes?: string[]
  problems?: string[]
}

/** The dashboard shows the last few; older ones are in the log. */
const HISTORY = 20

export interface KeeperOptions {
  file: string
  env: NodeJS.ProcessEnv
  overrides: Overrides
  log: Logger
  /**
   * Makes `next` live, or throws (a ChangeRefused for a reason the user can act on). `unsaved` is
   * the list of unsaved runtime changes once this change is in.
   */
  apply(next: Plan, text: string, unsaved: readonly string[]): Promise<void>
  /** Hears each reload's outcome (metrics, status). */
  onReload?(result: 'success' | 'failure'): void
  /** Quiet time after the last change of the file before a `watch: true` reload (default 300 ms). */
  watchDebounceMs?: number
  /** Where the runtime layer is shared (config_store); without one it lives in this keeper only. */
  store?: LayerStore
  /** The layer `plan` was built with (config_store), with the file's own text and config. */
  layered?: Layered
}

/** A shared runtime layer (server/config-store.ts). Both refuse with ChangeRefused('unavailable'). */
export interface LayerStore {
  /** The latest committed layer. */
  read(): Promise<RuntimeLayer>
  /** Stores `next` if the stored revision is still `expected`; false when another commit came first. */
  commit(expected: number, next: RuntimeLayer): Promise<boolean>
}

/** A plan built as file + runtime layer. */
export interface Layered {
  layer: RuntimeLayer
  fileText: string
  fileSnapshot: Snapshot
}

/** What a control-API change did; `revision` is the runtime layer's once it is in. */
export interface ChangeOutcome {
  change: string
  saved: boolean
  revision: number
  /** Committed to the shared store (config_store). */
  stored?: boolean
}

/**
 * The plan for the config file `fileText` with `layer` on top, or the reasons it is refused (the
 * layer does not apply to this file, or the result does not compile).
 */
export function layeredPlan(
  file: string,
  fileText: string,
  layer: RuntimeLayer,
  env: NodeJS.ProcessEnv,
  overrides: Overrides,
): { ok: true; plan: Plan; text: string } | { ok: false; problems: string[] } {
  let text: string
  try {
    text = layerDocument(fileText, layer.changes).toString()
  } catch (err) {
    return { ok: false, problems: [(err as Error).message] }
  }
  const r = compilePlan(parseConfigText(file, text, env), overrides)
  return r.ok
    ? { ok: true, plan: r.plan, text }
    : { ok: false, problems: r.problems.map(formatChangeProblem) }
}

export class ConfigKeeper {
  readonly #o: KeeperOptions
  #plan: Plan
  #text: string
  /** The config file as last read or written, and its config: unsaved changes are measured from it. */
  #fileText: string
  #fileSnapshot: Snapshot
  #unsaved: string[] = []
  /** The runtime layer in the live config: shared (config_store) or, without a store, only counted. */
  #layer: RuntimeLayer
  #queue: Promise<unknown> = Promise.resolve()
  readonly #watcher: ConfigWatcher
  #revision = 1
  readonly #history: ConfigEvent[] = []

  constructor(o: KeeperOptions, plan: Plan, text: string) {
    this.#o = o
    this.#plan = plan
    this.#text = text
    this.#fileText = o.layered?.fileText ?? text
    this.#fileSnapshot = o.layered?.fileSnapshot ?? plan.snapshot
    this.#layer = o.layered?.layer ?? EMPTY_LAYER
    if (o.layered)
      this.#unsaved = describeDiff(diffSnapshots(this.#fileSnapshot, plan.snapshot), plan.snapshot)
    this.#watcher = new ConfigWatcher({
      file: o.file,
      log: o.log,
      debounceMs: o.watchDebounceMs,
      onChange: () => this.#fileChanged(),
    })
    this.#watcher.enable(plan.snapshot.watch)
  }

  get unsaved(): readonly string[] {
    return this.#unsaved
  }

  /** The live config's text, when it is not the file's (runtime changes, the shared layer). */
  get changedText(): string | undefined {
    return this.#text === this.#fileText ? undefined : this.#text
  }

  /** The runtime layer's revision in the live config. */
  get revision(): number {
    return this.#layer.revision
  }

  /** The live config's revision, hash, source and recent history, for the dashboard. */
  configRevision(): ConfigRevision {
    return {
      revision: this.#revision,
      hash: createHash('sha256').update(this.#text).digest('hex').slice(0, 12),
      source: path.resolve(this.#o.file),
      history: [...this.#history],
    }
  }

  #remember(e: Omit<ConfigEvent, 'at'>): void {
    this.#history.push({ at: new Date().toISOString(), ...e })
    if (this.#history.length > HISTORY) this.#history.shift()
  }

  /** Stops watching the file (the process is stopping). */
  close(): void {
    this.#watcher.close()
  }

  /** Runs `fn` after every change before it has finished. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => undefined)
    return run
  }

  /**
   * Makes a validated plan live. `fileSnapshot` is the file's config once it is in (the new one
   * after a reload or a saved change, the same as before after an unsaved one).
   */
  async #install(next: Plan, text: string, fileSnapshot: Snapshot): Promise<ConfigDiff> {
    const unsaved = describeDiff(diffSnapshots(fileSnapshot, next.snapshot), next.snapshot)
    await this.#o.apply(next, text, unsaved)
    const diff = diffSnapshots(this.#plan.snapshot, next.snapshot)
    if (text !== this.#text) this.#revision++
    this.#plan = next
    this.#text = text
    this.#fileSnapshot = fileSnapshot
    this.#unsaved = unsaved
    this.#watcher.enable(next.snapshot.watch)
    return diff
  }

  /** A change of the file seen by the watcher: reload, unless it holds what was last read or written. */
  #fileChanged(): void {
    let text: string | undefined
    try {
      text = readFileSync(this.#o.file, 'utf8')
    } catch {
      // Missing or unreadable: the reload says why, and the running config stays.
    }
    if (text === this.#fileText) {
      this.#o.log.debug(
        { file: this.#o.file },
        'config file written with the content last loaded; not reloaded',
      )
      return
    }
    this.#o.log.info({ file: this.#o.file, trigger: 'watch' }, 'reloading the config file')
    void this.reload()
  }

  /** Re-reads the config file; an invalid file leaves the running config as it is. */
  reload(): Promise<ReloadResult> {
    return this.serial(async () => {
      const { file, env, overrides, log } = this.#o
      // With a store the layer is put back on the new file: nothing is dropped.
      const shared = this.#o.store !== undefined
      const dropped = shared ? [] : this.#unsaved
      try {
        const source = readConfigFile(file, env)
        const r = compilePlan(source, overrides)
        if (!r.ok)
          throw new ChangeRefused('invalid', 'invalid configuration', {
            problems: r.problems.map(formatProblem),
          })
        let next = { plan: r.plan, text: source.text }
        if (shared && this.#layer.changes.length > 0) {
          const l = layeredPlan(file, source.text, this.#layer, env, overrides)
          if (!l.ok) {
            throw new ChangeRefused('invalid', 'the runtime layer does not apply to the new file', {
              problems: l.problems.map((p) => `runtime layer (revision ${this.#layer.revision}): ${p}`),
            })
          }
          next = l
        }
        const diff = await this.#install(next.plan, next.text, r.plan.snapshot)
        this.#fileText = source.text
        this.#o.onReload?.('success')
        this.#remember({
          kind: 'reload',
          result: isEmpty(diff) ? 'unchanged' : 'success',
          summary: describeDiff(diff, r.plan.snapshot),
        })
        const summary = Object.fromEntries(Object.entries(diff).filter(([, v]) => v.length > 0))
        log.info(
          { ...summary, ...(dropped.length ? { dropped_runtime_changes: dropped } : {}) },
          isEmpty(diff) ? 'config reloaded; nothing changed' : 'config reloaded',
        )
        if (dropped.length > 0) {
          log.warn(
            { dropped_runtime_changes: dropped },
            'reload replaced runtime changes that were not saved to the config file',
          )
        }
        return {
          result: isEmpty(diff) ? 'unchanged' : 'success',
          changes: diff,
          dropped_runtime_changes: dropped,
        }
      } catch (err) {
        const problems =
          err instanceof ChangeRefused ? (err.details.problems as string[]) : [(err as Error).message]
        this.#o.onReload?.('failure')
        this.#remember({ kind: 'reload', result: 'failure', summary: problems })
        log.error({ problems }, 'config reload failed; the running config stays')
        return { result: 'failure', problems }
      }
    })
  }

  /**
   * A control-API change: edit the YAML, validate it like the file, make it live, persist or
   * remember. A refusal names the change and the key paths; never lines, since the edited text
   * (with earlier unsaved changes) is in no file.
   */
  change(c: ChangeOp, ifRevision?: number): Promise<ChangeOutcome> {
    return this.serial(async () => {
      if (this.#o.store) return this.#sharedChange(this.#o.store, c, ifRevision)
      const { file } = this.#o
      if (ifRevision !== undefined && ifRevision !== this.#layer.revision)
        throw stale(this.#layer.revision, ifRevision)
      const { description, text, plan } = this.#changed(parseDocument(this.#text), c)
      // Whether the change is saved depends on the config it produces (control_api.persist).
      const saved = plan.snapshot.raw.control_api.persist
      await this.#install(plan, text, saved ? plan.snapshot : this.#fileSnapshot)
      if (saved) {
        writeAtomically(file, text)
        this.#fileText = text
      }
      this.#layer = { revision: this.#layer.revision + 1, changes: [], committedAt: Date.now() }
      this.#remember({ kind: 'change', result: 'success', summary: [description] })
      this.#o.log.info({ change: description, saved }, 'config changed through the control API')
      return { change: description, saved, revision: this.#layer.revision }
    })
  }

  /** `c` made on `doc` and validated like the file; refused (invalid) when the result would not be. */
  #changed(doc: Document, c: ChangeOp): { description: string; text: string; plan: Plan } {
    const { file, env, overrides } = this.#o
    const description = applyChange(doc, c)
    const text = doc.toString()
    const r = compilePlan(parseConfigText(file, text, env), overrides)
    if (!r.ok) {
      throw new ChangeRefused(
        'invalid',
        `the change (${description}) was not made: the config would be invalid`,
        {
          change: description,
          problems: r.problems.map(formatChangeProblem),
        },
      )
    }
    return { description, text, plan: r.plan }
  }

  /** A change with config_store: on top of the store's latest layer, committed there before it is live. */
  async #sharedChange(
    store: LayerStore,
    c: ChangeOp,
    ifRevision: number | undefined,
  ): Promise<ChangeOutcome> {
    const current = await store.read()
    if (ifRevision !== undefined && ifRevision !== current.revision) throw stale(current.revision, ifRevision)
    let doc: Document
    try {
      doc = layerDocument(this.#fileText, current.changes)
    } catch (err) {
      throw new ChangeRefused(
        'conflict',
        `the shared runtime layer (revision ${current.revision}) does not apply to this instance's config file: ${(err as Error).message}`,
      )
    }
    const { description, text, plan } = this.#changed(doc, c)
    const next: RuntimeLayer = {
      revision: current.revision + 1,
      changes: [...current.changes, c],
      committedAt: Date.now(),
    }
    if (!(await store.commit(current.revision, next))) {
      throw new ChangeRefused(
        'conflict',
        `another instance changed the runtime config at the same time (revision ${current.revision} is gone); nothing was changed: read the config again and retry`,
      )
    }
    await this.#install(plan, text, this.#fileSnapshot)
    this.#layer = next
    this.#remember({ kind: 'change', result: 'success', summary: [description] })
    this.#o.log.info(
      { change: description, revision: next.revision },
      'config changed through the control API (shared)',
    )
    return { change: description, saved: false, revision: next.revision, stored: true }
  }

  /**
   * A layer committed to the store (by any instance): made live on top of the file, unless it is
   * the one live already. Refused (thrown) when it does not apply or compile: the running config stays.
   */
  applyShared(layer: RuntimeLayer): Promise<boolean> {
    return this.serial(async () => {
      if (layer.revision === this.#layer.revision && layer.committedAt === this.#layer.committedAt)
        return false
      const { file, env, overrides } = this.#o
      const l = layeredPlan(file, this.#fileText, layer, env, overrides)
      if (!l.ok) {
        throw new ChangeRefused('invalid', `runtime layer revision ${layer.revision} cannot be applied`, {
          problems: l.problems,
        })
      }
      await this.#install(l.plan, l.text, this.#fileSnapshot)
      this.#layer = layer
      this.#remember({
        kind: 'change',
        result: 'success',
        summary: [`runtime layer revision ${layer.revision} from the shared store`],
      })
      this.#o.log.info(
        {
          revision: layer.revision,
          changes: layer.changes.length,
          // Commit (on the committing instance's clock) to live here: the propagation time.
          ...(layer.committedAt > 0 ? { delay_ms: Math.max(0, Date.now() - layer.committedAt) } : {}),
        },
        'runtime config applied from the store',
      )
      return true
    })
  }
}

/** An If-Match revision that is not the current one. */
function stale(current: number, given: number): ChangeRefused {
  return new ChangeRefused(
    'conflict',
    `the runtime config is at revision ${current}, not ${given}: read it again and retry`,
    { revision: current },
  )
}
