// The user guide documents every config field the code accepts: walk the schemas (the config and
// each middleware type) and look for every key in docs/GUIDE.md, as `key` or as a YAML `key:`.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import type { z } from 'zod'
import { MIDDLEWARE_SCHEMAS } from '../middleware/schema'
import { schemaDef } from './compile'
import { configSchema } from './schema'

/** Every object key in a schema, with its dotted path (records shown as `<name>`). */
function keys(schema: z.ZodType, prefix: string, out: Map<string, string>): void {
  const def = schemaDef(schema)
  switch (def.type) {
    case 'object':
      for (const [k, v] of Object.entries(def.shape!)) {
        const p = prefix ? `${prefix}.${k}` : k
        out.set(p, k)
        keys(v, p, out)
      }
      return
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
      return keys(def.innerType!, prefix, out)
    case 'union':
      for (const o of def.options!) keys(o, prefix, out)
      return
    case 'array':
      return keys(def.element!, `${prefix}[]`, out)
    case 'record':
      return keys(def.valueType!, `${prefix}.<name>`, out)
    case 'pipe':
      return keys(def.in!, prefix, out)
    default:
      return
  }
}

test('docs/GUIDE.md names every config field the schema accepts', () => {
  const guide = readFileSync(path.resolve(__dirname, '..', '..', '..', 'docs', 'GUIDE.md'), 'utf8')
  const fields = new Map<string, string>()
  keys(configSchema, '', fields)
  for (const [type, schema] of Object.entries(MIDDLEWARE_SCHEMAS))
    keys(schema, `middlewares.<${type}>`, fields)
  assert.ok(fields.size > 60, `walked the schema (${fields.size} fields)`)
  const missing = [...fields].filter(
    ([, k]) => !guide.includes(`\`${k}\``) && !new RegExp(`^\\s*-?\\s*${k}:`, 'm').test(guide),
  )
  assert.deepEqual(
    missing.map(([p]) => p),
    [],
    'fields missing from docs/GUIDE.md',
  )
})
