// `${VAR}` and `${VAR:-default}` substitution in config string values, and `.env` loading.
// Runs on the parsed YAML tree before schema validation, so secrets need not live in the file.

import { existsSync } from 'node:fs'

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

export interface Expansion {
  value: string
  /** Variables referenced without a default that are not set. */
  missing: string[]
}

/** `$${` escapes a literal `${`. */
export function expandEnv(input: string, env: NodeJS.ProcessEnv): Expansion {
  const missing: string[] = []
  if (!input.includes('${')) return { value: input, missing }
  const parts = input.split('$${')
  const expanded = parts.map((part) =>
    part.replace(REF, (_m, name: string, fallback: string | undefined) => {
      const v = env[name]
      if (v !== undefined && v !== '') return v
      if (fallback !== undefined) return fallback
      missing.push(name)
      return ''
    }),
  )
  return { value: expanded.join('${'), missing }
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
