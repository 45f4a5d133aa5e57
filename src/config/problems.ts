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

export function formatProblem(p: Problem): string {
  const where = p.line !== undefined ? `${p.file}:${p.line}` : p.file
  return p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`
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
