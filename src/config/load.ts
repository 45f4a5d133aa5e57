// Reads a YAML config file into a plain tree, with `${VAR}` expanded and a way to find the line
// of any key path. Nothing here judges the content: schema.ts and compile.ts do.

import { readFileSync } from 'node:fs'
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument, Scalar } from 'yaml'
import { expandEnv, HEADER_VARIABLES } from './env'
import { formatPath, type KeyPath, type Problem } from './problems'
import { isSecretKey, maskString } from './redact'
import { didYouMean } from './suggest'

export interface SourceDocument {
  file: string
  /** The file's text as read (runtime changes edit a copy of it). */
  text: string
  /** The parsed tree after `${VAR}` expansion; undefined when the file could not be read or parsed. */
  data: unknown
  /** Problems found while reading, parsing or expanding. */
  problems: Problem[]
  /** Line (1-based) of a key path, or of its nearest existing ancestor. */
  lineOf(path: KeyPath): number | undefined
}

const NUMERIC = /^-?(?:\d+|\d*\.\d+)$/

export function readConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): SourceDocument {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const message =
      code === 'ENOENT'
        ? 'config file not found'
        : code === 'EISDIR'
          ? 'config path is a directory, not a file'
          : `cannot read config file: ${(err as Error).message}`
    return {
      file,
      text: '',
      data: undefined,
      problems: [{ file, path: '', message }],
      lineOf: () => undefined,
    }
  }
  return parseConfigText(file, text, env)
}

export function parseConfigText(
  file: string,
  text: string,
  env: NodeJS.ProcessEnv = process.env,
): SourceDocument {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const problems: Problem[] = []
  const pointAt = (offset: number | undefined) =>
    offset === undefined ? {} : point(text, lineCounter, offset)
  for (const e of [...doc.errors, ...doc.warnings]) {
    problems.push({ file, path: '', ...pointAt(e.pos[0]), message: `YAML: ${e.message.split('\n')[0]}` })
  }
  const lineAt = (offset: number | undefined): number | undefined =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line

  const lineOf = (path: KeyPath): number | undefined => {
    let node: unknown = doc.contents
    let line = lineAt((node as Node | null)?.range?.[0])
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
        )
        if (!pair) return line
        line = lineAt((pair.key as Node).range?.[0]) ?? line
        node = pair.value
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as Node | undefined
        if (!item) return line
        line = lineAt(item.range?.[0]) ?? line
        node = item
      } else {
        return line
      }
    }
    return line
  }

  if (doc.errors.length > 0) return { file, text, data: undefined, problems, lineOf }

  // Expand `${VAR}` in every string scalar. A plain (unquoted) scalar whose expansion looks like a
  // number or boolean becomes one, so `workers: ${WORKERS:-2}` works as a user expects.
  const expand = (node: unknown, path: (string | number)[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        if (isPair(pair) && isScalar(pair.key)) expand(pair.value, [...path, String(pair.key.value)])
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) expand(node.items[i], [...path, i])
    } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
      const variables = isHeadersValue(doc, path) ? HEADER_VARIABLES : undefined
      const { value, missing } = expandEnv(node.value, env, variables)
      for (const name of missing) {
        problems.push({
          file,
          path: formatPath(path),
          ...pointAt(node.range?.[0]),
          message:
            variables === undefined
              ? `environment variable ${name} is not set (use \${${name}:-default} for a fallback)`
              : `\${${name}} is neither a headers variable (${[...variables].join(', ')}) nor a set environment variable${didYouMean(name, variables)}`,
        })
      }
      if (node.type === Scalar.PLAIN && NUMERIC.test(value)) node.value = Number(value)
      else if (node.type === Scalar.PLAIN && (value === 'true' || value === 'false'))
        node.value = value === 'true'
      else node.value = value
    }
  }
  expand(doc.contents, [])
  return { file, text, data: doc.toJS({ maxAliasCount: 100 }), problems, lineOf }
}

/**
 * Whether `path` is a value under `request` or `response` `set`/`add` of a `headers` middleware
 * declaration (named `headers`, or with `type: headers`): a template whose `${client_ip}`-style
 * variables are filled per request (middleware/headers), not from the environment.
 */
function isHeadersValue(doc: { getIn(path: Iterable<unknown>): unknown }, path: KeyPath): boolean {
  const at = path[0] === 'middlewares' ? 1 : path[0] === 'api_gateway' && path[1] === 'middlewares' ? 2 : -1
  if (at < 0) return false
  const rest = path.slice(at)
  // name, request|response, set|add, header name[, index of an add list]
  if (rest.length !== 4 && !(rest.length === 5 && typeof rest[4] === 'number')) return false
  if ((rest[1] !== 'request' && rest[1] !== 'response') || (rest[2] !== 'set' && rest[2] !== 'add'))
    return false
  const type = doc.getIn([...path.slice(0, at + 1), 'type'])
  return type === undefined ? rest[0] === 'headers' : type === 'headers'
}

/** Widest excerpt shown; a longer line is cut to a window around the column. */
const EXCERPT_WIDTH = 100

/**
 * Line, column and excerpt of an offset in `text`. The excerpt is left out for a line that may
 * hold a secret (a secret-looking key, a URL password), since problems are logged and returned
 * by the control API: the position still says where to look.
 */
export function point(
  text: string,
  lines: LineCounter,
  offset: number,
): Pick<Problem, 'line' | 'column' | 'excerpt'> {
  const { line, col } = lines.linePos(Math.min(Math.max(offset, 0), text.length))
  const start = lines.lineStarts[line - 1] ?? 0
  const end = text.indexOf('\n', start)
  const full = text.slice(start, end < 0 ? text.length : end).replace(/\r$/, '')
  // An empty line (an error at the end of the file) has nothing to point at.
  if (full.trim() === '' || mayHoldSecret(full)) return { line, column: col }
  let from = 0
  if (full.length > EXCERPT_WIDTH)
    from = Math.max(0, Math.min(col - 1 - EXCERPT_WIDTH / 2, full.length - EXCERPT_WIDTH))
  const shown = full.slice(from, from + EXCERPT_WIDTH)
  return { line, column: col, excerpt: { text: shown, caret: Math.min(col - 1 - from, shown.length) } }
}

function mayHoldSecret(line: string): boolean {
  for (const m of line.matchAll(/([A-Za-z0-9_-]+)["']?\s*:/g)) if (isSecretKey(m[1]!)) return true
  return maskString(line) !== line
}
