// Circuit breaker of an upstream group (`circuit_breaker`): when the group as a whole keeps
// failing, stop sending it requests for a while instead of making every client wait for the
// same timeout or 5xx. Passive health (passive-health.ts) takes one bad *server* out; this takes
// the *group* out, which is what protects the clients (and the group) when the fault is shared.
//
// closed: everything goes through; outcomes (the group's reportSuccess/reportFailure, one per
//   attempt) are counted. It opens on `consecutive_failures` in a row, or once `min_requests`
//   outcomes were seen in the last `window_secs`, on an error ratio or a p99 answer time over
//   the thresholds.
// open: nothing goes through (the caller answers 503 circuit_open or uses the fallback group)
//   for `open_secs`.
// half_open: `half_open_requests` go through as probes, the rest is refused; it closes when that
//   many succeed and reopens on any failure. A probe whose outcome never comes (the client left,
//   no server was available) would hold its slot for ever: after another `open_secs` without a
//   verdict a new round of probes is let through.
//
// With workers, this breaker lives in the primary, fed by the workers' batches (apply), and
// each worker has a FollowerBreaker (breaker-follower.ts) that mirrors its state.
//
// Outcomes that arrive while open belong to requests let through before it opened: ignored.
// Checking a closed breaker (admit) is one field read, so the breaker costs nothing on the hot
// path until it trips. Time is read through `now` so the tests drive a fake clock.

import type { CircuitBreakerSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'

export type BreakerState = 'closed' | 'open' | 'half_open'

export const CLOSED = 0
export const OPEN = 1
export const HALF_OPEN = 2
export const STATE_NAMES: readonly BreakerState[] = ['closed', 'open', 'half_open']

/** What the group, the pipeline, the API and the metrics use of a breaker, wherever its state lives. */
export interface Breaker {
  readonly spec: CircuitBreakerSpec
  readonly state: BreakerState
  readonly code: number
  readonly openedAt: number
  admit(): boolean
  success(ms?: number): void
  failure(ms?: number): void
  dispose(): void
}

/**
 * Outcomes a worker saw since its last report (breaker-follower.ts), for the primary's breaker:
 * counts for the window, and for consecutive_failures the failures after the last success.
 */
export interface OutcomeBatch {
  successes: number
  failures: number
  /** Outcomes with an answer time, and those over latency_p99_ms. */
  timed: number
  slow: number
  /** Whether a success is among them, and the failures after the last one. */
  sawSuccess: boolean
  trailingFailures: number
}

export interface BreakerOptions {
  log: Logger
  /** Hears every transition (tests; the state is also read through `state`). */
  onChange?: (state: BreakerState) => void
  now?: () => number
}

export class CircuitBreaker implements Breaker {
  readonly spec: CircuitBreakerSpec
  readonly #group: string
  readonly #log: Logger
  readonly #onChange: ((state: BreakerState) => void) | undefined
  readonly #now: () => number
  #state = CLOSED
  #consecutive = 0
  // The rolling window: one bucket per second, and the sums over all of them kept up to date
  // (a bucket's counts are taken off the sums when it is reused), so a check is O(1).
  readonly #windowed: boolean
  readonly #requests: Float64Array
  readonly #failures: Float64Array
  /** Outcomes with an answer time (a response head came), and those over latency_p99_ms. */
  readonly #timed: Float64Array
  readonly #slow: Float64Array
  #sumRequests = 0
  #sumFailures = 0
  #sumTimed = 0
  #sumSlow = 0
  #second = 0
  #openUntil = 0
  #openedAt = 0
  #probes = 0
  #probeSuccesses = 0
  #roundStart = 0
  #timer: NodeJS.Timeout | undefined

  constructor(spec: CircuitBreakerSpec, group: string, o: BreakerOptions) {
    this.spec = spec
    this.#group = group
    this.#log = o.log
    this.#onChange = o.onChange
    this.#now = o.now ?? Date.now
    this.#windowed = spec.errorRatio !== undefined || spec.latencyP99Ms !== undefined
    const n = this.#windowed ? spec.windowSecs : 0
    this.#requests = new Float64Array(n)
    this.#failures = new Float64Array(n)
    this.#timed = new Float64Array(n)
    this.#slow = new Float64Array(n)
  }

  /** The state now (an open breaker whose `open_secs` are over is half-open). */
  get state(): BreakerState {
    this.#refresh(this.#now())
    return STATE_NAMES[this.#state]!
  }

  /** 0 closed, 1 open, 2 half_open: the `locci_circuit_breaker_state` gauge. */
  get code(): number {
    this.#refresh(this.#now())
    return this.#state
  }

  /** When it last opened (epoch ms), 0 if never. */
  get openedAt(): number {
    return this.#openedAt
  }

  /** Whether a request may go to the group now; in half-open this takes a probe slot. */
  admit(): boolean {
    return this.#state === CLOSED || this.#admitTripped()
  }

  #admitTripped(): boolean {
    const now = this.#now()
    this.#refresh(now)
    if (this.#state === OPEN) return false
    if (this.#state === CLOSED) return true
    if (this.#probes >= this.spec.halfOpenRequests) {
      if (now - this.#roundStart < this.spec.openMs) return false
      // A round whose verdict never came: let a new round through.
      this.#probes = 0
    }
    if (this.#probes === 0) this.#roundStart = now
    this.#probes++
    return true
  }

  /** An attempt that got a non-5xx answer (or a TCP connection); `ms`: time to the answer. */
  success(ms?: number): void {
    const s = this.#state
    if (s === OPEN) return
    if (s === HALF_OPEN) {
      if (++this.#probeSuccesses >= this.spec.halfOpenRequests) this.#close()
      return
    }
    this.#consecutive = 0
    if (this.#windowed) this.#count(1, 0, ms, this.#now())
  }

  /** An attempt that failed: a 5xx answer (`ms` to it), a timeout, a connection error. */
  failure(ms?: number): void {
    const s = this.#state
    if (s === OPEN) return
    const now = this.#now()
    if (s === HALF_OPEN) {
      this.#open(now, 'half_open_probe_failed', {})
      return
    }
    if (this.#tripsConsecutive(this.#consecutive + 1, now)) return
    if (this.#windowed) this.#count(0, 1, ms, now)
  }

  /** A worker's outcomes (the primary holds the breaker of the instance). */
  apply(b: OutcomeBatch): void {
    const now = this.#now()
    this.#refresh(now)
    const s = this.#state
    if (s === OPEN) return
    if (s === HALF_OPEN) {
      if (b.failures > 0) {
        this.#open(now, 'half_open_probe_failed', {})
        return
      }
      this.#probeSuccesses += b.successes
      if (this.#probeSuccesses >= this.spec.halfOpenRequests) this.#close()
      return
    }
    const consecutive = b.sawSuccess ? b.trailingFailures : this.#consecutive + b.failures
    if (this.#tripsConsecutive(consecutive, now)) return
    if (this.#windowed) this.#add(b.successes + b.failures, b.failures, b.timed, b.slow, now)
  }

  /** Stores the failures in a row; opens when they reach consecutive_failures. */
  #tripsConsecutive(consecutive: number, now: number): boolean {
    this.#consecutive = consecutive
    const limit = this.spec.consecutiveFailures
    if (limit === undefined || consecutive < limit) return false
    this.#open(now, 'consecutive_failures', { consecutive_failures: consecutive })
    return true
  }

  /** Stops its timer (the breaker was replaced by a reload). */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #count(successes: number, failures: number, ms: number | undefined, now: number): void {
    const t = timing(this.spec, ms)
    this.#add(successes + failures, failures, t === 0 ? 0 : 1, t === 2 ? 1 : 0, now)
  }

  #add(requests: number, failures: number, timed: number, slow: number, now: number): void {
    const b = this.#advance(now)
    this.#requests[b]! += requests
    this.#failures[b]! += failures
    this.#timed[b]! += timed
    this.#slow[b]! += slow
    this.#sumRequests += requests
    this.#sumFailures += failures
    this.#sumTimed += timed
    this.#sumSlow += slow
    const threshold = this.spec.latencyP99Ms
    const min = this.spec.minRequests
    const ratio = this.spec.errorRatio
    if (ratio !== undefined && this.#sumRequests >= min && this.#sumFailures >= ratio * this.#sumRequests) {
      this.#open(now, 'error_ratio', {
        error_ratio: round(this.#sumFailures / this.#sumRequests),
        requests: this.#sumRequests,
        window_secs: this.spec.windowSecs,
      })
      return
    }
    // The nearest-rank p99 of n samples is over the threshold exactly when more than
    // n - ceil(0.99 n) of them are: no sorting, no histogram.
    const n = this.#sumTimed
    if (threshold !== undefined && n >= min && this.#sumSlow > n - Math.ceil(0.99 * n - 1e-9)) {
      this.#open(now, 'latency_p99', {
        latency_p99_ms: threshold,
        over_threshold: this.#sumSlow,
        requests: n,
        window_secs: this.spec.windowSecs,
      })
    }
  }

  /** The bucket of `now`'s second, emptying those that left the window since the last call. */
  #advance(now: number): number {
    const w = this.spec.windowSecs
    const sec = Math.floor(now / 1000)
    // A clock that steps back keeps counting into the current bucket.
    if (sec <= this.#second) return this.#second % w
    const gap = Math.min(sec - this.#second, w)
    for (let i = 1; i <= gap; i++) this.#clearBucket((this.#second + i) % w)
    this.#second = sec
    return sec % w
  }

  #clearBucket(b: number): void {
    this.#sumRequests -= this.#requests[b]!
    this.#sumFailures -= this.#failures[b]!
    this.#sumTimed -= this.#timed[b]!
    this.#sumSlow -= this.#slow[b]!
    this.#requests[b] = 0
    this.#failures[b] = 0
    this.#timed[b] = 0
    this.#slow[b] = 0
  }

  /** Forgets the counts: a new state starts from nothing. */
  #reset(): void {
    this.#consecutive = 0
    for (let b = 0; b < this.#requests.length; b++) this.#clearBucket(b)
  }

  #open(now: number, reason: string, fields: Record<string, unknown>): void {
    const wasHalfOpen = this.#state === HALF_OPEN
    this.#state = OPEN
    this.#openedAt = now
    this.#openUntil = now + this.spec.openMs
    this.#reset()
    this.#log.warn(
      { upstream: this.#group, reason, open_secs: this.spec.openMs / 1000, ...fields },
      wasHalfOpen ? 'circuit breaker reopened: a probe failed' : 'circuit breaker opened',
    )
    this.dispose()
    // Only to log the move to half-open when it is due; the state is kept right without it.
    this.#timer = setTimeout(() => this.#refresh(this.#now()), this.spec.openMs)
    this.#timer.unref()
    this.#onChange?.('open')
  }

  #refresh(now: number): void {
    if (this.#state !== OPEN || now < this.#openUntil) return
    this.#state = HALF_OPEN
    this.#probes = 0
    this.#probeSuccesses = 0
    this.#roundStart = now
    this.#log.info(
      { upstream: this.#group, half_open_requests: this.spec.halfOpenRequests },
      'circuit breaker half-open: letting probe requests through',
    )
    this.#onChange?.('half_open')
  }

  #close(): void {
    this.#state = CLOSED
    this.#reset()
    this.dispose()
    this.#log.info(
      { upstream: this.#group, probes: this.#probeSuccesses },
      'circuit breaker closed: probe requests succeeded',
    )
    this.#onChange?.('closed')
  }
}

/** 0: no answer time to count; 1: one within latency_p99_ms; 2: one over it. */
export function timing(spec: CircuitBreakerSpec, ms: number | undefined): 0 | 1 | 2 {
  if (ms === undefined || spec.latencyP99Ms === undefined) return 0
  return ms > spec.latencyP99Ms ? 2 : 1
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000
}

/** What the fallback walk needs of a group (upstream/group.ts). */
export interface BreakerGroup {
  readonly breaker: Breaker | undefined
}

/**
 * The group that takes a request meant for `group`: itself when its breaker (if any) lets the
 * request through, else its `fallback`, asked the same way; undefined when none does (the
 * caller answers 503 circuit_open). Fallbacks name existing groups and never form a cycle
 * (checked when the config is loaded), so the walk ends.
 */
export function admittingGroup<G extends BreakerGroup>(
  group: G,
  groups: ReadonlyMap<string, G>,
): G | undefined {
  let g: G | undefined = group
  while (g !== undefined) {
    const b: Breaker | undefined = g.breaker
    if (b === undefined || b.admit()) return g
    const next: string | undefined = b.spec.fallback
    g = next === undefined ? undefined : groups.get(next)
  }
  return undefined
}
