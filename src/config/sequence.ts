// The points a weighted split picks with when no sticky key decides: the golden-ratio (Weyl)
// sequence frac(k * 0.618...), which covers [0, 1) more evenly than random numbers do. Over any
// run of n requests every group's share is within about log(n)/n of its weight, so a 5 % canary
// gets one request in twenty, spread out, instead of a random 3-7 % of a thousand; and it costs
// an addition where Math.random costs a call.
// It lives in the frozen snapshot: Object.freeze does not reach a private field, so the one
// mutable number stays mutable while the rest of the split is read-only.

const PHI = 0.6180339887498949

export class WeylSequence {
  #x: number

  constructor(start = 0) {
    this.#x = start
  }

  /** The next point, in [0, 1). */
  next(): number {
    let x = this.#x + PHI
    if (x >= 1) x -= 1
    this.#x = x
    return x
  }
}
