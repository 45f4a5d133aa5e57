import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RequestContext } from '../types'
import { fill, parseTemplate } from './template'

const ctx = {
  clientIp: '192.0.2.1',
  requestId: 'rid',
  route: 'api',
  upstream: 'users',
  host: 'example.com',
} as RequestContext

const cases: Array<{ desc: string; text: string; out: string }> = [
  { desc: 'plain text', text: 'abc', out: 'abc' },
  {
    desc: 'every variable',
    text: '${client_ip}|${request_id}|${route}|${upstream}|${host}',
    out: '192.0.2.1|rid|api|users|example.com',
  },
  { desc: 'text around a variable', text: 'ip=${client_ip};', out: 'ip=192.0.2.1;' },
  { desc: '$${ is a literal ${', text: '$${client_ip} ${client_ip}', out: '${client_ip} 192.0.2.1' },
  { desc: 'a dollar alone', text: '$5 {x}', out: '$5 {x}' },
]
for (const c of cases) {
  test(`headers template: ${c.desc}`, () => {
    const t = parseTemplate(c.text)
    assert.ok(!(typeof t === 'object' && 'problem' in t))
    assert.equal(fill(t, ctx), c.out)
  })
}

test('headers template: a missing host fills in empty', () => {
  const t = parseTemplate('[${host}]')
  assert.ok(!(typeof t === 'object' && 'problem' in t))
  assert.equal(fill(t, { ...ctx, host: undefined }), '[]')
})

for (const text of ['${HOME}', '${client_ip', '${}', '${host:-x}']) {
  test(`headers template refuses ${text}`, () => {
    const t = parseTemplate(text)
    assert.ok(typeof t === 'object' && 'problem' in t)
  })
}
