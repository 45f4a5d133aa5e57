// The path regex and replacement of `rewrite` and `redirect`: the regex is a route-style
// pattern (Go spellings, refused when its matching time could grow faster than the path:
// config/pattern.ts), the replacement a path with `$1`-`$9`, `$<name>` and `$$`. Both are
// compiled once; applying them replaces every match in the path, as Traefik's
// replacePathRegex does. dotSegment() spots what a replacement must never produce.

import { compilePattern } from '../../config/pattern'

/** Literal text, or a capture group by number or name. */
export type Replacement = readonly (string | number | { readonly name: string })[]

export interface PathRegex {
  readonly regex: RegExp
  readonly replacement: Replacement
}

// Visible ASCII but `?` and `#` (the query is kept as sent; a fragment is never sent) and `\`
// (read as `/` by browsers and some servers); `%` only as an escape.
const LITERAL = /^(?:[!$&'()*+,\-./0-9:;=@A-Z[\]^_`a-z{|}~"<>]|%[0-9A-Fa-f]{2})*$/

/** Compiles `regex` and `replacement`; returns the problems by key when either is wrong. */
export function compilePathRegex(
  regex: string,
  replacement: string,
): PathRegex | { key: 'regex' | 'replacement'; problem: string } {
  const compiled = compilePattern(regex)
  if (typeof compiled === 'string') return { key: 'regex', problem: compiled }
  // Global: every match is replaced. String.prototype.replace resets lastIndex, so one
  // RegExp object serves every request.
  const re = new RegExp(compiled.source, `${compiled.flags}g`)
  const probe = new RegExp(`${compiled.source}|`, compiled.flags).exec('')!
  const groups = probe.length - 1
  const names = new Set(Object.keys(probe.groups ?? {}))
  const parts: (string | number | { name: string })[] = []
  let literal = ''
  for (let i = 0; i < replacement.length; i++) {
    const c = replacement[i]!
    if (c !== '$') {
      literal += c
      continue
    }
    const next = replacement[i + 1]
    if (next === '$') {
      literal += '$'
      i++
      continue
    }
    if (next !== undefined && next >= '0' && next <= '9') {
      const n = Number(next)
      if (n > groups)
        return { key: 'replacement', problem: `$${n}: the regex has ${groups} capture group(s)` }
      if (literal) parts.push(literal)
      literal = ''
      parts.push(n)
      i++
      continue
    }
    const named = next === '<' ? /^<([A-Za-z_][A-Za-z0-9_]*)>/.exec(replacement.slice(i + 1)) : null
    if (named) {
      if (!names.has(named[1]!))
        return { key: 'replacement', problem: `$<${named[1]}>: the regex has no such named group` }
      if (literal) parts.push(literal)
      literal = ''
      parts.push({ name: named[1]! })
      i += named[0].length
      continue
    }
    return {
      key: 'replacement',
      problem: 'a $ must be followed by a group number (0-9), <name>, or $ (a literal $)',
    }
  }
  if (literal) parts.push(literal)
  const text = parts.filter((p): p is string => typeof p === 'string').join('')
  if (!LITERAL.test(text)) {
    return {
      key: 'replacement',
      problem:
        'may hold visible ASCII only, without ?, # or \\ (the query is kept as sent), and % only in an escape like %20',
    }
  }
  return { regex: re, replacement: parts }
}

/** `path` with every match of `p.regex` replaced; `path` itself when nothing matches. */
export function replacePath(p: PathRegex, path: string): string {
  return path.replace(p.regex, (...args: unknown[]) => {
    const last = args[args.length - 1]
    const named =
      typeof last === 'object' && last !== null ? (last as Record<string, string | undefined>) : undefined
    let out = ''
    for (const part of p.replacement) {
      if (typeof part === 'string') out += part
      else if (typeof part === 'number') out += (args[part] as string | undefined) ?? ''
      else out += named?.[part.name] ?? ''
    }
    return out
  })
}

/**
 * Whether `path` has a `.` or `..` segment, spelled plainly or escaped (`%2e`), or one followed
 * by parameters (`..;x`, which Tomcat and Jetty read as `..`). A replacement that assembles one
 * from pieces of the path (`/$1$2` from `/.-.`) must not let a request climb out of where
 * the replacement puts it, so such a result is refused rather than resolved.
 */
export function dotSegment(path: string): boolean {
  let start = 0
  while (start <= path.length) {
    let end = path.indexOf('/', start)
    if (end < 0) end = path.length
    let seg = path.slice(start, end)
    if (seg.length > 0 && (seg[0] === '.' || seg[0] === '%')) {
      if (seg.includes('%')) seg = seg.replace(/%2e/gi, '.')
      const semi = seg.indexOf(';')
      if (semi >= 0) seg = seg.slice(0, semi)
      if (seg === '.' || seg === '..') return true
    }
    start = end + 1
  }
  return false
}
