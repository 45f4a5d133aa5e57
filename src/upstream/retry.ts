// The one retry decision, for HTTP exchanges, WebSocket handshakes and TCP connections alike:
// may a failed attempt move on to the next candidate peer? (Pingora's fail_to_connect: the
// decision rides on what failed: retryCondition() reads it off the error kind's catalogue row.)

import type { RetryCondition, RetryPolicy } from '../config/snapshot'
import { ERRORS, type ErrorKind } from '../observe/errors'
import type { RetryBudget } from './retry-budget'

/** RFC 9110 section 9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** Which `retry_on` condition a failure falls under (observe/errors.ts); undefined: never retried. */
export function retryCondition(kind: ErrorKind): RetryCondition | undefined {
  return ERRORS[kind].retry
}

export interface RetryQuestion {
  policy: RetryPolicy
  condition: RetryCondition
  /** Attempts made so far minus one (0 after the first failure). */
  attempt: number
  /** Candidate peers for this request. */
  candidates: number
  /** The HTTP method; undefined for a TCP connection (only connect failures can be retried). */
  method: string | undefined
  /** The request streams a body (it cannot be sent twice once it started). */
  hasBody: boolean
  /** Some of the response already reached the client. */
  responseStarted: boolean
  budget: RetryBudget
}

/**
 * True when the next candidate may be tried, and then takes one retry from the budget.
 * - A connect failure never reached the peer: any request may go elsewhere.
 * - Any other failure only for idempotent methods without a body, before the response started.
 * - The condition must be in the policy's `retry_on`, except a reset GET or HEAD: a server dying
 *   under load resets the connections it had, and nothing was answered, so it is always safe.
 */
export function mayRetry(q: RetryQuestion): boolean {
  if (q.responseStarted) return false
  if (q.attempt >= q.policy.retries || q.attempt + 1 >= q.candidates) return false
  if (q.condition !== 'connect_failure') {
    if (q.method === undefined || q.hasBody || !IDEMPOTENT.has(q.method)) return false
  }
  const allowed =
    q.policy.on.has(q.condition) || (q.condition === 'reset' && (q.method === 'GET' || q.method === 'HEAD'))
  return allowed && q.budget.tryRetry(Date.now())
}
