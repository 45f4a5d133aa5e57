// A Problem is one finding about a config: which file, which key path, which line, what is wrong.
// Every config consumer (start, validate, reload, control-API mutations) collects all of them
// before refusing, so a user fixes a file in one pass.

import { accessSync, constants, statSync } from 'node:fs'

export type KeyPath = ReadonlyArray<string | number>

export interface Problem {
  file: string
  /** Key path as written in docs and messages: `upstreams.users.servers[1]`. Empty for the whole file. */
  path: string
  line?: number
  /** Column (1-based) on `line`, where the position is a point rather than a key. */
  column?: number
  /** The source line (clipped around the column) and the caret's index in it. */
  excerpt?: { text: string; caret: number }
  message: string
}

export function formatPath(path: KeyPath): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (/^[A-Za-z0-9_-]+$/.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

/**
 * `file:line:col: path: message`, and with an excerpt two more lines: the source line and a
 * caret under the column, each indented to sit under a listed problem.
 */
export function formatProblem(p: Problem): string {
  let where = p.file
  if (p.line !== undefined) where += p.column !== undefined ? `:${p.line}:${p.column}` : `:${p.line}`
  const head = p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`
  if (!p.excerpt || p.line === undefined) return head
  const gutter = String(p.line)
  const pad = ' '.repeat(gutter.length)
  // Tabs stay tabs under the caret, so it lines up whatever the terminal's tab width.
  const under = p.excerpt.text.slice(0, p.excerpt.caret).replace(/[^\t]/g, ' ')
  return `${head}\n    ${gutter} | ${p.excerpt.text}\n    ${pad} | ${under}^`
}

/** A problem as a runtime change reports it: key path and message, no file or line (see keeper). */
export function formatChangeProblem(p: Problem): string {
  return p.path ? `${p.path}: ${p.message}` : p.message
}

/**
 * In file order: by line; problems on one line, and those without a line (after the others),
 * keep the order they were found in (the sort is stable), so the first is the first cause.
 */
export function sortProblems(problems: readonly Problem[]): Problem[] {
  const rank = (p: Problem) => p.line ?? Number.MAX_SAFE_INTEGER
  return [...problems].sort((a, b) => rank(a) - rank(b))
}

/** Why a file could not be read, in the words problems use. */
export function fileErrorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'file does not exist'
  if (code === 'EACCES') return 'file is not readable'
  if (code === 'EISDIR') return 'is a directory, not a file'
  return 'cannot read file'
}

/** Why `p` cannot be read as a file, or undefined when it can. */
export function fileProblem(p: string): string | undefined {
  try {
    if (!statSync(p).isFile()) return 'is not a file'
    accessSync(p, constants.R_OK)
    return undefined
  } catch (err) {
    return fileErrorReason(err)
  }
}
