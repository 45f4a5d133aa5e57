// `${VAR}` and `${VAR:-default}` substitution in config string values, and `.env` loading.
// Runs on the parsed YAML tree before schema validation, so secrets need not live in the file.

import { existsSync } from 'node:fs'

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

export interface Expansion {
  value: string
  /** Variables referenced without a default that are not set. */
  missing: string[]
}

/**
 * The per-request variables a `headers` middleware value may use (middleware/headers). They are
 * not environment variables: inside those values config loading leaves them as they are.
 */
export const HEADER_VARIABLES: ReadonlySet<string> = new Set([
  'client_ip',
  'request_id',
  'route',
  'upstream',
  'host',
])

/**
 * `$${` escapes a literal `${`. With `variables` (a value that is itself a template, such as a
 * `headers` value), `${name}` for those names is kept, and the result is still a template:
 * `$${` stays escaped and an environment value is escaped (escapeEnv), so text from the
 * environment can never turn into a variable.
 */
export function expandEnv(input: string, env: NodeJS.ProcessEnv, variables?: ReadonlySet<string>): Expansion {
  const missing: string[] = []
  if (!input.includes('${')) return { value: input, missing }
  const parts = input.split('$${')
  const literal = variables === undefined ? (s: string) => s : escapeEnv
  const expanded = parts.map((part) =>
    part.replace(REF, (m, name: string, fallback: string | undefined) => {
      // Kept whole, even with a `:-default` (the headers template refuses that form).
      if (variables?.has(name)) return m
      const v = env[name]
      if (v !== undefined && v !== '') return literal(v)
      if (fallback !== undefined) return literal(fallback)
      missing.push(name)
      return ''
    }),
  )
  return { value: expanded.join(variables === undefined ? '${' : '$${'), missing }
}

/**
 * The text to write into the config so that expandEnv gives back `literal` unchanged: every
 * `${` becomes `$${`. Values that arrive through the control API are written this way, so a
 * client cannot make the proxy read its environment (`"${HOME}"` stays those seven characters).
 */
export function escapeEnv(literal: string): string {
  // A function, not a string: in a replacement string `$$` means one `$`.
  return literal.replaceAll('${', () => '$${')
}

/**
 * Loads `.env` from `dir` into process.env. Node's own parser; variables already set win
 * (process.loadEnvFile never overrides them). Returns the file loaded, if any.
 */
export function loadDotEnv(dir: string): string | undefined {
  const file = `${dir}/.env`
  if (!existsSync(file)) return undefined
  process.loadEnvFile(file)
  return file
}
