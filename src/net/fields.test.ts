import assert from 'node:assert/strict'
import { test } from 'node:test'
import { checkedAlready, INVALID_VALUE, TOKEN } from './fields'

test('checkedAlready: only a field equal, name and value, to the copy at the same index', () => {
  const checked = ['host', 'a', 'x-b', 'v']
  assert.equal(checkedAlready(checked, 0, 'host', 'a'), true)
  assert.equal(checkedAlready(checked, 2, 'x-b', 'v'), true)
  // The same content built anew is as valid as the copy's.
  assert.equal(checkedAlready(checked, 2, ['x', 'b'].join('-'), 'v'), true)
  assert.equal(checkedAlready(checked, 2, 'x-b', 'v\r\nx: y'), false, 'value changed')
  assert.equal(checkedAlready(checked, 0, 'x-b', 'v'), false, 'moved to another index')
  assert.equal(checkedAlready(checked, 4, 'host', 'a'), false, 'past the copy')
  assert.equal(checkedAlready(checked, 3, 'v', undefined), false, 'a value index, not a field')
  assert.equal(checkedAlready(undefined, 0, 'host', 'a'), false)
  assert.equal(checkedAlready(['n', '1'], 0, 'n', 1), false, 'a number is not the string')
})

test("the field rules are node:http's", () => {
  for (const ok of ['content-type', 'X-A_b', "!#$%&'*+-.^_`|~9"]) assert.ok(TOKEN.test(ok), ok)
  for (const bad of ['', 'a b', 'a:b', 'é', 'a\r\n']) assert.ok(!TOKEN.test(bad), JSON.stringify(bad))
  for (const ok of ['', 'a\tb', 'caf\xe9', '~ !']) assert.ok(!INVALID_VALUE.test(ok), JSON.stringify(ok))
  for (const bad of ['a\rb', 'a\nb', 'a\0', 'a\x7f', 'a\x01', '\u0100']) {
    assert.ok(INVALID_VALUE.test(bad), JSON.stringify(bad))
  }
})
