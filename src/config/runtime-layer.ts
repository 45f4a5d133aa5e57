// The runtime layer: the control-API changes made on top of the config file, as data, in the
// order they were made. With `config_store` it is shared by every instance (server/config-store.ts):
// each one rebuilds its config as file + layer, through the same applyChange() and compile() as a
// local change, so an instance applies a change exactly when it would have accepted it itself.
// Changes are kept, not the resulting YAML: the file stays the base, so a reload of an edited file
// gets the same changes on top again, and a new kind of change (any ChangeOp) travels unchanged.
// What is read back is data anybody who can write to Redis could have forged: it is checked here
// (size, JSON, shape) and refused whole, never half applied.

import { type Document, parseDocument } from 'yaml'
import { applyChange, type ChangeOp } from './mutations'
import { ChangeRefused } from './refused'

export interface RuntimeLayer {
  /** Counts commits; compare-and-set on it orders concurrent changes. 0: no change yet. */
  readonly revision: number
  readonly changes: readonly ChangeOp[]
  /** When the last change was committed (ms since the epoch, the committing instance's clock). */
  readonly committedAt: number
}

export const EMPTY_LAYER: RuntimeLayer = { revision: 0, changes: [], committedAt: 0 }

/** A layer larger than this is refused (read or written): a config file is kilobytes. */
export const MAX_LAYER_BYTES = 4 * 1024 * 1024

/** A refused layer: what is wrong with it, in words for the status and the log. */
export class BadLayer extends Error {}

/** The stored form: `revision` (an integer) and `changes` (JSON), as two fields of a Redis hash. */
export function parseLayer(fields: Record<string, string>): RuntimeLayer {
  if (fields.revision === undefined && fields.changes === undefined) return EMPTY_LAYER
  const revision = Number(fields.revision)
  if (!Number.isSafeInteger(revision) || revision < 0)
    throw new BadLayer(`revision is not a whole number: ${clip(String(fields.revision))}`)
  const text = fields.changes ?? ''
  if (text.length > MAX_LAYER_BYTES) throw new BadLayer(`changes are larger than ${MAX_LAYER_BYTES} bytes`)
  let changes: unknown
  try {
    changes = JSON.parse(text)
  } catch (err) {
    throw new BadLayer(`changes are not JSON: ${(err as Error).message}`)
  }
  if (!Array.isArray(changes)) throw new BadLayer('changes are not a list')
  if (tooDeep(changes, MAX_DEPTH)) throw new BadLayer(`changes are nested deeper than ${MAX_DEPTH} levels`)
  changes.forEach((c, i) => {
    if (
      c === null ||
      typeof c !== 'object' ||
      Array.isArray(c) ||
      typeof (c as { op?: unknown }).op !== 'string'
    )
      throw new BadLayer(`change ${i} is not an object with an "op"`)
  })
  const committedAt = Number(fields.committed_at ?? 0)
  return {
    revision,
    changes: changes as ChangeOp[],
    committedAt: Number.isFinite(committedAt) ? committedAt : 0,
  }
}

/** The fields of the hash for `layer` (see parseLayer). */
export function serializeLayer(layer: RuntimeLayer): Record<string, string> {
  const changes = JSON.stringify(layer.changes)
  if (changes.length > MAX_LAYER_BYTES) {
    throw new ChangeRefused(
      'invalid',
      `the runtime layer would be larger than ${MAX_LAYER_BYTES} bytes; move changes into the config file`,
    )
  }
  return { revision: String(layer.revision), changes, committed_at: String(layer.committedAt) }
}

/**
 * The config document `base` with `changes` applied in order. A change that does not apply (a
 * route the file now has too, a group it no longer has) refuses the whole layer with a
 * ChangeRefused: a layer applied in part would make instances differ.
 */
export function layerDocument(base: string, changes: readonly ChangeOp[]): Document {
  const doc = parseDocument(base)
  changes.forEach((c, i) => {
    try {
      applyChange(doc, c)
    } catch (err) {
      // Forged data can fail in ways a client's body cannot (a stack-deep value): refused alike.
      const e = err instanceof ChangeRefused ? err : new ChangeRefused('invalid', (err as Error).message)
      throw new ChangeRefused(
        e.reason,
        `runtime change ${i + 1} of ${changes.length} (${clip(String(c.op))}) does not apply to the config file: ${e.message}`,
        e.details,
      )
    }
  })
  return doc
}

/** As deep as the control API lets a body be (control/api.ts), plus the list and the change. */
const MAX_DEPTH = 34

function tooDeep(v: unknown, left: number): boolean {
  if (v === null || typeof v !== 'object') return false
  if (left === 0) return true
  for (const x of Object.values(v)) if (tooDeep(x, left - 1)) return true
  return false
}

function clip(s: string): string {
  return s.length > 100 ? `${s.slice(0, 100)}...` : s
}
