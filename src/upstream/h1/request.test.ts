import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { type DispatchOptions, requestHead } from './request'

/** The strings RegExp.prototype.test was given while `fn` ran. */
function testedWith(fn: () => void): string[] {
  const seen: string[] = []
  const original = RegExp.prototype.test
  RegExp.prototype.test = function (this: RegExp, s: string) {
    seen.push(s)
    return original.call(this, s)
  }
  try {
    fn()
  } finally {
    RegExp.prototype.test = original
  }
  return seen
}

function refused(opts: DispatchOptions): string | undefined {
  try {
    requestHead(opts, '127.0.0.1:1')
    return undefined
  } catch (err) {
    return (err as { code?: string }).code
  }
}

const FIELDS = ['host', 'example.test', 'accept', '*/*', 'x-api-key', 'k1', 'x-forwarded-for', '127.0.0.1']

describe('requestHead: checkedHeaders', () => {
  test('fields equal to the checked ones at the same index are not tested again; the others are', () => {
    const headers = [...FIELDS, 'x-user-id', 'bench']
    const checked = FIELDS.slice()
    const seen = testedWith(() =>
      requestHead({ path: '/', method: 'GET', headers, checkedHeaders: checked }, 'h'),
    )
    for (const s of FIELDS) assert.ok(!seen.includes(s), `${s} tested again`)
    assert.ok(
      seen.includes('x-user-id') && seen.includes('bench'),
      'the field past the checked ones was tested',
    )
    // Without checkedHeaders, every field is tested, as before.
    const all = testedWith(() => requestHead({ path: '/', method: 'GET', headers }, 'h'))
    for (const s of headers) assert.ok(all.includes(s), `${s} not tested`)
  })

  test('a field changed, moved or added after the check is refused like any other', () => {
    const checked = FIELDS.slice()
    const cases: [string, string[]][] = [
      [
        'a value changed in place',
        ['host', 'example.test', 'accept', '*/*\r\nx-injected: 1', ...FIELDS.slice(4)],
      ],
      ['a name changed in place', ['host', 'example.test', 'bad name', '*/*', ...FIELDS.slice(4)]],
      ['a field past the checked ones', [...FIELDS, 'x-a', 'a\nb']],
      // A field removed before it: the later ones shift onto other checked indexes.
      [
        'fields shifted by a removal',
        ['host', 'example.test', 'x-api-key', 'k1\0', 'x-forwarded-for', '127.0.0.1'],
      ],
      ['a value with DEL', ['host', 'example.test', 'accept', 'a\x7f', ...FIELDS.slice(4)]],
    ]
    for (const [what, headers] of cases) {
      assert.equal(
        refused({ path: '/', method: 'GET', headers, checkedHeaders: checked }),
        'UND_ERR_INVALID_ARG',
        what,
      )
    }
  })

  test("a checked field still meets the client's own rules (framing, Host, Expect)", () => {
    for (const headers of [
      ['transfer-encoding', 'chunked'],
      ['host', 'a', 'host', 'b'],
      ['upgrade', 'websocket'],
      ['keep-alive', 'timeout=5'],
    ]) {
      assert.equal(
        refused({ path: '/', method: 'GET', headers, checkedHeaders: headers.slice() }),
        'UND_ERR_INVALID_ARG',
        headers.join(': '),
      )
    }
    assert.equal(
      refused({
        path: '/',
        method: 'GET',
        headers: ['expect', '100-continue'],
        checkedHeaders: ['expect', '100-continue'],
      }),
      'UND_ERR_NOT_SUPPORTED',
    )
  })

  test('the head is the same with or without checkedHeaders', () => {
    const headers = [...FIELDS, 'content-length', '5', 'x-b', 'v']
    const a = requestHead({ path: '/p?q', method: 'POST', headers }, 'h')
    const b = requestHead({ path: '/p?q', method: 'POST', headers, checkedHeaders: headers.slice(0, 8) }, 'h')
    assert.deepEqual(a, b)
  })
})
