import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { formatChangeProblem, formatProblem, type Problem, sortProblems } from './problems'

describe('formatProblem', () => {
  const cases: Array<{ desc: string; p: Problem; want: string }> = [
    {
      desc: 'the whole file',
      p: { file: 'c.yaml', path: '', message: 'config file not found' },
      want: 'c.yaml: config file not found',
    },
    {
      desc: 'a key path and its line',
      p: { file: 'c.yaml', path: 'server.workers', line: 4, message: 'must be a whole number' },
      want: 'c.yaml:4: server.workers: must be a whole number',
    },
    {
      desc: 'a point: line and column, the line and a caret under the column',
      p: {
        file: 'c.yaml',
        path: '',
        line: 3,
        column: 17,
        excerpt: { text: '  bind_address: a: b', caret: 16 },
        message: 'YAML: Nested mappings are not allowed in compact mappings',
      },
      want:
        'c.yaml:3:17: YAML: Nested mappings are not allowed in compact mappings\n' +
        '    3 |   bind_address: a: b\n' +
        '      |                 ^',
    },
    {
      desc: 'tabs before the column stay tabs under it',
      p: {
        file: 'c.yaml',
        path: '',
        line: 12,
        column: 3,
        excerpt: { text: '\tx: y', caret: 2 },
        message: 'YAML: bad',
      },
      want: 'c.yaml:12:3: YAML: bad\n    12 | \tx: y\n       | \t ^',
    },
    {
      desc: 'a column without an excerpt (a line that may hold a secret)',
      p: { file: 'c.yaml', path: '', line: 2, column: 12, message: 'YAML: bad' },
      want: 'c.yaml:2:12: YAML: bad',
    },
  ]
  for (const c of cases) test(c.desc, () => assert.equal(formatProblem(c.p), c.want))

  test('a runtime change reports key path and message, never a file or line', () => {
    assert.equal(
      formatChangeProblem({
        file: 'c.yaml',
        path: 'api_gateway.routes.r.upstream',
        line: 40,
        message: 'bad',
      }),
      'api_gateway.routes.r.upstream: bad',
    )
    assert.equal(formatChangeProblem({ file: 'c.yaml', path: '', line: 40, message: 'bad' }), 'bad')
  })
})

test('sortProblems: by line, stable (one line keeps its order), problems without a line last in their order', () => {
  const p = (message: string, line?: number, column?: number): Problem => ({
    file: 'c.yaml',
    path: '',
    message,
    ...(line !== undefined ? { line } : {}),
    ...(column !== undefined ? { column } : {}),
  })
  const given = [
    p('no line A'),
    p('line 9', 9),
    p('line 2, first written', 2),
    p('no line B'),
    p('line 2, second written', 2),
    p('line 2 col 5', 2, 5),
    p('line 2 col 3', 2, 3),
    p('line 1', 1),
  ]
  assert.deepEqual(
    sortProblems(given).map((x) => x.message),
    [
      'line 1',
      'line 2, first written',
      'line 2, second written',
      'line 2 col 5',
      'line 2 col 3',
      'line 9',
      'no line A',
      'no line B',
    ],
  )
  assert.equal(given[0]!.message, 'no line A', 'the input is left as it was')
})
