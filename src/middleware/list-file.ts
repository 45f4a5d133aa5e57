// Files of `name:value` lines that a middleware reads when the config is compiled (basic_auth's
// users_file, api_key's keys_file): blank lines and `#` comments skipped, a size cap so a path
// mistaken for a huge file cannot exhaust the memory.

import { readFileSync, statSync } from 'node:fs'
import { fileErrorReason } from '../config/problems'

const MAX_BYTES = 4 * 1024 * 1024

export interface ListLine {
  /** 1-based line number, for problems. */
  readonly n: number
  readonly text: string
}

/** The file's meaningful lines, or why it cannot be read. */
export function readListFile(file: string): ListLine[] | { problem: string } {
  let text: string
  try {
    const st = statSync(file)
    if (!st.isFile()) return { problem: 'is not a file' }
    if (st.size > MAX_BYTES) return { problem: `is larger than ${MAX_BYTES} bytes` }
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return { problem: fileErrorReason(err) }
  }
  const out: ListLine[] = []
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() !== '' && !line.trimStart().startsWith('#')) out.push({ n: i + 1, text: line })
  })
  return out
}

/** Whether `s` has a control character (C0 or DEL), which no name in these lists may hold. */
export function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}
