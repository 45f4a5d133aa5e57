// A `headers` value with per-request variables: `${client_ip}`, `${request_id}`, `${route}`,
// `${upstream}`, `${host}`; `$${` is a literal `${`. Config loading (config/env.ts) has already
// put environment variables in and left these alone; here the value is split once into
// literal text and variables, and filled per request with one concatenation.

import { HEADER_VARIABLES } from '../../config/env'
import { didYouMean } from '../../config/suggest'
import type { RequestContext } from '../types'

export type Variable = 'client_ip' | 'request_id' | 'route' | 'upstream' | 'host'

/** A value with no variable (a plain string), or literal parts with a variable between each two. */
export type Template =
  | string
  | { readonly literals: readonly string[]; readonly variables: readonly Variable[] }

const REF = /\$\{([^}]*)\}/g

/** The template of `text`, or what is wrong with it (an unknown variable). */
export function parseTemplate(text: string): Template | { problem: string } {
  if (!text.includes('${')) return text
  const literals: string[] = []
  const variables: Variable[] = []
  let current = ''
  // Split on `$${` first, as expandEnv does, so both read a value the same way.
  const parts = text.split('$${')
  for (let p = 0; p < parts.length; p++) {
    if (p > 0) current += '${'
    const part = parts[p]!
    let last = 0
    for (const m of part.matchAll(REF)) {
      const name = m[1]!
      if (!HEADER_VARIABLES.has(name)) {
        return {
          problem: `unknown variable \${${name}}: use ${[...HEADER_VARIABLES].map((v) => `\${${v}}`).join(', ')} (or $\${ for a literal \${)${didYouMean(name, HEADER_VARIABLES)}`,
        }
      }
      current += part.slice(last, m.index)
      literals.push(current)
      variables.push(name as Variable)
      current = ''
      last = m.index + m[0].length
    }
    const rest = part.slice(last)
    if (rest.includes('${')) return { problem: 'has a ${ without its } (use $${ for a literal ${)' }
    current += rest
  }
  literals.push(current)
  return variables.length === 0 ? literals[0]! : { literals, variables }
}

export function variable(ctx: RequestContext, v: Variable): string {
  switch (v) {
    case 'client_ip':
      return ctx.clientIp
    case 'request_id':
      return ctx.requestId
    case 'route':
      return ctx.route ?? ''
    case 'upstream':
      return ctx.upstream
    case 'host':
      return ctx.host ?? ''
  }
}

export function fill(t: Template, ctx: RequestContext): string {
  if (typeof t === 'string') return t
  let out = t.literals[0]!
  for (let i = 0; i < t.variables.length; i++) out += variable(ctx, t.variables[i]!) + t.literals[i + 1]!
  return out
}
