// The live config as its owner sees it: the YAML text (the file as last read, plus runtime
// changes), runtime changes not yet saved, and the two ways it changes: a reload of the file and
// a control-API change. Both are validated by compilePlan() and applied one at a time; making a
// new plan live is the owner's job (the single process swaps it in, the primary hands it to its
// workers). One implementation for both, so they log, count and persist alike.

import { parseDocument } from 'yaml'
import type { Overrides } from '../config/compile'
import { type ConfigDiff, diffSnapshots, isEmpty } from '../config/diff'
import { parseConfigText, readConfigFile } from '../config/load'
import { applyChange, type ChangeOp } from '../config/mutations'
import { formatProblem } from '../config/problems'
import { ChangeRefused } from '../config/refused'
import { writeAtomically } from '../config/write'
import type { Logger } from '../observe/logger'
import { compilePlan, type Plan } from '../proxy/runtime'

export interface ReloadResult {
  result: 'success' | 'failure' | 'unchanged'
  changes?: ConfigDiff
  dropped_runtime_changes?: string[]
  problems?: string[]
}

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
}

export class ConfigKeeper {
  readonly #o: KeeperOptions
  #plan: Plan
  #text: string
  #unsaved: string[] = []
  #queue: Promise<unknown> = Promise.resolve()

  constructor(o: KeeperOptions, plan: Plan, text: string) {
    this.#o = o
    this.#plan = plan
    this.#text = text
  }

  get unsaved(): readonly string[] {
    return this.#unsaved
  }

  /** Runs `fn` after every change before it has finished. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => undefined)
    return run
  }

  /** `unsavedFor` gives the unsaved-changes list that goes with the compiled config. */
  async #install(
    fromFile: boolean,
    text: string,
    unsavedFor: (next: Plan) => string[],
  ): Promise<{ next: Plan; diff: ConfigDiff }> {
    const { file, env, overrides } = this.#o
    const source = fromFile ? readConfigFile(file, env) : parseConfigText(file, text, env)
    const r = compilePlan(source, overrides)
    if (!r.ok)
      throw new ChangeRefused('invalid', 'invalid configuration', { problems: r.problems.map(formatProblem) })
    const nextText = fromFile ? source.text : text
    const unsaved = unsavedFor(r.plan)
    await this.#o.apply(r.plan, nextText, unsaved)
    const diff = diffSnapshots(this.#plan.snapshot, r.plan.snapshot)
    this.#plan = r.plan
    this.#text = nextText
    this.#unsaved = unsaved
    return { next: r.plan, diff }
  }

  /** Re-reads the config file; an invalid file leaves the running config as it is. */
  reload(): Promise<ReloadResult> {
    return this.serial(async () => {
      const log = this.#o.log
      const dropped = this.#unsaved
      try {
        const { diff } = await this.#install(true, '', () => [])
        this.#o.onReload?.('success')
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
        log.error({ problems }, 'config reload failed; the running config stays')
        return { result: 'failure', problems }
      }
    })
  }

  /** A control-API change: edit the YAML, validate it like the file, make it live, persist or remember. */
  change(c: ChangeOp): Promise<{ change: string; saved: boolean }> {
    return this.serial(async () => {
      const doc = parseDocument(this.#text)
      const description = applyChange(doc, c)
      const text = doc.toString()
      // Whether the change is saved depends on the config it produces (control_api.persist).
      const { next } = await this.#install(false, text, (n) =>
        n.snapshot.raw.control_api.persist ? this.#unsaved : [...this.#unsaved, description],
      )
      const saved = next.snapshot.raw.control_api.persist
      if (saved) writeAtomically(this.#o.file, text)
      this.#o.log.info({ change: description, saved }, 'config changed through the control API')
      return { change: description, saved }
    })
  }
}
