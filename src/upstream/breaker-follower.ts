// A worker's view of its group's circuit breaker when there are workers (server.workers > 1):
// the breaker itself (circuit-breaker.ts) lives in the primary, so the instance has one state,
// not one per worker. The hot path stays local: admit() reads the state the primary last
// broadcast, and outcomes are added to a batch sent every BATCH_MS (at once when half-open,
// where each probe's verdict matters), so a request costs no message of its own.
//
// Half-open: a worker needs a probe slot from the primary (the primary's breaker counts them,
// half_open_requests for the instance). A request that finds no slot is refused as when open,
// and makes the worker ask for one; the slot is used by the worker's next request. So each
// worker refuses at least its first request after the primary half-opens.

import type { CircuitBreakerSpec } from '../config/snapshot'
import {
  type Breaker,
  type BreakerState,
  CLOSED,
  HALF_OPEN,
  OPEN,
  type OutcomeBatch,
  STATE_NAMES,
  timing,
} from './circuit-breaker'

/** Outcomes are sent at most this often; the breaker trips up to this much later than alone. */
const BATCH_MS = 20

export interface BreakerLink {
  report(batch: OutcomeBatch): void
  /** Asks the primary for a probe slot; resolves with whether one was given. */
  probe(): Promise<boolean>
}

export class FollowerBreaker implements Breaker {
  readonly spec: CircuitBreakerSpec
  readonly #link: BreakerLink
  #state = CLOSED
  #openedAt = 0
  #permits = 0
  #asking = false
  #batch: OutcomeBatch = emptyBatch()
  #timer: NodeJS.Timeout | undefined

  constructor(spec: CircuitBreakerSpec, link: BreakerLink) {
    this.spec = spec
    this.#link = link
  }

  get state(): BreakerState {
    return STATE_NAMES[this.#state]!
  }

  get code(): number {
    return this.#state
  }

  get openedAt(): number {
    return this.#openedAt
  }

  /** The primary's word: a transition of the instance's breaker. */
  set(state: BreakerState, openedAt: number): void {
    this.#state = STATE_NAMES.indexOf(state)
    this.#openedAt = openedAt
    this.#permits = 0
    // Outcomes of the state before belong to it (the primary would ignore them as late).
    if (this.#state !== CLOSED) this.#batch = emptyBatch()
  }

  admit(): boolean {
    return this.#state === CLOSED || this.#admitTripped()
  }

  #admitTripped(): boolean {
    if (this.#state === OPEN) return false
    if (this.#permits > 0) {
      this.#permits--
      return true
    }
    if (!this.#asking) {
      this.#asking = true
      this.#link.probe().then(
        (given) => {
          this.#asking = false
          if (given && this.#state === HALF_OPEN) this.#permits++
        },
        () => {
          this.#asking = false
        },
      )
    }
    return false
  }

  success(ms?: number): void {
    if (this.#state === OPEN) return
    const b = this.#batch
    b.successes++
    b.sawSuccess = true
    b.trailingFailures = 0
    this.#timed(ms)
    this.#schedule()
  }

  failure(ms?: number): void {
    if (this.#state === OPEN) return
    const b = this.#batch
    b.failures++
    b.trailingFailures++
    this.#timed(ms)
    this.#schedule()
  }

  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #timed(ms: number | undefined): void {
    const t = timing(this.spec, ms)
    if (t === 0) return
    this.#batch.timed++
    if (t === 2) this.#batch.slow++
  }

  #schedule(): void {
    if (this.#state === HALF_OPEN) {
      this.dispose()
      this.#flush()
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(this.#flush, BATCH_MS)
    }
  }

  #flush = (): void => {
    this.#timer = undefined
    const b = this.#batch
    if (b.successes + b.failures === 0) return
    this.#batch = emptyBatch()
    this.#link.report(b)
  }
}

function emptyBatch(): OutcomeBatch {
  return { successes: 0, failures: 0, timed: 0, slow: 0, sawSuccess: false, trailingFailures: 0 }
}
