import assert from 'node:assert/strict'
import { test } from 'node:test'
import { escapeEnv, expandEnv } from './env'

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

const literals = [
  { desc: 'plain text', input: 'abc' },
  { desc: 'a reference', input: '${HOME}' },
  { desc: 'a reference with a default', input: '${A:-x}/${B}' },
  { desc: 'an escaped reference', input: '$${A}' },
  { desc: 'dollars before a reference', input: '$$$${A}$' },
  { desc: 'a brace alone', input: '$ { } ${' },
  { desc: 'unicode around it', input: '名前${A}\u2028' },
]
for (const c of literals) {
  test(`escapeEnv: ${c.desc} comes back literally from expandEnv`, () => {
    assert.deepEqual(expandEnv(escapeEnv(c.input), { A: 'set', B: 'set', HOME: '/home/x' }), {
      value: c.input,
      missing: [],
    })
  })
}
