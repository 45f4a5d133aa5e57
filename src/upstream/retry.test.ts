import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RetryCondition } from '../config/snapshot'
import { mayRetry, type RetryQuestion } from './retry'
import { RetryBudget } from './retry-budget'

const base = (over: Partial<RetryQuestion> = {}): RetryQuestion => ({
  policy: { retries: 1, on: new Set<RetryCondition>(['connect_failure']) },
  condition: 'connect_failure',
  attempt: 0,
  candidates: 2,
  method: 'GET',
  hasBody: false,
  responseStarted: false,
  budget: new RetryBudget(100, 100),
  ...over,
})

const cases: Array<{ desc: string; q: Partial<RetryQuestion>; retry: boolean }> = [
  { desc: 'a connect failure, default policy', q: {}, retry: true },
  {
    desc: 'a connect failure of a POST with a body (nothing was sent)',
    q: { method: 'POST', hasBody: true },
    retry: true,
  },
  { desc: 'a TCP connection that could not connect', q: { method: undefined }, retry: true },
  { desc: 'no retries left', q: { attempt: 1 }, retry: false },
  { desc: 'no other candidate', q: { candidates: 1 }, retry: false },
  { desc: 'the response already started', q: { responseStarted: true }, retry: false },
  { desc: 'a reset GET, whatever retry_on says', q: { condition: 'reset' }, retry: true },
  { desc: 'a reset HEAD', q: { condition: 'reset', method: 'HEAD' }, retry: true },
  { desc: 'a reset PUT without reset in retry_on', q: { condition: 'reset', method: 'PUT' }, retry: false },
  { desc: 'a reset POST', q: { condition: 'reset', method: 'POST' }, retry: false },
  { desc: 'a reset GET with a body', q: { condition: 'reset', hasBody: true }, retry: false },
  { desc: 'a reset on a TCP connection', q: { condition: 'reset', method: undefined }, retry: false },
  { desc: 'a timeout not in retry_on', q: { condition: 'timeout' }, retry: false },
  {
    desc: 'a timeout in retry_on, idempotent',
    q: {
      condition: 'timeout',
      method: 'DELETE',
      policy: { retries: 2, on: new Set<RetryCondition>(['timeout']) },
    },
    retry: true,
  },
  {
    desc: 'a 5xx in retry_on for a POST',
    q: { condition: '5xx', method: 'POST', policy: { retries: 2, on: new Set<RetryCondition>(['5xx']) } },
    retry: false,
  },
  { desc: 'an empty budget', q: { budget: new RetryBudget(0, 0) }, retry: false },
]

for (const c of cases) {
  test(`mayRetry: ${c.desc}`, () => {
    assert.equal(mayRetry(base(c.q)), c.retry)
  })
}
