// The api_key declaration: its settings, and the keys it accepts, from `keys` (values may be
// `${VAR}`, expanded when the config is loaded) and `keys_file` (`consumer:key` lines), read
// when the config is compiled so a reload re-reads the file and what is validated is what runs.

import { z } from 'zod'
import { headerName, protectedHeaderProblem } from '../header-name'
import { hasControlChar, readListFile } from '../list-file'
import type { Report } from '../types'

export const apiKey = z.strictObject({
  type: z.literal('api_key').optional(),
  /** The request header that carries the key. */
  header: headerName.default('X-API-Key'),
  /** A query parameter that may carry the key too (looked at when the header is absent). */
  query_param: z
    .string()
    .regex(/^[A-Za-z0-9._~-]+$/, { message: 'must be letters, digits, ".", "_", "~" or "-"' })
    .optional(),
  keys: z.array(z.strictObject({ consumer: z.string(), key: z.string() })).default([]),
  /** A file (relative to the config file) of `consumer:key` lines; `#` comments. */
  keys_file: z.string().min(1).optional(),
  /** The consumer's name goes upstream in this header; clients cannot send it themselves. */
  consumer_header: headerName.default('X-Consumer-Username'),
})

export type ApiKeyConfig = z.output<typeof apiKey>

export interface Consumer {
  readonly consumer: string
  readonly key: string
}

/** The declaration with its keys read: what the middleware is built from. */
export type ApiKeySettings = ApiKeyConfig & { readonly consumers: readonly Consumer[] }

/** Shortest key accepted: a key is a password nobody types, so it can be long and random. */
export const MIN_KEY_LENGTH = 16

/** Checks the settings and reads every key (inline first, then keys_file). Problems never show a key. */
export function checkApiKey(cfg: ApiKeyConfig, report: Report, resolve: (p: string) => string): Consumer[] {
  const out: Consumer[] = []
  const seen = new Map<string, string>()
  let problems = 0
  const add = (key: string, at: string, consumer: string, value: string): void => {
    const problem =
      consumer === '' || hasControlChar(consumer)
        ? 'needs a consumer name without control characters'
        : !/^[\x21-\x7e]+$/.test(value)
          ? `(${consumer}): the key must be visible ASCII, without spaces`
          : value.length < MIN_KEY_LENGTH
            ? `(${consumer}): the key is shorter than ${MIN_KEY_LENGTH} characters; make one with \`openssl rand -hex 24\``
            : seen.has(value)
              ? `(${consumer}): the same key is already given to ${seen.get(value)}`
              : undefined
    if (problem !== undefined) {
      problems++
      return report(key, `${at} ${problem}`)
    }
    seen.set(value, consumer)
    out.push({ consumer, key: value })
  }
  for (const [i, k] of cfg.keys.entries()) add('keys', `entry ${i + 1}`, k.consumer, k.key)
  if (cfg.keys_file !== undefined) {
    const lines = readListFile(resolve(cfg.keys_file))
    if (!Array.isArray(lines)) {
      problems++
      report('keys_file', `${lines.problem}: ${cfg.keys_file}`)
    } else {
      for (const { n, text } of lines) {
        const colon = text.indexOf(':')
        const at = `${cfg.keys_file} line ${n}`
        if (colon > 0) add('keys_file', at, text.slice(0, colon).trim(), text.slice(colon + 1).trim())
        else {
          problems++
          report('keys_file', `${at}: not a "consumer:key" line`)
        }
      }
    }
  }
  if (out.length === 0 && problems === 0) report(undefined, 'needs at least one key, in keys or in keys_file')
  const problem = protectedHeaderProblem(cfg.consumer_header)
  if (problem !== undefined) report('consumer_header', problem)
  if (cfg.header.toLowerCase() === cfg.consumer_header.toLowerCase())
    report('consumer_header', 'must differ from header')
  return out
}
