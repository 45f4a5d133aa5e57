// The live config as its owner sees it: the YAML text (the file as last read, plus runtime
// changes), the runtime changes not yet saved (the net difference between the file's config and
// the live one), and the ways it changes: a reload of the file (SIGHUP, the control API, or a
// change of the file with `watch: true`) and a control-API change. Both are validated by
// compilePlan() and applied one at a time; making a new plan live is the owner's job (the single
// process swaps it in, the primary hands it to its workers). One implementation for both, so they
// log, count and persist alike.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseDocument } from 'yaml'
import type { Overrides } from '../config/compile'
import { type ConfigDiff, describeDiff, diffSnapshots, isEmpty } from '../config/diff'
import { parseConfigText, readConfigFile } from '../config/load'
import { applyChange, type ChangeOp } from '../config/mutations'
import { formatChangeProblem, formatProblem } from '../config/problems'
import { ChangeRefused } from '../config/refused'
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
}

export class ConfigKeeper {
  readonly #o: KeeperOptions
  #plan: Plan
  #text: string
  /** The config file as last read or written, and its config: unsaved changes are measured from it. */
  #fileText: string
  #fileSnapshot: Snapshot
  #unsaved: string[] = []
  #queue: Promise<unknown> = Promise.resolve()
  readonly #watcher: ConfigWatcher
  #revision = 1
  readonly #history: ConfigEvent[] = []

  constructor(o: KeeperOptions, plan: Plan, text: string) {
    this.#o = o
    this.#plan = plan
    this.#text = text
    this.#fileText = text
    this.#fileSnapshot = plan.snapshot
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

  revision(): ConfigRevision {
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
      const dropped = this.#unsaved
      try {
        const source = readConfigFile(file, env)
        const r = compilePlan(source, overrides)
        if (!r.ok)
          throw new ChangeRefused('invalid', 'invalid configuration', {
            problems: r.problems.map(formatProblem),
          })
        const diff = await this.#install(r.plan, source.text, r.plan.snapshot)
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
  change(c: ChangeOp): Promise<{ change: string; saved: boolean }> {
    return this.serial(async () => {
      const { file, env, overrides } = this.#o
      const doc = parseDocument(this.#text)
      const description = applyChange(doc, c)
      const text = doc.toString()
      const r = compilePlan(parseConfigText(file, text, env), overrides)
      if (!r.ok) {
        throw new ChangeRefused(
          'invalid',
          `the change (${description}) was not made: the config would be invalid`,
          { change: description, problems: r.problems.map(formatChangeProblem) },
        )
      }
      // Whether the change is saved depends on the config it produces (control_api.persist).
      const saved = r.plan.snapshot.raw.control_api.persist
      await this.#install(r.plan, text, saved ? r.plan.snapshot : this.#fileSnapshot)
      if (saved) {
        writeAtomically(file, text)
        this.#fileText = text
      }
      this.#remember({ kind: 'change', result: 'success', summary: [description] })
      this.#o.log.info({ change: description, saved }, 'config changed through the control API')
      return { change: description, saved }
    })
  }
}
