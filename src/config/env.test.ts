import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expandEnv } from './env'

const cases = [
  { desc: 'plain text', input: 'abc', env: {}, value: 'abc', missing: [] },
  { desc: 'set variable', input: 'x-${A}-y', env: { A: '1' }, value: 'x-1-y', missing: [] },
  { desc: 'default used when unset', input: '${A:-dflt}', env: {}, value: 'dflt', missing: [] },
  { desc: 'default used when empty', input: '${A:-dflt}', env: { A: '' }, value: 'dflt', missing: [] },
  { desc: 'empty default', input: '[${A:-}]', env: {}, value: '[]', missing: [] },
  { desc: 'unset without default', input: '${A}', env: {}, value: '', missing: ['A'] },
  { desc: 'several', input: '${A}:${B:-2}', env: { A: 'h' }, value: 'h:2', missing: [] },
  { desc: '$${ escapes', input: 'lit $${A} ${A}', env: { A: 'v' }, value: 'lit ${A} v', missing: [] },
]
for (const c of cases) {
  test(`expandEnv: ${c.desc}`, () => {
    assert.deepEqual(expandEnv(c.input, c.env), { value: c.value, missing: c.missing })
  })
}
