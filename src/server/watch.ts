// Reload on file change (top-level `watch: true`): watches the config file's directory, not the
// file, so an editor's atomic save (write a temp file, rename it over the config) is seen like
// a write in place, and a file that is missing for a moment is no error. Events for the file
// are debounced: a burst of writes is one call, `debounceMs` after the last event. The owner of
// the config (keeper.ts) decides what a call does; with workers only the primary has one.

import { type FSWatcher, readlinkSync, watch } from 'node:fs'
import path from 'node:path'
import type { Logger } from '../observe/logger'

export interface WatchOptions {
  file: string
  log: Logger
  /** Called once per burst of changes to the file. */
  onChange(): void
  /** Quiet time after the last event before onChange (default 300 ms). */
  debounceMs?: number
  /** How soon a directory that cannot be watched (missing, unreadable) is tried again (default 2 s). */
  retryMs?: number
}

export class ConfigWatcher {
  readonly #o: WatchOptions
  readonly #dir: string
  #enabled = false
  #watcher: FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined
  #retry: NodeJS.Timeout | undefined
  /** Directory entries whose change is a change of the file (see namesOf). */
  #names = new Set<string>()

  constructor(o: WatchOptions) {
    this.#o = o
    this.#dir = path.dirname(path.resolve(o.file))
  }

  /** Whether the directory is being watched now. */
  get watching(): boolean {
    return this.#watcher !== undefined
  }

  /** Turns watching on or off (a reload that changes `watch` calls this); repeats are no-ops. */
  enable(on: boolean): void {
    if (on === this.#enabled) return
    this.#enabled = on
    if (on) {
      this.#arm()
      this.#o.log.info({ file: this.#o.file }, 'watching the config file; a change reloads it')
    } else {
      this.#disarm()
      this.#o.log.info({ file: this.#o.file }, 'stopped watching the config file')
    }
  }

  /** Stops for good (the process is stopping), without a log line. */
  close(): void {
    this.#enabled = false
    this.#disarm()
  }

  #arm(): void {
    this.#names = namesOf(this.#o.file)
    try {
      // persistent: false: watching never keeps a stopping process alive.
      const w = watch(this.#dir, { persistent: false }, (_event, name) => this.#event(name))
      w.on('error', (err) => {
        this.#o.log.warn(
          { file: this.#o.file, err: err.message },
          'watching the config file failed; retrying',
        )
        this.#disarm()
        this.#scheduleRetry()
      })
      this.#watcher = w
    } catch (err) {
      this.#o.log.warn(
        { file: this.#o.file, err: (err as Error).message },
        'cannot watch the config file; retrying',
      )
      this.#scheduleRetry()
    }
  }

  #disarm(): void {
    this.#watcher?.close()
    this.#watcher = undefined
    clearTimeout(this.#debounce)
    this.#debounce = undefined
    clearTimeout(this.#retry)
    this.#retry = undefined
  }

  #scheduleRetry(): void {
    clearTimeout(this.#retry)
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      if (this.#enabled && !this.#watcher) this.#arm()
    }, this.#o.retryMs ?? 2000)
    this.#retry.unref()
  }

  #event(name: string | Buffer | null): void {
    // Without a name (some platforms), any change in the directory may be the file's.
    if (name !== null && !this.#names.has(name.toString())) return
    clearTimeout(this.#debounce)
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      if (!this.#enabled) return
      // A rename may have replaced a symlink the names came from (a Kubernetes ConfigMap update).
      this.#names = namesOf(this.#o.file)
      this.#o.onChange()
    }, this.#o.debounceMs ?? 300)
    this.#debounce.unref()
  }
}

/**
 * The directory entries whose change changes the file: its own name and, when it is a symlink
 * into a subdirectory (Kubernetes mounts a ConfigMap as `config.yaml -> ..data/config.yaml`
 * and updates it by renaming `..data`), the first part of the link's target.
 */
export function namesOf(file: string): Set<string> {
  const names = new Set([path.basename(file)])
  try {
    const target = readlinkSync(file)
    if (!path.isAbsolute(target)) {
      const first = path.normalize(target).split(path.sep)[0]
      if (first && first !== '..' && first !== '.') names.add(first)
    }
  } catch {
    // Not a symlink, or missing for now: its own name is enough.
  }
  return names
}
