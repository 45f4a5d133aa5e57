// Requests (HTTP) or connections (TCP pass-through) being handled now: what
// `locci_requests_in_flight` and the status API report, and what shutdown waits for.

export class InFlight {
  #count = 0
  #idleWaiters: Array<() => void> = []

  get count(): number {
    return this.#count
  }

  enter(): void {
    this.#count++
  }

  /** Call once per enter(); the last one out wakes those waiting in idle(). */
  leave(): void {
    if (--this.#count === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  /** Resolves once nothing is in flight. */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }
}
