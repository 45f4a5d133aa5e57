// Retry budget: retries may be at most `percent` of the group's requests over the last 10 s
// (or `min_per_sec` per second, whichever is more), so an outage cannot multiply the load on
// the servers that are left. Ten one-second buckets; counting is O(1) per request.

const BUCKETS = 10

export class RetryBudget {
  readonly #percent: number
  readonly #minPerSec: number
  readonly #requests = new Float64Array(BUCKETS)
  readonly #retries = new Float64Array(BUCKETS)
  #second = 0
  readonly #onRetry: (() => void) | undefined

  /** `onRetry` hears every retry taken (the retries metric). */
  constructor(percent: number, minPerSec: number, onRetry?: () => void) {
    this.#percent = percent
    this.#minPerSec = minPerSec
    this.#onRetry = onRetry
  }

  #advance(now: number): number {
    const sec = Math.floor(now / 1000)
    if (sec !== this.#second) {
      const gap = Math.min(sec - this.#second, BUCKETS)
      for (let i = 1; i <= gap; i++) {
        const b = (this.#second + i) % BUCKETS
        this.#requests[b] = 0
        this.#retries[b] = 0
      }
      this.#second = sec
    }
    return sec % BUCKETS
  }

  request(now: number): void {
    this.#requests[this.#advance(now)]!++
  }

  /** Takes one retry from the budget if there is one left. */
  tryRetry(now: number): boolean {
    const b = this.#advance(now)
    let requests = 0
    let retries = 0
    for (let i = 0; i < BUCKETS; i++) {
      requests += this.#requests[i]!
      retries += this.#retries[i]!
    }
    const allowed = Math.max(this.#minPerSec * BUCKETS, (this.#percent / 100) * requests)
    if (retries >= allowed) return false
    this.#retries[b]!++
    this.#onRetry?.()
    return true
  }
}
